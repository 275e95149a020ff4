//! Full fine-tuning of an unquantized model: every weight matrix of every
//! block, the token embedding and the LM head are trained in f32, and the
//! RMSNorm weights too when asked. Each tensor lives in its own GPU buffer
//! (the model's total is larger than one storage binding). The weights are
//! saved as a Hugging Face folder with [`super::merge::write_model`].
//!
//! Quantized weights cannot be trained in place, so a quantized model is
//! rejected; LoRA trains on those instead.
//!
//! NOTE: the full pass multiplies with `dense_matmul.wgsl`, written for
//! small LoRA products, not with the tuned matmul kernels of the frozen
//! base. On lavapipe a full step of SmolLM2-135M took 10 to 20 times as
//! long as a LoRA step (see docs/training.md).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Result, bail, ensure};
use laser_gpu::Gpu;
use laser_model::checkpoint::{Checkpoint, expected_tensors};
use laser_model::config::ModelConfig;
use serde::{Deserialize, Serialize};

use super::lora::Target;
use crate::engine::weights::load_f32;

/// Full fine-tuning settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullConfig {
    /// Train the RMSNorm weights as well as the matrices and embeddings.
    pub train_norms: bool,
}

/// One tensor of the model in a full fine-tuning run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullTensor {
    /// The GGUF tensor name, such as `blk.0.attn_q.weight`.
    pub name: String,
    /// [rows, cols] for a matrix, [len] for a norm weight.
    pub shape: Vec<usize>,
    /// Whether the optimizer updates it; frozen norm weights are not.
    pub trainable: bool,
}

impl FullTensor {
    /// Returns the number of f32 values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Returns whether the tensor has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every tensor of a model in the order of
/// [`laser_model::checkpoint::expected_tensors`].
#[derive(Clone, Debug, PartialEq)]
pub struct FullLayout {
    pub config: FullConfig,
    pub tensors: Vec<FullTensor>,
    positions: HashMap<String, usize>,
}

impl FullLayout {
    /// Lays out the tensors of `checkpoint` for full fine-tuning.
    ///
    /// # Errors
    ///
    /// Fails when a weight is quantized or the model has attention biases,
    /// which the full fine-tuning pass does not train.
    pub fn new(config: FullConfig, checkpoint: &Checkpoint) -> Result<Self> {
        let model = checkpoint.config();
        // TODO: train the q, k and v biases of Qwen2 models; the dense pass
        // would add them with a rank-1 product.
        ensure!(
            !model.attn_bias,
            "full fine-tuning does not support models with attention biases; train a LoRA \
             adapter instead (drop --full)"
        );
        let mut tensors = Vec::new();
        for (name, shape) in expected_tensors(model) {
            let dtype = checkpoint.tensor(&name)?.dtype;
            if dtype.is_quantized() {
                bail!(
                    "full fine-tuning needs an f32, f16 or bf16 model, but tensor `{name}` is \
                     {dtype}: quantized weights cannot be trained in place. Train a LoRA adapter \
                     on this model (drop --full), or use an unquantized model"
                );
            }
            let trainable = shape.len() == 2 || config.train_norms;
            tensors.push(FullTensor {
                name,
                shape,
                trainable,
            });
        }
        let positions = tensors
            .iter()
            .enumerate()
            .map(|(i, tensor)| (tensor.name.clone(), i))
            .collect();
        Ok(Self {
            config,
            tensors,
            positions,
        })
    }

    /// Returns the position of tensor `name` in the layout.
    ///
    /// # Panics
    ///
    /// Panics when the model has no such tensor.
    pub fn position(&self, name: &str) -> usize {
        *self
            .positions
            .get(name)
            .unwrap_or_else(|| panic!("the full layout has no tensor `{name}`"))
    }

    /// Returns the position of block `layer`'s weight matrix `target`.
    pub fn matrix(&self, layer: usize, target: Target) -> usize {
        self.position(&format!("blk.{layer}.{}.weight", target.gguf_module()))
    }

    /// Returns the position of the LM head: `output.weight`, or the token
    /// embedding when the two are tied.
    pub fn lm_head(&self) -> usize {
        self.positions
            .get("output.weight")
            .copied()
            .unwrap_or_else(|| self.position("token_embd.weight"))
    }

    /// Returns the number of trained f32 values.
    pub fn trainable_len(&self) -> usize {
        self.tensors
            .iter()
            .filter(|t| t.trainable)
            .map(FullTensor::len)
            .sum()
    }

    /// Uploads every tensor of `checkpoint` as f32, one buffer each, in
    /// layout order.
    ///
    /// # Errors
    ///
    /// Fails when a tensor cannot be read or is larger than the device's
    /// largest storage binding.
    pub fn upload(&self, gpu: &Gpu, checkpoint: &Checkpoint) -> Result<Vec<wgpu::Buffer>> {
        let max_bytes = gpu.max_binding_bytes();
        let mut buffers = Vec::with_capacity(self.tensors.len());
        for tensor in &self.tensors {
            let bytes = tensor.len() as u64 * 4;
            ensure!(
                bytes <= max_bytes,
                "tensor `{}` needs {} MiB in f32, more than this device's largest storage \
                 binding ({} MiB); full fine-tuning keeps each tensor in one binding",
                tensor.name,
                bytes >> 20,
                max_bytes >> 20
            );
            let values = load_f32(checkpoint, &tensor.name, tensor.len())?;
            buffers.push(gpu.buffer_from(&format!("full.{}", tensor.name), &values));
        }
        Ok(buffers)
    }
}

/// The trainable weights of a full fine-tuning run on the GPU.
pub struct FullWeights {
    pub layout: FullLayout,
    /// One f32 buffer per tensor of the layout, in its order.
    pub params: Vec<wgpu::Buffer>,
}

/// Writes `weights` (f32, in the order of `layout`) as a Hugging Face
/// model folder: `model.safetensors` and `config.json`.
///
/// # Errors
///
/// Fails when the GPU fails or a file cannot be written.
pub fn save_model(
    dir: &Path,
    gpu: &Gpu,
    config: &ModelConfig,
    layout: &FullLayout,
    weights: &[wgpu::Buffer],
) -> Result<()> {
    let mut tensors = BTreeMap::new();
    for (tensor, buffer) in layout.tensors.iter().zip(weights) {
        let values: Vec<f32> = gpu.read(buffer, tensor.len() as u64 * 4)?;
        tensors.insert(tensor.name.clone(), (tensor.shape.clone(), values));
    }
    super::merge::write_model(config, tensors, dir)
}
