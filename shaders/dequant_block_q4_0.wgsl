// Whole-block dequantization of Q4_0 weights for `matmul_gemv_lanes.wgsl`,
// in the layout described in `dequant_q4_0.wgsl`: the block's 16 quant
// bytes are one vec4<u32> of `quants`, its f16 scale half a word of
// `weights` from `params.scale_base`.

// Returns values 4j .. 4j + 3 of block `block` of chunk row `row` at j.
fn dequant_block(row: u32, block: u32) -> array<vec4<f32>, 8> {
    let blocks_per_row = params.row_words / 4u;
    let index = row * blocks_per_row + block;
    let q = quants[index];
    let d = prelude_f16(weights[params.scale_base + index / 2u], (index & 1u) == 1u);
    let offset = -8.0 * d;
    let mask = 0x0f0f0f0fu;
    return array<vec4<f32>, 8>(
        d * vec4<f32>(unpack4xU8(q.x & mask)) + offset,
        d * vec4<f32>(unpack4xU8(q.y & mask)) + offset,
        d * vec4<f32>(unpack4xU8(q.z & mask)) + offset,
        d * vec4<f32>(unpack4xU8(q.w & mask)) + offset,
        d * vec4<f32>(unpack4xU8((q.x >> 4u) & mask)) + offset,
        d * vec4<f32>(unpack4xU8((q.y >> 4u) & mask)) + offset,
        d * vec4<f32>(unpack4xU8((q.z >> 4u) & mask)) + offset,
        d * vec4<f32>(unpack4xU8((q.w >> 4u) & mask)) + offset,
    );
}
