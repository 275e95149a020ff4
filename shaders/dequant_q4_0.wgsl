// Dequantization snippet for Q4_0 weights (see `dequant_f32.wgsl` for the
// contract every snippet follows).
//
// ggml Q4_0 blocks hold 32 values: x = d * (q - 8) with an f16 scale d and
// 4-bit quants q; byte j holds value j in its low nibble and value j + 16 in
// its high one. The 18-byte blocks are split at upload:
//   words [0, rows * row_words): the 16 quant bytes, 4 words per block, so
//     values 4i .. 4i + 3 are the low nibbles of word i % 4 for i < 4 and
//     the high nibbles for 4 <= i < 8;
//   words from `scale_base`: the f16 scales of the chunk's blocks in row
//     order, two per word (the lower half first).

// Returns values 4 * group .. 4 * group + 3 of chunk row `row`.
fn dequant4(row: u32, group: u32, row_words: u32, scale_base: u32) -> vec4<f32> {
    let blocks_per_row = row_words / 4u;
    let block = row * blocks_per_row + group / 8u;
    let scale = prelude_f16(weights[scale_base + block / 2u], (block & 1u) == 1u);
    let word = weights[row * row_words + (group / 8u) * 4u + (group & 3u)];
    let shift = ((group >> 2u) & 1u) * 4u;
    let quants = vec4<f32>(unpack4xU8((word >> shift) & 0x0f0f0f0fu));
    return scale * (quants - 8.0);
}
