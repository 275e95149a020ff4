// attention_backward_kv_lanes: `attention_backward_kv.wgsl` for CPU adapters
// with 8-lane subgroups (llvmpipe); see `attention_lanes.wgsl` for why.
// Same formulas, bindings and dispatch grid (G, rows), with vec4 bindings
// and HEAD_DIM (a multiple of 32) prepended as a constant.
//
// One workgroup is one subgroup of 8 lanes and serves one (key row, kv
// head). Each lane holds every 8th vec4 of the key and value in registers.
// Per tile of 8 query rows, lane j computes p and ds of query row t0 + j,
// reading its query and output gradient as vec4s and taking the key and
// value from the other lanes by shuffles; each lane then adds up its own
// vec4s of the 8 rows' queries and output gradients, weighted by ds and p
// shuffled in from the lane that computed them.
//
// Bindings (group 0):
//   0 uniform    params  AttentionBackwardParams
//   1 read       q       vec4 [M, H, D / 4] (M = B * T)
//   2 read       k       vec4 [M, G, D / 4]
//   3 read       v       vec4 [M, G, D / 4]
//   4 read       d_out   vec4 [M, H, D / 4]
//   5 read       stats   vec2 [M, H] (lse, delta)
//   6 read_write dk      vec4 [M, G, D / 4]
//   7 read_write dv      vec4 [M, G, D / 4]
// Workgroup: 8 threads.
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

const LANES: u32 = 8u;
// The vec4s of one head vector that each lane holds.
const CHUNKS: u32 = HEAD_DIM / 32u;
const QUADS: u32 = HEAD_DIM / 4u;

@group(0) @binding(0) var<uniform> params: AttentionBackwardParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> d_out: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dv: array<vec4<f32>>;

@compute @workgroup_size(8)
fn attention_backward_kv_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let kv_head = wid.x;
    let row = wid.y + wid.z * groups.y;
    if row >= params.m {
        return;
    }
    let heads = params.heads;
    let group_size = heads / params.kv_heads;
    let pos = row % params.seq_len;
    // Query rows row..row + count_queries of the same sequence see this key.
    let count_queries = params.seq_len - pos;
    let kv_base = (row * params.kv_heads + kv_head) * QUADS;

    var ks: array<vec4<f32>, CHUNKS>;
    var vs: array<vec4<f32>, CHUNKS>;
    for (var c = 0u; c < CHUNKS; c++) {
        ks[c] = k[kv_base + LANES * c + lane];
        vs[c] = v[kv_base + LANES * c + lane];
    }

    var dk_acc: array<vec4<f32>, CHUNKS>;
    var dv_acc: array<vec4<f32>, CHUNKS>;
    for (var head = kv_head * group_size; head < (kv_head + 1u) * group_size; head++) {
        for (var t0 = 0u; t0 < count_queries; t0 += LANES) {
            let valid = t0 + lane < count_queries;
            let query_row = row + min(t0 + lane, count_queries - 1u);
            let q_base = (query_row * heads + head) * QUADS;
            var qk = 0.0;
            var dov = 0.0;
            for (var c = 0u; c < CHUNKS; c++) {
                for (var j = 0u; j < LANES; j++) {
                    let index = q_base + LANES * c + j;
                    qk += dot(q[index], subgroupShuffle(ks[c], j));
                    dov += dot(d_out[index], subgroupShuffle(vs[c], j));
                }
            }
            let lse_delta = stats[query_row * heads + head];
            let p = select(0.0, exp(qk * params.scale - lse_delta.x), valid);
            let ds = p * (dov - lse_delta.y);
            for (var j = 0u; j < LANES; j++) {
                let other_row = row + min(t0 + j, count_queries - 1u);
                let base = (other_row * heads + head) * QUADS + lane;
                let p_j = subgroupShuffle(p, j);
                let ds_j = subgroupShuffle(ds, j);
                for (var c = 0u; c < CHUNKS; c++) {
                    dk_acc[c] += ds_j * q[base + LANES * c];
                    dv_acc[c] += p_j * d_out[base + LANES * c];
                }
            }
        }
    }

    for (var c = 0u; c < CHUNKS; c++) {
        dk[kv_base + LANES * c + lane] = dk_acc[c] * params.scale;
        dv[kv_base + LANES * c + lane] = dv_acc[c];
    }
}
