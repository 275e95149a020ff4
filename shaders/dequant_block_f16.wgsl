// Whole-block reads of f16 weights for the `*_lanes.wgsl` matmuls, in the
// layout described in `dequant_f16.wgsl`: 32 values of a row are four
// vec4<u32> of `quants`, two halves a word. The scale-free type still names
// `weights` so that the binding stays in the kernel's layout.

// Returns the 8 values packed in `words` as two vec4s.
fn halves8(words: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y)),
        vec4<f32>(unpack2x16float(words.z), unpack2x16float(words.w)),
    );
}

// Returns values 4j .. 4j + 3 of block `block` of chunk row `row` at j.
fn dequant_block(row: u32, block: u32) -> array<vec4<f32>, 8> {
    let base = row * (params.row_words / 4u) + 4u * block + arrayLength(&weights) * 0u;
    let a = halves8(quants[base]);
    let b = halves8(quants[base + 1u]);
    let c = halves8(quants[base + 2u]);
    let d = halves8(quants[base + 3u]);
    return array<vec4<f32>, 8>(a[0], a[1], b[0], b[1], c[0], c[1], d[0], d[1]);
}
