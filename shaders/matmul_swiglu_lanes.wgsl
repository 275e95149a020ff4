// The gate and up projections of a SwiGLU feed-forward block and the gating
// between them, in one pass, for CPU adapters with 8-lane subgroups:
//   out[m, n] = silu(x[m] · w_gate[n]) * (x[m] · w_up[n]),
// with silu(g) = g / (1 + exp(-g)), as `swiglu.wgsl` computes it.
//
// It works as `matmul_gemv_lanes.wgsl` (read that file first), with two
// weight matrices of the same type and shape: each invocation takes row n
// of both, and the x values each lane loads and broadcasts serve both
// products. Built once per weight type and row tile with
// `matmul_params.wgsl`, the type's `dequant_block_*.wgsl` snippet twice
// (renamed to dequant_block_gate over `weights_gate` and `quants_gate`,
// and dequant_block_up over `weights_up` and `quants_up`),
// `matmul_lanes_products.wgsl` and the constant M_TILE prepended.
//
// Bindings:
//   group 0, binding 0: uniform            params: MatmulParams (of w_gate)
//   group 0, binding 1: storage read       x: array<vec4<f32>>  [M, K / 4]
//   group 0, binding 2: storage read       weights_gate: array<u32>  the chunk
//   group 0, binding 3: storage read       weights_up: array<u32>    the chunk
//   group 0, binding 4: storage read_write out: array<f32>      [M, N]
//   group 0, binding 5: storage read       quants_gate: array<vec4<u32>>
//   group 0, binding 6: storage read       quants_up: array<vec4<u32>>
//                       the chunks' quant words (the start of each chunk)
//
// Requires K to be a multiple of 32 and subgroups of exactly 8 lanes made of
// consecutive invocation indices; the host checks both.
// Workgroup: 64 threads, one weight row each.
// Dispatch: (ceil(M / M_TILE), Y, Z) once a chunk, with Y * Z >=
// ceil(rows / 64) workgroups of rows split over y and z.

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weights_gate: array<u32>;
@group(0) @binding(3) var<storage, read> weights_up: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> quants_gate: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> quants_up: array<vec4<u32>>;

const WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn matmul_swiglu_lanes(
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

    var gate_sums: array<vec4<f32>, M_TILE>;
    var up_sums: array<vec4<f32>, M_TILE>;
    for (var block = 0u; block < blocks; block++) {
        var xs: array<vec4<f32>, M_TILE>;
        for (var i = 0u; i < M_TILE; i++) {
            let m = min(m0 + i, params.m - 1u);
            xs[i] = x[(m * params.k) / 4u + 8u * block + lane];
        }
        let w_gate = dequant_block_gate(safe_row, block);
        for (var i = 0u; i < M_TILE; i++) {
            gate_sums[i] += block_products(w_gate, xs[i]);
        }
        let w_up = dequant_block_up(safe_row, block);
        for (var i = 0u; i < M_TILE; i++) {
            up_sums[i] += block_products(w_up, xs[i]);
        }
    }

    if !valid {
        return;
    }
    let n = params.row_offset + row;
    for (var i = 0u; i < M_TILE; i++) {
        let m = m0 + i;
        if m < params.m {
            let g = dot(gate_sums[i], vec4<f32>(1.0));
            let u = dot(up_sums[i], vec4<f32>(1.0));
            // For g below about -88, exp(-g) is +inf and silu(g) is -0, its
            // limit.
            out[m * params.n + n] = g / (1.0 + exp(-g)) * u;
        }
    }
}
