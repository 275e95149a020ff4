// dropout: out[i] = keep(i) ? x[i] * scale : 0, or out[i] += that, with
// inverted-dropout scaling (scale = 1 / (1 - p)). The mask is a pure
// function of (key, i): element i is kept when the top 24 bits of
// mix32(mix32(i) ^ key) are at least `threshold` (about p * 2^24), so a
// backward pass that uses the same key sees the same mask without storing
// it. mix32 is the "lowbias32" integer hash (Chris Wellons, "Prospecting
// for Hash Functions", nullprogram.com, 2018).
//
// Bindings (group 0):
//   0 uniform    params  DropoutParams (flags bit 0: accumulate into out)
//   1 read       x       f32 [N] (N = params.n, for example M * K)
//   2 read_write out     f32 [N]
// Workgroup: 256 threads, one element each.
// Dispatch: ceil(N / 256) workgroups split over (x, y), x <= 65535; the flat
// workgroup index is wid.x + wid.y * num_workgroups.x.

struct DropoutParams {
    n: u32,
    key: u32,
    threshold: u32,
    flags: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: DropoutParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn mix32(value: u32) -> u32 {
    var h = value;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

@compute @workgroup_size(256)
fn dropout(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * groups.x) * 256u + lid;
    if i >= params.n {
        return;
    }
    let bits = mix32(mix32(i) ^ params.key);
    var value = 0.0;
    if (bits >> 8u) >= params.threshold {
        value = x[i] * params.scale;
    }
    if (params.flags & 1u) != 0u {
        out[i] += value;
    } else {
        out[i] = value;
    }
}
