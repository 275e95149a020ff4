// The uniform parameters shared by the matmul kernels, prepended to
// `matmul_gemv.wgsl`, `matmul_gemm.wgsl` and `matmul_transposed.wgsl` and
// mirrored by `MatmulParams` in `matmul.rs`.

struct MatmulParams {
    // M: activation rows.
    m: u32,
    // Weight rows in this chunk.
    rows: u32,
    // K: input features.
    k: u32,
    // The matrix row (output feature) of the chunk's first row.
    row_offset: u32,
    // N: output features of the whole matrix.
    n: u32,
    // Quant words per packed weight row.
    row_words: u32,
    // Word index in `weights` where the scales start.
    scale_base: u32,
    // Bit 0: add to `out` instead of overwriting it. Bit 1: add `bias`
    // (ignored by `matmul_transposed.wgsl`).
    flags: u32,
}
