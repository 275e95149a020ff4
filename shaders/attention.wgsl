// attention: causal grouped-query attention over the KV cache of one layer.
// Row m with (slot, pos) = (rows[2m], rows[2m + 1]) and query head h attends
// to cache positions 0..=pos of its slot in kv head g = h / (H / G):
//   out[m, h] = sum_t softmax_t(scale * q[m, h] . k_cache[slot, t, g]) v_cache[slot, t, g]
// The softmax is computed online over tiles of 64 positions (running max
// and running sum, rescaling the accumulator when the max grows), so one
// kernel serves prefill (many rows, each at its own position) and decode.
// One workgroup serves all query heads of a kv head, up to 8 at a time, so
// each key and value is read once per block of heads instead of per head.
//
// Bindings (group 0):
//   0 uniform    params   AttentionParams
//   1 read       q        f32 [M, H, D]
//   2 read       k_cache  f32 [S, T, G, D] (S slots, T = params.max_len)
//   3 read       v_cache  f32 [S, T, G, D]
//   4 read       rows     u32 [M, 2] (slot, position)
//   5 read_write out      f32 [M, H, D]
// Workgroup: 64 threads, one workgroup per (row, kv head). In each tile
// thread j scores position t0 + j for every head of the block, then
// accumulates output elements d = j, j + 64, j + 128, j + 192. D <= 256.
// Dispatch: (G, min(M, 65535), ceil(M / 65535)); the row is
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
// Query heads processed together; larger groups take several blocks.
const BLOCK_HEADS: u32 = 8u;
// Stands in for -infinity, which WGSL has no literal for.
const NEG_BIG: f32 = -1.0e30;

@group(0) @binding(0) var<uniform> params: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> q_rows: array<array<f32, MAX_HEAD_DIM>, BLOCK_HEADS>;
var<workgroup> scores: array<array<f32, TILE>, BLOCK_HEADS>;
var<workgroup> probs: array<array<f32, TILE>, BLOCK_HEADS>;

@compute @workgroup_size(64)
fn attention(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let kv_head = wid.x;
    let row = wid.y + wid.z * groups.y;
    if row >= params.m {
        return;
    }
    let head_dim = params.head_dim;
    let group_size = params.heads / params.kv_heads;
    let slot = rows[2u * row];
    let len = rows[2u * row + 1u] + 1u;
    // Element stride between consecutive positions of one kv head.
    let pos_stride = params.kv_heads * head_dim;
    let cache_base = (slot * params.max_len * params.kv_heads + kv_head) * head_dim;

    let end_head = (kv_head + 1u) * group_size;
    for (var first_head = kv_head * group_size; first_head < end_head; first_head += BLOCK_HEADS) {
        let block = min(BLOCK_HEADS, end_head - first_head);
        let q_base = (row * params.heads + first_head) * head_dim;
        for (var b = 0u; b < block; b++) {
            for (var d = lid; d < head_dim; d += WG) {
                q_rows[b][d] = q[q_base + b * head_dim + d];
            }
        }
        workgroupBarrier();

        var acc: array<array<f32, ELEMENTS_PER_THREAD>, BLOCK_HEADS>;
        var running_max: array<f32, BLOCK_HEADS>;
        var running_sum: array<f32, BLOCK_HEADS>;
        for (var b = 0u; b < BLOCK_HEADS; b++) {
            running_max[b] = NEG_BIG;
        }
        for (var t0 = 0u; t0 < len; t0 += TILE) {
            let count = min(TILE, len - t0);

            // Scores of position t0 + lid for every head of the block, each
            // key element read once.
            var dots: array<f32, BLOCK_HEADS>;
            if lid < count {
                let k_base = cache_base + (t0 + lid) * pos_stride;
                for (var d = 0u; d < head_dim; d++) {
                    let key = k_cache[k_base + d];
                    for (var b = 0u; b < block; b++) {
                        dots[b] += q_rows[b][d] * key;
                    }
                }
            }
            for (var b = 0u; b < block; b++) {
                scores[b][lid] = select(NEG_BIG, dots[b] * params.scale, lid < count);
            }
            workgroupBarrier();

            // Every thread reads the same scores, so all agree on each max
            // without a tree reduction.
            var rescale: array<f32, BLOCK_HEADS>;
            for (var b = 0u; b < block; b++) {
                var tile_max = NEG_BIG;
                for (var j = 0u; j < count; j++) {
                    tile_max = max(tile_max, scores[b][j]);
                }
                let new_max = max(running_max[b], tile_max);
                rescale[b] = exp(running_max[b] - new_max);
                running_max[b] = new_max;
                var p = 0.0;
                if lid < count {
                    p = exp(scores[b][lid] - new_max);
                }
                probs[b][lid] = p;
            }
            workgroupBarrier();

            for (var b = 0u; b < block; b++) {
                var tile_sum = 0.0;
                for (var j = 0u; j < count; j++) {
                    tile_sum += probs[b][j];
                }
                running_sum[b] = running_sum[b] * rescale[b] + tile_sum;
            }
            for (var e = 0u; e < ELEMENTS_PER_THREAD; e++) {
                let d = lid + e * WG;
                if d < head_dim {
                    for (var b = 0u; b < block; b++) {
                        acc[b][e] *= rescale[b];
                    }
                    var v_index = cache_base + t0 * pos_stride + d;
                    for (var j = 0u; j < count; j++) {
                        let value = v_cache[v_index];
                        for (var b = 0u; b < block; b++) {
                            acc[b][e] += probs[b][j] * value;
                        }
                        v_index += pos_stride;
                    }
                }
            }
            // No barrier here: every thread finishes reading `scores` before
            // the second barrier and `probs` before it reaches the next
            // tile's first barrier, and each array is rewritten only after
            // those barriers.
        }

        for (var b = 0u; b < block; b++) {
            let inv_sum = 1.0 / running_sum[b];
            for (var e = 0u; e < ELEMENTS_PER_THREAD; e++) {
                let d = lid + e * WG;
                if d < head_dim {
                    out[q_base + b * head_dim + d] = acc[b][e] * inv_sum;
                }
            }
        }
    }
}
