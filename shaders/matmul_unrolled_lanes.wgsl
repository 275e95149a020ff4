// Vector-matrix product for CPU adapters with 8-lane subgroups (llvmpipe)
// and one activation row, as when decoding one sequence:
//   out[n] = sum_k x[k] * w[n, k] (+ bias[n]), or out[n] += that.
//
// The host writes the body: `matmul/unrolled.rs` replaces each `//@` line
// with one straight stretch of code for each 32-value block of a weight
// row, with no loop. That is the point of this kernel. llvmpipe turns a
// load into one scalar load for all 8 lanes when its index is built from
// constants alone and the load sits outside any loop or branch; every
// other load becomes a loop over the lanes. Unrolled, every x load here
// has a constant index, and only the weights are loaded lane by lane.
// The products are also factored: a block's sum is d * (q · x)
// (+ m * sum x), with the integer quants q converted but not scaled.
//
// Long bodies run slower, so the host uses this kernel only for K of up
// to 20 blocks (`matmul/unrolled.rs` has the figures).
//
// Bindings are those of `matmul_gemv_lanes.wgsl`:
//   group 0, binding 0: uniform            params: MatmulParams
//   group 0, binding 1: storage read       x: array<vec4<f32>>  [1, K / 4]
//   group 0, binding 2: storage read       weights: array<u32>  the chunk
//   group 0, binding 3: storage read       bias: array<f32>     [N]
//   group 0, binding 4: storage read_write out: array<f32>      [1, N]
//   group 0, binding 5: storage read       quants: array<vec4<u32>>  the
//                       chunk's quant words (the start of `weights`)
//
// Requires K to be a multiple of 32 and params.m == 1.
// Workgroup: 64 threads, one weight row each.
// Dispatch: (X, Y, 1) once a chunk, with X * Y >= ceil(rows / 64).

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> quants: array<vec4<u32>>;

const WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn matmul_unrolled_lanes(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroup_count: vec3<u32>,
    @builtin(local_invocation_index) thread: u32,
) {
    let row = (workgroup.y * workgroup_count.x + workgroup.x) * WORKGROUP_SIZE + thread;
    // Rows past the chunk compute row 0 and are discarded.
    let valid = row < params.rows;
    let safe_row = select(0u, row, valid);
    // The index of this row's first block.
    let first = safe_row * (params.row_words / (4u * QUANT_VEC4S));
    //@ accumulators: two vec4 sums, `sum_0` and `sum_1`
    //@ blocks: one `{ ... }` a block, adding to sum_(block % 2)

    if !valid {
        return;
    }
    let n = params.row_offset + row;
    //@ results: out[n] from dot(sum_0 + sum_1, 1)
}

// Writes `product` (plus the bias and the old value, as params.flags asks) to
// out[n].
fn store(n: u32, product: f32) {
    var sum = product;
    if (params.flags & 2u) != 0u {
        sum += bias[n];
    }
    if (params.flags & 1u) != 0u {
        sum += out[n];
    }
    out[n] = sum;
}
