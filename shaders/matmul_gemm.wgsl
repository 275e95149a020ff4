// Tiled matrix product for many activation rows (prefill):
//   out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]), or out[m, n] += that.
//
// Built once per weight type with `matmul_params.wgsl`, a `dequant_*.wgsl`
// snippet and `matmul_tile.wgsl` prepended.
//
// Each workgroup computes a 64 x 64 tile of out. It walks K in steps of 16,
// staging x[64, 16] and the dequantized w[64, 16] in workgroup memory as
// vec4s of 4 rows, and each thread accumulates an 8 x 8 register block:
// rows 8 * (thread / 8) + i and columns 8 * (thread % 8) + j. Each step of
// the inner loop reads four vec4s for 64 multiply-adds, because on CPU
// adapters (llvmpipe) every workgroup-memory read costs tens of cycles and
// register spills cost far less. Neighbouring threads share a row block,
// so they read the same x values.
//
// NOTE: llvmpipe 22.3 turns every load inside a loop into a loop over the 8
// lanes, tens of cycles each, so this kernel reaches about 4 GFLOP/s on 2
// cores there (see `matmul_throughput` in `matmul.rs`), far below the CPU's
// peak. The loads, not the multiply-adds, set that limit.
//
// Bindings:
//   group 0, binding 0: uniform            params: MatmulParams
//   group 0, binding 1: storage read       x: array<f32>        [M, K]
//   group 0, binding 2: storage read       weights: array<u32>  rows
//                       row_offset .. row_offset + rows of w [N, K], packed
//   group 0, binding 3: storage read       bias: array<f32>     [N]
//   group 0, binding 4: storage read_write out: array<f32>      [M, N]
//
// Workgroup: 64 threads.
// Dispatch: (ceil(rows / 64), ceil(M / 64), 1) once a chunk.

// MatmulParams is defined in `matmul_params.wgsl`, prepended by the host.

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
// vec4s across one row of a tile.
const QUADS: u32 = TILE / 4u;

// x[m0 + 4q .. m0 + 4q + 3, k0 + kk] at kk * QUADS + q.
var<workgroup> x_tile: array<vec4<f32>, TILE_K * QUADS>;
// w[n0 + 4q .. n0 + 4q + 3, k0 + kk] at kk * QUADS + q.
var<workgroup> w_tile: array<vec4<f32>, TILE_K * QUADS>;

// Reads x[row, 4 * group .. 4 * group + 3], zero past M or K.
fn load_x4(row: u32, group: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if row < params.m {
        for (var i = 0u; i < 4u; i++) {
            let k = 4u * group + i;
            if k < params.k {
                v[i] = x[row * params.k + k];
            }
        }
    }
    return v;
}

// Writes out[m, n .. n + 7] of the chunk's local rows n.., adding the bias
// and the previous value as `params.flags` requests.
fn store_out(m: u32, n: u32, low: vec4<f32>, high: vec4<f32>) {
    if m >= params.m {
        return;
    }
    for (var j = 0u; j < 8u; j++) {
        let local_row = n + j;
        if local_row < params.rows {
            let column = params.row_offset + local_row;
            var sum = select(high[j % 4u], low[j % 4u], j < 4u);
            if (params.flags & 2u) != 0u {
                sum += bias[column];
            }
            let index = m * params.n + column;
            if (params.flags & 1u) != 0u {
                sum += out[index];
            }
            out[index] = sum;
        }
    }
}

@compute @workgroup_size(64)
fn matmul_gemm(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(local_invocation_index) thread: u32,
) {
    let n0 = workgroup.x * TILE;
    let m0 = workgroup.y * TILE;
    let groups = (params.k + 3u) / 4u;

    // Each thread stages 4 rows x 4 k of x and of w per step, transposed so
    // that every workgroup-memory write is a whole vec4.
    let load_quad = thread / 4u;
    let load_group = thread % 4u;

    let row_block = thread / 8u;
    let column_block = thread % 8u;

    // acc[2 * i + h] holds row 8 * row_block + i, columns
    // 8 * column_block + 4 * h .. + 3.
    var acc: array<vec4<f32>, 16>;
    for (var group0 = 0u; group0 < groups; group0 += TILE_K / 4u) {
        let group = group0 + load_group;
        let x_row = m0 + 4u * load_quad;
        let w_row = n0 + 4u * load_quad;
        let xs = mat4x4<f32>(
            load_x4(x_row, group),
            load_x4(x_row + 1u, group),
            load_x4(x_row + 2u, group),
            load_x4(x_row + 3u, group),
        );
        let ws = mat4x4<f32>(
            load_w4(w_row, group, groups),
            load_w4(w_row + 1u, group, groups),
            load_w4(w_row + 2u, group, groups),
            load_w4(w_row + 3u, group, groups),
        );
        // Row r of the transpose holds k = 4 * group + r of the 4 rows.
        let xt = transpose(xs);
        let wt = transpose(ws);
        let slot = 4u * load_group * QUADS + load_quad;
        x_tile[slot + 0u * QUADS] = xt[0];
        w_tile[slot + 0u * QUADS] = wt[0];
        x_tile[slot + 1u * QUADS] = xt[1];
        w_tile[slot + 1u * QUADS] = wt[1];
        x_tile[slot + 2u * QUADS] = xt[2];
        w_tile[slot + 2u * QUADS] = wt[2];
        x_tile[slot + 3u * QUADS] = xt[3];
        w_tile[slot + 3u * QUADS] = wt[3];
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let base = kk * QUADS;
            let x_low = x_tile[base + 2u * row_block];
            let x_high = x_tile[base + 2u * row_block + 1u];
            let w_low = w_tile[base + 2u * column_block];
            let w_high = w_tile[base + 2u * column_block + 1u];
            accumulate_8x8(&acc, x_low, x_high, w_low, w_high);
        }
        workgroupBarrier();
    }

    let m = m0 + 8u * row_block;
    let n = n0 + 8u * column_block;
    store_out(m + 0u, n, acc[0], acc[1]);
    store_out(m + 1u, n, acc[2], acc[3]);
    store_out(m + 2u, n, acc[4], acc[5]);
    store_out(m + 3u, n, acc[6], acc[7]);
    store_out(m + 4u, n, acc[8], acc[9]);
    store_out(m + 5u, n, acc[10], acc[11]);
    store_out(m + 6u, n, acc[12], acc[13]);
    store_out(m + 7u, n, acc[14], acc[15]);
}
