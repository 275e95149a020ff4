// dense_matmul: out[m, n] = alpha * sum_k a(m, k) * b(k, n), or
// out[m, n] += that, for small f32 matrices such as LoRA adapters and
// their gradients. Operands are addressed by element offsets, so many
// tensors can live in one flat buffer.
//
//   a(m, k) = a[a_offset + m * K + k]        (flags bit 1 clear)
//           = a[a_offset + k * M + m]        (bit 1 set: a stored [K, M])
//   b(k, n) = b[b_offset + n * K + k]        (bit 2 clear: b stored [N, K])
//           = b[b_offset + k * N + n]        (bit 2 set: b stored [K, N])
//   bit 0 set: accumulate into out instead of overwriting it.
//
// Bindings (group 0):
//   0 uniform    params  DenseParams
//   1 read       a       f32 [M, K] or [K, M], from a_offset
//   2 read       b       f32 [N, K] or [K, N], from b_offset
//   3 read_write out     f32 [M, N], from out_offset
// Workgroup: 16 x 16 threads, one output element each, with 16 x 16 tiles
// of a and b staged in workgroup memory.
// Dispatch: (ceil(N / 16), ceil(M / 16), 1).

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

const TILE: u32 = 16u;

@group(0) @binding(0) var<uniform> params: DenseParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// tile_a[row][k] and tile_b[k][col] of the current k step.
var<workgroup> tile_a: array<array<f32, 16>, 16>;
var<workgroup> tile_b: array<array<f32, 16>, 16>;

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

@compute @workgroup_size(16, 16)
fn dense_matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let col = wid.x * TILE + lid.x;
    let row = wid.y * TILE + lid.y;

    var sum = 0.0;
    for (var k0 = 0u; k0 < params.k; k0 += TILE) {
        tile_a[lid.y][lid.x] = load_a(row, k0 + lid.x);
        tile_b[lid.y][lid.x] = load_b(k0 + lid.y, col);
        workgroupBarrier();
        for (var i = 0u; i < TILE; i++) {
            sum += tile_a[lid.y][i] * tile_b[i][lid.x];
        }
        workgroupBarrier();
    }

    if row < params.m && col < params.n {
        let index = params.out_offset + row * params.n + col;
        var value = params.alpha * sum;
        if (params.flags & 1u) != 0u {
            value += out[index];
        }
        out[index] = value;
    }
}
