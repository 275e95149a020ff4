// The dot product of one dequantized 32-value block with x, shared by
// `matmul_gemv_lanes.wgsl` and `matmul_swiglu_lanes.wgsl`, which are built
// with this file prepended.

// Returns w · x, four products a lane, for the block's dequantized
// weights `w` and the lane's vec4 `mine` of the block's x values: lane j
// holds x[4j .. 4j + 3]. The sums form a tree, so the rows of a tile make
// independent chains that the CPU can overlap.
fn block_products(w: array<vec4<f32>, 8>, mine: vec4<f32>) -> vec4<f32> {
    let p01 = w[0] * subgroupBroadcast(mine, 0u) + w[1] * subgroupBroadcast(mine, 1u);
    let p23 = w[2] * subgroupBroadcast(mine, 2u) + w[3] * subgroupBroadcast(mine, 3u);
    let p45 = w[4] * subgroupBroadcast(mine, 4u) + w[5] * subgroupBroadcast(mine, 5u);
    let p67 = w[6] * subgroupBroadcast(mine, 6u) + w[7] * subgroupBroadcast(mine, 7u);
    return (p01 + p23) + (p45 + p67);
}
