//! The policy's weights on the GPU, uploaded from a checkpoint in their stored
//! format (a 4-bit model stays 4-bit in GPU memory).

use anyhow::{Context, Result, bail};
use laser_gpu::Gpu;
use laser_gpu::qmatrix::QMatrix;
use laser_model::checkpoint::Checkpoint;
use laser_model::config::ModelConfig;
use laser_model::{DType, quant};

/// One transformer block's weights. Matrix shapes are [N out, K in].
pub struct Block {
    /// f32 [C]
    pub attn_norm: wgpu::Buffer,
    /// [H*D, C]
    pub attn_q: QMatrix,
    /// [G*D, C]
    pub attn_k: QMatrix,
    /// [G*D, C]
    pub attn_v: QMatrix,
    /// f32 [H*D], [G*D], [G*D]; Qwen2 only.
    pub attn_q_bias: Option<wgpu::Buffer>,
    pub attn_k_bias: Option<wgpu::Buffer>,
    pub attn_v_bias: Option<wgpu::Buffer>,
    /// [C, H*D]
    pub attn_output: QMatrix,
    /// f32 [C]
    pub ffn_norm: wgpu::Buffer,
    /// [F, C]
    pub ffn_gate: QMatrix,
    /// [F, C]
    pub ffn_up: QMatrix,
    /// [C, F]
    pub ffn_down: QMatrix,
}

/// All weights of a llama-family model.
pub struct Weights {
    /// [V, C]
    pub token_embd: QMatrix,
    pub blocks: Vec<Block>,
    /// f32 [C]
    pub output_norm: wgpu::Buffer,
    /// [V, C]; `None` when the LM head is tied to `token_embd`.
    pub output: Option<QMatrix>,
}

impl Weights {
    /// Uploads every tensor the architecture needs.
    ///
    /// # Errors
    ///
    /// Fails when a tensor is missing, has the wrong shape, or does not fit
    /// on the device.
    pub fn upload(gpu: &Gpu, checkpoint: &Checkpoint) -> Result<Self> {
        let config = checkpoint.config();
        let c = config.n_embd;
        let q_width = config.n_head * config.head_dim;
        let kv_width = config.n_head_kv * config.head_dim;
        let token_embd = matrix(gpu, checkpoint, "token_embd.weight", config.vocab_size, c)?;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let name = |suffix: &str| format!("blk.{i}.{suffix}");
            let bias = |suffix: &str, len: usize| -> Result<Option<wgpu::Buffer>> {
                if config.attn_bias {
                    vector(gpu, checkpoint, &name(suffix), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            blocks.push(Block {
                attn_norm: vector(gpu, checkpoint, &name("attn_norm.weight"), c)?,
                attn_q: matrix(gpu, checkpoint, &name("attn_q.weight"), q_width, c)?,
                attn_k: matrix(gpu, checkpoint, &name("attn_k.weight"), kv_width, c)?,
                attn_v: matrix(gpu, checkpoint, &name("attn_v.weight"), kv_width, c)?,
                attn_q_bias: bias("attn_q.bias", q_width)?,
                attn_k_bias: bias("attn_k.bias", kv_width)?,
                attn_v_bias: bias("attn_v.bias", kv_width)?,
                attn_output: matrix(gpu, checkpoint, &name("attn_output.weight"), c, q_width)?,
                ffn_norm: vector(gpu, checkpoint, &name("ffn_norm.weight"), c)?,
                ffn_gate: matrix(gpu, checkpoint, &name("ffn_gate.weight"), config.n_ff, c)?,
                ffn_up: matrix(gpu, checkpoint, &name("ffn_up.weight"), config.n_ff, c)?,
                ffn_down: matrix(gpu, checkpoint, &name("ffn_down.weight"), c, config.n_ff)?,
            });
        }
        let output_norm = vector(gpu, checkpoint, "output_norm.weight", c)?;
        let output = if config.tied_embeddings {
            None
        } else {
            Some(matrix(
                gpu,
                checkpoint,
                "output.weight",
                config.vocab_size,
                c,
            )?)
        };
        Ok(Self {
            token_embd,
            blocks,
            output_norm,
            output,
        })
    }

    /// Returns the LM head: `output` or, when tied, the token embedding.
    pub fn lm_head(&self) -> &QMatrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Returns the GPU bytes used by all weights.
    pub fn gpu_bytes(&self) -> u64 {
        let mut total = self.token_embd.gpu_bytes() + self.output_norm.size();
        if let Some(output) = &self.output {
            total += output.gpu_bytes();
        }
        for block in &self.blocks {
            total += [
                &block.attn_q,
                &block.attn_k,
                &block.attn_v,
                &block.attn_output,
                &block.ffn_gate,
                &block.ffn_up,
                &block.ffn_down,
            ]
            .iter()
            .map(|m| m.gpu_bytes())
            .sum::<u64>();
            total += block.attn_norm.size() + block.ffn_norm.size();
            for bias in [&block.attn_q_bias, &block.attn_k_bias, &block.attn_v_bias] {
                total += bias.as_ref().map_or(0, wgpu::Buffer::size);
            }
        }
        total
    }
}

/// Uploads the [rows, cols] matrix `name` in its stored format.
fn matrix(
    gpu: &Gpu,
    checkpoint: &Checkpoint,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<QMatrix> {
    let tensor = checkpoint.tensor(name)?;
    if tensor.shape != [rows, cols] {
        bail!(
            "tensor `{name}` has shape {:?}, expected [{rows}, {cols}]",
            tensor.shape
        );
    }
    QMatrix::upload(gpu, name, tensor.dtype, rows, cols, tensor.data)
        .with_context(|| format!("failed to upload tensor `{name}`"))
}

/// Uploads the vector `name` of `len` values as f32, whatever its stored type.
fn vector(gpu: &Gpu, checkpoint: &Checkpoint, name: &str, len: usize) -> Result<wgpu::Buffer> {
    let values = load_f32(checkpoint, name, len)?;
    Ok(gpu.buffer_from(name, &values))
}

/// Reads tensor `name` as `len` f32 values.
pub(crate) fn load_f32(checkpoint: &Checkpoint, name: &str, len: usize) -> Result<Vec<f32>> {
    let tensor = checkpoint.tensor(name)?;
    let count: usize = tensor.shape.iter().product();
    if count != len {
        bail!(
            "tensor `{name}` has shape {:?}, expected {len} values",
            tensor.shape
        );
    }
    if tensor.dtype == DType::F32 {
        return Ok(bytemuck::pod_collect_to_vec(tensor.data));
    }
    quant::dequantize(tensor.dtype, tensor.data, len)
        .with_context(|| format!("failed to read tensor `{name}`"))
}

/// Returns the model's dimensions (C, H, G, D, F) as the kernels take them.
pub(crate) fn dims(config: &ModelConfig) -> (u32, u32, u32, u32, u32) {
    (
        config.n_embd as u32,
        config.n_head as u32,
        config.n_head_kv as u32,
        config.head_dim as u32,
        config.n_ff as u32,
    )
}
