//! Pipeline compilation and single-pass dispatch shared by the transformer
//! kernels in `norm`, `rope`, `attention`, `elementwise` and `sampling`.

use anyhow::Result;

use crate::{Encoder, Gpu};

/// The largest workgroup count per dispatch dimension that every wgpu
/// backend accepts (`max_compute_workgroups_per_dimension` in the default
/// limits).
pub(crate) const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// Compiles `source` into a compute pipeline with entry point `entry`,
/// turning shader, pipeline, internal and out-of-memory errors into an
/// `Err` instead of wgpu's uncaptured-error panic.
///
/// # Errors
///
/// Fails when the WGSL does not compile or the pipeline is invalid; the
/// message carries naga's diagnostic.
pub(crate) fn compile(
    gpu: &Gpu,
    label: &str,
    source: &str,
    entry: &str,
) -> Result<wgpu::ComputePipeline> {
    // Internal errors cover backend failures (naga's SPIR-V output, a
    // missing entry point), which a validation scope lets through.
    let out_of_memory = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let internal = gpu.device.push_error_scope(wgpu::ErrorFilter::Internal);
    let validation = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let pipeline = gpu.pipeline(label, source, entry);
    let errors = [
        pollster::block_on(validation.pop()),
        pollster::block_on(internal.pop()),
        pollster::block_on(out_of_memory.pop()),
    ];
    if let Some(err) = errors.into_iter().flatten().next() {
        // wgpu's message already contains its causes, so anyhow would repeat them.
        return Err(anyhow::anyhow!("{err}").context(format!("failed to compile kernel `{label}`")));
    }
    Ok(pipeline)
}

/// A compiled kernel whose binding 0 is a uniform block and whose later
/// bindings are storage buffers, in order.
pub(crate) struct Kernel {
    label: &'static str,
    pipeline: wgpu::ComputePipeline,
}

impl Kernel {
    /// Compiles entry point `entry` of `source` under `label`.
    ///
    /// # Errors
    ///
    /// Fails when the WGSL does not compile; see [`compile`].
    pub(crate) fn new(gpu: &Gpu, label: &'static str, source: &str, entry: &str) -> Result<Self> {
        let pipeline = compile(gpu, label, source, entry)?;
        Ok(Self { label, pipeline })
    }

    /// Records one dispatch of `groups` workgroups with `params` in a fresh
    /// uniform buffer at binding 0 and `buffers` at bindings 1, 2, ...
    pub(crate) fn encode<T: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        encoder: &mut Encoder,
        params: &T,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        let label = self.label;
        let params = gpu.uniform(&format!("{label} params"), params);
        let mut resources = vec![params.as_entire_binding()];
        resources.extend(buffers.iter().map(|buffer| buffer.as_entire_binding()));
        let bind_group = gpu.bind_group(label, &self.pipeline, &resources);
        dispatch(gpu, encoder, label, &self.pipeline, &bind_group, groups);
    }
}

/// Records one dispatch of `pipeline` over `groups` workgroups with
/// `bind_group` at group 0, in the encoder's open compute pass, or in a pass
/// of its own when profiling (each pass records its own timestamps).
pub(crate) fn dispatch(
    gpu: &Gpu,
    encoder: &mut Encoder,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    bind_group: &wgpu::BindGroup,
    groups: [u32; 3],
) {
    if groups.contains(&0) {
        return;
    }
    if let Some(profiler) = &gpu.profiler {
        let (set, index) = profiler.next_pass(&gpu.device, label);
        let mut pass = encoder
            .raw()
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * index),
                    end_of_pass_write_index: Some(2 * index + 1),
                }),
            });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        return;
    }
    let pass = encoder.compute_pass();
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind_group, &[]);
    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
}

/// Splits `groups` workgroups of a flat index space over the x and y
/// dimensions so neither exceeds [`MAX_GROUPS_PER_DIM`]. Kernels recover the
/// flat workgroup index as `wid.x + wid.y * num_workgroups.x` and skip
/// indices past the end.
pub(crate) fn split_groups(groups: u32) -> [u32; 3] {
    if groups <= MAX_GROUPS_PER_DIM {
        [groups, 1, 1]
    } else {
        [MAX_GROUPS_PER_DIM, groups.div_ceil(MAX_GROUPS_PER_DIM), 1]
    }
}

/// Returns the grid for `x_groups` workgroups per row times `rows` rows,
/// spreading the rows over y and z so neither exceeds
/// [`MAX_GROUPS_PER_DIM`]. Kernels recover the row as
/// `wid.y + wid.z * num_workgroups.y` and skip rows past the end.
pub(crate) fn row_grid(x_groups: u32, rows: u32) -> [u32; 3] {
    if rows <= MAX_GROUPS_PER_DIM {
        [x_groups, rows, 1]
    } else {
        [
            x_groups,
            MAX_GROUPS_PER_DIM,
            rows.div_ceil(MAX_GROUPS_PER_DIM),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_groups_fits_dimension_limit() {
        assert_eq!(split_groups(0), [0, 1, 1]);
        assert_eq!(split_groups(7), [7, 1, 1]);
        assert_eq!(split_groups(MAX_GROUPS_PER_DIM), [MAX_GROUPS_PER_DIM, 1, 1]);
        assert_eq!(
            split_groups(MAX_GROUPS_PER_DIM + 1),
            [MAX_GROUPS_PER_DIM, 2, 1]
        );
    }
}
