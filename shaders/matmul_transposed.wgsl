// Product with the transposed weight for few activation rows, for the
// backward pass through a frozen weight:
//   out[m, k] = sum_n dy[m, n] * w[n, k], or out[m, k] += that.
//
// Built once per weight type with `matmul_params.wgsl` and a
// `dequant_*.wgsl` snippet prepended. Each thread owns 4 consecutive k of
// one activation row and walks the chunk's rows. A matrix split into chunks
// is dispatched once a chunk, every chunk after the first adding to `out`.
//
// Threads of different activation rows read the same weights again, so the
// weights are read M times a dispatch. The host uses this kernel for a few
// rows only and `matmul_transposed_gemm.wgsl` for more.
//
// Bindings:
//   group 0, binding 0: uniform            params: MatmulParams
//   group 0, binding 1: storage read       dy: array<f32>       [M, N]
//   group 0, binding 2: storage read       weights: array<u32>  rows
//                       row_offset .. row_offset + rows of w [N, K], packed
//   group 0, binding 3: storage read_write out: array<f32>      [M, K]
//
// Workgroup: 64 threads, 256 values of k.
// Dispatch: (ceil(ceil(K / 4) / 64), M, 1) once a chunk.

// MatmulParams is defined in `matmul_params.wgsl`, prepended by the host.

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn matmul_transposed(@builtin(global_invocation_id) id: vec3<u32>) {
    let group = id.x;
    let m = id.y;
    if group >= (params.k + 3u) / 4u {
        return;
    }

    var acc = vec4<f32>(0.0);
    let dy_base = m * params.n + params.row_offset;
    for (var row = 0u; row < params.rows; row++) {
        acc += dy[dy_base + row] * dequant4(row, group, params.row_words, params.scale_base);
    }

    let base = m * params.k;
    for (var i = 0u; i < 4u; i++) {
        let k = 4u * group + i;
        if k < params.k {
            var sum = acc[i];
            if (params.flags & 1u) != 0u {
                sum += out[base + k];
            }
            out[base + k] = sum;
        }
    }
}
