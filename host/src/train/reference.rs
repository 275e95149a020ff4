//! A plain CPU reference of the training forward pass in f64, LoRA
//! adapters included: the model the GPU gradients are checked against by
//! central finite differences. Slow and simple on purpose; training never
//! uses it.

use anyhow::Result;
use laser_model::checkpoint::Checkpoint;
use laser_model::config::{ModelConfig, RopeLayout};

use super::lora::{DropoutPass, LoraLayout, Target};
use crate::engine::weights::load_f32;

/// One block's weights in f64. Matrices are row-major [N out, K in].
struct Block {
    attn_norm: Vec<f64>,
    attn_q: Vec<f64>,
    attn_k: Vec<f64>,
    attn_v: Vec<f64>,
    attn_output: Vec<f64>,
    ffn_norm: Vec<f64>,
    ffn_gate: Vec<f64>,
    ffn_up: Vec<f64>,
    ffn_down: Vec<f64>,
}

/// A llama-family model (without attention biases) in f64 on the CPU.
pub struct ReferenceTrainModel {
    config: ModelConfig,
    layout: LoraLayout,
    /// [V, C]
    token_embd: Vec<f64>,
    blocks: Vec<Block>,
    /// [C]
    output_norm: Vec<f64>,
    /// [V, C]; `None` when the LM head is tied to `token_embd`.
    output: Option<Vec<f64>>,
}

impl ReferenceTrainModel {
    /// Dequantizes every weight of `checkpoint` into f64.
    ///
    /// # Errors
    ///
    /// Fails when a tensor is missing or has the wrong size, or the model
    /// has attention biases (not modelled here).
    pub fn new(checkpoint: &Checkpoint, layout: LoraLayout) -> Result<Self> {
        let config = checkpoint.config().clone();
        anyhow::ensure!(
            !config.attn_bias,
            "the training reference does not model attention biases"
        );
        let c = config.n_embd;
        let q_width = config.n_head * config.head_dim;
        let kv_width = config.n_head_kv * config.head_dim;
        let f = config.n_ff;
        let load = |name: &str, len: usize| -> Result<Vec<f64>> {
            Ok(load_f32(checkpoint, name, len)?
                .into_iter()
                .map(f64::from)
                .collect())
        };
        let token_embd = load("token_embd.weight", config.vocab_size * c)?;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let name = |suffix: &str| format!("blk.{i}.{suffix}");
            blocks.push(Block {
                attn_norm: load(&name("attn_norm.weight"), c)?,
                attn_q: load(&name("attn_q.weight"), q_width * c)?,
                attn_k: load(&name("attn_k.weight"), kv_width * c)?,
                attn_v: load(&name("attn_v.weight"), kv_width * c)?,
                attn_output: load(&name("attn_output.weight"), c * q_width)?,
                ffn_norm: load(&name("ffn_norm.weight"), c)?,
                ffn_gate: load(&name("ffn_gate.weight"), f * c)?,
                ffn_up: load(&name("ffn_up.weight"), f * c)?,
                ffn_down: load(&name("ffn_down.weight"), c * f)?,
            });
        }
        let output_norm = load("output_norm.weight", c)?;
        let output = if config.tied_embeddings {
            None
        } else {
            Some(load("output.weight", config.vocab_size * c)?)
        };
        Ok(Self {
            config,
            layout,
            token_embd,
            blocks,
            output_norm,
            output,
        })
    }

    /// Returns `log_softmax(logits[t])[tokens[t + 1]]` for every position
    /// `t < T - 1` of one sequence, with the adapters `params` (f64, laid
    /// out by the layout), without dropout.
    pub fn token_logprobs(&self, params: &[f64], tokens: &[u32]) -> Vec<f64> {
        self.token_logprobs_dropout(params, tokens, None)
    }

    /// Returns [`ReferenceTrainModel::token_logprobs`] with the layout's
    /// LoRA dropout as the GPU training pass `pass` draws it, for the
    /// sequence whose first row is row `first_row` of that pass's batch.
    pub fn token_logprobs_dropout(
        &self,
        params: &[f64],
        tokens: &[u32],
        dropout: Option<(DropoutPass, usize)>,
    ) -> Vec<f64> {
        let cfg = &self.config;
        let t = tokens.len();
        let (c, h, g, d, f, v) = (
            cfg.n_embd,
            cfg.n_head,
            cfg.n_head_kv,
            cfg.head_dim,
            cfg.n_ff,
            cfg.vocab_size,
        );
        let eps = f64::from(cfg.rms_eps);

        // x = token_embd[tokens]: [T, C]
        let mut x: Vec<f64> = tokens
            .iter()
            .flat_map(|&id| {
                self.token_embd[id as usize * c..(id as usize + 1) * c]
                    .iter()
                    .copied()
            })
            .collect();

        for (i, block) in self.blocks.iter().enumerate() {
            let project = |input: &[f64], w: &[f64], target: Target, n: usize, k: usize| {
                let mut out = matmul(input, w, t, n, k);
                let input = match dropout {
                    Some((pass, first_row)) => {
                        self.dropped_out(input, pass, first_row, i, target, k)
                    }
                    None => input.to_vec(),
                };
                self.add_lora(&mut out, &input, params, i, target, t);
                out
            };

            // Attention sublayer.
            let xn = rms_norm(&x, &block.attn_norm, c, eps);
            let mut q = project(&xn, &block.attn_q, Target::Q, h * d, c);
            let mut k = project(&xn, &block.attn_k, Target::K, g * d, c);
            let vv = project(&xn, &block.attn_v, Target::V, g * d, c);
            rope(&mut q, t, h, d, f64::from(cfg.rope_theta), cfg.rope_layout);
            rope(&mut k, t, g, d, f64::from(cfg.rope_theta), cfg.rope_layout);
            let attn = attention(&q, &k, &vv, t, h, g, d);
            let out = project(&attn, &block.attn_output, Target::O, c, h * d);
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);

            // Feed-forward sublayer.
            let xn = rms_norm(&x, &block.ffn_norm, c, eps);
            let gate = project(&xn, &block.ffn_gate, Target::Gate, f, c);
            let up = project(&xn, &block.ffn_up, Target::Up, f, c);
            let hidden: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(&gt, &u)| gt / (1.0 + (-gt).exp()) * u)
                .collect();
            let out = project(&hidden, &block.ffn_down, Target::Down, c, f);
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
        }
        let xf = rms_norm(&x, &self.output_norm, c, eps);
        let lm_head = self.output.as_ref().unwrap_or(&self.token_embd);
        let logits = matmul(&xf, lm_head, t, v, c);
        (0..t.saturating_sub(1))
            .map(|pos| {
                let row = &logits[pos * v..(pos + 1) * v];
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let log_sum = max + row.iter().map(|&l| (l - max).exp()).sum::<f64>().ln();
                row[tokens[pos + 1] as usize] - log_sum
            })
            .collect()
    }

    /// Returns block `layer`'s base weight of `target`, [out, in], so tests
    /// can take finite differences in the full weight.
    pub fn weight_mut(&mut self, layer: usize, target: Target) -> &mut [f64] {
        let block = &mut self.blocks[layer];
        match target {
            Target::Q => &mut block.attn_q,
            Target::K => &mut block.attn_k,
            Target::V => &mut block.attn_v,
            Target::O => &mut block.attn_output,
            Target::Gate => &mut block.ffn_gate,
            Target::Up => &mut block.ffn_up,
            Target::Down => &mut block.ffn_down,
        }
    }

    /// Returns `x` [T, k] with the LoRA dropout mask of `pass` for block
    /// `layer`'s adapter on `target` applied, row `t` of `x` being row
    /// `first_row + t` of the GPU batch.
    fn dropped_out(
        &self,
        x: &[f64],
        pass: DropoutPass,
        first_row: usize,
        layer: usize,
        target: Target,
        k: usize,
    ) -> Vec<f64> {
        let mask = pass.mask(self.layout.config.dropout, layer, target);
        let scale = 1.0 / (1.0 - f64::from(self.layout.config.dropout));
        x.iter()
            .enumerate()
            .map(|(index, &value)| {
                let element = (first_row * k + index) as u32;
                if mask.keeps(element) {
                    value * scale
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Returns the weights of the tensor with GGUF name `name` (the LM head
    /// of a tied model is `token_embd.weight`), so tests can take finite
    /// differences in any weight.
    ///
    /// # Panics
    ///
    /// Panics on a name the model does not have, or a bias.
    pub fn tensor_mut(&mut self, name: &str) -> &mut [f64] {
        match name {
            "token_embd.weight" => return &mut self.token_embd,
            "output_norm.weight" => return &mut self.output_norm,
            "output.weight" => {
                return self
                    .output
                    .as_mut()
                    .expect("a tied model has no output.weight");
            }
            _ => {}
        }
        let (layer, module) = name
            .strip_prefix("blk.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(layer, rest)| {
                Some((layer.parse::<usize>().ok()?, rest.strip_suffix(".weight")?))
            })
            .unwrap_or_else(|| panic!("no weight `{name}` in the reference model"));
        match module {
            "attn_norm" => &mut self.blocks[layer].attn_norm,
            "ffn_norm" => &mut self.blocks[layer].ffn_norm,
            _ => {
                let target = Target::ALL
                    .into_iter()
                    .find(|t| t.gguf_module() == module)
                    .unwrap_or_else(|| panic!("no weight `{name}` in the reference model"));
                self.weight_mut(layer, target)
            }
        }
    }

    /// Adds `scale * (x Aᵀ) Bᵀ` of block `layer`'s adapter on `target`, if
    /// any, to `out` [T, out].
    fn add_lora(
        &self,
        out: &mut [f64],
        x: &[f64],
        params: &[f64],
        layer: usize,
        target: Target,
        t: usize,
    ) {
        let Some(tensor) = self.layout.find(layer, target) else {
            return;
        };
        let r = self.layout.config.rank as usize;
        let scale = f64::from(self.layout.config.scale());
        let (k, n) = (tensor.in_features, tensor.out_features);
        let a = &params[tensor.a_offset..tensor.a_offset + r * k];
        let b = &params[tensor.b_offset..tensor.b_offset + n * r];
        let hidden = matmul(x, a, t, r, k);
        let delta = matmul(&hidden, b, t, n, r);
        out.iter_mut()
            .zip(&delta)
            .for_each(|(o, d)| *o += scale * d);
    }
}

/// out[m, :] = x[m, :] / sqrt(mean(x[m]^2) + eps) * weight
fn rms_norm(x: &[f64], weight: &[f64], c: usize, eps: f64) -> Vec<f64> {
    x.chunks(c)
        .flat_map(|row| {
            let mean_square = row.iter().map(|v| v * v).sum::<f64>() / c as f64;
            let inv = 1.0 / (mean_square + eps).sqrt();
            row.iter().zip(weight).map(move |(v, w)| v * inv * w)
        })
        .collect()
}

/// out[m, n] = sum_k x[m, k] * w[n, k]
fn matmul(x: &[f64], w: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        let row = &x[i * k..(i + 1) * k];
        for j in 0..n {
            out[i * n + j] = row
                .iter()
                .zip(&w[j * k..(j + 1) * k])
                .map(|(a, b)| a * b)
                .sum();
        }
    }
    out
}

/// Rotates each head of x [T, heads, D] by its position (the row index).
fn rope(x: &mut [f64], t: usize, heads: usize, d: usize, theta: f64, layout: RopeLayout) {
    for pos in 0..t {
        for head in 0..heads {
            let base = (pos * heads + head) * d;
            for i in 0..d / 2 {
                let freq = theta.powf(-2.0 * i as f64 / d as f64);
                let (sin, cos) = (pos as f64 * freq).sin_cos();
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
fn attention(q: &[f64], k: &[f64], v: &[f64], t: usize, h: usize, g: usize, d: usize) -> Vec<f64> {
    let mut out = vec![0.0; t * h * d];
    let scale = 1.0 / (d as f64).sqrt();
    let group = h / g;
    for pos in 0..t {
        for head in 0..h {
            let kv = head / group;
            let qv = &q[(pos * h + head) * d..][..d];
            let scores: Vec<f64> = (0..=pos)
                .map(|j| {
                    qv.iter()
                        .zip(&k[(j * g + kv) * d..][..d])
                        .map(|(a, b)| a * b)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            let o = &mut out[(pos * h + head) * d..][..d];
            for (j, w) in weights.iter().enumerate() {
                for (oi, vi) in o.iter_mut().zip(&v[(j * g + kv) * d..][..d]) {
                    *oi += w / total * vi;
                }
            }
        }
    }
    out
}
