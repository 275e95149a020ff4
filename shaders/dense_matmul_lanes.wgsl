// dense_matmul_lanes: `dense_matmul.wgsl` for CPU adapters with 8-lane
// subgroups (llvmpipe), where every storage or workgroup-memory load is a
// loop over the lanes and loads, not arithmetic, set the speed. Same
// product, operand layouts, flags and bindings.
//
// One workgroup is one subgroup of 8 lanes and computes an 8 x 8 block of
// out: lane j owns column n0 + j for all 8 rows. Per step of 8 k, lane j
// loads a(m0 + r, k0 + j) for the 8 rows and b(k0 + i, n0 + j) for the 8
// k; subgroup shuffles hand each a value to every lane, so a step costs 16
// loads a lane for 64 multiply-adds, where the tiled kernel pays two
// workgroup-memory loads for each.
//
// Bindings (group 0):
//   0 uniform    params  DenseParams
//   1 read       a       f32 [M, K] or [K, M], from a_offset
//   2 read       b       f32 [N, K] or [K, N], from b_offset
//   3 read_write out     f32 [M, N], from out_offset
// Workgroup: 8 threads.
// Dispatch: (ceil(N / 8), ceil(M / 8), 1).

struct DenseParams {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    a_offset: u32,
    b_offset: u32,
    out_offset: u32,
    alpha: f32,
}

const LANES: u32 = 8u;

@group(0) @binding(0) var<uniform> params: DenseParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn load_a(m: u32, k: u32) -> f32 {
    if m >= params.m || k >= params.k {
        return 0.0;
    }
    if (params.flags & 2u) != 0u {
        return a[params.a_offset + k * params.m + m];
    }
    return a[params.a_offset + m * params.k + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    if n >= params.n || k >= params.k {
        return 0.0;
    }
    if (params.flags & 4u) != 0u {
        return b[params.b_offset + k * params.n + n];
    }
    return b[params.b_offset + n * params.k + k];
}

@compute @workgroup_size(8)
fn dense_matmul_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let col = wid.x * LANES + lane;
    let m0 = wid.y * LANES;

    var acc: array<f32, LANES>;
    for (var k0 = 0u; k0 < params.k; k0 += LANES) {
        var a_mine: array<f32, LANES>;
        var b_mine: array<f32, LANES>;
        for (var r = 0u; r < LANES; r++) {
            a_mine[r] = load_a(m0 + r, k0 + lane);
            b_mine[r] = load_b(k0 + r, col);
        }
        for (var i = 0u; i < LANES; i++) {
            for (var r = 0u; r < LANES; r++) {
                acc[r] += subgroupShuffle(a_mine[r], i) * b_mine[i];
            }
        }
    }

    if col >= params.n {
        return;
    }
    for (var r = 0u; r < LANES; r++) {
        let row = m0 + r;
        if row < params.m {
            let index = params.out_offset + row * params.n + col;
            var value = params.alpha * acc[r];
            if (params.flags & 1u) != 0u {
                value += out[index];
            }
            out[index] = value;
        }
    }
}
