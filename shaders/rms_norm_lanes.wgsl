// rms_norm for CPU adapters with 8-lane subgroups (llvmpipe), computing
// what `rms_norm.wgsl` computes:
//   out[m, c] = x[m, c] / sqrt(mean_c(x[m]^2) + eps) * weight[c].
//
// One subgroup a row: the 8 lanes sum squares over the row and
// `subgroupAdd` totals them. `rms_norm.wgsl` takes 256 threads a row and a
// tree of workgroup barriers, which llvmpipe runs by switching among the
// workgroup's 32 subgroups at each barrier.
//
// Bindings (group 0), as in `rms_norm.wgsl`:
//   0 uniform    params  RmsNormParams
//   1 read       x       f32 [M, C]
//   2 read       weight  f32 [C]
//   3 read_write out     f32 [M, C]
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
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(8)
fn rms_norm_lanes(
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
    for (var i = lane; i < c; i += LANES) {
        let v = x[base + i];
        sum_sq += v * v;
    }
    let inv_rms = inverseSqrt(subgroupAdd(sum_sq) / f32(c) + params.eps);
    for (var i = lane; i < c; i += LANES) {
        out[base + i] = x[base + i] * inv_rms * weight[i];
    }
}
