// Shared helpers prepended to every kernel in this folder.
//
// Dimension letters used in the binding comments of every kernel:
//   B batch (sequences), T tokens, C channels (model width), H query heads,
//   G key/value heads, D head size, F feed-forward width, V vocabulary,
//   M rows of an activation, N output features, K input features.

// Unpacks the low (`hi == false`) or high half of `word` as an f16.
fn prelude_f16(word: u32, hi: bool) -> f32 {
    let pair = unpack2x16float(word);
    return select(pair.x, pair.y, hi);
}

// Unpacks the low or high half of `word` as a bf16.
fn prelude_bf16(word: u32, hi: bool) -> f32 {
    let bits = select(word << 16u, word & 0xffff0000u, hi);
    return bitcast<f32>(bits);
}

// Reads byte `i` (0..3) of `word` as an unsigned value.
fn prelude_byte(word: u32, i: u32) -> u32 {
    return (word >> (8u * i)) & 0xffu;
}

// Reads byte `i` (0..3) of `word` as a signed value.
fn prelude_sbyte(word: u32, i: u32) -> i32 {
    return (bitcast<i32>(word << (24u - 8u * i))) >> 24u;
}
