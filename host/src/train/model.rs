//! The training pass of a llama-family policy on the GPU. The forward pass
//! runs whole padded sequences and keeps every activation the backward
//! pass needs. The backward pass goes from per-token log-probability
//! gradients down to the LoRA parameters of every block. The base weights
//! are frozen and stay in their stored format; only the adapters get
//! gradients.
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
use laser_gpu::dense::DenseMatmul;
use laser_gpu::elementwise::{Add, Dropout, SwiGluBackward};
use laser_gpu::norm::RmsNormBackward;
use laser_gpu::rope::{RopeBackward, RopeLayout};
use laser_gpu::sampling::{TokenLogprobBackward, TokenLogprobChunk};
use laser_model::checkpoint::Checkpoint;
use laser_model::config::{self, ModelConfig};

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

/// The training kernels that inference does not compile.
struct TrainKernels {
    dense: DenseMatmul,
    rms_norm_backward: RmsNormBackward,
    rope_backward: RopeBackward,
    attention_backward: AttentionBackward,
    swiglu_backward: SwiGluBackward,
    add: Add,
    dropout: Dropout,
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
    fn new(gpu: &Gpu, config: &ModelConfig, layout: &LoraLayout, max_rows: u32) -> Self {
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
    weights: Weights,
    kernels: Kernels,
    train_kernels: TrainKernels,
    buffers: Option<Buffers>,
    /// The batch whose activations the buffers hold.
    last_batch: Option<SequenceBatch>,
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
            weights,
            kernels,
            train_kernels,
            buffers: None,
            last_batch: None,
            dropout: None,
        })
    }

    /// The GPU bytes held by the base weights and the training buffers.
    pub fn gpu_bytes(&self) -> u64 {
        self.weights.gpu_bytes() + self.buffers.as_ref().map_or(0, Buffers::gpu_bytes)
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
            self.buffers = Some(Buffers::new(&self.gpu, &self.config, &self.layout, rows));
        }
        Ok(())
    }

    fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
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
        self.forward_pass(params, batch, None)
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
        self.forward_pass(params, batch, Some(pass))
    }

    fn forward_pass(
        &mut self,
        params: &wgpu::Buffer,
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
        encoder: &mut wgpu::CommandEncoder,
        params: &wgpu::Buffer,
        batch: &SequenceBatch,
    ) {
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        let gpu = &self.gpu;
        let k = &self.kernels;
        let m = batch.rows();
        let (c, _, _, _, _) = dims(&self.config);
        let eps = self.config.rms_eps;

        // x = token_embd[tokens]: [M, C]
        k.embedding.encode(
            gpu,
            encoder,
            &self.weights.token_embd,
            &buffers.tokens,
            &buffers.blocks[0].x_in,
            m,
        );

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
            &self.weights.output_norm,
            &buffers.xf,
            m,
            c,
            eps,
        );

        // logprobs[r] = log_softmax(xf[r] W_headᵀ)[targets[r]], R rows at a time.
        for (start, rows) in head_chunks(batch) {
            self.encode_head_logprobs(encoder, start, rows);
            let bytes = u64::from(rows) * 4;
            encoder.copy_buffer_to_buffer(
                &buffers.head_logprobs,
                0,
                &buffers.logprobs,
                u64::from(start) * 4,
                bytes,
            );
        }
    }

    /// Records block `i`'s forward pass from its saved input to `output`.
    fn encode_block_forward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        params: &wgpu::Buffer,
        batch: &SequenceBatch,
        i: usize,
        block: &Block,
        output: &wgpu::Buffer,
    ) {
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        let act = &buffers.blocks[i];
        let gpu = &self.gpu;
        let k = &self.kernels;
        let mm = &k.matmul;
        let m = batch.rows();
        let (c, h, g, d, f) = dims(&self.config);
        let eps = self.config.rms_eps;
        let theta = self.config.rope_theta;
        let rope_layout = rope_layout(&self.config);
        let residual_bytes = u64::from(m) * u64::from(c) * 4;
        let lora = |encoder: &mut wgpu::CommandEncoder,
                    target: Target,
                    x: &wgpu::Buffer,
                    out: &wgpu::Buffer| {
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
        k.rms_norm.encode(
            gpu,
            encoder,
            &act.x_in,
            &block.attn_norm,
            &act.xn1,
            m,
            c,
            eps,
        );

        // q, k, v = xn1 Wᵀ (+ bias) + LoRA
        mm.encode(
            gpu,
            encoder,
            &act.xn1,
            &block.attn_q,
            block.attn_q_bias.as_ref(),
            &act.q,
            m,
            false,
        );
        lora(encoder, Target::Q, &act.xn1, &act.q);
        mm.encode(
            gpu,
            encoder,
            &act.xn1,
            &block.attn_k,
            block.attn_k_bias.as_ref(),
            &act.k,
            m,
            false,
        );
        lora(encoder, Target::K, &act.xn1, &act.k);
        mm.encode(
            gpu,
            encoder,
            &act.xn1,
            &block.attn_v,
            block.attn_v_bias.as_ref(),
            &act.v,
            m,
            false,
        );
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
        encoder.copy_buffer_to_buffer(&act.x_in, 0, &act.x_mid, 0, residual_bytes);
        mm.encode(
            gpu,
            encoder,
            &act.attn,
            &block.attn_output,
            None,
            &act.x_mid,
            m,
            true,
        );
        lora(encoder, Target::O, &act.attn, &act.x_mid);

        // xn2 = rms_norm(x_mid) * ffn_norm
        k.rms_norm.encode(
            gpu,
            encoder,
            &act.x_mid,
            &block.ffn_norm,
            &act.xn2,
            m,
            c,
            eps,
        );

        // hidden = silu(xn2 Wgateᵀ + LoRA) * (xn2 Wupᵀ + LoRA): [M, F]
        mm.encode(
            gpu,
            encoder,
            &act.xn2,
            &block.ffn_gate,
            None,
            &act.gate,
            m,
            false,
        );
        lora(encoder, Target::Gate, &act.xn2, &act.gate);
        mm.encode(
            gpu,
            encoder,
            &act.xn2,
            &block.ffn_up,
            None,
            &act.up,
            m,
            false,
        );
        lora(encoder, Target::Up, &act.xn2, &act.up);
        k.swiglu
            .encode(gpu, encoder, &act.gate, &act.up, &act.hidden, m * f);

        // output = x_mid + hidden Wdownᵀ + LoRA
        encoder.copy_buffer_to_buffer(&act.x_mid, 0, output, 0, residual_bytes);
        mm.encode(
            gpu,
            encoder,
            &act.hidden,
            &block.ffn_down,
            None,
            output,
            m,
            true,
        );
        lora(encoder, Target::Down, &act.hidden, output);
    }

    /// Records the logits and log-probabilities of `rows` rows of xf from
    /// row `start` into the head buffers.
    fn encode_head_logprobs(&self, encoder: &mut wgpu::CommandEncoder, start: u32, rows: u32) {
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        let gpu = &self.gpu;
        let c = self.config.n_embd as u64;
        let v = self.config.vocab_size as u32;
        let (start64, rows64) = (u64::from(start), u64::from(rows));
        encoder.copy_buffer_to_buffer(
            &buffers.xf,
            start64 * c * 4,
            &buffers.head_x,
            0,
            rows64 * c * 4,
        );
        encoder.copy_buffer_to_buffer(
            &buffers.targets,
            start64 * 4,
            &buffers.head_targets,
            0,
            rows64 * 4,
        );
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
        ensure!(
            self.last_batch.as_ref() == Some(batch),
            "the backward pass needs the activations of the same batch's forward pass"
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
        encoder: &mut wgpu::CommandEncoder,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
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

        // dxf = d_logits W_head, R rows at a time; rows outside every chunk
        // keep a zero gradient.
        encoder.clear_buffer(&buffers.dxn, 0, Some(u64::from(m) * c64 * 4));
        for (start, rows) in head_chunks(batch) {
            let (start64, rows64) = (u64::from(start), u64::from(rows));
            self.encode_head_logprobs(encoder, start, rows);
            encoder.copy_buffer_to_buffer(
                &buffers.d_logprob,
                start64 * 4,
                &buffers.head_d_logprob,
                0,
                rows64 * 4,
            );
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
            encoder.copy_buffer_to_buffer(
                &buffers.head_dx,
                0,
                &buffers.dxn,
                start64 * c64 * 4,
                rows64 * c64 * 4,
            );
        }

        // dx = rms_norm_backward(x_out, dxf)
        tk.rms_norm_backward.encode(
            gpu,
            encoder,
            &buffers.x_out,
            &self.weights.output_norm,
            &buffers.dxn,
            &buffers.dx,
            &buffers.d_norm_weight,
            m,
            c,
            eps,
        );

        for (i, block) in self.weights.blocks.iter().enumerate().rev() {
            self.encode_block_backward(encoder, params, grads, batch, i, block);
        }
    }

    /// Records block `i`'s backward pass: `dx` enters as the gradient of
    /// the block's output and leaves as the gradient of its input, and the
    /// block's adapter gradients are added to `grads`.
    fn encode_block_backward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        batch: &SequenceBatch,
        i: usize,
        block: &Block,
    ) {
        let buffers = self.buffers.as_ref().expect("reserved by forward");
        let act = &buffers.blocks[i];
        let gpu = &self.gpu;
        let mm = &self.kernels.matmul;
        let tk = &self.train_kernels;
        let m = batch.rows();
        let (c, h, g, d, f) = dims(&self.config);
        let eps = self.config.rms_eps;
        let theta = self.config.rope_theta;
        let rope_layout = rope_layout(&self.config);
        let b = buffers;
        let lora = |encoder: &mut wgpu::CommandEncoder,
                    target: Target,
                    x: &wgpu::Buffer,
                    dy: &wgpu::Buffer,
                    dx: &wgpu::Buffer| {
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
        mm.transposed_encode(gpu, encoder, &b.dx, &block.ffn_down, &b.dhidden, m, false);
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
        mm.transposed_encode(gpu, encoder, &b.dgate, &block.ffn_gate, &b.dxn, m, false);
        mm.transposed_encode(gpu, encoder, &b.dup, &block.ffn_up, &b.dxn, m, true);
        lora(encoder, Target::Gate, &act.xn2, &b.dgate, &b.dxn);
        lora(encoder, Target::Up, &act.xn2, &b.dup, &b.dxn);

        // dx += rms_norm_backward(x_mid, dxn2): now the gradient of x_mid.
        tk.rms_norm_backward.encode(
            gpu,
            encoder,
            &act.x_mid,
            &block.ffn_norm,
            &b.dxn,
            &b.dnorm,
            &b.d_norm_weight,
            m,
            c,
            eps,
        );
        tk.add.encode(gpu, encoder, &b.dx, &b.dnorm, m * c);

        // Attention: dattn = dx Wo + LoRA.
        mm.transposed_encode(gpu, encoder, &b.dx, &block.attn_output, &b.dattn, m, false);
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
        mm.transposed_encode(gpu, encoder, &b.dq, &block.attn_q, &b.dxn, m, false);
        mm.transposed_encode(gpu, encoder, &b.dk, &block.attn_k, &b.dxn, m, true);
        mm.transposed_encode(gpu, encoder, &b.dv, &block.attn_v, &b.dxn, m, true);
        lora(encoder, Target::Q, &act.xn1, &b.dq, &b.dxn);
        lora(encoder, Target::K, &act.xn1, &b.dk, &b.dxn);
        lora(encoder, Target::V, &act.xn1, &b.dv, &b.dxn);

        // dx += rms_norm_backward(x_in, dxn1): now the gradient of x_in.
        tk.rms_norm_backward.encode(
            gpu,
            encoder,
            &act.x_in,
            &block.attn_norm,
            &b.dxn,
            &b.dnorm,
            &b.d_norm_weight,
            m,
            c,
            eps,
        );
        tk.add.encode(gpu, encoder, &b.dx, &b.dnorm, m * c);
    }
}

impl TrainModel {
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

/// Returns the saved `x Aᵀ` buffer of `target` in a block.
fn lora_h(act: &BlockActivations, target: Target) -> &wgpu::Buffer {
    &act.lora_h
        .iter()
        .find(|(t, _)| *t == target)
        .expect("every adapter of the block has a saved buffer")
        .1
}

/// Returns `(first row, rows)` of every chunk of up to [`HEAD_ROWS`] rows
/// that holds at least one counted row.
fn head_chunks(batch: &SequenceBatch) -> Vec<(u32, u32)> {
    let m = batch.rows();
    (0..m)
        .step_by(HEAD_ROWS as usize)
        .map(|start| (start, HEAD_ROWS.min(m - start)))
        .filter(|&(start, rows)| {
            batch.mask[start as usize..(start + rows) as usize]
                .iter()
                .any(|&c| c)
        })
        .collect()
}

/// The kernel's RoPE layout for a model config.
fn rope_layout(config: &ModelConfig) -> RopeLayout {
    match config.rope_layout {
        config::RopeLayout::Adjacent => RopeLayout::Adjacent,
        config::RopeLayout::Halves => RopeLayout::Halves,
    }
}
