//! Preference training of the policy on the GPU: LoRA adapters on the
//! frozen base, the DPO or IPO loss plus an NLL term on the chosen
//! response, AdamW with gradient clipping, gradient accumulation over
//! micro-batches and a learning-rate schedule. Adapters are saved in
//! Hugging Face PEFT's format; the whole training state is saved beside
//! them so a run resumes bit for bit.
//!
//! - `lora`: adapter config, flat parameter layout, init, GPU products.
//! - `model`: the training forward and backward passes.
//! - `loss`: DPO, IPO and NLL with their gradients.
//! - `batch`: tokenized pairs and padded micro-batches.
//! - `schedule`: learning-rate schedules.
//! - `peft`: PEFT adapter files.
//! - `checkpoint`: the resumable training state.
//! - `dpo`: the training loop over a pair file.
//! - `reference`: a CPU reference of the training forward pass in f64.
//! - `merge`: the base model with an adapter merged in, as a Hugging Face
//!   folder.
//! - `policy`: the trainer inside the LASeR loop.

pub mod batch;
pub mod checkpoint;
pub mod dpo;
pub mod lora;
pub mod loss;
pub mod merge;
pub mod model;
pub mod peft;
pub mod policy;
pub mod reference;
pub mod schedule;

use std::time::Instant;

use anyhow::{Result, ensure};
use laser_gpu::optimizer::{AdamW, AdamWConfig, GradNorm};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use batch::{TokenizedPair, micro_batches, pair_batch};
use lora::{DropoutPass, LoraConfig};
use loss::{LossConfig, PairLogprobs, pair_loss};
use model::TrainModel;
use schedule::{Schedule, ScheduleKind};

/// Every training hyperparameter. See [`TrainConfig::default`] for the
/// defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub lora: LoraConfig,
    pub loss: LossConfig,
    /// Peak AdamW learning rate.
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Global gradient norm limit; 0 turns clipping off.
    pub max_grad_norm: f32,
    pub schedule: ScheduleKind,
    pub warmup_steps: u32,
    /// Optimizer steps of the whole run (the schedule's length).
    pub steps: u32,
    /// Preference pairs per optimizer step.
    pub pairs_per_step: usize,
    /// Pairs per forward and backward pass; gradients of the micro-batches
    /// of one step are summed.
    pub micro_batch: usize,
    /// Tokens per sequence (prompt + response); longer responses are cut.
    pub max_len: usize,
    /// Seeds the adapter init, the pair order and the LoRA dropout masks.
    pub seed: u64,
}

impl Default for TrainConfig {
    /// LoRA rank 16 and alpha 32 on q and v. DPO with beta 0.1 plus the NLL
    /// at weight 1. AdamW with lr 2e-4, betas (0.9, 0.999), eps 1e-8, no
    /// weight decay and clipping at norm 1. A constant schedule without
    /// warm-up. 100 steps of 8 pairs in micro-batches of 2, sequences up to
    /// 512 tokens, seed 0.
    fn default() -> Self {
        Self {
            lora: LoraConfig::default(),
            loss: LossConfig::default(),
            lr: 2e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            schedule: ScheduleKind::Constant,
            warmup_steps: 0,
            steps: 100,
            pairs_per_step: 8,
            micro_batch: 2,
            max_len: 512,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Returns the AdamW settings of step `step` (counted from 0), with
    /// the scheduled learning rate.
    pub fn adamw(&self, step: u32) -> AdamWConfig {
        let schedule = Schedule {
            kind: self.schedule,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
        };
        AdamWConfig {
            lr: (f64::from(self.lr) * schedule.factor(step)) as f32,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            max_grad_norm: self.max_grad_norm,
        }
    }
}

/// The reference model's summed response log-probabilities of one pair.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceLogprobs {
    pub chosen: f64,
    pub rejected: f64,
}

/// Measurements of one optimizer step, taken before its update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Steps done after this one.
    pub step: u32,
    pub lr: f32,
    /// Mean loss over the step's pairs.
    pub loss: f64,
    /// Mean reward margin over the step's pairs.
    pub margin: f64,
    /// Fraction of pairs whose margin is positive.
    pub accuracy: f64,
    /// Mean per-token NLL of the chosen responses.
    pub chosen_nll: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens run forward and backward, padding included.
    pub tokens: usize,
    pub seconds: f64,
    /// (pair index, loss) of every pair of the step.
    #[serde(skip)]
    pub pair_losses: Vec<(usize, f64)>,
}

/// The trainable state on the GPU: adapter parameters, their gradients,
/// AdamW moments and the reference adapter, all f32 [P] in the layout of
/// `model.layout`.
pub struct Trainer {
    pub model: TrainModel,
    pub config: TrainConfig,
    /// f32 [P]
    params: wgpu::Buffer,
    /// f32 [P]
    grads: wgpu::Buffer,
    /// f32 [P]: AdamW first moment.
    m: wgpu::Buffer,
    /// f32 [P]: AdamW second moment.
    v: wgpu::Buffer,
    /// f32 [P]: the reference policy's adapter.
    reference: wgpu::Buffer,
    /// f32 [1]: squared global gradient norm.
    sq_norm: wgpu::Buffer,
    grad_norm: GradNorm,
    adamw: AdamW,
    /// Optimizer steps done.
    pub step: u32,
}

impl Trainer {
    /// Starts training on `model` from `params` (fresh ones from the seed
    /// when `None`); the reference is the starting adapter.
    ///
    /// # Errors
    ///
    /// Fails when `params` does not match the layout or a kernel does not
    /// compile.
    pub fn new(model: TrainModel, config: TrainConfig, params: Option<Vec<f32>>) -> Result<Self> {
        let len = model.layout.len;
        let params = params.unwrap_or_else(|| model.layout.init(config.seed));
        ensure!(
            params.len() == len,
            "adapter has {} parameters, the layout expects {len}",
            params.len()
        );
        let gpu = &model.gpu;
        let zeros = vec![0.0f32; len];
        Ok(Self {
            params: gpu.buffer_from("lora.params", &params),
            grads: gpu.buffer_from("lora.grads", &zeros),
            m: gpu.buffer_from("lora.adam_m", &zeros),
            v: gpu.buffer_from("lora.adam_v", &zeros),
            reference: gpu.buffer_from("lora.reference", &params),
            sq_norm: gpu.buffer_zeroed("lora.sq_norm", 4),
            grad_norm: GradNorm::new(gpu)?,
            adamw: AdamW::new(gpu)?,
            step: 0,
            model,
            config,
        })
    }

    /// Returns the adapter parameter buffer, f32 [P], which an engine can
    /// share to generate with the adapter.
    pub fn params_buffer(&self) -> &wgpu::Buffer {
        &self.params
    }

    /// Reads `(params, m, v, reference)` back from the GPU.
    ///
    /// # Errors
    ///
    /// Fails when the GPU fails.
    pub fn read_state(&self) -> Result<[Vec<f32>; 4]> {
        let bytes = self.model.layout.len as u64 * 4;
        let gpu = &self.model.gpu;
        Ok([
            gpu.read(&self.params, bytes)?,
            gpu.read(&self.m, bytes)?,
            gpu.read(&self.v, bytes)?,
            gpu.read(&self.reference, bytes)?,
        ])
    }

    /// Replaces the state with `(params, m, v, reference)` at step `step`.
    ///
    /// # Errors
    ///
    /// Fails when a vector does not match the layout.
    pub fn write_state(&mut self, state: &[Vec<f32>; 4], step: u32) -> Result<()> {
        let len = self.model.layout.len;
        for values in state {
            ensure!(
                values.len() == len,
                "saved state has {} values, the layout expects {len}",
                values.len()
            );
        }
        let gpu = &self.model.gpu;
        for (buffer, values) in [&self.params, &self.m, &self.v, &self.reference]
            .into_iter()
            .zip(state)
        {
            gpu.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(values));
        }
        self.step = step;
        gpu.wait()
    }

    /// Makes the current policy the reference, as LASeR does at the start
    /// of each iteration.
    pub fn refresh_reference(&self) -> Result<()> {
        let gpu = &self.model.gpu;
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("reference refresh"),
            });
        encoder.copy_buffer_to_buffer(
            &self.params,
            0,
            &self.reference,
            0,
            self.model.layout.len as u64 * 4,
        );
        gpu.submit(encoder);
        gpu.wait()
    }

    /// Computes the reference log-probabilities of `pairs[i]` for each `i`
    /// in `indices`, in micro-batches grouped as [`micro_batches`] does;
    /// returns them in the order of `indices`.
    ///
    /// # Errors
    ///
    /// Fails when a pair cannot be batched or the GPU fails.
    pub fn reference_logprobs(
        &mut self,
        pairs: &[TokenizedPair],
        indices: &[usize],
    ) -> Result<Vec<ReferenceLogprobs>> {
        let mut found = std::collections::HashMap::new();
        for group in micro_batches(pairs, indices, self.config.micro_batch) {
            let batch = pair_batch(pairs, &group, self.config.max_len)?;
            let logprobs = self.model.forward(&self.reference, &batch)?;
            let b = group.len();
            for (j, &i) in group.iter().enumerate() {
                let chosen = batch.sequence_sum(&logprobs, j);
                let rejected = batch.sequence_sum(&logprobs, b + j);
                found.insert(i, ReferenceLogprobs { chosen, rejected });
            }
        }
        Ok(indices.iter().map(|i| found[i]).collect())
    }

    /// Runs one optimizer step on `pairs[i]` for `i` in `indices`, with
    /// `references[k]` the reference log-probabilities of `indices[k]`:
    /// gradients summed over micro-batches of the mean pair loss, clipped,
    /// then one AdamW update.
    ///
    /// # Errors
    ///
    /// Fails on an empty step, a pair that cannot be batched, or a GPU
    /// failure.
    pub fn train_step(
        &mut self,
        pairs: &[TokenizedPair],
        indices: &[usize],
        references: &[ReferenceLogprobs],
    ) -> Result<StepMetrics> {
        ensure!(
            !indices.is_empty(),
            "a training step needs at least one pair"
        );
        ensure!(
            references.len() == indices.len(),
            "{} reference entries for {} pairs",
            references.len(),
            indices.len()
        );
        let started = Instant::now();
        let reference_of: std::collections::HashMap<usize, ReferenceLogprobs> = indices
            .iter()
            .copied()
            .zip(references.iter().copied())
            .collect();
        let gpu = self.model.gpu.clone();
        let len_bytes = self.model.layout.len as u64 * 4;
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("zero grads"),
            });
        encoder.clear_buffer(&self.grads, 0, Some(len_bytes));
        gpu.submit(encoder);

        let pair_count = indices.len() as f64;
        let (mut loss_sum, mut margin_sum, mut nll_sum, mut correct, mut tokens) =
            (0.0, 0.0, 0.0, 0usize, 0usize);
        let mut pair_losses = Vec::with_capacity(indices.len());
        for (micro_batch, group) in micro_batches(pairs, indices, self.config.micro_batch)
            .into_iter()
            .enumerate()
        {
            let batch = pair_batch(pairs, &group, self.config.max_len)?;
            let pass = DropoutPass {
                seed: self.config.seed,
                step: self.step,
                micro_batch: micro_batch as u32,
            };
            let logprobs = self.model.forward_train(&self.params, &batch, pass)?;
            let b = group.len();
            let t = batch.seq_len as usize;
            let mut d_logprob = vec![0.0f32; logprobs.len()];
            for (j, &i) in group.iter().enumerate() {
                let reference = reference_of[&i];
                let p = PairLogprobs {
                    policy_chosen: batch.sequence_sum(&logprobs, j),
                    policy_rejected: batch.sequence_sum(&logprobs, b + j),
                    reference_chosen: reference.chosen,
                    reference_rejected: reference.rejected,
                    chosen_tokens: batch.counted(j),
                    rejected_tokens: batch.counted(b + j),
                };
                let loss = pair_loss(&self.config.loss, &p);
                loss_sum += loss.loss;
                margin_sum += loss.margin;
                nll_sum += loss.chosen_nll;
                correct += usize::from(loss.margin > 0.0);
                pair_losses.push((i, loss.loss));
                // The step's loss is the mean over its pairs.
                for (sequence, d) in [(j, loss.d_chosen), (b + j, loss.d_rejected)] {
                    let rows = sequence * t..(sequence + 1) * t;
                    for (slot, &counted) in
                        d_logprob[rows.clone()].iter_mut().zip(&batch.mask[rows])
                    {
                        if counted {
                            *slot = (d / pair_count) as f32;
                        }
                    }
                }
            }
            self.model
                .backward(&self.params, &self.grads, &batch, &d_logprob)?;
            tokens += batch.rows() as usize;
        }

        let adamw = self.config.adamw(self.step);
        let n = self.model.layout.len as u32;
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("adamw"),
            });
        self.grad_norm
            .encode(&gpu, &mut encoder, &self.grads, &self.sq_norm, n);
        self.adamw.encode(
            &gpu,
            &mut encoder,
            &adamw,
            self.step + 1,
            &self.params,
            &self.grads,
            &self.m,
            &self.v,
            &self.sq_norm,
            n,
        );
        gpu.submit(encoder);
        let sq_norm: Vec<f32> = gpu.read(&self.sq_norm, 4)?;
        self.step += 1;

        Ok(StepMetrics {
            step: self.step,
            lr: adamw.lr,
            loss: loss_sum / pair_count,
            margin: margin_sum / pair_count,
            accuracy: correct as f64 / pair_count,
            chosen_nll: nll_sum / pair_count,
            grad_norm: f64::from(sq_norm[0]).sqrt(),
            tokens,
            seconds: started.elapsed().as_secs_f64(),
            pair_losses,
        })
    }
}

/// Returns the pair indices of step `step`: epochs of `pair_count` pairs
/// each in an order shuffled by `seed` and the epoch, read
/// `pairs_per_step` (at most `pair_count`) at a time. The order depends
/// only on the arguments, so a resumed run trains on the same pairs.
pub fn step_indices(seed: u64, step: u32, pair_count: usize, pairs_per_step: usize) -> Vec<usize> {
    // A step never contains one pair twice, so it takes at most every pair.
    let per_step = pairs_per_step.min(pair_count);
    let start = step as usize * per_step;
    (start..start + per_step)
        .map(|position| {
            let epoch = position / pair_count;
            let mut order: Vec<usize> = (0..pair_count).collect();
            order.shuffle(&mut StdRng::seed_from_u64(
                seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ));
            order[position % pair_count]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_indices_cover_each_epoch() {
        let mut first_epoch: Vec<usize> = (0..3)
            .flat_map(|step| step_indices(7, step, 6, 2))
            .collect();
        first_epoch.sort_unstable();
        assert_eq!(first_epoch, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(step_indices(7, 4, 6, 2), step_indices(7, 4, 6, 2));
    }

    #[test]
    fn step_indices_cap_at_pair_count() {
        let mut indices = step_indices(1, 0, 3, 10);
        indices.sort_unstable();
        assert_eq!(indices, vec![0, 1, 2]);
    }
}
