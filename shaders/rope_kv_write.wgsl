// rope_kv_write: the rotary position embedding of q and k and the append of
// k and v to one layer's KV cache, in one pass instead of three. For row m
// at (slot, pos) = (rows[2m], rows[2m + 1]):
//   q[m] is rotated in place;
//   k[m] is rotated and written to k_cache[slot, pos] (k itself is unchanged);
//   v[m] is copied to v_cache[slot, pos].
// The rotation is the one of rope.wgsl: pair i of a head turns by
// pos * inv_freq[i], with the pair layout of params.pair_layout.
//
// Bindings (group 0):
//   0 uniform    params   RopeKvParams
//   1 read_write q        f32 [M, H, D]
//   2 read       k        f32 [M, G, D]
//   3 read       v        f32 [M, G, D]
//   4 read       rows     u32 [M, 2] (slot, position)
//   5 read_write k_cache  f32 [S, T, G, D] (T = params.max_len)
//   6 read_write v_cache  f32 [S, T, G, D]
// Workgroup: 256 threads, one thread per pair of a row: H * D/2 pairs of q,
// then G * D/2 pairs of k, then G * D/2 pairs of v.
// Dispatch: (ceil((H + 2G) * D/2 / 256), min(M, 65535), ceil(M / 65535));
// the row is wid.y + wid.z * num_workgroups.y.

struct RopeKvParams {
    m: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    pair_layout: u32,
    max_len: u32,
    _pad0: u32,
    _pad1: u32,
    // inv_freq[i] is inv_freq[i / 4][i % 4]; D <= 256.
    inv_freq: array<vec4<f32>, 32>,
}

const LAYOUT_HALVES: u32 = 1u;

// 2 pi split as HI + LO, where HI has 8 significant bits so k * HI is exact
// for |k| < 2^16 (Cody-Waite range reduction).
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

@group(0) @binding(0) var<uniform> params: RopeKvParams;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<f32>;

// Reduces `angle` to about [-pi, pi] before sin and cos, because GPU sin and
// cos lose accuracy far from zero and positions reach the thousands.
fn reduce_angle(angle: f32) -> f32 {
    let turns = round(angle * INV_TWO_PI);
    return (angle - turns * TWO_PI_HI) - turns * TWO_PI_LO;
}

// Returns the offsets of pair i within a head.
fn pair_offsets(i: u32) -> vec2<u32> {
    if params.pair_layout == LAYOUT_HALVES {
        return vec2<u32>(i, i + params.head_dim / 2u);
    }
    return vec2<u32>(2u * i, 2u * i + 1u);
}

@compute @workgroup_size(256)
fn rope_kv_write(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let half_dim = params.head_dim / 2u;
    let q_pairs = params.heads * half_dim;
    let kv_pairs = params.kv_heads * half_dim;
    let row = gid.y + gid.z * groups.y;
    let index = gid.x;
    if index >= q_pairs + 2u * kv_pairs || row >= params.m {
        return;
    }
    let slot = rows[2u * row];
    let pos = rows[2u * row + 1u];
    let kv_width = params.kv_heads * params.head_dim;
    let cache_row = (slot * params.max_len + pos) * kv_width;

    if index >= q_pairs + kv_pairs {
        // v: copy two adjacent elements.
        let e = 2u * (index - q_pairs - kv_pairs);
        v_cache[cache_row + e] = v[row * kv_width + e];
        v_cache[cache_row + e + 1u] = v[row * kv_width + e + 1u];
        return;
    }

    var pair = index;
    if index >= q_pairs {
        pair = index - q_pairs;
    }
    let head = pair / half_dim;
    let i = pair % half_dim;
    let offsets = pair_offsets(i) + vec2<u32>(head * params.head_dim);
    let inv_freq = params.inv_freq[i / 4u][i % 4u];
    let angle = reduce_angle(f32(pos) * inv_freq);
    let c = cos(angle);
    let s = sin(angle);

    if index < q_pairs {
        let base = row * params.heads * params.head_dim;
        let a = q[base + offsets.x];
        let b = q[base + offsets.y];
        q[base + offsets.x] = a * c - b * s;
        q[base + offsets.y] = a * s + b * c;
    } else {
        let base = row * kv_width;
        let a = k[base + offsets.x];
        let b = k[base + offsets.y];
        k_cache[cache_row + offsets.x] = a * c - b * s;
        k_cache[cache_row + offsets.y] = a * s + b * c;
    }
}
