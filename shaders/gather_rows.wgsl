// gather_rows: out[r, :] = x[indices[r], :], for example the last position
// of each sequence before the output head.
//
// Bindings (group 0):
//   0 uniform    params   GatherRowsParams
//   1 read       x        f32 [M, C]
//   2 read       indices  u32 [R] (R = params.r, each < M)
//   3 read_write out      f32 [R, C]
// Workgroup: 256 threads, one element of a row each.
// Dispatch: (ceil(C / 256), min(R, 65535), ceil(R / 65535)); the row is
// wid.y + wid.z * num_workgroups.y.

struct GatherRowsParams {
    r: u32,
    c: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: GatherRowsParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn gather_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let col = gid.x;
    let row = gid.y + gid.z * groups.y;
    if col >= params.c || row >= params.r {
        return;
    }
    out[row * params.c + col] = x[indices[row] * params.c + col];
}
