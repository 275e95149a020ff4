// swiglu: out[i] = silu(gate[i]) * up[i], with silu(x) = x / (1 + exp(-x)),
// the gated feed-forward activation of Llama and Qwen2 (Shazeer, 2020).
//
// Bindings (group 0):
//   0 uniform    params  ElementwiseParams
//   1 read       gate    f32 [N] (N = params.n, for example M * F)
//   2 read       up      f32 [N]
//   3 read_write out     f32 [N]
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
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn swiglu(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * groups.x) * 256u + lid;
    if i >= params.n {
        return;
    }
    let g = gate[i];
    // For g below about -88, exp(-g) is +inf and silu(g) is -0, its limit.
    out[i] = g / (1.0 + exp(-g)) * up[i];
}
