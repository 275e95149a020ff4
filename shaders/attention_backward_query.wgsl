// attention_backward_query: query gradient of causal grouped-query attention
// over full training sequences (no KV cache), the first of two kernels.
// For row i = b * T + t and query head h with kv head g = h / (H / G),
// positions j = b * T + u for u in 0..=t:
//   p_j = exp(scale * q_i . k_j - lse_i)          (softmax, recomputed)
//   ds_j = p_j * (d_out_i . v_j - delta_i),  delta_i = d_out_i . out_i
//   dq_i = scale * sum_j ds_j k_j
// lse_i and delta_i are stored for attention_backward_kv.
//
// Bindings (group 0):
//   0 uniform    params  AttentionBackwardParams
//   1 read       q       f32 [M, H, D] (M = B * T)
//   2 read       k       f32 [M, G, D]
//   3 read       v       f32 [M, G, D]
//   4 read       out     f32 [M, H, D] (forward output)
//   5 read       d_out   f32 [M, H, D]
//   6 read_write dq      f32 [M, H, D]
//   7 read_write stats   f32 [M, H, 2] (lse, delta)
// Workgroup: 64 threads, one workgroup per (row, query head); in each tile
// of 64 positions thread j handles position j, then output elements
// d = j, j + 64, j + 128, j + 192. D <= 256.
// Dispatch: (H, min(M, 65535), ceil(M / 65535)); the row is
// wid.y + wid.z * num_workgroups.y.

struct AttentionBackwardParams {
    m: u32,
    seq_len: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
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

@group(0) @binding(0) var<uniform> params: AttentionBackwardParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> out: array<f32>;
@group(0) @binding(5) var<storage, read> d_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> dq: array<f32>;
@group(0) @binding(7) var<storage, read_write> stats: array<f32>;

var<workgroup> q_row: array<f32, MAX_HEAD_DIM>;
var<workgroup> d_out_row: array<f32, MAX_HEAD_DIM>;
var<workgroup> scores: array<f32, TILE>;
var<workgroup> d_scores: array<f32, TILE>;

@compute @workgroup_size(64)
fn attention_backward_query(
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
    let pos = row % params.seq_len;
    let first_row = row - pos;
    let len = pos + 1u;
    let pos_stride = params.kv_heads * head_dim;
    let kv_base = (first_row * params.kv_heads + kv_head) * head_dim;
    let q_base = (row * params.heads + head) * head_dim;

    for (var d = lid; d < head_dim; d += WG) {
        q_row[d] = q[q_base + d];
        d_out_row[d] = d_out[q_base + d];
    }
    workgroupBarrier();

    // delta = d_out . out, the same in every thread.
    var delta = 0.0;
    for (var d = 0u; d < head_dim; d++) {
        delta += d_out_row[d] * out[q_base + d];
    }

    // Pass 1: log-sum-exp of the scores, online over tiles.
    var running_max = NEG_BIG;
    var running_sum = 0.0;
    for (var t0 = 0u; t0 < len; t0 += TILE) {
        let count = min(TILE, len - t0);
        var score = NEG_BIG;
        if lid < count {
            let k_base = kv_base + (t0 + lid) * pos_stride;
            var dot = 0.0;
            for (var d = 0u; d < head_dim; d++) {
                dot += q_row[d] * k[k_base + d];
            }
            score = dot * params.scale;
        }
        scores[lid] = score;
        workgroupBarrier();
        var tile_max = NEG_BIG;
        for (var j = 0u; j < count; j++) {
            tile_max = max(tile_max, scores[j]);
        }
        let new_max = max(running_max, tile_max);
        var tile_sum = 0.0;
        for (var j = 0u; j < count; j++) {
            tile_sum += exp(scores[j] - new_max);
        }
        running_sum = running_sum * exp(running_max - new_max) + tile_sum;
        running_max = new_max;
        workgroupBarrier();
    }
    let lse = running_max + log(running_sum);

    // Pass 2: ds per position, then dq += scale * ds * k.
    var acc: array<f32, ELEMENTS_PER_THREAD>;
    for (var t0 = 0u; t0 < len; t0 += TILE) {
        let count = min(TILE, len - t0);
        var ds = 0.0;
        if lid < count {
            let kv_index = kv_base + (t0 + lid) * pos_stride;
            var qk = 0.0;
            var dv = 0.0;
            for (var d = 0u; d < head_dim; d++) {
                qk += q_row[d] * k[kv_index + d];
                dv += d_out_row[d] * v[kv_index + d];
            }
            let p = exp(qk * params.scale - lse);
            ds = p * (dv - delta);
        }
        d_scores[lid] = ds;
        workgroupBarrier();
        for (var e = 0u; e < ELEMENTS_PER_THREAD; e++) {
            let d = lid + e * WG;
            if d < head_dim {
                var sum = 0.0;
                var k_index = kv_base + t0 * pos_stride + d;
                for (var j = 0u; j < count; j++) {
                    sum += d_scores[j] * k[k_index];
                    k_index += pos_stride;
                }
                acc[e] += sum;
            }
        }
        workgroupBarrier();
    }

    for (var e = 0u; e < ELEMENTS_PER_THREAD; e++) {
        let d = lid + e * WG;
        if d < head_dim {
            dq[q_base + d] = acc[e] * params.scale;
        }
    }
    if lid == 0u {
        let stats_index = 2u * (row * params.heads + head);
        stats[stats_index] = lse;
        stats[stats_index + 1u] = delta;
    }
}
