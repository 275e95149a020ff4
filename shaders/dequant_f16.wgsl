// Dequantization snippet for F16 weights (see `dequant_f32.wgsl` for the
// contract every snippet follows).
//
// Layout: each row is `row_words` words, two f16 values per word (the lower
// half first), zero-padded from K to a multiple of 4 values. `scale_base` is
// unused.

// Returns values 4 * group .. 4 * group + 3 of chunk row `row`.
fn dequant4(row: u32, group: u32, row_words: u32, scale_base: u32) -> vec4<f32> {
    let i = row * row_words + 2u * group;
    let low = unpack2x16float(weights[i]);
    let high = unpack2x16float(weights[i + 1u]);
    return vec4<f32>(low, high);
}
