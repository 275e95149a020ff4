// Whole-block reads of f32 weights for the `*_lanes.wgsl` matmuls, in the
// layout described in `dequant_f32.wgsl`: 32 values of a row are eight
// vec4<u32> of `quants`, reinterpreted as floats. The scale-free type
// still names `weights` so that the binding stays in the kernel's layout.

// Returns values 4j .. 4j + 3 of block `block` of chunk row `row` at j.
fn dequant_block(row: u32, block: u32) -> array<vec4<f32>, 8> {
    let base = row * (params.row_words / 4u) + 8u * block + arrayLength(&weights) * 0u;
    return array<vec4<f32>, 8>(
        bitcast<vec4<f32>>(quants[base]),
        bitcast<vec4<f32>>(quants[base + 1u]),
        bitcast<vec4<f32>>(quants[base + 2u]),
        bitcast<vec4<f32>>(quants[base + 3u]),
        bitcast<vec4<f32>>(quants[base + 4u]),
        bitcast<vec4<f32>>(quants[base + 5u]),
        bitcast<vec4<f32>>(quants[base + 6u]),
        bitcast<vec4<f32>>(quants[base + 7u]),
    );
}
