// Whole-block dequantization of Q4_1 weights for `matmul_gemv_lanes.wgsl`,
// in the layout described in `dequant_q4_1.wgsl`: the block's 16 quant
// bytes are one vec4<u32> of `quants`, its f16 d and m one word of
// `weights` from `params.scale_base`.

// Returns values 4j .. 4j + 3 of block `block` of chunk row `row` at j.
fn dequant_block(row: u32, block: u32) -> array<vec4<f32>, 8> {
    let blocks_per_row = params.row_words / 4u;
    let q = quants[row * blocks_per_row + block];
    let scale_min = unpack2x16float(weights[params.scale_base + row * blocks_per_row + block]);
    let d = scale_min.x;
    let mn = scale_min.y;
    let mask = 0x0f0f0f0fu;
    return array<vec4<f32>, 8>(
        d * vec4<f32>(unpack4xU8(q.x & mask)) + mn,
        d * vec4<f32>(unpack4xU8(q.y & mask)) + mn,
        d * vec4<f32>(unpack4xU8(q.z & mask)) + mn,
        d * vec4<f32>(unpack4xU8(q.w & mask)) + mn,
        d * vec4<f32>(unpack4xU8((q.x >> 4u) & mask)) + mn,
        d * vec4<f32>(unpack4xU8((q.y >> 4u) & mask)) + mn,
        d * vec4<f32>(unpack4xU8((q.z >> 4u) & mask)) + mn,
        d * vec4<f32>(unpack4xU8((q.w >> 4u) & mask)) + mn,
    );
}
