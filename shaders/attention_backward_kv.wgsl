// attention_backward_kv: key and value gradients of causal grouped-query
// attention over full training sequences, the second of two kernels (after
// attention_backward_query, which stores lse and delta). For key row
// j = b * T + u and kv head g, over query heads h of group g and query rows
// i = b * T + t with t in u..T:
//   p = exp(scale * q_ih . k_j - lse_ih),  ds = p * (d_out_ih . v_j - delta_ih)
//   dv_j = sum p * d_out_ih,  dk_j = scale * sum ds * q_ih
//
// Bindings (group 0):
//   0 uniform    params  AttentionBackwardParams
//   1 read       q       f32 [M, H, D] (M = B * T)
//   2 read       k       f32 [M, G, D]
//   3 read       v       f32 [M, G, D]
//   4 read       d_out   f32 [M, H, D]
//   5 read       stats   f32 [M, H, 2] (lse, delta)
//   6 read_write dk      f32 [M, G, D]
//   7 read_write dv      f32 [M, G, D]
// Workgroup: 64 threads, one workgroup per (key row, kv head); in each tile
// of 64 query positions thread j handles query j, then output elements
// d = j, j + 64, j + 128, j + 192. D <= 256.
// Dispatch: (G, min(M, 65535), ceil(M / 65535)); the row is
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

@group(0) @binding(0) var<uniform> params: AttentionBackwardParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> d_out: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> dk: array<f32>;
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;

var<workgroup> k_row: array<f32, MAX_HEAD_DIM>;
var<workgroup> v_row: array<f32, MAX_HEAD_DIM>;
var<workgroup> probs: array<f32, TILE>;
var<workgroup> d_scores: array<f32, TILE>;

@compute @workgroup_size(64)
fn attention_backward_kv(
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
    let heads = params.heads;
    let group_size = heads / params.kv_heads;
    let pos = row % params.seq_len;
    // Query rows row..row + count_queries of the same sequence see this key.
    let count_queries = params.seq_len - pos;
    let kv_base = (row * params.kv_heads + kv_head) * head_dim;
    let q_stride = heads * head_dim;

    for (var d = lid; d < head_dim; d += WG) {
        k_row[d] = k[kv_base + d];
        v_row[d] = v[kv_base + d];
    }
    workgroupBarrier();

    var dk_acc: array<f32, ELEMENTS_PER_THREAD>;
    var dv_acc: array<f32, ELEMENTS_PER_THREAD>;
    for (var head = kv_head * group_size; head < (kv_head + 1u) * group_size; head++) {
        for (var t0 = 0u; t0 < count_queries; t0 += TILE) {
            let count = min(TILE, count_queries - t0);
            var p = 0.0;
            var ds = 0.0;
            if lid < count {
                let query_row = row + t0 + lid;
                let q_base = (query_row * heads + head) * head_dim;
                var qk = 0.0;
                var dov = 0.0;
                for (var d = 0u; d < head_dim; d++) {
                    qk += q[q_base + d] * k_row[d];
                    dov += d_out[q_base + d] * v_row[d];
                }
                let stats_index = 2u * (query_row * heads + head);
                p = exp(qk * params.scale - stats[stats_index]);
                ds = p * (dov - stats[stats_index + 1u]);
            }
            probs[lid] = p;
            d_scores[lid] = ds;
            workgroupBarrier();
            for (var e = 0u; e < ELEMENTS_PER_THREAD; e++) {
                let d = lid + e * WG;
                if d < head_dim {
                    var dk_sum = 0.0;
                    var dv_sum = 0.0;
                    var index = ((row + t0) * heads + head) * head_dim + d;
                    for (var j = 0u; j < count; j++) {
                        dk_sum += d_scores[j] * q[index];
                        dv_sum += probs[j] * d_out[index];
                        index += q_stride;
                    }
                    dk_acc[e] += dk_sum;
                    dv_acc[e] += dv_sum;
                }
            }
            workgroupBarrier();
        }
    }

    for (var e = 0u; e < ELEMENTS_PER_THREAD; e++) {
        let d = lid + e * WG;
        if d < head_dim {
            dk[kv_base + d] = dk_acc[e] * params.scale;
            dv[kv_base + d] = dv_acc[e];
        }
    }
}
