// Whole-block dequantization of Q8_0 weights for `matmul_gemv_lanes.wgsl`,
// in the layout described in `dequant_q8_0.wgsl`: the block's 32 quant
// bytes are two vec4<u32> of `quants`, its f16 scale half a word of
// `weights` from `params.scale_base`.

// Returns values 4j .. 4j + 3 of block `block` of chunk row `row` at j.
fn dequant_block(row: u32, block: u32) -> array<vec4<f32>, 8> {
    let blocks_per_row = params.row_words / 8u;
    let index = row * blocks_per_row + block;
    let low = quants[2u * index];
    let high = quants[2u * index + 1u];
    let d = prelude_f16(weights[params.scale_base + index / 2u], (index & 1u) == 1u);
    return array<vec4<f32>, 8>(
        d * vec4<f32>(unpack4xI8(low.x)),
        d * vec4<f32>(unpack4xI8(low.y)),
        d * vec4<f32>(unpack4xI8(low.z)),
        d * vec4<f32>(unpack4xI8(low.w)),
        d * vec4<f32>(unpack4xI8(high.x)),
        d * vec4<f32>(unpack4xI8(high.y)),
        d * vec4<f32>(unpack4xI8(high.z)),
        d * vec4<f32>(unpack4xI8(high.w)),
    );
}
