// Matrix-vector product for few activation rows (decode):
//   out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]), or out[m, n] += that.
//
// Built once per weight type with `matmul_params.wgsl`, a `dequant_*.wgsl`
// snippet, the constants THREADS_PER_ROW (a power of two up to 64) and
// SUBGROUP_REDUCE, and `subgroup_row_sum` prepended. The host writes that
// function with subgroup shuffles only where SUBGROUP_REDUCE is set, since
// a shader that names a subgroup operation does not compile on a device
// without them, even where the code never runs. Each row of the weight chunk is read by
// THREADS_PER_ROW threads that split K in 4-value groups and sum their
// partial dot products with subgroup shuffles where SUBGROUP_REDUCE is set
// (the host sets it only when THREADS_PER_ROW is at most the adapter's
// minimum subgroup size), and in workgroup memory otherwise.
// One thread per row suits CPU adapters, where x is then read at the same
// address by all lanes; several suit GPUs, where neighbouring threads then
// read neighbouring weight words. x is read as vec4s, so K must be a
// multiple of 4; the host uses `matmul_gemm.wgsl` otherwise.
//
// Bindings:
//   group 0, binding 0: uniform            params: MatmulParams
//   group 0, binding 1: storage read       x: array<vec4<f32>>  [M, K / 4]
//   group 0, binding 2: storage read       weights: array<u32>  rows
//                       row_offset .. row_offset + rows of w [N, K], packed
//   group 0, binding 3: storage read       bias: array<f32>     [N]
//   group 0, binding 4: storage read_write out: array<f32>      [M, N]
//
// Workgroup: 64 threads, 64 / THREADS_PER_ROW rows.
// Dispatch: (X, M, Z) once a chunk, with X * Z >= ceil(rows *
// THREADS_PER_ROW / 64) workgroups of rows split over x and z so that
// neither exceeds the per-dimension limit.

// MatmulParams is defined in `matmul_params.wgsl`, prepended by the host.

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WORKGROUP_SIZE: u32 = 64u;

var<workgroup> partial_sums: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn matmul_gemv(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroup_count: vec3<u32>,
    @builtin(local_invocation_index) thread: u32,
) {
    let m = workgroup.y;
    let row_block = workgroup.z * workgroup_count.x + workgroup.x;
    let row = row_block * (WORKGROUP_SIZE / THREADS_PER_ROW) + thread / THREADS_PER_ROW;
    let lane = thread % THREADS_PER_ROW;
    // The host dispatches this kernel only when K is a multiple of 4.
    let groups = params.k / 4u;
    // Rows past the chunk compute row 0 again and discard it, so every
    // thread reaches the barrier.
    let valid = row < params.rows;
    let safe_row = select(0u, row, valid);

    let x_base = m * groups;
    // Four groups an iteration, because on CPU adapters (llvmpipe) each loop
    // iteration carries a fixed cost of execution-mask bookkeeping.
    const step = THREADS_PER_ROW;
    var sums = vec2<f32>(0.0);
    var group = lane;
    for (; group + 3u * step < groups; group += 4u * step) {
        let w0 = dequant4(safe_row, group, params.row_words, params.scale_base);
        let w1 = dequant4(safe_row, group + step, params.row_words, params.scale_base);
        let w2 = dequant4(safe_row, group + 2u * step, params.row_words, params.scale_base);
        let w3 = dequant4(safe_row, group + 3u * step, params.row_words, params.scale_base);
        sums.x += dot(w0, x[x_base + group]) + dot(w2, x[x_base + group + 2u * step]);
        sums.y += dot(w1, x[x_base + group + step]) + dot(w3, x[x_base + group + 3u * step]);
    }
    for (; group < groups; group += step) {
        let w = dequant4(safe_row, group, params.row_words, params.scale_base);
        sums.x += dot(w, x[x_base + group]);
    }
    var sum = sums.x + sums.y;

    if THREADS_PER_ROW > 1u && SUBGROUP_REDUCE {
        // The row's threads are neighbouring lanes of one subgroup.
        sum = subgroup_row_sum(sum);
    } else if THREADS_PER_ROW > 1u {
        partial_sums[thread] = sum;
        for (var stride = THREADS_PER_ROW / 2u; stride > 0u; stride /= 2u) {
            workgroupBarrier();
            if lane < stride {
                partial_sums[thread] += partial_sums[thread + stride];
            }
        }
        workgroupBarrier();
        sum = partial_sums[thread];
    }

    if valid && lane == 0u {
        let n = params.row_offset + row;
        if (params.flags & 2u) != 0u {
            sum += bias[n];
        }
        let i = m * params.n + n;
        if (params.flags & 1u) != 0u {
            sum += out[i];
        }
        out[i] = sum;
    }
}
