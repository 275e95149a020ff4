// token_logprob: out[m] = log_softmax(logits[m])[targets[m]]
//                       = logits[m, t] - max_m - log(sum_v exp(logits[m, v] - max_m)).
// One pass: each thread keeps a running (max, sum of exp) over its strided
// elements, and the tree reduction merges pairs by rescaling to the larger
// max, so logits of any magnitude (such as +-1e4) neither overflow nor NaN.
//
// Bindings (group 0):
//   0 uniform    params   TokenLogprobParams
//   1 read       logits   f32 [M, V]
//   2 read       targets  u32 [M] (each < V)
//   3 read_write out      f32 [M]
// Workgroup: 256 threads, one workgroup per row.
// Dispatch: M workgroups split over (x, y), x <= 65535; the row is
// wid.x + wid.y * num_workgroups.x.

struct TokenLogprobParams {
    m: u32,
    v: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;
// Stands in for -infinity, which WGSL has no literal for.
const NEG_BIG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> params: TokenLogprobParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial_max: array<f32, WG>;
var<workgroup> partial_sum: array<f32, WG>;

@compute @workgroup_size(256)
fn token_logprob(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * groups.x;
    if row >= params.m {
        return;
    }
    let v = params.v;
    let base = row * v;

    var running_max = NEG_BIG;
    var running_sum = 0.0;
    for (var i = lid; i < v; i += WG) {
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
        let log_sum = partial_max[0] + log(partial_sum[0]);
        out[row] = logits[base + targets[row]] - log_sum;
    }
}
