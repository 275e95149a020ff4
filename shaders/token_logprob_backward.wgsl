// token_logprob_backward: gradient of logprob[m] = log_softmax(logits[m])[t_m]
// with respect to one vocabulary chunk of the logits, given the upstream
// gradient d_logprob[m] and the final state of token_logprob_chunk:
//   d_logits[m, j] = d_logprob[m] * ([v_offset + j == t_m] - softmax(logits[m])[v_offset + j])
// where softmax = exp(l - max - log(sum)) from the state. With d_logprob = -1/M
// this is the cross-entropy gradient; with advantages it is the policy
// gradient.
//
// Bindings (group 0):
//   0 uniform    params     TokenLogprobBackwardParams
//   1 read       logits     f32 [M, V_c] (columns v_offset.. of the vocabulary)
//   2 read       targets    u32 [M]
//   3 read       state      f32 [M, 3] (max, sum, target logit) over all of V
//   4 read       d_logprob  f32 [M]
//   5 read_write d_logits   f32 [M, V_c]
// Workgroup: 256 threads, one element of a row each.
// Dispatch: (ceil(V_c / 256), min(M, 65535), ceil(M / 65535)); the row
// is wid.y + wid.z * num_workgroups.y.

struct TokenLogprobBackwardParams {
    m: u32,
    v_chunk: u32,
    v_offset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: TokenLogprobBackwardParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read> state: array<f32>;
@group(0) @binding(4) var<storage, read> d_logprob: array<f32>;
@group(0) @binding(5) var<storage, read_write> d_logits: array<f32>;

@compute @workgroup_size(256)
fn token_logprob_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let column = gid.x;
    let row = gid.y + gid.z * groups.y;
    if column >= params.v_chunk || row >= params.m {
        return;
    }
    let log_sum = state[3u * row] + log(state[3u * row + 1u]);
    let index = row * params.v_chunk + column;
    let prob = exp(logits[index] - log_sum);
    let is_target = select(0.0, 1.0, params.v_offset + column == targets[row]);
    d_logits[index] = d_logprob[row] * (is_target - prob);
}
