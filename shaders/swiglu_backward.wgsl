// swiglu_backward: gradients of out = silu(gate) * up, with
// sigma = 1 / (1 + exp(-gate)) and silu'(gate) = sigma * (1 + gate * (1 - sigma)):
//   d_gate[i] = d_out[i] * up[i] * silu'(gate[i])
//   d_up[i]   = d_out[i] * silu(gate[i])
//
// Bindings (group 0):
//   0 uniform    params  ElementwiseParams
//   1 read       gate    f32 [N] (N = params.n)
//   2 read       up      f32 [N]
//   3 read       d_out   f32 [N]
//   4 read_write d_gate  f32 [N]
//   5 read_write d_up    f32 [N]
// Workgroup: 256 threads, one element each.
// Dispatch: ceil(N / 256) workgroups split over (x, y), x <= 65535; the flat
// workgroup index is wid.x + wid.y * num_workgroups.x.

struct ElementwiseParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: ElementwiseParams;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read> d_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> d_gate: array<f32>;
@group(0) @binding(5) var<storage, read_write> d_up: array<f32>;

@compute @workgroup_size(256)
fn swiglu_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * groups.x) * 256u + lid;
    if i >= params.n {
        return;
    }
    let g = gate[i];
    let sigma = 1.0 / (1.0 + exp(-g));
    let dy = d_out[i];
    d_gate[i] = dy * up[i] * sigma * (1.0 + g * (1.0 - sigma));
    d_up[i] = dy * g * sigma;
}
