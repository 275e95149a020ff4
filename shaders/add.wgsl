// add: acc[i] += x[i], the residual connection.
//
// Bindings (group 0):
//   0 uniform    params  ElementwiseParams
//   1 read_write acc     f32 [N] (N = params.n, for example M * C)
//   2 read       x       f32 [N]
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
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(256)
fn add(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * groups.x) * 256u + lid;
    if i >= params.n {
        return;
    }
    acc[i] += x[i];
}
