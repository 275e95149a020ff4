// Dequantization snippet for F32 weights, prepended to the matmul and
// embedding kernels (see `qmatrix.rs` for the packed layout).
//
// Every dequant snippet defines `dequant4` with the same signature and reads
// the kernel's `weights: array<u32>` binding, one row chunk of the matrix.
//
// Layout: each row is `row_words` words, one f32 per word, zero-padded from
// K to a multiple of 4 values. `scale_base` is unused.

// Returns values 4 * group .. 4 * group + 3 of chunk row `row`.
fn dequant4(row: u32, group: u32, row_words: u32, scale_base: u32) -> vec4<f32> {
    let i = row * row_words + 4u * group;
    let bits = vec4<u32>(weights[i], weights[i + 1u], weights[i + 2u], weights[i + 3u]);
    return bitcast<vec4<f32>>(bits);
}
