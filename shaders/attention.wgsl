// attention: causal grouped-query attention over the KV cache of one layer.
// Row m with (slot, pos) = (rows[2m], rows[2m + 1]) and query head h attends
// to cache positions 0..=pos of its slot in kv head g = h / (H / G):
//   out[m, h] = sum_t softmax_t(scale * q[m, h] . k_cache[slot, t, g]) v_cache[slot, t, g]
// The softmax is computed online over tiles of 64 positions (running max
// and running sum, rescaling the accumulator when the max grows), so one
// kernel serves prefill (many rows, each at its own position) and decode.
//
// Bindings (group 0):
//   0 uniform    params   AttentionParams
//   1 read       q        f32 [M, H, D]
//   2 read       k_cache  f32 [S, T, G, D] (S slots, T = params.max_len)
//   3 read       v_cache  f32 [S, T, G, D]
//   4 read       rows     u32 [M, 2] (slot, position)
//   5 read_write out      f32 [M, H, D]
// Workgroup: 64 threads, one workgroup per (row, query head). In each tile
// thread j scores position t0 + j, then accumulates output elements
// d = j, j + 64, j + 128, j + 192. D <= 256.
// Dispatch: (H, min(M, 65535), ceil(M / 65535)); the row is
// wid.y + wid.z * num_workgroups.y.

struct AttentionParams {
    m: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    max_len: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 64u;
const TILE: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u;
const ELEMENTS_PER_THREAD: u32 = 4u; // MAX_HEAD_DIM / WG
// Stands in for -infinity, which WGSL has no literal for.
const NEG_BIG: f32 = -1.0e30;

@group(0) @binding(0) var<uniform> params: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> q_row: array<f32, MAX_HEAD_DIM>;
var<workgroup> scores: array<f32, TILE>;
var<workgroup> probs: array<f32, TILE>;

@compute @workgroup_size(64)
fn attention(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let head = wid.x;
    let row = wid.y + wid.z * groups.y;
    if row >= params.m {
        return;
    }
    let head_dim = params.head_dim;
    let kv_head = head / (params.heads / params.kv_heads);
    let slot = rows[2u * row];
    let len = rows[2u * row + 1u] + 1u;
    // Element stride between consecutive positions of one kv head.
    let pos_stride = params.kv_heads * head_dim;
    let cache_base = (slot * params.max_len * params.kv_heads + kv_head) * head_dim;
    let q_base = (row * params.heads + head) * head_dim;

    for (var d = lid; d < head_dim; d += WG) {
        q_row[d] = q[q_base + d];
    }
    workgroupBarrier();

    var acc: array<f32, ELEMENTS_PER_THREAD>;
    var running_max = NEG_BIG;
    var running_sum = 0.0;
    for (var t0 = 0u; t0 < len; t0 += TILE) {
        let count = min(TILE, len - t0);

        // Score of position t0 + lid.
        var score = NEG_BIG;
        if lid < count {
            let k_base = cache_base + (t0 + lid) * pos_stride;
            var dot = 0.0;
            for (var d = 0u; d < head_dim; d++) {
                dot += q_row[d] * k_cache[k_base + d];
            }
            score = dot * params.scale;
        }
        scores[lid] = score;
        workgroupBarrier();

        // Every thread reads the same 64 scores, so all agree on the max
        // without a tree reduction.
        var tile_max = NEG_BIG;
        for (var j = 0u; j < count; j++) {
            tile_max = max(tile_max, scores[j]);
        }
        let new_max = max(running_max, tile_max);
        let rescale = exp(running_max - new_max);
        running_max = new_max;
        var p = 0.0;
        if lid < count {
            p = exp(score - new_max);
        }
        probs[lid] = p;
        workgroupBarrier();

        var tile_sum = 0.0;
        for (var j = 0u; j < count; j++) {
            tile_sum += probs[j];
        }
        running_sum = running_sum * rescale + tile_sum;
        for (var e = 0u; e < ELEMENTS_PER_THREAD; e++) {
            let d = lid + e * WG;
            if d < head_dim {
                var sum = acc[e] * rescale;
                var v_index = cache_base + t0 * pos_stride + d;
                for (var j = 0u; j < count; j++) {
                    sum += probs[j] * v_cache[v_index];
                    v_index += pos_stride;
                }
                acc[e] = sum;
            }
        }
        // No barrier here: every thread finishes reading `probs` before it
        // reaches the next tile's first barrier, and `probs` is rewritten
        // only after that barrier.
    }

    let inv_sum = 1.0 / running_sum;
    for (var e = 0u; e < ELEMENTS_PER_THREAD; e++) {
        let d = lid + e * WG;
        if d < head_dim {
            out[q_base + d] = acc[e] * inv_sum;
        }
    }
}
