// rope: rotary position embedding, in place. For head h of row m, pair i
// (0 <= i < D/2) rotates by angle = positions[m] * inv_freq[i], where the
// host computes inv_freq[i] = theta^(-2i/D) in f64 and rounds it to f32:
//   (a, b) <- (a cos - b sin, a sin + b cos)
// where (a, b) = (x[2i], x[2i+1]) for pair_layout 0 (adjacent, GGUF llama)
// and (x[i], x[i + D/2]) for pair_layout 1 (halves, Hugging Face, GGUF qwen2).
//
// Bindings (group 0):
//   0 uniform    params     RopeParams
//   1 read_write x          f32 [M, H, D] (H = params.heads, any head count)
//   2 read       positions  u32 [M]
// Workgroup: 256 threads, one thread per (head, pair) of a row.
// Dispatch: (ceil(H * D/2 / 256), min(M, 65535), ceil(M / 65535)); the row
// is wid.y + wid.z * num_workgroups.y.

struct RopeParams {
    m: u32,
    heads: u32,
    head_dim: u32,
    pair_layout: u32,
    // 1 rotates forward. -1 rotates back by the same angle, which is the
    // backward pass because the rotation's transpose is its inverse.
    direction: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    // inv_freq[i] is inv_freq[i / 4][i % 4]; D <= 256.
    inv_freq: array<vec4<f32>, 32>,
}

const LAYOUT_HALVES: u32 = 1u;

// 2 pi split as HI + LO, where HI has 8 significant bits so k * HI is exact
// for |k| < 2^16 (Cody-Waite range reduction).
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

@group(0) @binding(0) var<uniform> params: RopeParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;

// Reduces `angle` to about [-pi, pi] before sin and cos, because GPU sin and
// cos lose accuracy far from zero and positions reach the thousands.
fn reduce_angle(angle: f32) -> f32 {
    let k = round(angle * INV_TWO_PI);
    return (angle - k * TWO_PI_HI) - k * TWO_PI_LO;
}

@compute @workgroup_size(256)
fn rope(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let half_dim = params.head_dim / 2u;
    let row = gid.y + gid.z * groups.y;
    let index = gid.x;
    if index >= params.heads * half_dim || row >= params.m {
        return;
    }
    let head = index / half_dim;
    let i = index % half_dim;
    let base = (row * params.heads + head) * params.head_dim;

    var a_index = base + 2u * i;
    var b_index = a_index + 1u;
    if params.pair_layout == LAYOUT_HALVES {
        a_index = base + i;
        b_index = a_index + half_dim;
    }

    let inv_freq = params.inv_freq[i / 4u][i % 4u];
    let angle = reduce_angle(f32(positions[row]) * inv_freq);
    let c = cos(angle);
    let s = params.direction * sin(angle);
    let a = x[a_index];
    let b = x[b_index];
    x[a_index] = a * c - b * s;
    x[b_index] = a * s + b * c;
}
