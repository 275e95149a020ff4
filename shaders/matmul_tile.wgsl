// Helpers shared by the tiled kernels `matmul_gemm.wgsl` and
// `matmul_transposed_gemm.wgsl`, prepended after `matmul_params.wgsl` and
// the dequant snippet. They read the kernel's `params` binding.

// Reads the dequantized w[row, 4 * group .. 4 * group + 3] of the chunk,
// zero past its rows or K.
fn load_w4(row: u32, group: u32, groups: u32) -> vec4<f32> {
    if row < params.rows && group < groups {
        return dequant4(row, group, params.row_words, params.scale_base);
    }
    return vec4<f32>(0.0);
}

// Adds the outer product of 8 rows (a_low, a_high) and 8 columns (b_low,
// b_high) to an 8 x 8 block: acc[2 * i + h] holds row i, columns
// 4 * h .. 4 * h + 3. Every index is a constant, so after inlining the
// block stays in registers instead of llvmpipe's per-lane scratch memory.
fn accumulate_8x8(
    acc: ptr<function, array<vec4<f32>, 16>>,
    a_low: vec4<f32>,
    a_high: vec4<f32>,
    b_low: vec4<f32>,
    b_high: vec4<f32>,
) {
    (*acc)[0] += a_low[0] * b_low;
    (*acc)[1] += a_low[0] * b_high;
    (*acc)[2] += a_low[1] * b_low;
    (*acc)[3] += a_low[1] * b_high;
    (*acc)[4] += a_low[2] * b_low;
    (*acc)[5] += a_low[2] * b_high;
    (*acc)[6] += a_low[3] * b_low;
    (*acc)[7] += a_low[3] * b_high;
    (*acc)[8] += a_high[0] * b_low;
    (*acc)[9] += a_high[0] * b_high;
    (*acc)[10] += a_high[1] * b_low;
    (*acc)[11] += a_high[1] * b_high;
    (*acc)[12] += a_high[2] * b_low;
    (*acc)[13] += a_high[2] * b_high;
    (*acc)[14] += a_high[3] * b_low;
    (*acc)[15] += a_high[3] * b_high;
}
