// grad_norm: out[0] = sum_i grad[i]^2, the squared global L2 norm of the
// gradients that gradient clipping divides by.
//
// Bindings (group 0):
//   0 uniform    params  GradNormParams
//   1 read       grad    f32 [N] (N = params.n)
//   2 read_write out     f32 [1]
// Workgroup: 256 threads; each sums a strided share of the elements, then
// the workgroup reduces the 256 partial sums in a fixed tree order, so the
// result is the same on every run.
// Dispatch: (1, 1, 1).

struct GradNormParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> params: GradNormParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(256)
fn grad_norm(@builtin(local_invocation_index) lid: u32) {
    var sum = 0.0;
    for (var i = lid; i < params.n; i += WG) {
        let g = grad[i];
        sum += g * g;
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        out[0] = partial[0];
    }
}
