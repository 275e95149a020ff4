// rms_norm_backward: input gradient of out = x * r * weight, with
// r = 1 / sqrt(mean_c(x^2) + eps), per row:
//   dx[c] = r * weight[c] * dy[c] - r^3 / C * x[c] * sum_j(weight[j] * dy[j] * x[j])
// It also stores r per row for rms_norm_backward_weight.
//
// Bindings (group 0):
//   0 uniform    params   RmsNormParams
//   1 read       x        f32 [M, C]
//   2 read       weight   f32 [C]
//   3 read       dy       f32 [M, C]
//   4 read_write dx       f32 [M, C]
//   5 read_write inv_rms  f32 [M]
// Built with `row_sum_workgroup.wgsl` or `row_sum_lanes.wgsl` prepended,
// as `rms_norm.wgsl` is.
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
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> inv_rms: array<f32>;

@compute @workgroup_size(WG)
fn rms_norm_backward(
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
    var dot = 0.0;
    for (var i = lid; i < c; i += WG) {
        let v = x[base + i];
        sum_sq += v * v;
        dot += weight[i] * dy[base + i] * v;
    }
    let totals = row_total(vec2<f32>(sum_sq, dot), lid);

    let r = 1.0 / sqrt(totals.x / f32(c) + params.eps);
    let correction = r * r * r / f32(c) * totals.y;
    for (var i = lid; i < c; i += WG) {
        dx[base + i] = r * weight[i] * dy[base + i] - correction * x[base + i];
    }
    if lid == 0u {
        inv_rms[row] = r;
    }
}
