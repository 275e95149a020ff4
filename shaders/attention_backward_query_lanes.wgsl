// attention_backward_query_lanes: `attention_backward_query.wgsl` for CPU
// adapters with 8-lane subgroups (llvmpipe); see `attention_lanes.wgsl` for
// why. Same formulas, bindings and dispatch grid (H, rows), with vec4
// bindings and HEAD_DIM (a multiple of 32) prepended as a constant.
//
// One workgroup is one subgroup of 8 lanes and serves one (row, query
// head). Each lane holds every 8th vec4 of the row's query and output
// gradient in registers. Per tile of 8 positions, lane j scores position
// t0 + j, reading its key and value as vec4s and taking the query from the
// other lanes by shuffles; for dq each lane then adds up its own vec4s of
// the 8 keys, weighted by their ds shuffled in from the lane that computed
// it.
//
// Bindings (group 0):
//   0 uniform    params  AttentionBackwardParams
//   1 read       q       vec4 [M, H, D / 4] (M = B * T)
//   2 read       k       vec4 [M, G, D / 4]
//   3 read       v       vec4 [M, G, D / 4]
//   4 read       out     vec4 [M, H, D / 4] (forward output)
//   5 read       d_out   vec4 [M, H, D / 4]
//   6 read_write dq      vec4 [M, H, D / 4]
//   7 read_write stats   f32 [M, H, 2] (lse, delta)
// Workgroup: 8 threads.
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

const LANES: u32 = 8u;
// The vec4s of one head vector that each lane holds.
const CHUNKS: u32 = HEAD_DIM / 32u;
const QUADS: u32 = HEAD_DIM / 4u;
// Stands in for -infinity, which WGSL has no literal for.
const NEG_BIG: f32 = -1.0e30;

@group(0) @binding(0) var<uniform> params: AttentionBackwardParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> out: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> d_out: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> dq: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(8)
fn attention_backward_query_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let head = wid.x;
    let row = wid.y + wid.z * groups.y;
    if row >= params.m {
        return;
    }
    let kv_head = head / (params.heads / params.kv_heads);
    let pos = row % params.seq_len;
    let first_row = row - pos;
    let len = pos + 1u;
    let pos_stride = params.kv_heads * QUADS;
    let kv_base = (first_row * params.kv_heads + kv_head) * QUADS;
    let q_base = (row * params.heads + head) * QUADS;

    var qs: array<vec4<f32>, CHUNKS>;
    var d_outs: array<vec4<f32>, CHUNKS>;
    var delta_part = 0.0;
    for (var c = 0u; c < CHUNKS; c++) {
        let index = q_base + LANES * c + lane;
        qs[c] = q[index];
        d_outs[c] = d_out[index];
        delta_part += dot(d_outs[c], out[index]);
    }
    let delta = subgroupAdd(delta_part);

    // Pass 1: log-sum-exp of the scores, online over tiles.
    var running_max = NEG_BIG;
    var running_sum = 0.0;
    for (var t0 = 0u; t0 < len; t0 += LANES) {
        let valid = t0 + lane < len;
        let key_base = kv_base + min(t0 + lane, len - 1u) * pos_stride;
        var qk = 0.0;
        for (var c = 0u; c < CHUNKS; c++) {
            for (var j = 0u; j < LANES; j++) {
                qk += dot(k[key_base + LANES * c + j], subgroupShuffle(qs[c], j));
            }
        }
        let score = select(NEG_BIG, qk * params.scale, valid);
        let new_max = max(running_max, subgroupMax(score));
        let p = select(0.0, exp(score - new_max), valid);
        running_sum = running_sum * exp(running_max - new_max) + subgroupAdd(p);
        running_max = new_max;
    }
    let lse = running_max + log(running_sum);

    // Pass 2: ds per position, then dq += scale * ds * k.
    var acc: array<vec4<f32>, CHUNKS>;
    for (var t0 = 0u; t0 < len; t0 += LANES) {
        let valid = t0 + lane < len;
        let key_base = kv_base + min(t0 + lane, len - 1u) * pos_stride;
        var qk = 0.0;
        var dov = 0.0;
        for (var c = 0u; c < CHUNKS; c++) {
            for (var j = 0u; j < LANES; j++) {
                let index = key_base + LANES * c + j;
                qk += dot(k[index], subgroupShuffle(qs[c], j));
                dov += dot(v[index], subgroupShuffle(d_outs[c], j));
            }
        }
        let p = exp(qk * params.scale - lse);
        let ds = select(0.0, p * (dov - delta), valid);
        for (var j = 0u; j < LANES; j++) {
            let base = kv_base + min(t0 + j, len - 1u) * pos_stride + lane;
            let ds_j = subgroupShuffle(ds, j);
            for (var c = 0u; c < CHUNKS; c++) {
                acc[c] += ds_j * k[base + LANES * c];
            }
        }
    }

    for (var c = 0u; c < CHUNKS; c++) {
        dq[q_base + LANES * c + lane] = acc[c] * params.scale;
    }
    if lane == 0u {
        let stats_index = 2u * (row * params.heads + head);
        stats[stats_index] = lse;
        stats[stats_index + 1u] = delta;
    }
}
