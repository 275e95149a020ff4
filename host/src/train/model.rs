//! The training pass of a llama-family policy on the GPU. The forward pass
//! runs whole padded sequences and keeps every activation the backward
//! pass needs. The backward pass goes from per-token log-probability
//! gradients down to the LoRA parameters of every block. The base weights
//! are frozen and stay in their stored format; only the adapters get
//! gradients. In full fine-tuning (see [`super::full`]) the same passes
//! run on trainable f32 copies of every weight instead, and the backward
//! pass gives every weight its gradient.
//!
//! Dimension letters: B sequences, T padded sequence length, M = B * T
//! rows, C width, H query heads, G key/value heads, D head size, F
//! feed-forward width, V vocabulary, r LoRA rank, R = [`HEAD_ROWS`] rows
//! of logits at a time.
//!
//! Sequences are right-padded. A causal row only attends to earlier rows
//! of its own sequence, so padding never changes a real row, and padded
//! rows get a zero gradient.

use anyhow::{Result, ensure};
use laser_gpu::Gpu;
use laser_gpu::attention::AttentionBackward;
use laser_gpu::dense::{DenseMatmul, DenseShape, Operand};
use laser_gpu::elementwise::{
    Add, Dropout, GatherRows, GatherRowsBackward, RowGroups, SwiGluBackward,
};
use laser_gpu::norm::RmsNormBackward;
use laser_gpu::qmatrix::QMatrix;
use laser_gpu::rope::{RopeBackward, RopeLayout};
use laser_gpu::sampling::{TokenLogprobBackward, TokenLogprobChunk};
use laser_model::checkpoint::Checkpoint;
use laser_model::config::{self, ModelConfig};

use super::full::{FullConfig, FullLayout, FullWeights};
use super::lora::{
    DropoutPass, LoraBackwardArgs, LoraDropout, LoraLayout, Target, lora_backward,
    lora_forward_dropout,
};
use crate::engine::forward::Kernels;
use crate::engine::weights::{Block, Weights, dims};

/// Rows of logits computed at once: [R, V] f32 is 12 MiB for a
/// 49,152-token vocabulary.
pub const HEAD_ROWS: u32 = 64;

/// A batch of right-padded sequences and the tokens whose
/// log-probabilities count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceBatch {
    /// B: sequences.
    pub batch: u32,
    /// T: tokens per padded sequence.
    pub seq_len: u32,
    /// u32 [B * T]: token ids, padding included.
    pub tokens: Vec<u32>,
    /// u32 [B * T]: the next token each row predicts (0 where unused).
    pub targets: Vec<u32>,
    /// [B * T]: whether row `b * T + t` predicts a counted token.
    pub mask: Vec<bool>,
}

impl SequenceBatch {
    /// Builds a batch from `(tokens, first_counted)` per sequence: the
    /// log-probabilities of `tokens[first_counted..]` count, each predicted
    /// by the row before it. `first_counted` must be at least 1.
    ///
    /// # Errors
    ///
    /// Fails on an empty batch or a sequence with nothing to count.
    pub fn new(sequences: &[(&[u32], usize)]) -> Result<Self> {
        ensure!(
            !sequences.is_empty(),
            "a training batch needs at least one sequence"
        );
        let seq_len = sequences
            .iter()
            .map(|(tokens, _)| tokens.len())
            .max()
            .unwrap_or(0);
        let rows = sequences.len() * seq_len;
        let mut batch = Self {
            batch: sequences.len() as u32,
            seq_len: seq_len as u32,
            tokens: vec![0; rows],
            targets: vec![0; rows],
            mask: vec![false; rows],
        };
        for (b, &(tokens, first)) in sequences.iter().enumerate() {
            ensure!(
                first >= 1 && first < tokens.len(),
                "sequence {b} of {} tokens counts from token {first}; it needs a prompt token and a counted token",
                tokens.len()
            );
            let base = b * seq_len;
            batch.tokens[base..base + tokens.len()].copy_from_slice(tokens);
            for (t, &token) in tokens.iter().enumerate().skip(first) {
                batch.targets[base + t - 1] = token;
                batch.mask[base + t - 1] = true;
            }
        }
        Ok(batch)
    }

    /// M: rows, padding included.
    pub fn rows(&self) -> u32 {
        self.batch * self.seq_len
    }

    /// Returns the sum of `per_row` over sequence `b`'s counted rows.
    pub fn sequence_sum(&self, per_row: &[f32], b: usize) -> f64 {
        let t = self.seq_len as usize;
        (b * t..(b + 1) * t)
            .filter(|&r| self.mask[r])
            .map(|r| f64::from(per_row[r]))
            .sum()
    }

    /// Returns the number of counted rows of sequence `b`.
    pub fn counted(&self, b: usize) -> usize {
        let t = self.seq_len as usize;
        self.mask[b * t..(b + 1) * t].iter().filter(|&&m| m).count()
    }
}

/// The parameters a pass reads, or the gradients its backward pass adds
/// to.
#[derive(Clone, Copy)]
enum Tensors<'a> {
    /// The frozen base alone.
    Base,
    /// The frozen base with the LoRA adapters of this flat f32 buffer.
    Lora(&'a wgpu::Buffer),
    /// Every tensor of the full layout, one f32 buffer each.
    Full(&'a [wgpu::Buffer]),
}

/// The training kernels that inference does not compile.
struct TrainKernels {
    dense: DenseMatmul,
    rms_norm_backward: RmsNormBackward,
    rope_backward: RopeBackward,
    attention_backward: AttentionBackward,
    swiglu_backward: SwiGluBackward,
    add: Add,
    dropout: Dropout,
    gather_rows: GatherRows,
    gather_rows_backward: GatherRowsBackward,
    token_logprob_chunk: TokenLogprobChunk,
    token_logprob_backward: TokenLogprobBackward,
}

impl TrainKernels {
    fn new(gpu: &Gpu) -> Result<Self> {
        Ok(Self {
            dense: DenseMatmul::new(gpu)?,
            rms_norm_backward: RmsNormBackward::new(gpu)?,
            rope_backward: RopeBackward::new(gpu)?,
            attention_backward: AttentionBackward::new(gpu)?,
            swiglu_backward: SwiGluBackward::new(gpu)?,
            add: Add::new(gpu)?,
            dropout: Dropout::new(gpu)?,
            gather_rows: GatherRows::new(gpu)?,
            gather_rows_backward: GatherRowsBackward::new(gpu)?,
            token_logprob_chunk: TokenLogprobChunk::new(gpu)?,
            token_logprob_backward: TokenLogprobBackward::new(gpu)?,
        })
    }
}

/// One block's saved activations, all for M rows.
struct BlockActivations {
    /// f32 [M, C]: the block's input residual stream.
    x_in: wgpu::Buffer,
    /// f32 [M, C]: rms_norm(x_in) * attn_norm.
    xn1: wgpu::Buffer,
    /// f32 [M, H*D]: queries after RoPE.
    q: wgpu::Buffer,
    /// f32 [M, G*D]: keys after RoPE.
    k: wgpu::Buffer,
    /// f32 [M, G*D]
    v: wgpu::Buffer,
    /// f32 [M, H*D]: attention output.
    attn: wgpu::Buffer,
    /// f32 [M, C]: x_in plus the attention sublayer.
    x_mid: wgpu::Buffer,
    /// f32 [M, C]: rms_norm(x_mid) * ffn_norm.
    xn2: wgpu::Buffer,
    /// f32 [M, F]
    gate: wgpu::Buffer,
    /// f32 [M, F]
    up: wgpu::Buffer,
    /// f32 [M, F]: silu(gate) * up.
    hidden: wgpu::Buffer,
    /// f32 [M, r] per adapter of the block: x Aᵀ.
    lora_h: Vec<(Target, wgpu::Buffer)>,
}

/// Every buffer of the training pass, for up to `max_rows` rows.
struct Buffers {
    max_rows: u32,
    /// u32 [M]
    tokens: wgpu::Buffer,
    /// u32 [M]: position of each row within its sequence.
    positions: wgpu::Buffer,
    /// u32 [M, 2]: (sequence, position), for the attention kernel.
    rows: wgpu::Buffer,
    /// u32 [M]
    targets: wgpu::Buffer,
    blocks: Vec<BlockActivations>,
    /// f32 [M, C]: the last block's output.
    x_out: wgpu::Buffer,
    /// f32 [M, C]: rms_norm(x_out) * output_norm.
    xf: wgpu::Buffer,
    /// f32 [M]: log-probability of each row's target.
    logprobs: wgpu::Buffer,
    /// f32 [M]: gradient of the loss in each row's log-probability.
    d_logprob: wgpu::Buffer,
    /// f32 [M, C]: gradient of the residual stream.
    dx: wgpu::Buffer,
    /// f32 [M, C]: gradient of a normalized sublayer input (and of xf).
    dxn: wgpu::Buffer,
    /// f32 [M, C]: the RMSNorm input gradient before it joins dx.
    dnorm: wgpu::Buffer,
    /// f32 [C]: RMSNorm weight gradient, discarded (norms are frozen).
    d_norm_weight: wgpu::Buffer,
    /// f32 [M, H*D]
    dattn: wgpu::Buffer,
    /// f32 [M, H*D]
    dq: wgpu::Buffer,
    /// f32 [M, G*D]
    dk: wgpu::Buffer,
    /// f32 [M, G*D]
    dv: wgpu::Buffer,
    /// f32 [M, F]
    dhidden: wgpu::Buffer,
    /// f32 [M, F]
    dgate: wgpu::Buffer,
    /// f32 [M, F]
    dup: wgpu::Buffer,
    /// f32 [M, r]
    dh: wgpu::Buffer,
    /// f32 [M, max(C, H*D, F)]: an adapter's dropped-out input, or its
    /// input gradient before dropout; only when the layout has dropout.
    lora_x: Option<wgpu::Buffer>,
    /// u32 [M], [M + 1], [M]: the batch's rows grouped by token, as
    /// [`RowGroups`] has them, for the embedding gradient; only in full
    /// fine-tuning.
    token_groups: Option<[wgpu::Buffer; 3]>,
    /// f32 [R, C]: rows of xf for one logits chunk.
    head_x: wgpu::Buffer,
    /// f32 [R, V]
    head_logits: wgpu::Buffer,
    /// f32 [R, 3]: log-softmax state (max, sum of exp, target logit).
    head_state: wgpu::Buffer,
    /// u32 [R]
    head_targets: wgpu::Buffer,
    /// f32 [R]
    head_logprobs: wgpu::Buffer,
    /// f32 [R]
    head_d_logprob: wgpu::Buffer,
    /// f32 [R, V]
    head_d_logits: wgpu::Buffer,
    /// f32 [R, C]
    head_dx: wgpu::Buffer,
}

impl Buffers {
    fn new(
        gpu: &Gpu,
        config: &ModelConfig,
        layout: &LoraLayout,
        full: bool,
        max_rows: u32,
    ) -> Self {
        let m = u64::from(max_rows);
        let (c, h, g, d, f) = dims(config);
        let r = u64::from(layout.config.rank);
        let v = config.vocab_size as u64;
        let head = u64::from(HEAD_ROWS);
        let floats = |label: &str, width: u32| gpu.buffer_zeroed(label, m * u64::from(width) * 4);
        let blocks = (0..config.n_layer)
            .map(|i| BlockActivations {
                x_in: floats(&format!("train.blk.{i}.x_in"), c),
                xn1: floats(&format!("train.blk.{i}.xn1"), c),
                q: floats(&format!("train.blk.{i}.q"), h * d),
                k: floats(&format!("train.blk.{i}.k"), g * d),
                v: floats(&format!("train.blk.{i}.v"), g * d),
                attn: floats(&format!("train.blk.{i}.attn"), h * d),
                x_mid: floats(&format!("train.blk.{i}.x_mid"), c),
                xn2: floats(&format!("train.blk.{i}.xn2"), c),
                gate: floats(&format!("train.blk.{i}.gate"), f),
                up: floats(&format!("train.blk.{i}.up"), f),
                hidden: floats(&format!("train.blk.{i}.hidden"), f),
                lora_h: layout
                    .layer(i)
                    .map(|t| {
                        let label = format!("train.blk.{i}.{}.lora_h", t.target.hf_name());
                        (t.target, gpu.buffer_zeroed(&label, m * r * 4))
                    })
                    .collect(),
            })
            .collect();
        Self {
            max_rows,
            tokens: gpu.buffer_zeroed("train.tokens", m * 4),
            positions: gpu.buffer_zeroed("train.positions", m * 4),
            rows: gpu.buffer_zeroed("train.rows", m * 8),
            targets: gpu.buffer_zeroed("train.targets", m * 4),
            blocks,
            x_out: floats("train.x_out", c),
            xf: floats("train.xf", c),
            logprobs: gpu.buffer_zeroed("train.logprobs", m * 4),
            d_logprob: gpu.buffer_zeroed("train.d_logprob", m * 4),
            dx: floats("train.dx", c),
            dxn: floats("train.dxn", c),
            dnorm: floats("train.dnorm", c),
            d_norm_weight: gpu.buffer_zeroed("train.d_norm_weight", u64::from(c) * 4),
            dattn: floats("train.dattn", h * d),
            dq: floats("train.dq", h * d),
            dk: floats("train.dk", g * d),
            dv: floats("train.dv", g * d),
            dhidden: floats("train.dhidden", f),
            dgate: floats("train.dgate", f),
            dup: floats("train.dup", f),
            dh: gpu.buffer_zeroed("train.dh", m * r * 4),
            lora_x: (layout.config.dropout > 0.0)
                .then(|| floats("train.lora_x", c.max(h * d).max(f))),
            token_groups: full.then(|| {
                [
                    gpu.buffer_zeroed("train.token_ids", m * 4),
                    gpu.buffer_zeroed("train.token_starts", (m + 1) * 4),
                    gpu.buffer_zeroed("train.token_rows", m * 4),
                ]
            }),
            head_x: gpu.buffer_zeroed("train.head_x", head * u64::from(c) * 4),
            head_logits: gpu.buffer_zeroed("train.head_logits", head * v * 4),
            head_state: gpu.buffer_zeroed("train.head_state", head * 3 * 4),
            head_targets: gpu.buffer_zeroed("train.head_targets", head * 4),
            head_logprobs: gpu.buffer_zeroed("train.head_logprobs", head * 4),
            head_d_logprob: gpu.buffer_zeroed("train.head_d_logprob", head * 4),
            head_d_logits: gpu.buffer_zeroed("train.head_d_logits", head * v * 4),
            head_dx: gpu.buffer_zeroed("train.head_dx", head * u64::from(c) * 4),
        }
    }

    /// The GPU bytes of every buffer.
    fn gpu_bytes(&self) -> u64 {
        let mut total = 0;
        for block in &self.blocks {
            let saved = [
                &block.x_in,
                &block.xn1,
                &block.q,
                &block.k,
                &block.v,
                &block.attn,
                &block.x_mid,
                &block.xn2,
                &block.gate,
                &block.up,
                &block.hidden,
            ];
            total += saved.iter().map(|b| b.size()).sum::<u64>();
            total += block.lora_h.iter().map(|(_, b)| b.size()).sum::<u64>();
        }
        total += self.lora_x.as_ref().map_or(0, wgpu::Buffer::size);
        if let Some(groups) = &self.token_groups {
            total += groups.iter().map(wgpu::Buffer::size).sum::<u64>();
        }
        let others = [
            &self.tokens,
            &self.positions,
            &self.rows,
            &self.targets,
            &self.x_out,
            &self.xf,
            &self.logprobs,
            &self.d_logprob,
            &self.dx,
            &self.dxn,
            &self.dnorm,
            &self.d_norm_weight,
            &self.dattn,
            &self.dq,
            &self.dk,
            &self.dv,
            &self.dhidden,
            &self.dgate,
            &self.dup,
            &self.dh,
            &self.head_x,
            &self.head_logits,
            &self.head_state,
            &self.head_targets,
            &self.head_logprobs,
            &self.head_d_logprob,
            &self.head_d_logits,
            &self.head_dx,
        ];
        total + others.iter().map(|b| b.size()).sum::<u64>()
    }
}

/// The frozen base model with everything the training pass needs.
pub struct TrainModel {
    pub gpu: Gpu,
    pub config: ModelConfig,
    pub layout: LoraLayout,
    /// The trainable weights of full fine-tuning; `None` in LoRA training.
    pub full: Option<FullWeights>,
    weights: Weights,
    kernels: Kernels,
    train_kernels: TrainKernels,
    buffers: Option<Buffers>,
    /// The batch whose activations the buffers hold.
    last_batch: Option<SequenceBatch>,
    /// Whether those activations come from a full pass
    /// ([`TrainModel::forward_full`]).
    last_full: bool,
    /// The dropout of the last forward pass, which its backward pass
    /// repeats; `None` without dropout.
    dropout: Option<DropoutPass>,
}

impl TrainModel {
    /// Uploads the base weights of `checkpoint` and compiles the kernels.
    ///
    /// # Errors
    ///
    /// Fails when the checkpoint is unsupported, the weights do not fit, or
    /// a kernel does not compile.
    pub fn new(gpu: Gpu, checkpoint: &Checkpoint, layout: LoraLayout) -> Result<Self> {
        let config = checkpoint.config().clone();
        let weights = Weights::upload(&gpu, checkpoint)?;
        let kernels = Kernels::new(&gpu)?;
        let train_kernels = TrainKernels::new(&gpu)?;
        Ok(Self {
            gpu,
            config,
            layout,
            full: None,
            weights,
            kernels,
            train_kernels,
            buffers: None,
            last_batch: None,
            last_full: false,
            dropout: None,
        })
    }

    /// Uploads `checkpoint` for full fine-tuning: the frozen base, which
    /// gives the reference log-probabilities, and a trainable f32 copy of
    /// every tensor.
    ///
    /// # Errors
    ///
    /// Fails when a weight is quantized, the model has attention biases, a
    /// tensor does not fit in one storage binding, or as [`TrainModel::new`].
    pub fn new_full(gpu: Gpu, checkpoint: &Checkpoint, config: FullConfig) -> Result<Self> {
        let layout = FullLayout::new(config, checkpoint)?;
        let params = layout.upload(&gpu, checkpoint)?;
        let mut model = Self::new(gpu, checkpoint, LoraLayout::empty())?;
        model.full = Some(FullWeights { layout, params });
        Ok(model)
    }

    /// The GPU bytes held by the base weights, the trainable weights of
    /// full fine-tuning and the training buffers.
    pub fn gpu_bytes(&self) -> u64 {
        let full = self
            .full
            .as_ref()
            .map_or(0, |f| f.params.iter().map(wgpu::Buffer::size).sum());
        self.weights.gpu_bytes() + full + self.buffers.as_ref().map_or(0, Buffers::gpu_bytes)
    }

    /// Makes sure the buffers hold `rows` rows.
    fn reserve(&mut self, rows: u32) -> Result<()> {
        let (c, h, _, d, f) = dims(&self.config);
        let widest = u64::from(c.max(h * d).max(f)) * 4;
        ensure!(
            u64::from(rows) * widest <= self.gpu.max_binding_bytes(),
            "a training batch of {rows} rows needs {} MiB per activation, more than this \
             device's largest binding ({} MiB); use fewer or shorter sequences",
            (u64::from(rows) * widest) >> 20,
            self.gpu.max_binding_bytes() >> 20
        );
        if self.buffers.as_ref().is_none_or(|b| b.max_rows < rows) {
            self.buffers = None;
            let full = self.full.is_some();
            let buffers = Buffers::new(&self.gpu, &self.config, &self.layout, full, rows);
            self.buffers = Some(buffers);
        }
        Ok(())
    }

    fn encoder(&self, label: &str) -> laser_gpu::Encoder {
        self.gpu.encoder(label)
    }

    /// Runs `batch` through the model with the adapters in `params` (f32
    /// laid out by `self.layout`) and returns the log-probability of each
    /// row's target, f32 [M] (0 on rows that do not count). Keeps the
    /// activations for [`TrainModel::backward`]. Runs without dropout, as
    /// reference log-probabilities and evaluation need.
    ///
    /// # Errors
    ///
    /// Fails when a token is outside the vocabulary, the batch does not fit
    /// on the device, or the GPU fails.
    pub fn forward(&mut self, params: &wgpu::Buffer, batch: &SequenceBatch) -> Result<Vec<f32>> {
        self.forward_pass(Tensors::Lora(params), batch, None)
    }

    /// Runs [`TrainModel::forward`] as a training pass: with the layout's
    /// LoRA dropout, masks drawn for `pass`, which the next
    /// [`TrainModel::backward`] reuses. Without dropout in the layout this
    /// is [`TrainModel::forward`].
    ///
    /// # Errors
    ///
    /// As [`TrainModel::forward`].
    pub fn forward_train(
        &mut self,
        params: &wgpu::Buffer,
        batch: &SequenceBatch,
        pass: DropoutPass,
    ) -> Result<Vec<f32>> {
        self.forward_pass(Tensors::Lora(params), batch, Some(pass))
    }

    /// Runs [`TrainModel::forward`] on the frozen base weights without
    /// adapters: the reference model of full fine-tuning.
    ///
    /// # Errors
    ///
    /// As [`TrainModel::forward`].
    pub fn forward_base(&mut self, batch: &SequenceBatch) -> Result<Vec<f32>> {
        self.forward_pass(Tensors::Base, batch, None)
    }

    /// Runs [`TrainModel::forward`] on the trainable weights of full
    /// fine-tuning, keeping the activations for
    /// [`TrainModel::backward_full`].
    ///
    /// # Errors
    ///
    /// Fails when the model was not made by [`TrainModel::new_full`], or as
    /// [`TrainModel::forward`].
    pub fn forward_full(&mut self, batch: &SequenceBatch) -> Result<Vec<f32>> {
        let weights = self.full_params()?;
        self.forward_pass(Tensors::Full(&weights), batch, None)
    }

    /// Returns handles to the trainable weights of full fine-tuning.
    fn full_params(&self) -> Result<Vec<wgpu::Buffer>> {
        match &self.full {
            Some(full) => Ok(full.params.clone()),
            None => anyhow::bail!("this model was not loaded for full fine-tuning"),
        }
    }

    /// Returns the full fine-tuning layout.
    ///
    /// # Panics
    ///
    /// Panics when the model has none, which a pass on [`Tensors::Full`]
    /// rules out.
    fn full_layout(&self) -> &FullLayout {
        &self
            .full
            .as_ref()
            .expect("a full pass runs on a full model")
            .layout
    }

    fn forward_pass(
        &mut self,
        params: Tensors<'_>,
        batch: &SequenceBatch,
        pass: Option<DropoutPass>,
    ) -> Result<Vec<f32>> {
        let m = batch.rows();
        let vocab = self.config.vocab_size;
        ensure!(
            batch.tokens.iter().all(|&t| (t as usize) < vocab),
            "a training token id is outside the vocabulary of {vocab}"
        );
        self.reserve(m)?;
        self.last_batch = None;
        self.dropout = pass.filter(|_| self.layout.config.dropout > 0.0);
        let buffers = self.buffers.as_ref().expect("reserved above");
        let gpu = &self.gpu;
        let positions: Vec<u32> = (0..m).map(|r| r % batch.seq_len).collect();
        let rows: Vec<u32> = (0..m)
            .flat_map(|r| [r / batch.seq_len, r % batch.seq_len])
            .collect();
        gpu.queue
            .write_buffer(&buffers.tokens, 0, bytemuck::cast_slice(&batch.tokens));
        gpu.queue
            .write_buffer(&buffers.positions, 0, bytemuck::cast_slice(&positions));
        gpu.queue
            .write_buffer(&buffers.rows, 0, bytemuck::cast_slice(&rows));
        gpu.queue
            .write_buffer(&buffers.targets, 0, bytemuck::cast_slice(&batch.targets));

        let mut encoder = self.encoder("train forward");
        self.encode_forward(&mut encoder, params, batch);
        self.gpu.submit(encoder);
        let logprobs: Vec<f32> = self.gpu.read(&buffers.logprobs, u64::from(m) * 4)?;
        self.last_batch = Some(batch.clone());
        self.last_full = matches!(params, Tensors::Full(_));
        Ok(logprobs
            .iter()
            .zip(&batch.mask)
            .map(|(&lp, &counted)| if counted { lp } else { 0.0 })
            .collect())
    }

    /// Records the forward pass: embedding, every block, final norm and
    /// the chunked LM head with log-probabilities.
    fn encode_forward(
        &self,
        encoder: &mut laser_gpu::Encoder,
        params: Tensors<'_>,
        batch: &SequenceBatch,
    ) {
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        let gpu = &self.gpu;
        let k = &self.kernels;
        let m = batch.rows();
        let (c, _, _, _, _) = dims(&self.config);
        let eps = self.config.rms_eps;

        // x = token_embd[tokens]: [M, C]
        if let Tensors::Full(weights) = params {
            let table = &weights[self.full_layout().position("token_embd.weight")];
            let x = &buffers.blocks[0].x_in;
            let gather = &self.train_kernels.gather_rows;
            gather.encode(gpu, encoder, table, &buffers.tokens, x, m, c);
        } else {
            k.embedding.encode(
                gpu,
                encoder,
                &self.weights.token_embd,
                &buffers.tokens,
                &buffers.blocks[0].x_in,
                m,
            );
        }

        for (i, block) in self.weights.blocks.iter().enumerate() {
            let output = match buffers.blocks.get(i + 1) {
                Some(next) => &next.x_in,
                None => &buffers.x_out,
            };
            self.encode_block_forward(encoder, params, batch, i, block, output);
        }

        // xf = rms_norm(x_out) * output_norm
        k.rms_norm.encode(
            gpu,
            encoder,
            &buffers.x_out,
            self.norm_weight(params, &self.weights.output_norm, "output_norm.weight"),
            &buffers.xf,
            m,
            c,
            eps,
        );

        // logprobs[r] = log_softmax(xf[r] W_headᵀ)[targets[r]] for the
        // counted rows, R at a time.
        for chunk in head_chunks(batch) {
            self.encode_head_logprobs(encoder, params, &chunk);
            chunk.copy_out(encoder, &buffers.head_logprobs, &buffers.logprobs, 1);
        }
    }

    /// Records block `i`'s forward pass from its saved input to `output`.
    fn encode_block_forward(
        &self,
        encoder: &mut laser_gpu::Encoder,
        params: Tensors<'_>,
        batch: &SequenceBatch,
        i: usize,
        block: &Block,
        output: &wgpu::Buffer,
    ) {
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        let act = &buffers.blocks[i];
        let gpu = &self.gpu;
        let k = &self.kernels;
        let m = batch.rows();
        let (c, h, g, d, f) = dims(&self.config);
        let eps = self.config.rms_eps;
        let theta = self.config.rope_theta;
        let rope_layout = rope_layout(&self.config);
        let residual_bytes = u64::from(m) * u64::from(c) * 4;
        let matrix = |encoder: &mut laser_gpu::Encoder,
                      target: Target,
                      x: &wgpu::Buffer,
                      out: &wgpu::Buffer,
                      accumulate: bool| {
            self.encode_matrix(encoder, params, (i, block), target, (x, out), m, accumulate);
        };
        let lora = |encoder: &mut laser_gpu::Encoder,
                    target: Target,
                    x: &wgpu::Buffer,
                    out: &wgpu::Buffer| {
            let Tensors::Lora(params) = params else {
                return;
            };
            if let Some(tensor) = self.layout.find(i, target) {
                let h = lora_h(act, target);
                lora_forward_dropout(
                    gpu,
                    &self.train_kernels.dense,
                    encoder,
                    &self.layout,
                    tensor,
                    (params, x, h, out),
                    m,
                    self.lora_dropout(i, target),
                );
            }
        };

        // xn1 = rms_norm(x_in) * attn_norm
        let attn_norm = self.norm_weight(params, &block.attn_norm, &norm_name(i, "attn_norm"));
        k.rms_norm
            .encode(gpu, encoder, &act.x_in, attn_norm, &act.xn1, m, c, eps);

        // q, k, v = xn1 Wᵀ (+ bias) + LoRA
        matrix(encoder, Target::Q, &act.xn1, &act.q, false);
        lora(encoder, Target::Q, &act.xn1, &act.q);
        matrix(encoder, Target::K, &act.xn1, &act.k, false);
        lora(encoder, Target::K, &act.xn1, &act.k);
        matrix(encoder, Target::V, &act.xn1, &act.v, false);
        lora(encoder, Target::V, &act.xn1, &act.v);

        // Rotate q and k by each row's position within its sequence.
        k.rope.encode(
            gpu,
            encoder,
            &act.q,
            &buffers.positions,
            m,
            h,
            d,
            theta,
            rope_layout,
        );
        k.rope.encode(
            gpu,
            encoder,
            &act.k,
            &buffers.positions,
            m,
            g,
            d,
            theta,
            rope_layout,
        );

        // attn = causal attention, k and v [B * T, G, D] standing in for
        // the caches of B slots of T positions.
        let scale = 1.0 / (d as f32).sqrt();
        k.attention.encode(
            gpu,
            encoder,
            &act.q,
            &act.k,
            &act.v,
            &buffers.rows,
            &act.attn,
            m,
            h,
            g,
            d,
            batch.seq_len,
            scale,
        );

        // x_mid = x_in + attn Woᵀ + LoRA
        encoder
            .raw()
            .copy_buffer_to_buffer(&act.x_in, 0, &act.x_mid, 0, residual_bytes);
        matrix(encoder, Target::O, &act.attn, &act.x_mid, true);
        lora(encoder, Target::O, &act.attn, &act.x_mid);

        // xn2 = rms_norm(x_mid) * ffn_norm
        let ffn_norm = self.norm_weight(params, &block.ffn_norm, &norm_name(i, "ffn_norm"));
        k.rms_norm
            .encode(gpu, encoder, &act.x_mid, ffn_norm, &act.xn2, m, c, eps);

        // hidden = silu(xn2 Wgateᵀ + LoRA) * (xn2 Wupᵀ + LoRA): [M, F]
        matrix(encoder, Target::Gate, &act.xn2, &act.gate, false);
        lora(encoder, Target::Gate, &act.xn2, &act.gate);
        matrix(encoder, Target::Up, &act.xn2, &act.up, false);
        lora(encoder, Target::Up, &act.xn2, &act.up);
        k.swiglu
            .encode(gpu, encoder, &act.gate, &act.up, &act.hidden, m * f);

        // output = x_mid + hidden Wdownᵀ + LoRA
        encoder
            .raw()
            .copy_buffer_to_buffer(&act.x_mid, 0, output, 0, residual_bytes);
        matrix(encoder, Target::Down, &act.hidden, output, true);
        lora(encoder, Target::Down, &act.hidden, output);
    }

    /// Records the logits and log-probabilities of the rows of xf that
    /// `chunk` gathers, into the head buffers.
    fn encode_head_logprobs(
        &self,
        encoder: &mut laser_gpu::Encoder,
        params: Tensors<'_>,
        chunk: &HeadChunk,
    ) {
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        let gpu = &self.gpu;
        let c = self.config.n_embd as u64;
        let v = self.config.vocab_size as u32;
        let rows = chunk.rows;
        chunk.copy_in(encoder, &buffers.xf, &buffers.head_x, c);
        chunk.copy_in(encoder, &buffers.targets, &buffers.head_targets, 1);
        if let Tensors::Full(weights) = params {
            // logits = head_x Wᵀ: [R, V], with W [V, C].
            let lm_head = &weights[self.full_layout().lm_head()];
            let shape = DenseShape {
                m: rows,
                n: v,
                k: c as u32,
                alpha: 1.0,
                accumulate: false,
            };
            let (x, w) = (Operand::rows(&buffers.head_x), Operand::rows(lm_head));
            let dense = &self.train_kernels.dense;
            dense.encode(gpu, encoder, x, w, &buffers.head_logits, 0, shape);
        } else {
            let lm_head = self.weights.lm_head();
            self.kernels.matmul.encode(
                gpu,
                encoder,
                &buffers.head_x,
                lm_head,
                None,
                &buffers.head_logits,
                rows,
                false,
            );
        }
        self.train_kernels.token_logprob_chunk.encode(
            gpu,
            encoder,
            &buffers.head_logits,
            &buffers.head_targets,
            &buffers.head_state,
            &buffers.head_logprobs,
            rows,
            v,
            0,
            true,
        );
    }

    /// Adds to `grads` (f32, laid out like `params`) the gradient of
    /// `sum_r d_logprob[r] * logprob[r]` in the adapter parameters, for the
    /// batch of the last [`TrainModel::forward`] call with the same
    /// `params`. `d_logprob` is f32 [M]; rows that do not count are ignored.
    ///
    /// # Errors
    ///
    /// Fails when `batch` is not the batch of the last forward pass or the
    /// GPU fails.
    pub fn backward(
        &mut self,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        batch: &SequenceBatch,
        d_logprob: &[f32],
    ) -> Result<()> {
        let tensors = (Tensors::Lora(params), Tensors::Lora(grads));
        self.backward_pass(tensors, batch, d_logprob)
    }

    /// Adds to `grads` the gradient of `sum_r d_logprob[r] * logprob[r]`
    /// in every tensor of the full layout, for the batch of the last
    /// [`TrainModel::forward_full`] call. `grads` has one f32 buffer per
    /// tensor of the layout, in its order; the buffers of frozen tensors
    /// are left as they are.
    ///
    /// # Errors
    ///
    /// Fails when the model was not made by [`TrainModel::new_full`],
    /// `grads` does not match its layout, or as [`TrainModel::backward`].
    pub fn backward_full(
        &mut self,
        grads: &[wgpu::Buffer],
        batch: &SequenceBatch,
        d_logprob: &[f32],
    ) -> Result<()> {
        let weights = self.full_params()?;
        ensure!(
            grads.len() == weights.len(),
            "{} gradient buffers for {} tensors",
            grads.len(),
            weights.len()
        );
        let tensors = (Tensors::Full(&weights), Tensors::Full(grads));
        self.backward_pass(tensors, batch, d_logprob)
    }

    fn backward_pass(
        &mut self,
        (params, grads): (Tensors<'_>, Tensors<'_>),
        batch: &SequenceBatch,
        d_logprob: &[f32],
    ) -> Result<()> {
        ensure!(
            self.last_batch.as_ref() == Some(batch),
            "the backward pass needs the activations of the same batch's forward pass"
        );
        ensure!(
            self.last_full == matches!(params, Tensors::Full(_)),
            "a full backward pass needs a full forward pass, and a LoRA one a LoRA forward pass"
        );
        ensure!(
            d_logprob.len() == batch.mask.len(),
            "d_logprob has {} rows, expected {}",
            d_logprob.len(),
            batch.mask.len()
        );
        let masked: Vec<f32> = d_logprob
            .iter()
            .zip(&batch.mask)
            .map(|(&d, &counted)| if counted { d } else { 0.0 })
            .collect();
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        self.gpu
            .queue
            .write_buffer(&buffers.d_logprob, 0, bytemuck::cast_slice(&masked));

        let mut encoder = self.encoder("train backward");
        self.encode_backward(&mut encoder, params, grads, batch);
        self.gpu.submit(encoder);
        self.gpu.wait()
    }

    /// Records the backward pass: LM head chunks, final norm, then every
    /// block from the last.
    fn encode_backward(
        &self,
        encoder: &mut laser_gpu::Encoder,
        params: Tensors<'_>,
        grads: Tensors<'_>,
        batch: &SequenceBatch,
    ) {
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        let gpu = &self.gpu;
        let tk = &self.train_kernels;
        let m = batch.rows();
        let (c, _, _, _, _) = dims(&self.config);
        let c64 = u64::from(c);
        let eps = self.config.rms_eps;
        let v = self.config.vocab_size as u32;

        // dxf = d_logits W_head for the counted rows, R at a time; the
        // other rows keep a zero gradient.
        encoder
            .raw()
            .clear_buffer(&buffers.dxn, 0, Some(u64::from(m) * c64 * 4));
        for chunk in head_chunks(batch) {
            let rows = chunk.rows;
            self.encode_head_logprobs(encoder, params, &chunk);
            chunk.copy_in(encoder, &buffers.d_logprob, &buffers.head_d_logprob, 1);
            tk.token_logprob_backward.encode(
                gpu,
                encoder,
                &buffers.head_logits,
                &buffers.head_targets,
                &buffers.head_state,
                &buffers.head_d_logprob,
                &buffers.head_d_logits,
                rows,
                v,
                0,
            );
            if let (Tensors::Full(weights), Tensors::Full(grads)) = (params, grads) {
                self.encode_full_head_backward(encoder, (weights, grads), rows);
            } else {
                let lm_head = self.weights.lm_head();
                self.kernels.matmul.transposed_encode(
                    gpu,
                    encoder,
                    &buffers.head_d_logits,
                    lm_head,
                    &buffers.head_dx,
                    rows,
                    false,
                );
            }
            chunk.copy_out(encoder, &buffers.head_dx, &buffers.dxn, c64);
        }

        // dx = rms_norm_backward(x_out, dxf)
        let name = "output_norm.weight";
        tk.rms_norm_backward.encode(
            gpu,
            encoder,
            &buffers.x_out,
            self.norm_weight(params, &self.weights.output_norm, name),
            &buffers.dxn,
            &buffers.dx,
            self.norm_grad(grads, &buffers.d_norm_weight, name),
            m,
            c,
            eps,
        );

        for (i, block) in self.weights.blocks.iter().enumerate().rev() {
            self.encode_block_backward(encoder, params, grads, batch, i, block);
        }

        // d_token_embd[token] += dx of every row that reads it.
        if let Tensors::Full(grads) = grads {
            let groups = RowGroups::new(&batch.tokens);
            let [ids, starts, rows] = buffers
                .token_groups
                .as_ref()
                .expect("allocated in full fine-tuning");
            for (buffer, values) in [
                (ids, &groups.ids),
                (starts, &groups.starts),
                (rows, &groups.rows),
            ] {
                gpu.queue
                    .write_buffer(buffer, 0, bytemuck::cast_slice(values));
            }
            let table = &grads[self.full_layout().position("token_embd.weight")];
            let count = groups.ids.len() as u32;
            let indices = (ids, starts, rows);
            tk.gather_rows_backward
                .encode(gpu, encoder, &buffers.dx, indices, table, count, c);
        }
    }

    /// Records, for one chunk of `rows` logits rows in full fine-tuning,
    /// `head_dx = d_logits W` and `dW += d_logitsᵀ head_x` for the LM head
    /// W [V, C] of `(weights, grads)`.
    fn encode_full_head_backward(
        &self,
        encoder: &mut laser_gpu::Encoder,
        (weights, grads): (&[wgpu::Buffer], &[wgpu::Buffer]),
        rows: u32,
    ) {
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        let dense = &self.train_kernels.dense;
        let gpu = &self.gpu;
        let head = self.full_layout().lm_head();
        let (c, v) = (self.config.n_embd as u32, self.config.vocab_size as u32);

        // head_dx = d_logits W: [R, C], with W read as [K = V, N = C].
        let shape = DenseShape {
            m: rows,
            n: c,
            k: v,
            alpha: 1.0,
            accumulate: false,
        };
        let d_logits = Operand::rows(&buffers.head_d_logits);
        let w = Operand::k_major_at(&weights[head], 0);
        dense.encode(gpu, encoder, d_logits, w, &buffers.head_dx, 0, shape);

        // dW += d_logitsᵀ head_x: [V, C], summed over the R rows.
        let shape = DenseShape {
            m: v,
            n: c,
            k: rows,
            alpha: 1.0,
            accumulate: true,
        };
        let d_logits_t = Operand::k_major_at(&buffers.head_d_logits, 0);
        let x = Operand::k_major_at(&buffers.head_x, 0);
        dense.encode(gpu, encoder, d_logits_t, x, &grads[head], 0, shape);
    }

    /// Records block `i`'s backward pass: `dx` enters as the gradient of
    /// the block's output and leaves as the gradient of its input, and the
    /// block's adapter gradients are added to `grads`.
    fn encode_block_backward(
        &self,
        encoder: &mut laser_gpu::Encoder,
        params: Tensors<'_>,
        grads: Tensors<'_>,
        batch: &SequenceBatch,
        i: usize,
        block: &Block,
    ) {
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        let act = &buffers.blocks[i];
        let gpu = &self.gpu;
        let tk = &self.train_kernels;
        let m = batch.rows();
        let (c, h, g, d, f) = dims(&self.config);
        let eps = self.config.rms_eps;
        let theta = self.config.rope_theta;
        let rope_layout = rope_layout(&self.config);
        let b = buffers;
        let matrix = |encoder: &mut laser_gpu::Encoder,
                      target: Target,
                      x: &wgpu::Buffer,
                      dy: &wgpu::Buffer,
                      dx: &wgpu::Buffer,
                      accumulate: bool| {
            let io = (x, dy, dx);
            self.encode_matrix_backward(
                encoder,
                (params, grads),
                (i, block),
                target,
                io,
                m,
                accumulate,
            );
        };
        let lora = |encoder: &mut laser_gpu::Encoder,
                    target: Target,
                    x: &wgpu::Buffer,
                    dy: &wgpu::Buffer,
                    dx: &wgpu::Buffer| {
            let (Tensors::Lora(params), Tensors::Lora(grads)) = (params, grads) else {
                return;
            };
            if let Some(tensor) = self.layout.find(i, target) {
                let args = LoraBackwardArgs {
                    x,
                    h: lora_h(act, target),
                    dy,
                    dh: &b.dh,
                    dx,
                    dropout: self.lora_dropout(i, target),
                };
                lora_backward(
                    gpu,
                    &tk.dense,
                    encoder,
                    &self.layout,
                    tensor,
                    params,
                    grads,
                    &args,
                    m,
                );
            }
        };

        // Feed-forward: dhidden = dx Wdown + LoRA.
        matrix(encoder, Target::Down, &act.hidden, &b.dx, &b.dhidden, false);
        lora(encoder, Target::Down, &act.hidden, &b.dx, &b.dhidden);

        // dgate, dup = swiglu_backward(gate, up, dhidden)
        tk.swiglu_backward.encode(
            gpu,
            encoder,
            &act.gate,
            &act.up,
            &b.dhidden,
            &b.dgate,
            &b.dup,
            m * f,
        );

        // dxn2 = dgate Wgate + dup Wup + LoRA
        matrix(encoder, Target::Gate, &act.xn2, &b.dgate, &b.dxn, false);
        matrix(encoder, Target::Up, &act.xn2, &b.dup, &b.dxn, true);
        lora(encoder, Target::Gate, &act.xn2, &b.dgate, &b.dxn);
        lora(encoder, Target::Up, &act.xn2, &b.dup, &b.dxn);

        // dx += rms_norm_backward(x_mid, dxn2): now the gradient of x_mid.
        let name = norm_name(i, "ffn_norm");
        tk.rms_norm_backward.encode(
            gpu,
            encoder,
            &act.x_mid,
            self.norm_weight(params, &block.ffn_norm, &name),
            &b.dxn,
            &b.dnorm,
            self.norm_grad(grads, &b.d_norm_weight, &name),
            m,
            c,
            eps,
        );
        tk.add.encode(gpu, encoder, &b.dx, &b.dnorm, m * c);

        // Attention: dattn = dx Wo + LoRA.
        matrix(encoder, Target::O, &act.attn, &b.dx, &b.dattn, false);
        lora(encoder, Target::O, &act.attn, &b.dx, &b.dattn);

        // dq, dk, dv of causal attention, then back through RoPE.
        let scale = 1.0 / (d as f32).sqrt();
        tk.attention_backward.encode(
            gpu,
            encoder,
            &act.q,
            &act.k,
            &act.v,
            &act.attn,
            &b.dattn,
            &b.dq,
            &b.dk,
            &b.dv,
            batch.batch,
            batch.seq_len,
            h,
            g,
            d,
            scale,
        );
        tk.rope_backward.encode(
            gpu,
            encoder,
            &b.dq,
            &b.positions,
            m,
            h,
            d,
            theta,
            rope_layout,
        );
        tk.rope_backward.encode(
            gpu,
            encoder,
            &b.dk,
            &b.positions,
            m,
            g,
            d,
            theta,
            rope_layout,
        );

        // dxn1 = dq Wq + dk Wk + dv Wv + LoRA
        matrix(encoder, Target::Q, &act.xn1, &b.dq, &b.dxn, false);
        matrix(encoder, Target::K, &act.xn1, &b.dk, &b.dxn, true);
        matrix(encoder, Target::V, &act.xn1, &b.dv, &b.dxn, true);
        lora(encoder, Target::Q, &act.xn1, &b.dq, &b.dxn);
        lora(encoder, Target::K, &act.xn1, &b.dk, &b.dxn);
        lora(encoder, Target::V, &act.xn1, &b.dv, &b.dxn);

        // dx += rms_norm_backward(x_in, dxn1): now the gradient of x_in.
        let name = norm_name(i, "attn_norm");
        tk.rms_norm_backward.encode(
            gpu,
            encoder,
            &act.x_in,
            self.norm_weight(params, &block.attn_norm, &name),
            &b.dxn,
            &b.dnorm,
            self.norm_grad(grads, &b.d_norm_weight, &name),
            m,
            c,
            eps,
        );
        tk.add.encode(gpu, encoder, &b.dx, &b.dnorm, m * c);
    }
}

impl TrainModel {
    /// Records `out (+)= x Wᵀ (+ bias)` over `rows` rows for the weight
    /// `target` of block `layer`: the frozen base weight, or its trainable
    /// f32 copy in a full pass. `io` is `(x, out)`.
    #[allow(clippy::too_many_arguments)]
    fn encode_matrix(
        &self,
        encoder: &mut laser_gpu::Encoder,
        params: Tensors<'_>,
        (layer, block): (usize, &Block),
        target: Target,
        (x, out): (&wgpu::Buffer, &wgpu::Buffer),
        rows: u32,
        accumulate: bool,
    ) {
        let gpu = &self.gpu;
        if let Tensors::Full(weights) = params {
            // out = x Wᵀ with W [out, in] read as [N, K].
            let weight = &weights[self.full_layout().matrix(layer, target)];
            let (k, n) = target.features(&self.config);
            let shape = DenseShape {
                m: rows,
                n: n as u32,
                k: k as u32,
                alpha: 1.0,
                accumulate,
            };
            let (x, w) = (Operand::rows(x), Operand::rows(weight));
            self.train_kernels
                .dense
                .encode(gpu, encoder, x, w, out, 0, shape);
            return;
        }
        let (weight, bias) = base_matrix(block, target);
        self.kernels
            .matmul
            .encode(gpu, encoder, x, weight, bias, out, rows, accumulate);
    }

    /// Records the backward pass of [`TrainModel::encode_matrix`]:
    /// `dx (+)= dy W` and, in a full pass, `dW += dyᵀ x` into the weight's
    /// gradient buffer. `io` is `(x, dy, dx)`.
    #[allow(clippy::too_many_arguments)]
    fn encode_matrix_backward(
        &self,
        encoder: &mut laser_gpu::Encoder,
        (params, grads): (Tensors<'_>, Tensors<'_>),
        (layer, block): (usize, &Block),
        target: Target,
        (x, dy, dx): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        rows: u32,
        accumulate: bool,
    ) {
        let gpu = &self.gpu;
        let (Tensors::Full(weights), Tensors::Full(grads)) = (params, grads) else {
            let (weight, _) = base_matrix(block, target);
            self.kernels
                .matmul
                .transposed_encode(gpu, encoder, dy, weight, dx, rows, accumulate);
            return;
        };
        let dense = &self.train_kernels.dense;
        let index = self.full_layout().matrix(layer, target);
        let (k, n) = target.features(&self.config);
        let (k, n) = (k as u32, n as u32);

        // dx = dy W: [M, in], with W [out, in] read as [K = out, N = in].
        let shape = DenseShape {
            m: rows,
            n: k,
            k: n,
            alpha: 1.0,
            accumulate,
        };
        let w = Operand::k_major_at(&weights[index], 0);
        dense.encode(gpu, encoder, Operand::rows(dy), w, dx, 0, shape);

        // dW += dyᵀ x: [out, in], summed over the M rows.
        let shape = DenseShape {
            m: n,
            n: k,
            k: rows,
            alpha: 1.0,
            accumulate: true,
        };
        let (dy_t, x) = (Operand::k_major_at(dy, 0), Operand::k_major_at(x, 0));
        dense.encode(gpu, encoder, dy_t, x, &grads[index], 0, shape);
    }

    /// Returns the RMSNorm weight `name`: its copy among the full weights
    /// in a full pass, `frozen` otherwise.
    fn norm_weight<'a>(
        &'a self,
        params: Tensors<'a>,
        frozen: &'a wgpu::Buffer,
        name: &str,
    ) -> &'a wgpu::Buffer {
        match params {
            Tensors::Full(weights) => &weights[self.full_layout().position(name)],
            Tensors::Base | Tensors::Lora(_) => frozen,
        }
    }

    /// Returns where the gradient of RMSNorm weight `name` goes: its
    /// gradient buffer when full fine-tuning trains norms, `discard`
    /// otherwise.
    fn norm_grad<'a>(
        &'a self,
        grads: Tensors<'a>,
        discard: &'a wgpu::Buffer,
        name: &str,
    ) -> &'a wgpu::Buffer {
        if let Tensors::Full(grads) = grads {
            let layout = self.full_layout();
            let index = layout.position(name);
            if layout.tensors[index].trainable {
                return &grads[index];
            }
        }
        discard
    }

    /// Returns the dropout of block `layer`'s adapter on `target` in the
    /// current pass, or `None` when the pass has no dropout.
    fn lora_dropout(&self, layer: usize, target: Target) -> Option<LoraDropout<'_>> {
        let pass = self.dropout?;
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        Some(LoraDropout {
            kernel: &self.train_kernels.dropout,
            mask: pass.mask(self.layout.config.dropout, layer, target),
            scratch: buffers
                .lora_x
                .as_ref()
                .expect("allocated when the layout has dropout"),
        })
    }
}

/// Returns the frozen weight of `target` in a block, and its bias if it
/// has one.
fn base_matrix(block: &Block, target: Target) -> (&QMatrix, Option<&wgpu::Buffer>) {
    match target {
        Target::Q => (&block.attn_q, block.attn_q_bias.as_ref()),
        Target::K => (&block.attn_k, block.attn_k_bias.as_ref()),
        Target::V => (&block.attn_v, block.attn_v_bias.as_ref()),
        Target::O => (&block.attn_output, None),
        Target::Gate => (&block.ffn_gate, None),
        Target::Up => (&block.ffn_up, None),
        Target::Down => (&block.ffn_down, None),
    }
}

/// Returns the GGUF name of block `layer`'s RMSNorm weight `module`.
fn norm_name(layer: usize, module: &str) -> String {
    format!("blk.{layer}.{module}.weight")
}

/// Returns the saved `x Aᵀ` buffer of `target` in a block.
fn lora_h(act: &BlockActivations, target: Target) -> &wgpu::Buffer {
    &act.lora_h
        .iter()
        .find(|(t, _)| *t == target)
        .expect("every adapter of the block has a saved buffer")
        .1
}

/// Up to [`HEAD_ROWS`] counted rows of a batch, packed into the head
/// buffers. Only counted rows go through the output head, so the prompt
/// and padding rows skip its large products.
#[derive(Debug, Default, PartialEq, Eq)]
struct HeadChunk {
    /// Rows in the chunk.
    rows: u32,
    /// Runs of consecutive rows: (first batch row, first chunk row, rows).
    segments: Vec<(u32, u32, u32)>,
}

impl HeadChunk {
    /// Records copies of the chunk's rows, `width` values each, from a
    /// buffer of batch rows into the chunk buffer `packed`.
    fn copy_in(
        &self,
        encoder: &mut laser_gpu::Encoder,
        rows: &wgpu::Buffer,
        packed: &wgpu::Buffer,
        width: u64,
    ) {
        self.copy(encoder, (rows, packed), width, true);
    }

    /// Records copies of the chunk's rows, `width` values each, from the
    /// chunk buffer `packed` back to their places in a buffer of batch
    /// rows.
    fn copy_out(
        &self,
        encoder: &mut laser_gpu::Encoder,
        packed: &wgpu::Buffer,
        rows: &wgpu::Buffer,
        width: u64,
    ) {
        self.copy(encoder, (packed, rows), width, false);
    }

    /// Records one copy per segment from `from` to `to`. `from_rows` is
    /// true when `from` is the buffer of batch rows, false when it is the
    /// chunk buffer.
    fn copy(
        &self,
        encoder: &mut laser_gpu::Encoder,
        (from, to): (&wgpu::Buffer, &wgpu::Buffer),
        width: u64,
        from_rows: bool,
    ) {
        let row_bytes = width * 4;
        for &(row, slot, count) in &self.segments {
            let (row, slot) = (u64::from(row) * row_bytes, u64::from(slot) * row_bytes);
            let (source, destination) = if from_rows { (row, slot) } else { (slot, row) };
            let bytes = u64::from(count) * row_bytes;
            encoder
                .raw()
                .copy_buffer_to_buffer(from, source, to, destination, bytes);
        }
    }
}

/// Packs the counted rows of `batch`, in order, into chunks of up to
/// [`HEAD_ROWS`] rows.
fn head_chunks(batch: &SequenceBatch) -> Vec<HeadChunk> {
    let mut chunks = Vec::new();
    let mut current = HeadChunk::default();
    let mask = &batch.mask;
    let mut row = 0;
    while row < mask.len() {
        if !mask[row] {
            row += 1;
            continue;
        }
        let end = (row..mask.len()).find(|&r| !mask[r]).unwrap_or(mask.len());
        // Split the run [row, end) where chunks fill up.
        let mut start = row;
        while start < end {
            let count = (HEAD_ROWS - current.rows).min((end - start) as u32);
            current.segments.push((start as u32, current.rows, count));
            current.rows += count;
            start += count as usize;
            if current.rows == HEAD_ROWS {
                chunks.push(std::mem::take(&mut current));
            }
        }
        row = end;
    }
    if current.rows > 0 {
        chunks.push(current);
    }
    chunks
}

/// The kernel's RoPE layout for a model config.
fn rope_layout(config: &ModelConfig) -> RopeLayout {
    match config.rope_layout {
        config::RopeLayout::Adjacent => RopeLayout::Adjacent,
        config::RopeLayout::Halves => RopeLayout::Halves,
    }
}
