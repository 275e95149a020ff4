// Row sums for `rms_norm.wgsl` and `rms_norm_backward.wgsl` on CPU adapters
// with 8-lane subgroups (llvmpipe): a workgroup is one subgroup, one row,
// and `subgroupAdd` sums it. A 256-thread workgroup with a tree of
// barriers, as on GPUs, makes llvmpipe switch among 32 subgroups at every
// barrier, which took about 4.7 ms a call in training against 1.0.

const WG: u32 = 8u;

// Returns the sum over the workgroup of each thread's `value`. Every
// thread of the workgroup must call it.
fn row_total(value: vec2<f32>, lid: u32) -> vec2<f32> {
    return subgroupAdd(value);
}
