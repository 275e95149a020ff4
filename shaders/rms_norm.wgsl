// rms_norm: out[m, c] = x[m, c] / sqrt(mean_c(x[m]^2) + eps) * weight[c].
//
// Bindings (group 0):
//   0 uniform    params  RmsNormParams
//   1 read       x       f32 [M, C]
//   2 read       weight  f32 [C]
//   3 read_write out     f32 [M, C]
// Built with `row_sum_workgroup.wgsl` (256 threads a row) or, on CPU
// adapters with 8-lane subgroups, `row_sum_lanes.wgsl` (8) prepended,
// which set WG and the sum across the workgroup.
// Workgroup: WG threads, one workgroup per row.
// Dispatch: (1, min(M, 65535), ceil(M / 65535)); the row is
// wid.y + wid.z * num_workgroups.y.

struct RmsNormParams {
    m: u32,
    c: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: RmsNormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.y + wid.z * groups.y;
    if row >= params.m {
        return;
    }
    let c = params.c;
    let base = row * c;

    var sum_sq = 0.0;
    for (var i = lid; i < c; i += WG) {
        let v = x[base + i];
        sum_sq += v * v;
    }
    let total = row_total(vec2<f32>(sum_sq, 0.0), lid).x;

    let inv_rms = inverseSqrt(total / f32(c) + params.eps);
    for (var i = lid; i < c; i += WG) {
        out[base + i] = x[base + i] * inv_rms * weight[i];
    }
}
