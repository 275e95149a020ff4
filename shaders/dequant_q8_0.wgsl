// Dequantization snippet for Q8_0 weights (see `dequant_f32.wgsl` for the
// contract every snippet follows).
//
// ggml Q8_0 blocks hold 32 values: x = d * q with an f16 scale d and signed
// 8-bit quants q. The 34-byte blocks are split at upload:
//   words [0, rows * row_words): the quants, 8 words per block, value j of a
//     block in byte j % 4 of word j / 4;
//   words from `scale_base`: the f16 scales of the chunk's blocks in row
//     order, two per word (the lower half first).

// Returns values 4 * group .. 4 * group + 3 of chunk row `row`.
fn dequant4(row: u32, group: u32, row_words: u32, scale_base: u32) -> vec4<f32> {
    let blocks_per_row = row_words / 8u;
    let block = row * blocks_per_row + group / 8u;
    let scale = prelude_f16(weights[scale_base + block / 2u], (block & 1u) == 1u);
    let quants = unpack4xI8(weights[row * row_words + group]);
    return scale * vec4<f32>(quants);
}
