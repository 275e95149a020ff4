// Dequantization snippet for Q6_K weights (see `dequant_f32.wgsl` for the
// contract every snippet follows).
//
// ggml Q6_K blocks hold 256 values in two halves of 128, each in 16-value
// sub-blocks: x = d * sc[s] * (q - 32), with an f16 d, signed 8-bit
// sub-block scales sc and 6-bit quants q split into 4 low bits (ql, 128
// bytes) and 2 high bits (qh, 64 bytes). Within half h, for l < 32 and
// quarter t < 4, value 32t + l takes ql byte 64h + l + 32 (t % 2) (low
// nibble for t < 2, high for t >= 2), qh byte 32h + l at bit 2t, and scale
// 8h + l / 16 + 2t. The 210-byte blocks are split at upload:
//   words [0, rows * row_words): ql then qh, 48 words per block;
//   words from `scale_base`: 5 words per block in row order: sc[0..16] as
//     bytes in 4 words, then d as f32 bits (2 bytes per block more than the
//     file).

// Returns values 4 * group .. 4 * group + 3 of chunk row `row`.
fn dequant4(row: u32, group: u32, row_words: u32, scale_base: u32) -> vec4<f32> {
    let blocks_per_row = row_words / 48u;
    let block_in_row = group / 64u;
    let j = group % 64u;
    let half = j / 32u;
    let quarter = (j % 32u) / 8u;
    let l = 4u * (j % 8u);

    let block_words = row * row_words + block_in_row * 48u;
    let low_word = weights[block_words + (64u * half + 32u * (quarter & 1u) + l) / 4u];
    let high_word = weights[block_words + 32u + (32u * half + l) / 4u];
    let low = (low_word >> (4u * (quarter / 2u))) & 0x0f0f0f0fu;
    let high = (high_word >> (2u * quarter)) & 0x03030303u;
    let quants = vec4<f32>(vec4<i32>(unpack4xU8(low | (high << 4u))) - 32);

    let block_scales = scale_base + (row * blocks_per_row + block_in_row) * 5u;
    let scale_index = 8u * half + l / 16u + 2u * quarter;
    let sc = f32(prelude_sbyte(weights[block_scales + scale_index / 4u], scale_index % 4u));
    let d = bitcast<f32>(weights[block_scales + 4u]);
    return (d * sc) * quants;
}
