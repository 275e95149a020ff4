//! The llama-family forward pass on the GPU, as a column of kernel
//! dispatches: embedding, then per block RMSNorm, Q/K/V projections, RoPE
//! with the KV-cache write, grouped-query attention, output projection with the
//! residual, RMSNorm, SwiGLU feed-forward with the residual; then the final
//! norm and the LM head.
//!
//! One call runs a set of rows, each a token of some sequence slot at some
//! position, so prefill (many rows of one or several sequences) and decode
//! (one row per sequence) share the same code. Rows of one call see each
//! other through the KV cache, which is written before attention reads it.

use anyhow::{Result, ensure};
use laser_gpu::Gpu;
use laser_gpu::attention::Attention;
use laser_gpu::elementwise::{GatherRows, SwiGlu};
use laser_gpu::embedding::Embedding;
use laser_gpu::matmul::Matmul;
use laser_gpu::norm::RmsNorm;
use laser_gpu::rope::{Rope, RopeKvShape, RopeKvWrite, RopeLayout};
use laser_gpu::sampling::{Sampler, TokenLogprob};
use laser_model::config::{self, ModelConfig};

use super::adapter::Adapter;
use super::weights::{Weights, dims};
use crate::train::lora::Target;

/// Every compiled kernel the forward pass and sampling use.
pub struct Kernels {
    pub embedding: Embedding,
    pub rms_norm: RmsNorm,
    pub matmul: Matmul,
    pub rope: Rope,
    pub rope_kv_write: RopeKvWrite,
    pub attention: Attention,
    pub swiglu: SwiGlu,
    pub gather_rows: GatherRows,
    pub sampler: Sampler,
    pub token_logprob: TokenLogprob,
}

impl Kernels {
    /// Compiles every pipeline once.
    ///
    /// # Errors
    ///
    /// Fails when a shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(Self {
            embedding: Embedding::new(gpu)?,
            rms_norm: RmsNorm::new(gpu)?,
            matmul: Matmul::new(gpu)?,
            rope: Rope::new(gpu)?,
            rope_kv_write: RopeKvWrite::new(gpu)?,
            attention: Attention::new(gpu)?,
            swiglu: SwiGlu::new(gpu)?,
            gather_rows: GatherRows::new(gpu)?,
            sampler: Sampler::new(gpu)?,
            token_logprob: TokenLogprob::new(gpu)?,
        })
    }
}

/// The KV cache: per block, keys and values f32 [S, Tmax, G, D].
pub struct KvCache {
    pub keys: Vec<wgpu::Buffer>,
    pub values: Vec<wgpu::Buffer>,
    /// S: the number of sequence slots.
    pub slots: u32,
    /// Tmax: the positions each slot holds.
    pub max_len: u32,
}

impl KvCache {
    /// Allocates a cache of `slots` sequences of up to `max_len` tokens.
    ///
    /// # Errors
    ///
    /// Fails when one block's cache exceeds the device's largest binding.
    pub fn new(gpu: &Gpu, config: &ModelConfig, slots: u32, max_len: u32) -> Result<Self> {
        let per_block =
            u64::from(slots) * u64::from(max_len) * (config.n_head_kv * config.head_dim) as u64 * 4;
        ensure!(
            per_block <= gpu.max_binding_bytes(),
            "KV cache for {slots} sequences of {max_len} tokens needs {} MiB per block, \
             more than this device's largest binding ({} MiB); use fewer sequences (-n, --n or \
             --batch-size) or fewer tokens (--max-new-tokens)",
            per_block >> 20,
            gpu.max_binding_bytes() >> 20
        );
        let keys = (0..config.n_layer)
            .map(|i| gpu.buffer_zeroed(&format!("blk.{i}.k_cache"), per_block))
            .collect();
        let values = (0..config.n_layer)
            .map(|i| gpu.buffer_zeroed(&format!("blk.{i}.v_cache"), per_block))
            .collect();
        Ok(Self {
            keys,
            values,
            slots,
            max_len,
        })
    }

    /// The GPU bytes taken by the cache.
    pub fn gpu_bytes(&self) -> u64 {
        self.keys
            .iter()
            .chain(&self.values)
            .map(wgpu::Buffer::size)
            .sum()
    }
}

/// Activation buffers for up to `max_rows` rows (M).
pub struct Activations {
    pub max_rows: u32,
    /// u32 [M]: token ids.
    pub tokens: wgpu::Buffer,
    /// u32 [M, 2]: (slot, position).
    pub rows: wgpu::Buffer,
    /// f32 [M, C]: the residual stream.
    pub x: wgpu::Buffer,
    /// f32 [M, C]: normalised input of the current sublayer.
    pub xn: wgpu::Buffer,
    /// f32 [M, H*D]
    pub q: wgpu::Buffer,
    /// f32 [M, G*D]
    pub k: wgpu::Buffer,
    /// f32 [M, G*D]
    pub v: wgpu::Buffer,
    /// f32 [M, H*D]: attention output.
    pub attn: wgpu::Buffer,
    /// f32 [M, F]
    pub gate: wgpu::Buffer,
    /// f32 [M, F]
    pub up: wgpu::Buffer,
    /// f32 [M, F]: SwiGLU output.
    pub hidden: wgpu::Buffer,
}

impl Activations {
    /// Allocates buffers for `max_rows` rows of a model shaped like `config`.
    pub fn new(gpu: &Gpu, config: &ModelConfig, max_rows: u32) -> Self {
        let m = u64::from(max_rows);
        let (c, h, g, d, f) = dims(config);
        let floats = |label: &str, width: u32| gpu.buffer_zeroed(label, m * u64::from(width) * 4);
        Self {
            max_rows,
            tokens: gpu.buffer_zeroed("tokens", m * 4),
            rows: gpu.buffer_zeroed("rows", m * 8),
            x: floats("x", c),
            xn: floats("xn", c),
            q: floats("q", h * d),
            k: floats("k", g * d),
            v: floats("v", g * d),
            attn: floats("attn", h * d),
            gate: floats("gate", f),
            up: floats("up", f),
            hidden: floats("hidden", f),
        }
    }
}

/// One row of a forward call: the token at `position` of sequence `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub token: u32,
    pub slot: u32,
    pub position: u32,
}

/// Uploads `rows` and records the forward pass through every block, with
/// `adapter`'s LoRA updates added after the projections it adapts. Leaves
/// the final residual stream in `act.x` ([M, C], before the final norm).
///
/// # Errors
///
/// Fails when there are more rows than buffers for them, or a row lies
/// outside the cache.
#[allow(clippy::too_many_arguments)]
pub fn encode_blocks(
    gpu: &Gpu,
    kernels: &Kernels,
    config: &ModelConfig,
    weights: &Weights,
    cache: &KvCache,
    act: &Activations,
    encoder: &mut laser_gpu::Encoder,
    rows: &[Row],
    adapter: Option<&Adapter>,
) -> Result<()> {
    let m = rows.len() as u32;
    ensure!(m > 0, "forward pass needs at least one row");
    ensure!(
        m <= act.max_rows,
        "forward pass got {m} rows, buffers hold {}",
        act.max_rows
    );
    for row in rows {
        ensure!(
            row.slot < cache.slots && row.position < cache.max_len,
            "row at slot {} position {} lies outside the KV cache ({} slots of {} tokens)",
            row.slot,
            row.position,
            cache.slots,
            cache.max_len
        );
        ensure!(
            (row.token as usize) < config.vocab_size,
            "token id {} is outside the vocabulary of {}",
            row.token,
            config.vocab_size
        );
    }
    let tokens: Vec<u32> = rows.iter().map(|r| r.token).collect();
    let slot_positions: Vec<u32> = rows.iter().flat_map(|r| [r.slot, r.position]).collect();
    gpu.queue
        .write_buffer(&act.tokens, 0, bytemuck::cast_slice(&tokens));
    gpu.queue
        .write_buffer(&act.rows, 0, bytemuck::cast_slice(&slot_positions));

    let (c, h, g, d, f) = dims(config);
    let eps = config.rms_eps;
    let theta = config.rope_theta;
    let layout = match config.rope_layout {
        config::RopeLayout::Adjacent => RopeLayout::Adjacent,
        config::RopeLayout::Halves => RopeLayout::Halves,
    };
    let scale = 1.0 / (d as f32).sqrt();

    // x = token_embd[tokens]: [M, C]
    kernels
        .embedding
        .encode(gpu, encoder, &weights.token_embd, &act.tokens, &act.x, m);

    for (i, block) in weights.blocks.iter().enumerate() {
        // xn = rms_norm(x) * attn_norm
        kernels
            .rms_norm
            .encode(gpu, encoder, &act.x, &block.attn_norm, &act.xn, m, c, eps);

        // q, k, v = xn Wq^T (+ bq), xn Wk^T (+ bk), xn Wv^T (+ bv)
        let mm = &kernels.matmul;
        let lora =
            |encoder: &mut laser_gpu::Encoder, target, x: &wgpu::Buffer, out: &wgpu::Buffer| {
                if let Some(adapter) = adapter {
                    adapter.encode(gpu, encoder, i, target, x, out, m);
                }
            };
        mm.encode(
            gpu,
            encoder,
            &act.xn,
            &block.attn_q,
            block.attn_q_bias.as_ref(),
            &act.q,
            m,
            false,
        );
        lora(encoder, Target::Q, &act.xn, &act.q);
        mm.encode(
            gpu,
            encoder,
            &act.xn,
            &block.attn_k,
            block.attn_k_bias.as_ref(),
            &act.k,
            m,
            false,
        );
        lora(encoder, Target::K, &act.xn, &act.k);
        mm.encode(
            gpu,
            encoder,
            &act.xn,
            &block.attn_v,
            block.attn_v_bias.as_ref(),
            &act.v,
            m,
            false,
        );
        lora(encoder, Target::V, &act.xn, &act.v);

        // Rotate q and k by each row's position and append k and v to the
        // cache in one pass, then attend over the cache.
        let (k_cache, v_cache) = (&cache.keys[i], &cache.values[i]);
        let shape = RopeKvShape {
            m,
            heads: h,
            kv_heads: g,
            head_dim: d,
            max_len: cache.max_len,
            theta,
            layout,
        };
        kernels.rope_kv_write.encode(
            gpu, encoder, &act.q, &act.k, &act.v, &act.rows, k_cache, v_cache, shape,
        );
        kernels.attention.encode(
            gpu,
            encoder,
            &act.q,
            k_cache,
            v_cache,
            &act.rows,
            &act.attn,
            m,
            h,
            g,
            d,
            cache.max_len,
            scale,
        );

        // x += attn Wo^T
        mm.encode(
            gpu,
            encoder,
            &act.attn,
            &block.attn_output,
            None,
            &act.x,
            m,
            true,
        );
        lora(encoder, Target::O, &act.attn, &act.x);

        // xn = rms_norm(x) * ffn_norm
        kernels
            .rms_norm
            .encode(gpu, encoder, &act.x, &block.ffn_norm, &act.xn, m, c, eps);

        // hidden = silu(xn Wgate^T) * (xn Wup^T): [M, F], in one pass where
        // the matmul kernels can and no adapter changes gate or up.
        let adapted = adapter.is_some_and(|a| {
            a.layout.find(i, Target::Gate).is_some() || a.layout.find(i, Target::Up).is_some()
        });
        let fused = !adapted
            && mm.encode_swiglu(
                gpu,
                encoder,
                &act.xn,
                &block.ffn_gate,
                &block.ffn_up,
                &act.hidden,
                m,
            );
        if !fused {
            mm.encode(
                gpu,
                encoder,
                &act.xn,
                &block.ffn_gate,
                None,
                &act.gate,
                m,
                false,
            );
            lora(encoder, Target::Gate, &act.xn, &act.gate);
            mm.encode(
                gpu,
                encoder,
                &act.xn,
                &block.ffn_up,
                None,
                &act.up,
                m,
                false,
            );
            lora(encoder, Target::Up, &act.xn, &act.up);
            kernels
                .swiglu
                .encode(gpu, encoder, &act.gate, &act.up, &act.hidden, m * f);
        }

        // x += hidden Wdown^T
        mm.encode(
            gpu,
            encoder,
            &act.hidden,
            &block.ffn_down,
            None,
            &act.x,
            m,
            true,
        );
        lora(encoder, Target::Down, &act.hidden, &act.x);
    }
    Ok(())
}
