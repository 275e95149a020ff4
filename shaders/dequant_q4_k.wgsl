// Dequantization snippet for Q4_K weights (see `dequant_f32.wgsl` for the
// contract every snippet follows).
//
// ggml Q4_K blocks hold 256 values in 8 sub-blocks of 32:
// x = d * sc[s] * q - dmin * mn[s], with f16 d and dmin, 6-bit sub-block
// scales sc and mins mn, and 4-bit quants q. Byte 32c + l of the 128 quant
// bytes holds value 64c + l in its low nibble and 64c + 32 + l in its high
// one. The 144-byte blocks are split at upload:
//   words [0, rows * row_words): the quant bytes, 32 words per block;
//   words from `scale_base`: 5 words per block in row order: d (lower half)
//     and dmin (upper half), then sc[0..8] as bytes in 2 words, then
//     mn[0..8] as bytes in 2 words. Unpacking the 12-byte 6-bit scales at
//     upload costs 4 bytes per 256 values.

// Returns values 4 * group .. 4 * group + 3 of chunk row `row`.
fn dequant4(row: u32, group: u32, row_words: u32, scale_base: u32) -> vec4<f32> {
    let blocks_per_row = row_words / 32u;
    let block_in_row = group / 64u;
    let j = group % 64u;
    let chunk = j / 16u;
    let high = (j % 16u) / 8u;
    let sub_block = 2u * chunk + high;

    let block_scales = scale_base + (row * blocks_per_row + block_in_row) * 5u;
    let d_dmin = unpack2x16float(weights[block_scales]);
    let sc = f32(prelude_byte(weights[block_scales + 1u + sub_block / 4u], sub_block % 4u));
    let mn = f32(prelude_byte(weights[block_scales + 3u + sub_block / 4u], sub_block % 4u));

    let word = weights[row * row_words + block_in_row * 32u + chunk * 8u + j % 8u];
    let quants = vec4<f32>(unpack4xU8((word >> (4u * high)) & 0x0f0f0f0fu));
    return (d_dmin.x * sc) * quants - d_dmin.y * mn;
}
