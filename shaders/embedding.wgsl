// Embedding lookup: out[m, :] = table[tokens[m], :], dequantized.
//
// Built once per table type with a `dequant_*.wgsl` snippet prepended. A
// table split into row chunks is dispatched once a chunk; each dispatch
// writes the rows whose token falls in its chunk, and the last one also
// writes zeros for tokens past the table's end.
//
// Bindings:
//   group 0, binding 0: uniform            params: EmbeddingParams
//   group 0, binding 1: storage read       tokens: array<u32>   [M]
//   group 0, binding 2: storage read       weights: array<u32>  rows
//                       row_offset .. row_offset + rows of table [V, C], packed
//   group 0, binding 3: storage read_write out: array<f32>      [M, C]
//
// Workgroup: 64 threads, 256 channels.
// Dispatch: (ceil(ceil(C / 4) / 64), M, 1) once a chunk.

struct EmbeddingParams {
    // M: tokens to look up.
    m: u32,
    // Table rows in this chunk.
    rows: u32,
    // C: channels, the row length of the table and of `out`.
    c: u32,
    // The table row (token id) of the chunk's first row.
    row_offset: u32,
    // V: rows of the whole table.
    vocabulary: u32,
    // Quant words per packed table row.
    row_words: u32,
    // Word index in `weights` where the scales start.
    scale_base: u32,
    // 1 for the last chunk's dispatch, which zeroes out-of-range tokens.
    last_chunk: u32,
}

@group(0) @binding(0) var<uniform> params: EmbeddingParams;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn embedding(@builtin(global_invocation_id) id: vec3<u32>) {
    let group = id.x;
    let m = id.y;
    if group >= (params.c + 3u) / 4u {
        return;
    }

    let token = tokens[m];
    var values = vec4<f32>(0.0);
    if token >= params.row_offset && token - params.row_offset < params.rows {
        values = dequant4(token - params.row_offset, group, params.row_words, params.scale_base);
    } else if !(params.last_chunk == 1u && token >= params.vocabulary) {
        return;
    }

    let base = m * params.c;
    for (var i = 0u; i < 4u; i++) {
        let channel = 4u * group + i;
        if channel < params.c {
            out[base + channel] = values[i];
        }
    }
}
