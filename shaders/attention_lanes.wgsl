// attention_lanes: `attention.wgsl` for CPU adapters with 8-lane subgroups
// (llvmpipe), where every storage or workgroup-memory load is a loop over
// the lanes and loads, not arithmetic, set the speed.
//
// Built with the constants HEAD_DIM (a multiple of 32) and BLOCK_HEADS
// prepended. One workgroup is one subgroup of 8 lanes and serves one
// (row, kv head). Per tile of 8 cache positions, lane j scores position
// t0 + j against BLOCK_HEADS query heads at once, reading its key as vec4s;
// the query vectors live in registers, each lane holding every 8th vec4 of
// them, and reach the other lanes through subgroup shuffles. The online
// softmax takes its tile maximum and sum with subgroup reductions. For the
// values each lane owns every 8th vec4 of the output row and reads those
// vec4s of each position's value, with the position's probability shuffled
// in from the lane that scored it. There is no workgroup memory and no
// barrier.
//
// Bindings (group 0), as in `attention.wgsl`:
//   0 uniform    params   AttentionParams
//   1 read       q        vec4 [M, H, D / 4]
//   2 read       k_cache  vec4 [S, T, G, D / 4] (S slots, T = params.max_len)
//   3 read       v_cache  vec4 [S, T, G, D / 4]
//   4 read       rows     u32 [M, 2] (slot, position)
//   5 read_write out      vec4 [M, H, D / 4]
// Workgroup: 8 threads, one per (row, kv head).
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

const LANES: u32 = 8u;
// The vec4s of one head vector that each lane holds.
const CHUNKS: u32 = HEAD_DIM / 32u;
const QUADS: u32 = HEAD_DIM / 4u;
// Stands in for -infinity, which WGSL has no literal for.
const NEG_BIG: f32 = -1.0e30;

@group(0) @binding(0) var<uniform> params: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(8)
fn attention_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let kv_head = wid.x;
    let row = wid.y + wid.z * groups.y;
    if row >= params.m {
        return;
    }
    let group_size = params.heads / params.kv_heads;
    let slot = rows[2u * row];
    let len = rows[2u * row + 1u] + 1u;
    // vec4 stride between consecutive positions of one kv head.
    let pos_stride = params.kv_heads * QUADS;
    let cache_base = (slot * params.max_len * params.kv_heads + kv_head) * QUADS;

    let end_head = (kv_head + 1u) * group_size;
    for (var first_head = kv_head * group_size; first_head < end_head; first_head += BLOCK_HEADS) {
        // Heads past the group repeat its last head and are not stored.
        var head_base: array<u32, BLOCK_HEADS>;
        var qs: array<array<vec4<f32>, CHUNKS>, BLOCK_HEADS>;
        var acc: array<array<vec4<f32>, CHUNKS>, BLOCK_HEADS>;
        var running_max: array<f32, BLOCK_HEADS>;
        var running_sum: array<f32, BLOCK_HEADS>;
        for (var b = 0u; b < BLOCK_HEADS; b++) {
            let head = min(first_head + b, end_head - 1u);
            head_base[b] = (row * params.heads + head) * QUADS;
            for (var c = 0u; c < CHUNKS; c++) {
                qs[b][c] = q[head_base[b] + LANES * c + lane] * params.scale;
            }
            running_max[b] = NEG_BIG;
        }

        for (var t0 = 0u; t0 < len; t0 += LANES) {
            let valid = t0 + lane < len;
            let key_base = cache_base + min(t0 + lane, len - 1u) * pos_stride;
            var scores: array<f32, BLOCK_HEADS>;
            for (var c = 0u; c < CHUNKS; c++) {
                for (var j = 0u; j < LANES; j++) {
                    let key = k_cache[key_base + LANES * c + j];
                    for (var b = 0u; b < BLOCK_HEADS; b++) {
                        scores[b] += dot(key, subgroupShuffle(qs[b][c], j));
                    }
                }
            }

            var probs: array<f32, BLOCK_HEADS>;
            for (var b = 0u; b < BLOCK_HEADS; b++) {
                let score = select(NEG_BIG, scores[b], valid);
                let new_max = max(running_max[b], subgroupMax(score));
                let rescale = exp(running_max[b] - new_max);
                running_max[b] = new_max;
                probs[b] = select(0.0, exp(score - new_max), valid);
                running_sum[b] = running_sum[b] * rescale + subgroupAdd(probs[b]);
                for (var c = 0u; c < CHUNKS; c++) {
                    acc[b][c] *= rescale;
                }
            }

            for (var j = 0u; j < LANES; j++) {
                let value_base = cache_base + min(t0 + j, len - 1u) * pos_stride + lane;
                for (var c = 0u; c < CHUNKS; c++) {
                    let value = v_cache[value_base + LANES * c];
                    for (var b = 0u; b < BLOCK_HEADS; b++) {
                        acc[b][c] += subgroupShuffle(probs[b], j) * value;
                    }
                }
            }
        }

        for (var b = 0u; b < BLOCK_HEADS; b++) {
            if first_head + b < end_head {
                let inv_sum = 1.0 / running_sum[b];
                for (var c = 0u; c < CHUNKS; c++) {
                    out[head_base[b] + LANES * c + lane] = acc[b][c] * inv_sum;
                }
            }
        }
    }
}
