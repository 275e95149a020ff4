// rms_norm_backward for CPU adapters with 8-lane subgroups (llvmpipe),
// computing what `rms_norm_backward.wgsl` computes, with one subgroup a
// row in place of 256 threads and their barriers (see
// `rms_norm_lanes.wgsl`):
//   dx[c] = r * weight[c] * dy[c] - r^3 / C * x[c] * sum_j(weight[j] * dy[j] * x[j])
// with r = 1 / sqrt(mean_c(x^2) + eps), and r stored per row for
// rms_norm_backward_weight.
//
// Bindings (group 0), as in `rms_norm_backward.wgsl`:
//   0 uniform    params   RmsNormParams
//   1 read       x        f32 [M, C]
//   2 read       weight   f32 [C]
//   3 read       dy       f32 [M, C]
//   4 read_write dx       f32 [M, C]
//   5 read_write inv_rms  f32 [M]
// Requires subgroups of exactly 8 lanes; the host checks.
// Workgroup: 8 threads, one workgroup per row.
// Dispatch: (1, min(M, 65535), ceil(M / 65535)); the row is
// wid.y + wid.z * num_workgroups.y.

struct RmsNormParams {
    m: u32,
    c: u32,
    eps: f32,
    _pad: u32,
}

const LANES: u32 = 8u;

@group(0) @binding(0) var<uniform> params: RmsNormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> inv_rms: array<f32>;

@compute @workgroup_size(8)
fn rms_norm_backward_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = wid.y + wid.z * groups.y;
    if row >= params.m {
        return;
    }
    let c = params.c;
    let base = row * c;

    var sum_sq = 0.0;
    var dot = 0.0;
    for (var i = lane; i < c; i += LANES) {
        let v = x[base + i];
        sum_sq += v * v;
        dot += weight[i] * dy[base + i] * v;
    }
    let r = 1.0 / sqrt(subgroupAdd(sum_sq) / f32(c) + params.eps);
    let correction = r * r * r / f32(c) * subgroupAdd(dot);
    for (var i = lane; i < c; i += LANES) {
        dx[base + i] = r * weight[i] * dy[base + i] - correction * x[base + i];
    }
    if lane == 0u {
        inv_rms[row] = r;
    }
}
