// Row sums for `rms_norm.wgsl` and `rms_norm_backward.wgsl` on GPUs: the
// 256 threads of a workgroup, one row, add their partial sums in a tree
// in workgroup memory.

const WG: u32 = 256u;

var<workgroup> partial: array<vec2<f32>, WG>;

// Returns the sum over the workgroup of each thread's `value`. Every
// thread of the workgroup must call it.
fn row_total(value: vec2<f32>, lid: u32) -> vec2<f32> {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // No thread may overwrite partial[0] before all have read it.
    workgroupBarrier();
    return total;
}
