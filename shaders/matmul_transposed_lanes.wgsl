// Product with the transposed weight for CPU adapters with 8-lane
// subgroups (llvmpipe), for the backward pass through a frozen weight:
//   out[m, k] = sum_n dy[m, n] * w[n, k], or out[m, k] += that.
//
// Built once per weight type and row tile with `matmul_params.wgsl`, a
// `dequant_block_*.wgsl` snippet and the constant M_TILE prepended; see
// `matmul_gemv_lanes.wgsl` for why loads set the speed on llvmpipe.
//
// Each invocation owns one 32-value block of k for M_TILE activation rows
// and walks the chunk's weight rows eight at a time: each lane loads dy of
// a different weight row, `subgroupBroadcast` hands the eight values to
// every lane, and each lane reads its own block of each weight row as
// whole vec4<u32> words. A matrix split into chunks is dispatched once a
// chunk, every chunk after the first adding to `out`.
//
// Bindings:
//   group 0, binding 0: uniform            params: MatmulParams
//   group 0, binding 1: storage read       dy: array<f32>       [M, N]
//   group 0, binding 2: storage read       weights: array<u32>  the chunk
//   group 0, binding 3: storage read_write out: array<vec4<f32>> [M, K / 4]
//   group 0, binding 4: storage read       quants: array<vec4<u32>>  the
//                       chunk's quant words (the start of `weights`)
//
// Requires K to be a multiple of 32 and subgroups of exactly 8 lanes made of
// consecutive invocation indices; the host checks both.
// Workgroup: 8 threads, one subgroup, 8 blocks of k.
// Dispatch: (ceil(M / M_TILE), ceil(K / 256), 1) once a chunk.

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> quants: array<vec4<u32>>;

@compute @workgroup_size(8)
fn matmul_transposed_lanes(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let blocks = params.k / 32u;
    let block = workgroup.y * 8u + lane;
    // Blocks past K compute block 0 and discard it, so every lane takes part
    // in the broadcasts.
    let valid = block < blocks;
    let safe_block = select(0u, block, valid);
    let m0 = workgroup.x * M_TILE;

    var acc: array<array<vec4<f32>, 8>, M_TILE>;
    for (var n0 = 0u; n0 < params.rows; n0 += 8u) {
        // dy of weight row n0 + lane; zero past the chunk, so the clamped
        // rows below add nothing.
        let n_mine = n0 + lane;
        var dys: array<f32, M_TILE>;
        for (var i = 0u; i < M_TILE; i++) {
            let m = min(m0 + i, params.m - 1u);
            let index = m * params.n + params.row_offset + min(n_mine, params.rows - 1u);
            dys[i] = select(0.0, dy[index], n_mine < params.rows);
        }
        for (var r = 0u; r < 8u; r++) {
            let w = dequant_block(min(n0 + r, params.rows - 1u), safe_block);
            for (var i = 0u; i < M_TILE; i++) {
                let d = subgroupShuffle(dys[i], r);
                for (var j = 0u; j < 8u; j++) {
                    acc[i][j] += w[j] * d;
                }
            }
        }
    }

    if !valid {
        return;
    }
    for (var i = 0u; i < M_TILE; i++) {
        let m = m0 + i;
        if m < params.m {
            let base = (m * params.k) / 4u + 8u * block;
            for (var j = 0u; j < 8u; j++) {
                var value = acc[i][j];
                if (params.flags & 1u) != 0u {
                    value += out[base + j];
                }
                out[base + j] = value;
            }
        }
    }
}
