// sample: draws one token per row from softmax(logits / temperature),
// restricted by top-k and top-p, and writes its log-probability under the
// unmodified distribution, log_softmax(logits)[token].
//
// Per row, with keys that order f32 logits as u32 (order_key):
//   1. One pass merges (max, sum of exp, argmax) per thread, then a tree
//      reduction gives the row's max, log-sum-exp and argmax (lowest id on
//      ties). Temperature <= 0 or top_k == 1 returns the argmax.
//   2. Top-k: the k-th largest key tau_k is found by radix select, 8 bits
//      a round from the top (4 rounds of a 256-bin histogram). Keys above
//      tau_k are kept, and of the keys equal to tau_k only the lowest ids,
//      so exactly k survive.
//   3. Top-p: the largest key tau_p whose kept mass sum_{key >= tau_p}
//      exp((l - max) / temperature) reaches top_p of the kept total is found
//      bit by bit (32 rounds of a mass reduction); keys below tau_p are
//      dropped. Ties at tau_p are all kept, so the set can exceed the
//      smallest one by tied tokens.
//      NOTE: this reads the row and evaluates exp 33 times, which makes
//      it the slowest setting: about 4 to 8 ms a row of 49152 against
//      about 2.5 ms for top-k alone (sampling_throughput, lavapipe on 2
//      busy cores).
//   4. u in [0, 1) comes from Philox4x32-10 keyed by (seed_lo, seed_hi) at
//      counter (step, 0, 0, 0), so a draw does not depend on where its row
//      sits in the batch; rows that need different draws get different
//      seeds. A scan of per-thread kept mass over
//      contiguous id chunks finds the chunk holding u * total, and that
//      thread walks its chunk to the token.
//
// Bindings (group 0):
//   0 uniform    shape     SampleShape
//   1 read       logits    f32 [B, stride], of which the first V are read
//   2 read       params    SampleParams [B]
//   3 read_write tokens    u32 [B]
//   4 read_write logprobs  f32 [B]
// Workgroup: 256 threads, one workgroup per row. Order-free passes give
// thread j the ids j, j + 256, ...; passes that need id order (tie ranks
// at tau_k and the draw) give it [j * ceil(V / 256), (j + 1) * ceil(V / 256))
// clipped to V.
// Dispatch: (1, min(B, 65535), ceil(B / 65535)); the row is
// wid.y + wid.z * num_workgroups.y.

struct SampleShape {
    b: u32,
    // Ids drawn from: the first v logits of each row.
    v: u32,
    // Logits from one row to the next (>= v).
    stride: u32,
    _pad: u32,
}

struct SampleParams {
    temperature: f32,
    top_k: u32,
    top_p: f32,
    seed_lo: u32,
    seed_hi: u32,
    step: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;
// Stands in for -infinity, which WGSL has no literal for.
const NEG_BIG: f32 = -3.0e38;
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> shape: SampleShape;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<SampleParams>;
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> logprobs: array<f32>;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_g: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;
var<workgroup> histogram: array<atomic<u32>, WG>;
var<workgroup> radix_digit: u32;
var<workgroup> radix_above: u32;
var<workgroup> chosen: atomic<u32>;
var<workgroup> last_kept: atomic<u32>;

// Maps f32 to u32 so that a < b as floats iff key(a) < key(b) as u32.
fn order_key(x: f32) -> u32 {
    let bits = bitcast<u32>(x);
    return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

// Returns the high 32 bits of the 64-bit product a * b.
fn mul_hi(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let lo_lo = a_lo * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_lo = a_hi * b_lo;
    let mid = (lo_lo >> 16u) + (lo_hi & 0xffffu) + (hi_lo & 0xffffu);
    return a_hi * b_hi + (lo_hi >> 16u) + (hi_lo >> 16u) + (mid >> 16u);
}

// Philox4x32-10 (Salmon et al., 2011, "Parallel random numbers: as easy as
// 1, 2, 3"), returning the first output word.
fn philox(counter: vec4<u32>, key: vec2<u32>) -> u32 {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        let hi0 = mul_hi(0xD2511F53u, c.x);
        let lo0 = 0xD2511F53u * c.x;
        let hi1 = mul_hi(0xCD9E8D57u, c.z);
        let lo1 = 0xCD9E8D57u * c.z;
        c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
        k += vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c.x;
}

// Returns the workgroup-wide sum of `value`, the same in every thread.
fn reduce_sum_u32(value: u32, lid: u32) -> u32 {
    red_u[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            red_u[lid] += red_u[lid + stride];
        }
        workgroupBarrier();
    }
    let total = workgroupUniformLoad(&red_u[0]);
    workgroupBarrier();
    return total;
}

// Returns the workgroup-wide sum of `value`, the same in every thread.
fn reduce_sum_f32(value: f32, lid: u32) -> f32 {
    red_f[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            red_f[lid] += red_f[lid + stride];
        }
        workgroupBarrier();
    }
    let total = workgroupUniformLoad(&red_f[0]);
    workgroupBarrier();
    return total;
}

// Returns the key of the k-th largest logit of the row (1 <= k <= V) by
// radix select: each round histograms the next 8 bits of the keys that
// match the digits chosen so far, and picks the digit that holds the k-th
// largest among them. The histogram has one bin per thread (WG = 256).
fn radix_select(base: u32, v: u32, k: u32, lid: u32) -> u32 {
    var prefix = 0u;
    var remaining = k;
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        // Bits above this round's digit, which must equal `prefix`.
        let fixed_mask = select(0xffffffffu << (shift + 8u), 0u, round == 0u);
        atomicStore(&histogram[lid], 0u);
        workgroupBarrier();
        for (var i = lid; i < v; i += WG) {
            let key = order_key(logits[base + i]);
            if (key & fixed_mask) == prefix {
                atomicAdd(&histogram[(key >> shift) & 0xffu], 1u);
            }
        }
        workgroupBarrier();
        if lid == 0u {
            // Walk the bins from the largest digit down until the count
            // reaches `remaining`; such a bin exists because at least
            // `remaining` keys match the prefix.
            var above = 0u;
            var digit = 0u;
            for (var d = 255i; d >= 0; d--) {
                let count = atomicLoad(&histogram[u32(d)]);
                if above + count >= remaining {
                    digit = u32(d);
                    break;
                }
                above += count;
            }
            radix_digit = digit;
            radix_above = above;
        }
        let digit = workgroupUniformLoad(&radix_digit);
        let above = workgroupUniformLoad(&radix_above);
        prefix |= digit << shift;
        remaining -= above;
    }
    return prefix;
}

// Top-k membership of one element, visited in id order: keys above tau are
// kept, and keys equal to tau while fewer than `need` ties were kept.
// `tie_rank` counts the ties seen so far in the row.
fn in_top_k(key: u32, tau: u32, need: u32, tie_rank: ptr<function, u32>) -> bool {
    if key > tau {
        return true;
    }
    if key == tau {
        let rank = *tie_rank;
        *tie_rank = rank + 1u;
        return rank < need;
    }
    return false;
}

// The cut applied to one row: top-k (tau_k, need, this thread's tie_offset),
// top-p (tau_p) and the weights exp((l - max) * inv_temperature).
struct Cut {
    base: u32,
    v: u32,
    start: u32,
    end: u32,
    tau_k: u32,
    need: u32,
    tie_offset: u32,
    row_max: f32,
    inv_temperature: f32,
}

// Returns the kept mass of this thread's contiguous chunk among keys >=
// threshold, walking ids in order to rank ties at tau_k.
fn chunk_mass(cut: Cut, threshold: u32) -> f32 {
    var mass = 0.0;
    var tie_rank = cut.tie_offset;
    for (var i = cut.start; i < cut.end; i++) {
        let l = logits[cut.base + i];
        let key = order_key(l);
        let kept = in_top_k(key, cut.tau_k, cut.need, &tie_rank);
        if kept && key >= threshold {
            mass += exp((l - cut.row_max) * cut.inv_temperature);
        }
    }
    return mass;
}

// Returns the kept mass among keys >= threshold of some share of the row;
// the shares of all threads sum to the row's. Without ties to rank
// (need == NONE) each thread takes every WG-th element, so SIMD lanes read
// neighbouring logits; otherwise it walks its contiguous chunk.
fn thread_mass(cut: Cut, threshold: u32, lid: u32) -> f32 {
    if cut.need != NONE {
        return chunk_mass(cut, threshold);
    }
    let low = max(threshold, cut.tau_k);
    var mass = 0.0;
    for (var i = lid; i < cut.v; i += WG) {
        let l = logits[cut.base + i];
        if order_key(l) >= low {
            mass += exp((l - cut.row_max) * cut.inv_temperature);
        }
    }
    return mass;
}

@compute @workgroup_size(256)
fn sample(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.y + wid.z * groups.y;
    if row >= shape.b {
        return;
    }
    let v = shape.v;
    let base = row * shape.stride;
    let chunk = (v + WG - 1u) / WG;
    let start = min(lid * chunk, v);
    let end = min(start + chunk, v);
    let p = params[row];

    // 1. Max, sum of exp and argmax of the raw logits.
    var local_max = NEG_BIG;
    var local_sum = 0.0;
    var local_arg = NONE;
    // Ids ascend within each thread, so a thread keeps its lowest-id max.
    for (var i = lid; i < v; i += WG) {
        let l = logits[base + i];
        if l > local_max {
            local_sum = local_sum * exp(local_max - l) + 1.0;
            local_max = l;
            local_arg = i;
        } else {
            local_sum += exp(l - local_max);
        }
    }
    red_f[lid] = local_max;
    red_g[lid] = local_sum;
    red_u[lid] = local_arg;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            let max_a = red_f[lid];
            let max_b = red_f[lid + stride];
            let arg_b = red_u[lid + stride];
            let merged = max(max_a, max_b);
            red_g[lid] = red_g[lid] * exp(max_a - merged)
                + red_g[lid + stride] * exp(max_b - merged);
            if max_b > max_a || (max_b == max_a && arg_b < red_u[lid]) {
                red_u[lid] = arg_b;
            }
            red_f[lid] = merged;
        }
        workgroupBarrier();
    }
    let row_max = workgroupUniformLoad(&red_f[0]);
    let log_sum = row_max + log(red_g[0]);
    let argmax = red_u[0];
    workgroupBarrier();

    if p.temperature <= 0.0 || p.top_k == 1u {
        if lid == 0u {
            tokens[row] = argmax;
            logprobs[row] = logits[base + argmax] - log_sum;
        }
        return;
    }

    // 2. Top-k threshold and the tie ranks before this thread's chunk.
    var tau_k = 0u;
    var need = NONE;
    var tie_offset = 0u;
    let k = min(p.top_k, v);
    if p.top_k != 0u && k < v {
        tau_k = radix_select(base, v, k, lid);

        var above = 0u;
        var ties = 0u;
        for (var i = start; i < end; i++) {
            let key = order_key(logits[base + i]);
            above += u32(key > tau_k);
            ties += u32(key == tau_k);
        }
        need = k - reduce_sum_u32(above, lid);

        if reduce_sum_u32(ties, lid) <= need {
            // Every tie at tau_k is kept, so no ranks are needed.
            need = NONE;
        } else {
            // Exclusive scan of the tie counts (Hillis-Steele on red_u).
            red_u[lid] = ties;
            workgroupBarrier();
            for (var offset = 1u; offset < WG; offset *= 2u) {
                var sum = red_u[lid];
                if lid >= offset {
                    sum += red_u[lid - offset];
                }
                workgroupBarrier();
                red_u[lid] = sum;
                workgroupBarrier();
            }
            tie_offset = red_u[lid] - ties;
            workgroupBarrier();
        }
    }

    let cut = Cut(base, v, start, end, tau_k, need, tie_offset, row_max, 1.0 / p.temperature);

    // 3. Top-p threshold over the top-k survivors.
    var tau_p = 0u;
    if p.top_p < 1.0 {
        let kept_total = reduce_sum_f32(thread_mass(cut, 0u, lid), lid);
        let goal = max(p.top_p, 0.0) * kept_total;
        var found = 0u;
        for (var bit = 0u; bit < 32u; bit++) {
            let candidate = found | (0x80000000u >> bit);
            let mass = reduce_sum_f32(thread_mass(cut, candidate, lid), lid);
            if mass >= goal && mass > 0.0 {
                found = candidate;
            }
        }
        tau_p = found;
    }

    // 4. Inclusive scan of the kept mass per chunk, then the draw.
    if lid == 0u {
        atomicStore(&chosen, NONE);
        atomicStore(&last_kept, 0u);
    }
    let own_mass = chunk_mass(cut, tau_p);
    red_f[lid] = own_mass;
    workgroupBarrier();
    for (var offset = 1u; offset < WG; offset *= 2u) {
        var sum = red_f[lid];
        if lid >= offset {
            sum += red_f[lid - offset];
        }
        workgroupBarrier();
        red_f[lid] = sum;
        workgroupBarrier();
    }
    let chunk_end = red_f[lid];
    var chunk_start = 0.0;
    if lid > 0u {
        chunk_start = red_f[lid - 1u];
    }
    let total = red_f[WG - 1u];
    let u = f32(philox(vec4<u32>(p.step, 0u, 0u, 0u), vec2<u32>(p.seed_lo, p.seed_hi)) >> 8u)
        * (1.0 / 16777216.0);
    let point = u * total;

    if own_mass > 0.0 {
        var tie_rank = tie_offset;
        var cumulative = chunk_start;
        var last = NONE;
        var pick = NONE;
        let claims = point >= chunk_start && point < chunk_end;
        for (var i = start; i < end; i++) {
            let l = logits[base + i];
            let key = order_key(l);
            let kept = in_top_k(key, tau_k, need, &tie_rank);
            if kept && key >= tau_p {
                last = i;
                cumulative += exp((l - row_max) * cut.inv_temperature);
                if claims && pick == NONE && point < cumulative {
                    pick = i;
                }
            }
        }
        atomicMax(&last_kept, last);
        if claims {
            // Rounding can leave the walk's sum just short of chunk_end.
            atomicMin(&chosen, select(pick, last, pick == NONE));
        }
    }
    workgroupBarrier();

    if lid == 0u {
        var token = atomicLoad(&chosen);
        if token == NONE {
            // u * total rounded up to total: take the last kept token.
            token = atomicLoad(&last_kept);
        }
        tokens[row] = token;
        logprobs[row] = logits[base + token] - log_sum;
    }
}
