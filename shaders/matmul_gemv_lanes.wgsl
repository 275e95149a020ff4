// Matrix-vector product for CPU adapters with 8-lane subgroups (llvmpipe):
//   out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]), or out[m, n] += that.
//
// Built once per weight type and row tile with `matmul_params.wgsl`, a
// `dequant_block_*.wgsl` snippet, `matmul_lanes_products.wgsl` and the
// constant M_TILE prepended.
//
// llvmpipe runs 8 neighbouring invocations as the lanes of one SIMD vector
// and turns every storage load into a loop over the lanes, so loads, not
// arithmetic, set the speed, and a vec4 load costs about as much as a
// scalar one. This kernel therefore gives each invocation one weight row,
// reads a whole 32-value block of it as vec4<u32> words, and shares x
// instead of reloading it: each lane of a subgroup loads a different vec4
// of the block's 32 x values and `subgroupBroadcast` hands each vec4 to
// the other lanes. Per block and activation row that is one x load in place
// of eight, and the block's weights are dequantized once for M_TILE rows.
//
// Bindings:
//   group 0, binding 0: uniform            params: MatmulParams
//   group 0, binding 1: storage read       x: array<vec4<f32>>  [M, K / 4]
//   group 0, binding 2: storage read       weights: array<u32>  the chunk
//   group 0, binding 3: storage read       bias: array<f32>     [N]
//   group 0, binding 4: storage read_write out: array<f32>      [M, N]
//   group 0, binding 5: storage read       quants: array<vec4<u32>>  the
//                       chunk's quant words (the start of `weights`)
//
// Requires K to be a multiple of 32 and subgroups of exactly 8 lanes made of
// consecutive invocation indices; the host checks both.
// Workgroup: 64 threads, one weight row each.
// Dispatch: (ceil(M / M_TILE), Y, Z) once a chunk, with Y * Z >=
// ceil(rows / 64) workgroups of rows split over y and z. The row tiles go
// in x so that workgroups run one after another share weight rows while
// they are still in the CPU's caches.

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> quants: array<vec4<u32>>;

const WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn matmul_gemv_lanes(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroup_count: vec3<u32>,
    @builtin(local_invocation_index) thread: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row = (workgroup.z * workgroup_count.y + workgroup.y) * WORKGROUP_SIZE + thread;
    // Rows past the chunk compute row 0 and rows past M compute the last row
    // again, and both are discarded, so every lane takes part in the
    // broadcasts.
    let valid = row < params.rows;
    let safe_row = select(0u, row, valid);
    let m0 = workgroup.x * M_TILE;
    let blocks = params.k / 32u;

    // Four partial sums a row, added up at the end.
    var sums: array<vec4<f32>, M_TILE>;
    for (var block = 0u; block < blocks; block++) {
        let w = dequant_block(safe_row, block);
        // All loads first: on llvmpipe each is a loop over the lanes, and
        // the products then run in one stretch of straight code.
        var xs: array<vec4<f32>, M_TILE>;
        for (var i = 0u; i < M_TILE; i++) {
            let m = min(m0 + i, params.m - 1u);
            xs[i] = x[(m * params.k) / 4u + 8u * block + lane];
        }
        for (var i = 0u; i < M_TILE; i++) {
            sums[i] += block_products(w, xs[i]);
        }
    }

    if !valid {
        return;
    }
    let n = params.row_offset + row;
    for (var i = 0u; i < M_TILE; i++) {
        let m = m0 + i;
        if m < params.m {
            var sum = dot(sums[i], vec4<f32>(1.0));
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
