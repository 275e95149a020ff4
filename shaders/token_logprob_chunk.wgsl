// token_logprob_chunk: log_softmax(logits[m])[targets[m]] over a vocabulary
// processed in chunks, so the full [M, V] logits never exist at once (one
// chunk of the whole vocabulary serves the unchunked TokenLogprob). Each
// call merges columns [v_offset, v_offset + V_c) into the running
// per-row state and rewrites out[m] from it; out is final after the last
// chunk. The state is (max, sum of exp(l - max), target logit); `first`
// resets it.
//
// Bindings (group 0):
//   0 uniform    params   TokenLogprobChunkParams
//   1 read       logits   f32 [M, V_c] (columns v_offset.. of the vocabulary)
//   2 read       targets  u32 [M] (vocabulary ids, each < V)
//   3 read_write state    f32 [M, 3] (max, sum, target logit)
//   4 read_write out      f32 [M]
// Workgroup: 256 threads, one workgroup per row.
// Dispatch: M workgroups split over (x, y), x <= 65535; the row is
// wid.x + wid.y * num_workgroups.x.

struct TokenLogprobChunkParams {
    m: u32,
    v_chunk: u32,
    v_offset: u32,
    first: u32,
}

const WG: u32 = 256u;
// Stands in for -infinity, which WGSL has no literal for.
const NEG_BIG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> params: TokenLogprobChunkParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> partial_max: array<f32, WG>;
var<workgroup> partial_sum: array<f32, WG>;

@compute @workgroup_size(256)
fn token_logprob_chunk(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * groups.x;
    if row >= params.m {
        return;
    }
    let width = params.v_chunk;
    let base = row * width;

    var running_max = NEG_BIG;
    var running_sum = 0.0;
    for (var i = lid; i < width; i += WG) {
        let l = logits[base + i];
        if l > running_max {
            running_sum = running_sum * exp(running_max - l) + 1.0;
            running_max = l;
        } else {
            running_sum += exp(l - running_max);
        }
    }
    partial_max[lid] = running_max;
    partial_sum[lid] = running_sum;
    workgroupBarrier();

    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            let max_a = partial_max[lid];
            let max_b = partial_max[lid + stride];
            let merged = max(max_a, max_b);
            partial_sum[lid] = partial_sum[lid] * exp(max_a - merged)
                + partial_sum[lid + stride] * exp(max_b - merged);
            partial_max[lid] = merged;
        }
        workgroupBarrier();
    }

    if lid == 0u {
        var old_max = NEG_BIG;
        var old_sum = 0.0;
        var target_logit = 0.0;
        if params.first == 0u {
            old_max = state[3u * row];
            old_sum = state[3u * row + 1u];
            target_logit = state[3u * row + 2u];
        }
        let merged = max(old_max, partial_max[0]);
        let sum = old_sum * exp(old_max - merged) + partial_sum[0] * exp(partial_max[0] - merged);
        let column = targets[row] - params.v_offset;
        // Wraps to a huge value when the target lies before this chunk.
        if column < width {
            target_logit = logits[base + column];
        }
        state[3u * row] = merged;
        state[3u * row + 1u] = sum;
        state[3u * row + 2u] = target_logit;
        out[row] = target_logit - (merged + log(sum));
    }
}
