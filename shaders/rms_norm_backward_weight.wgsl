// rms_norm_backward_weight: weight gradient of out = x * r * weight,
// accumulated over the rows: d_weight[c] += sum_m dy[m, c] * x[m, c] * r[m],
// with r[m] from rms_norm_backward.
//
// Bindings (group 0):
//   0 uniform    params    RmsNormParams
//   1 read       x         f32 [M, C]
//   2 read       dy        f32 [M, C]
//   3 read       inv_rms   f32 [M]
//   4 read_write d_weight  f32 [C] (accumulated, not overwritten)
// Workgroup: 256 threads, one column each, looping over all M rows.
// Dispatch: (ceil(C / 256), 1, 1).

struct RmsNormParams {
    m: u32,
    c: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: RmsNormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> inv_rms: array<f32>;
@group(0) @binding(4) var<storage, read_write> d_weight: array<f32>;

@compute @workgroup_size(256)
fn rms_norm_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>) {
    let column = gid.x;
    let c = params.c;
    if column >= c {
        return;
    }
    var sum = 0.0;
    for (var row = 0u; row < params.m; row++) {
        let index = row * c + column;
        sum += dy[index] * x[index] * inv_rms[row];
    }
    d_weight[column] += sum;
}
