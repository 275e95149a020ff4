// Tiled product with the transposed weight, for the backward pass through
// a frozen weight over many activation rows:
//   out[m, k] = sum_n dy[m, n] * w[n, k], or out[m, k] += that.
//
// Built once per weight type with `matmul_params.wgsl`, a `dequant_*.wgsl`
// snippet and `matmul_tile.wgsl` prepended. The tiling is that of
// `matmul_gemm.wgsl` with the roles of N and K swapped: each workgroup
// computes a 64 x 64 tile of out, walking the chunk's rows in steps of 16
// and staging dy[64, 16] and the dequantized w[16, 64] in workgroup memory
// as vec4s, and each thread accumulates an 8 x 8 register block: rows
// 8 * (thread / 8) + i and columns 8 * (thread % 8) + j. A matrix split into
// chunks is dispatched once a chunk, every chunk after the first adding to
// `out`.
//
// Bindings:
//   group 0, binding 0: uniform            params: MatmulParams
//   group 0, binding 1: storage read       dy: array<f32>       [M, N]
//   group 0, binding 2: storage read       weights: array<u32>  rows
//                       row_offset .. row_offset + rows of w [N, K], packed
//   group 0, binding 3: storage read_write out: array<f32>      [M, K]
//
// Workgroup: 64 threads.
// Dispatch: (ceil(ceil(K / 4) / 16), ceil(M / 64), 1) once a chunk.

// MatmulParams is defined in `matmul_params.wgsl`, prepended by the host.

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TILE: u32 = 64u;
const TILE_N: u32 = 16u;
// vec4s across one row of a tile.
const QUADS: u32 = TILE / 4u;

// dy[m0 + 4q .. m0 + 4q + 3, n0 + nn] at nn * QUADS + q.
var<workgroup> dy_tile: array<vec4<f32>, TILE_N * QUADS>;
// w[n0 + nn, k0 + 4q .. k0 + 4q + 3] at nn * QUADS + q.
var<workgroup> w_tile: array<vec4<f32>, TILE_N * QUADS>;

// Reads dy[m, row_offset + row .. + 3] for chunk rows row.., zero past M or
// the chunk's rows.
fn load_dy4(m: u32, row: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if m < params.m {
        for (var i = 0u; i < 4u; i++) {
            if row + i < params.rows {
                v[i] = dy[m * params.n + params.row_offset + row + i];
            }
        }
    }
    return v;
}

// Writes out[m, k .. k + 7], adding the previous value as `params.flags`
// requests.
fn store_out(m: u32, k: u32, low: vec4<f32>, high: vec4<f32>) {
    if m >= params.m {
        return;
    }
    for (var j = 0u; j < 8u; j++) {
        if k + j < params.k {
            var sum = select(high[j % 4u], low[j % 4u], j < 4u);
            let index = m * params.k + k + j;
            if (params.flags & 1u) != 0u {
                sum += out[index];
            }
            out[index] = sum;
        }
    }
}

@compute @workgroup_size(64)
fn matmul_transposed_gemm(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(local_invocation_index) thread: u32,
) {
    let group0 = workgroup.x * QUADS;
    let m0 = workgroup.y * TILE;
    let groups = (params.k + 3u) / 4u;

    // dy: each thread stages 4 rows x 4 n, transposed so that every
    // workgroup-memory write is a whole vec4. w: each thread stages 4 rows
    // of one k quad, already vec4s along k.
    let load_quad = thread / 4u;
    let load_step = thread % 4u;
    let w_quad = thread % QUADS;
    let w_row = thread / QUADS;

    let row_block = thread / 8u;
    let column_block = thread % 8u;

    // acc[2 * i + h] holds row 8 * row_block + i, columns
    // 8 * column_block + 4 * h .. + 3.
    var acc: array<vec4<f32>, 16>;
    for (var n0 = 0u; n0 < params.rows; n0 += TILE_N) {
        let m = m0 + 4u * load_quad;
        let n = n0 + 4u * load_step;
        let dys = transpose(mat4x4<f32>(
            load_dy4(m, n),
            load_dy4(m + 1u, n),
            load_dy4(m + 2u, n),
            load_dy4(m + 3u, n),
        ));
        let slot = 4u * load_step * QUADS + load_quad;
        dy_tile[slot] = dys[0];
        dy_tile[slot + QUADS] = dys[1];
        dy_tile[slot + 2u * QUADS] = dys[2];
        dy_tile[slot + 3u * QUADS] = dys[3];
        let group = group0 + w_quad;
        w_tile[w_row * QUADS + w_quad] = load_w4(n0 + w_row, group, groups);
        w_tile[(w_row + 4u) * QUADS + w_quad] = load_w4(n0 + w_row + 4u, group, groups);
        w_tile[(w_row + 8u) * QUADS + w_quad] = load_w4(n0 + w_row + 8u, group, groups);
        w_tile[(w_row + 12u) * QUADS + w_quad] = load_w4(n0 + w_row + 12u, group, groups);
        workgroupBarrier();

        for (var nn = 0u; nn < TILE_N; nn++) {
            let base = nn * QUADS;
            let dy_low = dy_tile[base + 2u * row_block];
            let dy_high = dy_tile[base + 2u * row_block + 1u];
            let w_low = w_tile[base + 2u * column_block];
            let w_high = w_tile[base + 2u * column_block + 1u];
            accumulate_8x8(&acc, dy_low, dy_high, w_low, w_high);
        }
        workgroupBarrier();
    }

    let m = m0 + 8u * row_block;
    let k = 4u * group0 + 8u * column_block;
    store_out(m + 0u, k, acc[0], acc[1]);
    store_out(m + 1u, k, acc[2], acc[3]);
    store_out(m + 2u, k, acc[4], acc[5]);
    store_out(m + 3u, k, acc[6], acc[7]);
    store_out(m + 4u, k, acc[8], acc[9]);
    store_out(m + 5u, k, acc[10], acc[11]);
    store_out(m + 6u, k, acc[12], acc[13]);
    store_out(m + 7u, k, acc[14], acc[15]);
}
