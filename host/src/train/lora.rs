//! LoRA adapters (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large
//! Language Models") on the frozen projections of a llama-family model:
//! `y = x Wᵀ + (alpha / r) · (dropout(x) Aᵀ) Bᵀ` with A [r, in] and B
//! [out, r], as PEFT computes it. Dropout runs only in training passes.
//!
//! Every adapter tensor lives in one flat f32 buffer (parameters, gradients
//! and optimizer moments share the layout), block by block, target by
//! target, A before B. The frozen base weights stay in their stored format.

use anyhow::{Result, ensure};
use laser_gpu::Gpu;
use laser_gpu::dense::{DenseMatmul, DenseShape, Operand};
use laser_gpu::elementwise::{Dropout, DropoutMask, mix32};
use laser_model::config::ModelConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A projection an adapter can be attached to, named as in Hugging Face
/// llama checkpoints.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    #[value(name = "q_proj")]
    #[serde(rename = "q_proj")]
    Q,
    #[value(name = "k_proj")]
    #[serde(rename = "k_proj")]
    K,
    #[value(name = "v_proj")]
    #[serde(rename = "v_proj")]
    V,
    #[value(name = "o_proj")]
    #[serde(rename = "o_proj")]
    O,
    #[value(name = "gate_proj")]
    #[serde(rename = "gate_proj")]
    Gate,
    #[value(name = "up_proj")]
    #[serde(rename = "up_proj")]
    Up,
    #[value(name = "down_proj")]
    #[serde(rename = "down_proj")]
    Down,
}

impl Target {
    /// Every target, in the order of the block's forward pass.
    pub const ALL: [Target; 7] = [
        Self::Q,
        Self::K,
        Self::V,
        Self::O,
        Self::Gate,
        Self::Up,
        Self::Down,
    ];

    /// The module name in Hugging Face checkpoints and PEFT's
    /// `target_modules`.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Q => "q_proj",
            Self::K => "k_proj",
            Self::V => "v_proj",
            Self::O => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// The module name in GGUF files: `blk.{i}.{module}.weight`.
    pub fn gguf_module(self) -> &'static str {
        match self {
            Self::Q => "attn_q",
            Self::K => "attn_k",
            Self::V => "attn_v",
            Self::O => "attn_output",
            Self::Gate => "ffn_gate",
            Self::Up => "ffn_up",
            Self::Down => "ffn_down",
        }
    }

    /// The parent module in Hugging Face llama checkpoints.
    pub fn hf_parent(self) -> &'static str {
        match self {
            Self::Q | Self::K | Self::V | Self::O => "self_attn",
            Self::Gate | Self::Up | Self::Down => "mlp",
        }
    }

    /// Returns `(in_features, out_features)` of the projection.
    pub fn features(self, config: &ModelConfig) -> (usize, usize) {
        let c = config.n_embd;
        let q_width = config.n_head * config.head_dim;
        let kv_width = config.n_head_kv * config.head_dim;
        match self {
            Self::Q => (c, q_width),
            Self::K | Self::V => (c, kv_width),
            Self::O => (q_width, c),
            Self::Gate | Self::Up => (c, config.n_ff),
            Self::Down => (config.n_ff, c),
        }
    }
}

/// Adapter hyperparameters. The defaults are rank 16, alpha 32, no dropout,
/// on the query and value projections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// The rank r of A [r, in] and B [out, r].
    pub rank: u32,
    /// The update is scaled by `alpha / rank`.
    pub alpha: f32,
    /// The probability of zeroing an input of the adapter path in training.
    pub dropout: f32,
    pub targets: Vec<Target>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: vec![Target::Q, Target::V],
        }
    }
}

impl LoraConfig {
    /// The factor `alpha / rank` applied to the adapter's output.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// Checks the values and sorts the targets into forward-pass order.
    ///
    /// # Errors
    ///
    /// Fails on rank 0, no targets, or a dropout outside [0, 1).
    pub fn validated(mut self) -> Result<Self> {
        ensure!(
            self.rank > 0,
            "LoRA rank must be at least 1, got {}",
            self.rank
        );
        ensure!(
            !self.targets.is_empty(),
            "LoRA needs at least one target projection"
        );
        ensure!(
            (0.0..1.0).contains(&self.dropout),
            "LoRA dropout must be in [0, 1), got {}",
            self.dropout
        );
        self.targets.sort();
        self.targets.dedup();
        Ok(self)
    }
}

/// Where one adapter's A and B sit in the flat buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoraTensor {
    pub layer: usize,
    pub target: Target,
    pub in_features: usize,
    pub out_features: usize,
    /// Element offset of A [r, in].
    pub a_offset: usize,
    /// Element offset of B [out, r].
    pub b_offset: usize,
}

/// The adapters of every block, laid out in one flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraLayout {
    pub config: LoraConfig,
    pub tensors: Vec<LoraTensor>,
    /// Total f32 elements of the flat buffer.
    pub len: usize,
}

impl LoraLayout {
    /// Lays out `config`'s adapters for every block of `model`.
    ///
    /// # Errors
    ///
    /// Fails when `config` is invalid or the buffer would exceed 2^32
    /// elements (offsets are u32 on the GPU).
    pub fn new(config: LoraConfig, model: &ModelConfig) -> Result<Self> {
        let config = config.validated()?;
        let r = config.rank as usize;
        let mut tensors = Vec::new();
        let mut offset = 0;
        for layer in 0..model.n_layer {
            for &target in &config.targets {
                let (in_features, out_features) = target.features(model);
                let a_offset = offset;
                let b_offset = a_offset + r * in_features;
                offset = b_offset + out_features * r;
                tensors.push(LoraTensor {
                    layer,
                    target,
                    in_features,
                    out_features,
                    a_offset,
                    b_offset,
                });
            }
        }
        ensure!(
            offset < u32::MAX as usize,
            "LoRA adapters have {offset} parameters, above 2^32"
        );
        Ok(Self {
            config,
            tensors,
            len: offset,
        })
    }

    /// Returns a layout without adapters, for passes of the base model
    /// alone.
    pub fn empty() -> Self {
        Self {
            config: LoraConfig::default(),
            tensors: Vec::new(),
            len: 0,
        }
    }

    /// The adapters of block `layer`, in forward-pass order.
    pub fn layer(&self, layer: usize) -> impl Iterator<Item = &LoraTensor> {
        self.tensors.iter().filter(move |t| t.layer == layer)
    }

    /// The adapter on `target` of block `layer`, if there is one.
    pub fn find(&self, layer: usize, target: Target) -> Option<&LoraTensor> {
        self.tensors
            .iter()
            .find(|t| t.layer == layer && t.target == target)
    }

    /// Returns fresh parameters as PEFT initializes them: A from
    /// Kaiming-uniform with `a = sqrt(5)`, that is U(-1/sqrt(in),
    /// 1/sqrt(in)), drawn from a generator seeded with `seed`; B zero, so
    /// the adapted model starts equal to the base.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut params = vec![0.0; self.len];
        let r = self.config.rank as usize;
        for t in &self.tensors {
            let bound = 1.0 / (t.in_features as f32).sqrt();
            for value in &mut params[t.a_offset..t.a_offset + r * t.in_features] {
                *value = rng.random_range(-bound..bound);
            }
        }
        params
    }
}

/// Identifies one training forward pass for LoRA dropout: the masks of
/// every adapter are functions of these numbers, the block and the target
/// alone. A resumed run therefore draws the same masks, and the backward
/// pass recomputes its forward pass's masks instead of storing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutPass {
    /// The run's seed.
    pub seed: u64,
    /// The optimizer step, counted from 0.
    pub step: u32,
    /// The micro-batch within the step.
    pub micro_batch: u32,
}

impl DropoutPass {
    /// Returns the mask with dropout probability `probability` on the input
    /// of block `layer`'s adapter on `target`. Element `m * in + k` of the
    /// [M, in] input is row m, feature k of the micro-batch.
    pub fn mask(&self, probability: f32, layer: usize, target: Target) -> DropoutMask {
        let words = [
            self.seed as u32,
            (self.seed >> 32) as u32,
            self.step,
            self.micro_batch,
            layer as u32,
            target as u32,
        ];
        let key = words
            .iter()
            .fold(0x9e37_79b9, |key, &word| mix32(key ^ word));
        DropoutMask { key, probability }
    }
}

/// The dropout of one adapter's input in a training pass.
#[derive(Clone, Copy)]
pub struct LoraDropout<'a> {
    pub kernel: &'a Dropout,
    pub mask: DropoutMask,
    /// f32 [M, in]: scratch for the dropped-out input.
    pub scratch: &'a wgpu::Buffer,
}

/// Records the adapter's output `out[m, :] += scale * (x Aᵀ) Bᵀ` for rows
/// `m < rows`, keeping `h = x Aᵀ` f32 [M, r] for the backward pass. `x` is
/// f32 [M, in] and `out` f32 [M, out]; A and B are read from `params` at
/// the tensor's offsets. Runs without dropout; see
/// [`lora_forward_dropout`].
#[allow(clippy::too_many_arguments)]
pub fn lora_forward(
    gpu: &Gpu,
    dense: &DenseMatmul,
    encoder: &mut laser_gpu::Encoder,
    layout: &LoraLayout,
    tensor: &LoraTensor,
    params: &wgpu::Buffer,
    x: &wgpu::Buffer,
    h: &wgpu::Buffer,
    out: &wgpu::Buffer,
    rows: u32,
) {
    let buffers = (params, x, h, out);
    lora_forward_dropout(gpu, dense, encoder, layout, tensor, buffers, rows, None);
}

/// Records [`lora_forward`] with `dropout`, when given, applied to `x`
/// first: `h = dropout(x) Aᵀ`. The buffers are `(params, x, h, out)`.
#[allow(clippy::too_many_arguments)]
pub fn lora_forward_dropout(
    gpu: &Gpu,
    dense: &DenseMatmul,
    encoder: &mut laser_gpu::Encoder,
    layout: &LoraLayout,
    tensor: &LoraTensor,
    (params, x, h, out): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    rows: u32,
    dropout: Option<LoraDropout<'_>>,
) {
    let r = layout.config.rank;
    let (k_in, n_out) = (tensor.in_features as u32, tensor.out_features as u32);
    let x = match dropout {
        Some(dropout) => {
            let n = rows * k_in;
            dropout
                .kernel
                .encode(gpu, encoder, x, dropout.scratch, n, dropout.mask, false);
            dropout.scratch
        }
        None => x,
    };

    // h = x Aᵀ: [M, r]
    let a = Operand::rows_at(params, tensor.a_offset as u32);
    let shape = DenseShape {
        m: rows,
        n: r,
        k: k_in,
        alpha: 1.0,
        accumulate: false,
    };
    dense.encode(gpu, encoder, Operand::rows(x), a, h, 0, shape);

    // out += scale * h Bᵀ: [M, out]
    let b = Operand::rows_at(params, tensor.b_offset as u32);
    let shape = DenseShape {
        m: rows,
        n: n_out,
        k: r,
        alpha: layout.config.scale(),
        accumulate: true,
    };
    dense.encode(gpu, encoder, Operand::rows(h), b, out, 0, shape);
}

/// Buffers of [`lora_backward`].
pub struct LoraBackwardArgs<'a> {
    /// f32 [M, in]: the adapter's input in the forward pass.
    pub x: &'a wgpu::Buffer,
    /// f32 [M, r]: `x Aᵀ` kept by [`lora_forward`].
    pub h: &'a wgpu::Buffer,
    /// f32 [M, out]: the gradient of the projection's output.
    pub dy: &'a wgpu::Buffer,
    /// f32 [M, r]: scratch for the gradient of `h`.
    pub dh: &'a wgpu::Buffer,
    /// f32 [M, in]: the input gradient, added to.
    pub dx: &'a wgpu::Buffer,
    /// The forward pass's dropout, if it had one.
    pub dropout: Option<LoraDropout<'a>>,
}

/// Records the backward pass of [`lora_forward_dropout`] over rows
/// `m < rows`: `dA += dhᵀ xd` and `dB += scale * dyᵀ h` into `grads` at
/// the tensor's offsets, and `dx += dropout(dh A)`, where
/// `dh = scale * dy B` and `xd = dropout(x)`, both with the forward pass's
/// mask (without dropout, `xd = x` and `dx += dh A`).
#[allow(clippy::too_many_arguments)]
pub fn lora_backward(
    gpu: &Gpu,
    dense: &DenseMatmul,
    encoder: &mut laser_gpu::Encoder,
    layout: &LoraLayout,
    tensor: &LoraTensor,
    params: &wgpu::Buffer,
    grads: &wgpu::Buffer,
    args: &LoraBackwardArgs<'_>,
    rows: u32,
) {
    let r = layout.config.rank;
    let scale = layout.config.scale();
    let (k_in, n_out) = (tensor.in_features as u32, tensor.out_features as u32);
    let (a_offset, b_offset) = (tensor.a_offset as u32, tensor.b_offset as u32);

    // dh = scale * dy B: [M, r], with B [out, r] read as [K = out, N = r].
    let b = Operand::k_major_at(params, b_offset);
    let shape = DenseShape {
        m: rows,
        n: r,
        k: n_out,
        alpha: scale,
        accumulate: false,
    };
    dense.encode(gpu, encoder, Operand::rows(args.dy), b, args.dh, 0, shape);

    // dB += scale * dyᵀ h: [out, r], summed over the M rows.
    let dy_t = Operand::k_major_at(args.dy, 0);
    let h = Operand::k_major_at(args.h, 0);
    let shape = DenseShape {
        m: n_out,
        n: r,
        k: rows,
        alpha: scale,
        accumulate: true,
    };
    dense.encode(gpu, encoder, dy_t, h, grads, b_offset, shape);

    // dA += dhᵀ xd: [r, in], summed over the M rows; xd is recomputed
    // with the forward pass's mask.
    let x = match args.dropout {
        Some(dropout) => {
            let n = rows * k_in;
            dropout.kernel.encode(
                gpu,
                encoder,
                args.x,
                dropout.scratch,
                n,
                dropout.mask,
                false,
            );
            dropout.scratch
        }
        None => args.x,
    };
    let dh_t = Operand::k_major_at(args.dh, 0);
    let shape = DenseShape {
        m: r,
        n: k_in,
        k: rows,
        alpha: 1.0,
        accumulate: true,
    };
    dense.encode(
        gpu,
        encoder,
        dh_t,
        Operand::k_major_at(x, 0),
        grads,
        a_offset,
        shape,
    );

    // dx += dh A: [M, in], with A [r, in] read as [K = r, N = in]. With
    // dropout, dh A goes to the scratch first and only its kept elements,
    // scaled, reach dx.
    let a = Operand::k_major_at(params, a_offset);
    let (target, accumulate) = match args.dropout {
        Some(dropout) => (dropout.scratch, false),
        None => (args.dx, true),
    };
    let shape = DenseShape {
        m: rows,
        n: k_in,
        k: r,
        alpha: 1.0,
        accumulate,
    };
    dense.encode(gpu, encoder, Operand::rows(args.dh), a, target, 0, shape);
    if let Some(dropout) = args.dropout {
        let n = rows * k_in;
        dropout.kernel.encode(
            gpu,
            encoder,
            dropout.scratch,
            args.dx,
            n,
            dropout.mask,
            true,
        );
    }
}
