// The gate and up projections of a SwiGLU feed-forward block and the gating
// between them, in one pass, for CPU adapters with 8-lane subgroups and
// one activation row:
//   out[n] = silu(x · w_gate[n]) * (x · w_up[n]),
// with silu(g) = g / (1 + exp(-g)), as `swiglu.wgsl` computes it.
//
// It works as `matmul_unrolled_lanes.wgsl` (read that file first), with
// two weight matrices of the same type and shape; the x values of each
// block serve both products.
//
// Bindings are those of `matmul_swiglu_lanes.wgsl`:
//   group 0, binding 0: uniform            params: MatmulParams (of w_gate)
//   group 0, binding 1: storage read       x: array<vec4<f32>>  [1, K / 4]
//   group 0, binding 2: storage read       weights_gate: array<u32>  the chunk
//   group 0, binding 3: storage read       weights_up: array<u32>    the chunk
//   group 0, binding 4: storage read_write out: array<f32>      [1, N]
//   group 0, binding 5: storage read       quants_gate: array<vec4<u32>>
//   group 0, binding 6: storage read       quants_up: array<vec4<u32>>
//                       the chunks' quant words (the start of each chunk)
//
// Requires K to be a multiple of 32 and params.m == 1.
// Workgroup: 64 threads, one weight row each.
// Dispatch: (X, Y, 1) once a chunk, with X * Y >= ceil(rows / 64).

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weights_gate: array<u32>;
@group(0) @binding(3) var<storage, read> weights_up: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> quants_gate: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> quants_up: array<vec4<u32>>;

const WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn matmul_swiglu_unrolled_lanes(
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
    //@ accumulators: two vec4 sums a matrix, `gate_0`, `gate_1`, `up_0`, `up_1`
    //@ blocks: one `{ ... }` a block, adding to gate_(block % 2) and up_(block % 2)

    if !valid {
        return;
    }
    let n = params.row_offset + row;
    //@ results: out[n] from the two pairs of sums
}

// Writes silu(g) * u to out[n].
fn store(n: u32, g: f32, u: f32) {
    // For g below about -88, exp(-g) is +inf and silu(g) is -0, its limit.
    out[n] = g / (1.0 + exp(-g)) * u;
}
