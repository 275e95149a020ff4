// gather_rows_backward: the gradient of gather_rows into its table,
// d_table[ids[u], :] += sum of d_out[rows[j], :] for j in
// starts[u]..starts[u + 1], for example the token embedding's gradient.
// The caller groups the gathered rows by table row (see group_rows in
// elementwise.rs), so each thread owns one output element and sums its
// rows in a fixed order: no atomics, and the same result on every run.
//
// Bindings (group 0):
//   0 uniform    params   GatherRowsParams (r: U, the distinct table rows)
//   1 read       d_out    f32 [R, C]
//   2 read       ids      u32 [U]: table row of each group
//   3 read       starts   u32 [U + 1]: each group's first entry in `rows`
//   4 read       rows     u32 [R]: rows of d_out, grouped
//   5 read_write d_table  f32 [V, C]
// Workgroup: 256 threads, one element of a row each.
// Dispatch: (ceil(C / 256), min(U, 65535), ceil(U / 65535)); the group is
// wid.y + wid.z * num_workgroups.y.

struct GatherRowsParams {
    r: u32,
    c: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: GatherRowsParams;
@group(0) @binding(1) var<storage, read> d_out: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> starts: array<u32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
@group(0) @binding(5) var<storage, read_write> d_table: array<f32>;

@compute @workgroup_size(256)
fn gather_rows_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let col = gid.x;
    let group = gid.y + gid.z * groups.y;
    if col >= params.c || group >= params.r {
        return;
    }
    var sum = 0.0;
    for (var j = starts[group]; j < starts[group + 1u]; j++) {
        sum += d_out[rows[j] * params.c + col];
    }
    let index = ids[group] * params.c + col;
    d_table[index] += sum;
}
