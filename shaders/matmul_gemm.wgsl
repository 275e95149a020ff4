// Tiled matrix product for many activation rows (prefill):
//   out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]), or out[m, n] += that.
//
// Built once per weight type with `matmul_params.wgsl` and a
// `dequant_*.wgsl` snippet prepended. Each workgroup computes a 64 x 64 tile of out. It walks K in steps of 16,
// staging x[64, 16] and the dequantized w[64, 16] in workgroup memory,
// k-major, and each thread accumulates a 4 x 4 register block: rows
// 4 * (thread / 16) + i and columns thread % 16 + 16 * j. Threads that share
// a row block read the same x values, and neighbouring threads read
// neighbouring w values.
//
// Bindings:
//   group 0, binding 0: uniform            params: MatmulParams
//   group 0, binding 1: storage read       x: array<f32>        [M, K]
//   group 0, binding 2: storage read       weights: array<u32>  rows
//                       row_offset .. row_offset + rows of w [N, K], packed
//   group 0, binding 3: storage read       bias: array<f32>     [N]
//   group 0, binding 4: storage read_write out: array<f32>      [M, N]
//
// Workgroup: 256 threads.
// Dispatch: (ceil(rows / 64), ceil(M / 64), 1) once a chunk.

// MatmulParams is defined in `matmul_params.wgsl`, prepended by the host.

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;

// x[m0 + i, k0 + kk] at kk * TILE + i.
var<workgroup> x_tile: array<f32, TILE_K * TILE>;
// w[n0 + j, k0 + kk] at kk * TILE + j.
var<workgroup> w_tile: array<f32, TILE_K * TILE>;

@compute @workgroup_size(256)
fn matmul_gemm(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(local_invocation_index) thread: u32,
) {
    let n0 = workgroup.x * TILE;
    let m0 = workgroup.y * TILE;
    let groups = (params.k + 3u) / 4u;

    // Each thread stages one 4-value group of x and one of w per step.
    let load_row = thread / 4u;
    let load_group = thread % 4u;
    let x_row = m0 + load_row;
    let w_row = n0 + load_row;
    let x_valid = x_row < params.m;
    let w_valid = w_row < params.rows;
    let x_base = select(0u, x_row, x_valid) * params.k;
    let w_safe_row = select(0u, w_row, w_valid);

    let row_block = 4u * (thread / 16u);
    let column = thread % 16u;

    var acc: array<vec4<f32>, 4>;
    for (var group0 = 0u; group0 < groups; group0 += TILE_K / 4u) {
        let group = group0 + load_group;
        let in_k = group < groups;
        var w4 = vec4<f32>(0.0);
        if w_valid && in_k {
            w4 = dequant4(w_safe_row, group, params.row_words, params.scale_base);
        }
        var x4 = vec4<f32>(0.0);
        for (var i = 0u; i < 4u; i++) {
            let k = 4u * group + i;
            if x_valid && k < params.k {
                x4[i] = x[x_base + k];
            }
        }
        for (var i = 0u; i < 4u; i++) {
            let kk = 4u * load_group + i;
            x_tile[kk * TILE + load_row] = x4[i];
            w_tile[kk * TILE + load_row] = w4[i];
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let x_base_kk = kk * TILE + row_block;
            let xs = vec4<f32>(
                x_tile[x_base_kk],
                x_tile[x_base_kk + 1u],
                x_tile[x_base_kk + 2u],
                x_tile[x_base_kk + 3u],
            );
            let w_base_kk = kk * TILE + column;
            let ws = vec4<f32>(
                w_tile[w_base_kk],
                w_tile[w_base_kk + 16u],
                w_tile[w_base_kk + 32u],
                w_tile[w_base_kk + 48u],
            );
            acc[0] += xs[0] * ws;
            acc[1] += xs[1] * ws;
            acc[2] += xs[2] * ws;
            acc[3] += xs[3] * ws;
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let m = m0 + row_block + i;
        for (var j = 0u; j < 4u; j++) {
            let local_row = n0 + column + 16u * j;
            if m < params.m && local_row < params.rows {
                let n = params.row_offset + local_row;
                var sum = acc[i][j];
                if (params.flags & 2u) != 0u {
                    sum += bias[n];
                }
                let index = m * params.n + n;
                if (params.flags & 1u) != 0u {
                    sum += out[index];
                }
                out[index] = sum;
            }
        }
    }
}
