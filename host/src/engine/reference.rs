//! A plain CPU forward pass in f32 over dequantized weights: the reference
//! the GPU engine is tested against. Slow and simple on purpose; nothing in
//! a run uses it.

use anyhow::Result;
use laser_model::checkpoint::Checkpoint;
use laser_model::config::{ModelConfig, RopeLayout};

use super::weights::load_f32;

/// One block's weights, dequantized. Matrices are row-major [N out, K in].
struct ReferenceBlock {
    attn_norm: Vec<f32>,
    attn_q: Vec<f32>,
    attn_k: Vec<f32>,
    attn_v: Vec<f32>,
    attn_q_bias: Option<Vec<f32>>,
    attn_k_bias: Option<Vec<f32>>,
    attn_v_bias: Option<Vec<f32>>,
    attn_output: Vec<f32>,
    ffn_norm: Vec<f32>,
    ffn_gate: Vec<f32>,
    ffn_up: Vec<f32>,
    ffn_down: Vec<f32>,
}

/// A llama-family model in f32 on the CPU.
pub struct ReferenceModel {
    config: ModelConfig,
    /// [V, C]
    token_embd: Vec<f32>,
    blocks: Vec<ReferenceBlock>,
    /// [C]
    output_norm: Vec<f32>,
    /// [V, C]
    output: Vec<f32>,
}

impl ReferenceModel {
    /// Dequantizes every weight of `checkpoint`.
    ///
    /// # Errors
    ///
    /// Fails when a tensor is missing or has the wrong size.
    pub fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Self> {
        let config = checkpoint.config().clone();
        let c = config.n_embd;
        let q_width = config.n_head * config.head_dim;
        let kv_width = config.n_head_kv * config.head_dim;
        let f = config.n_ff;
        let load = |name: &str, len: usize| load_f32(checkpoint, name, len);
        let token_embd = load("token_embd.weight", config.vocab_size * c)?;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let name = |suffix: &str| format!("blk.{i}.{suffix}");
            let bias = |suffix: &str, len: usize| -> Result<Option<Vec<f32>>> {
                if config.attn_bias {
                    load(&name(suffix), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            blocks.push(ReferenceBlock {
                attn_norm: load(&name("attn_norm.weight"), c)?,
                attn_q: load(&name("attn_q.weight"), q_width * c)?,
                attn_k: load(&name("attn_k.weight"), kv_width * c)?,
                attn_v: load(&name("attn_v.weight"), kv_width * c)?,
                attn_q_bias: bias("attn_q.bias", q_width)?,
                attn_k_bias: bias("attn_k.bias", kv_width)?,
                attn_v_bias: bias("attn_v.bias", kv_width)?,
                attn_output: load(&name("attn_output.weight"), c * q_width)?,
                ffn_norm: load(&name("ffn_norm.weight"), c)?,
                ffn_gate: load(&name("ffn_gate.weight"), f * c)?,
                ffn_up: load(&name("ffn_up.weight"), f * c)?,
                ffn_down: load(&name("ffn_down.weight"), c * f)?,
            });
        }
        let output_norm = load("output_norm.weight", c)?;
        let output = if config.tied_embeddings {
            token_embd.clone()
        } else {
            load("output.weight", config.vocab_size * c)?
        };
        Ok(Self {
            config,
            token_embd,
            blocks,
            output_norm,
            output,
        })
    }

    /// Returns the logits [T, V] predicting the token after each position.
    pub fn logits(&self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let cfg = &self.config;
        let (c, v) = (cfg.n_embd, cfg.vocab_size);
        let hidden = self.final_hidden(tokens);
        hidden
            .chunks(c)
            .map(|row| matmul(row, &self.output, None, 1, v, c))
            .collect()
    }

    /// Returns the final hidden states [T, C], after the final norm.
    pub fn final_hidden(&self, tokens: &[u32]) -> Vec<f32> {
        let cfg = &self.config;
        let t = tokens.len();
        let (c, h, g, d, f) = (
            cfg.n_embd,
            cfg.n_head,
            cfg.n_head_kv,
            cfg.head_dim,
            cfg.n_ff,
        );
        let eps = cfg.rms_eps;

        // x = token_embd[tokens]: [T, C]
        let mut x: Vec<f32> = tokens
            .iter()
            .flat_map(|&id| {
                self.token_embd[id as usize * c..(id as usize + 1) * c]
                    .iter()
                    .copied()
            })
            .collect();

        for block in &self.blocks {
            // Attention sublayer.
            let xn = rms_norm(&x, &block.attn_norm, c, eps);
            let mut q = matmul(
                &xn,
                &block.attn_q,
                block.attn_q_bias.as_deref(),
                t,
                h * d,
                c,
            );
            let mut k = matmul(
                &xn,
                &block.attn_k,
                block.attn_k_bias.as_deref(),
                t,
                g * d,
                c,
            );
            let v = matmul(
                &xn,
                &block.attn_v,
                block.attn_v_bias.as_deref(),
                t,
                g * d,
                c,
            );
            rope(&mut q, t, h, d, cfg.rope_theta, cfg.rope_layout);
            rope(&mut k, t, g, d, cfg.rope_theta, cfg.rope_layout);
            let attn = attention(&q, &k, &v, t, h, g, d);
            let out = matmul(&attn, &block.attn_output, None, t, c, h * d);
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);

            // Feed-forward sublayer.
            let xn = rms_norm(&x, &block.ffn_norm, c, eps);
            let gate = matmul(&xn, &block.ffn_gate, None, t, f, c);
            let up = matmul(&xn, &block.ffn_up, None, t, f, c);
            let hidden: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| silu(g) * u).collect();
            let out = matmul(&hidden, &block.ffn_down, None, t, c, f);
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
        }
        rms_norm(&x, &self.output_norm, c, eps)
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// out[m, :] = x[m, :] / sqrt(mean(x[m]^2) + eps) * weight
fn rms_norm(x: &[f32], weight: &[f32], c: usize, eps: f32) -> Vec<f32> {
    x.chunks(c)
        .flat_map(|row| {
            let mean_square = row.iter().map(|v| v * v).sum::<f32>() / c as f32;
            let inv = 1.0 / (mean_square + eps).sqrt();
            row.iter().zip(weight).map(move |(v, w)| v * inv * w)
        })
        .collect()
}

/// out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]), accumulated in f64.
fn matmul(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        let row = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let col = &w[j * k..(j + 1) * k];
            let dot: f64 = row
                .iter()
                .zip(col)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            out[i * n + j] = dot as f32 + bias.map_or(0.0, |b| b[j]);
        }
    }
    out
}

/// Rotates each head of x [T, heads, D] by its position (the row index).
fn rope(x: &mut [f32], t: usize, heads: usize, d: usize, theta: f32, layout: RopeLayout) {
    for pos in 0..t {
        for head in 0..heads {
            let base = (pos * heads + head) * d;
            for i in 0..d / 2 {
                let freq = theta.powf(-2.0 * i as f32 / d as f32);
                let (sin, cos) = (pos as f32 * freq).sin_cos();
                let (a, b) = match layout {
                    RopeLayout::Adjacent => (base + 2 * i, base + 2 * i + 1),
                    RopeLayout::Halves => (base + i, base + i + d / 2),
                };
                let (x0, x1) = (x[a], x[b]);
                x[a] = x0 * cos - x1 * sin;
                x[b] = x0 * sin + x1 * cos;
            }
        }
    }
}

/// Causal grouped-query attention over one sequence: q [T, H, D], k and v
/// [T, G, D] → [T, H, D].
fn attention(q: &[f32], k: &[f32], v: &[f32], t: usize, h: usize, g: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; t * h * d];
    let scale = 1.0 / (d as f32).sqrt();
    let group = h / g;
    for pos in 0..t {
        for head in 0..h {
            let kv = head / group;
            let qv = &q[(pos * h + head) * d..][..d];
            let scores: Vec<f32> = (0..=pos)
                .map(|j| {
                    let kj = &k[(j * g + kv) * d..][..d];
                    qv.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
                })
                .collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let weights: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f32 = weights.iter().sum();
            let o = &mut out[(pos * h + head) * d..][..d];
            for (j, w) in weights.iter().enumerate() {
                let vj = &v[(j * g + kv) * d..][..d];
                for (oi, vi) in o.iter_mut().zip(vj) {
                    *oi += w / total * vi;
                }
            }
        }
    }
    out
}
