//! A command encoder that records consecutive dispatches into one compute
//! pass.
//!
//! Each compute pass has a fixed cost on top of its dispatches. On lavapipe
//! a trivial dispatch took about 21 µs in a pass of its own and 9 µs beside
//! others in one pass, and a decode step of SmolLM2 has about 300
//! dispatches. wgpu still orders the dispatches of one pass that share a
//! buffer (each is its own synchronization scope), so merging them changes
//! no result.

use crate::Gpu;

/// A `wgpu::CommandEncoder` and the compute pass it is recording, if any.
///
/// Kernels record their dispatches with [`Encoder::compute_pass`]. Other
/// commands go through [`Encoder::raw`], which ends the open pass first.
pub struct Encoder {
    inner: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
}

impl Encoder {
    pub(crate) fn new(gpu: &Gpu, label: &str) -> Self {
        let inner = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        Self { inner, pass: None }
    }

    /// Ends the open compute pass, if any, and returns the encoder for
    /// commands other than dispatches (copies, clears).
    pub fn raw(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        &mut self.inner
    }

    /// Returns the open compute pass, beginning one if there is none.
    pub(crate) fn compute_pass(&mut self) -> &mut wgpu::ComputePass<'static> {
        let inner = &mut self.inner;
        self.pass.get_or_insert_with(|| {
            inner
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("kernels"),
                    timestamp_writes: None,
                })
                .forget_lifetime()
        })
    }

    /// Ends the open compute pass and returns the finished commands.
    pub(crate) fn finish(mut self) -> wgpu::CommandBuffer {
        self.pass = None;
        self.inner.finish()
    }
}
