//! A LoRA adapter applied during inference: after each adapted projection
//! the engine adds `(alpha / r) (x Aᵀ) Bᵀ`, reading A and B from one flat
//! f32 buffer in the layout of [`LoraLayout`]. The trainer can share its
//! parameter buffer, so generation uses every update without a copy.

use std::path::Path;

use anyhow::Result;
use laser_gpu::Gpu;
use laser_gpu::dense::DenseMatmul;
use laser_model::config::ModelConfig;

use crate::train::lora::{LoraLayout, Target, lora_forward};
use crate::train::peft;

/// Adapter parameters on the GPU and the scratch space to apply them.
pub struct Adapter {
    pub layout: LoraLayout,
    /// f32 [P] in the layout of `layout`.
    pub params: wgpu::Buffer,
    /// f32 [max_rows, r]: `x Aᵀ` of the projection being adapted.
    h: wgpu::Buffer,
    max_rows: u32,
    dense: DenseMatmul,
}

impl Adapter {
    /// Wraps `params` (f32 [P], laid out by `layout`) for forward calls of
    /// up to `max_rows` rows.
    ///
    /// # Errors
    ///
    /// Fails when the kernel does not compile.
    pub fn new(gpu: &Gpu, layout: LoraLayout, params: wgpu::Buffer, max_rows: u32) -> Result<Self> {
        let h = gpu.buffer_zeroed(
            "adapter.h",
            u64::from(max_rows) * u64::from(layout.config.rank) * 4,
        );
        Ok(Self {
            layout,
            params,
            h,
            max_rows,
            dense: DenseMatmul::new(gpu)?,
        })
    }

    /// Reads the PEFT adapter folder `dir` for a model shaped like `config`.
    ///
    /// # Errors
    ///
    /// Fails when the adapter files are missing, malformed or shaped for
    /// another model.
    pub fn load(gpu: &Gpu, dir: &Path, config: &ModelConfig, max_rows: u32) -> Result<Self> {
        let (layout, values) = peft::load(dir, config)?;
        let params = gpu.buffer_from("adapter.params", &values);
        Self::new(gpu, layout, params, max_rows)
    }

    /// Records `out += (alpha / r) (x Aᵀ) Bᵀ` for the adapter on `target`
    /// of block `layer`, if there is one, over rows `m < rows`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut laser_gpu::Encoder,
        layer: usize,
        target: Target,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: u32,
    ) {
        debug_assert!(
            rows <= self.max_rows,
            "{rows} rows, adapter scratch holds {}",
            self.max_rows
        );
        if let Some(tensor) = self.layout.find(layer, target) {
            lora_forward(
                gpu,
                &self.dense,
                encoder,
                &self.layout,
                tensor,
                &self.params,
                x,
                &self.h,
                out,
                rows,
            );
        }
    }
}
