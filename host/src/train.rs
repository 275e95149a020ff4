//! Preference training of the policy on the GPU: LoRA adapters on the
//! frozen base (or full fine-tuning of an unquantized model), the DPO or
//! IPO loss plus an NLL term on the chosen response, AdamW with gradient
//! clipping, gradient accumulation over micro-batches and a learning-rate
//! schedule. Adapters are saved in Hugging Face PEFT's format and fully
//! fine-tuned weights as a Hugging Face model. The whole training state is
//! saved beside them, so a run resumes bit for bit.
//!
//! - `lora`: adapter config, flat parameter layout, init, GPU products.
//! - `full`: the tensors of full fine-tuning.
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
pub mod full;
pub mod lora;
pub mod loss;
pub mod merge;
pub mod model;
pub mod peft;
pub mod policy;
pub mod reference;
pub mod schedule;

use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use laser_gpu::optimizer::{AdamW, AdamWConfig, GradNorm};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use batch::{TokenizedPair, micro_batches, pair_batch};
use full::FullConfig;
use lora::{DropoutPass, LoraConfig};
use loss::{LossConfig, PairLogprobs, pair_loss};
use model::TrainModel;
use schedule::{Schedule, ScheduleKind};

/// Every training hyperparameter. See [`TrainConfig::default`] for the
/// defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The adapters of LoRA training; unused in full fine-tuning.
    pub lora: LoraConfig,
    /// Full fine-tuning in place of LoRA when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<FullConfig>,
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
    /// Maximum tokens per sequence (prompt + response); a longer pair is
    /// cut as [`TokenizedPair::sequence`] does.
    pub max_len: usize,
    /// Seeds the adapter init, the pair order and the LoRA dropout masks.
    pub seed: u64,
}

impl Default for TrainConfig {
    /// LoRA (not full fine-tuning) with rank 16 and alpha 32 on q and v.
    /// DPO with beta 0.1 plus the NLL
    /// at weight 1. AdamW with lr 2e-4, betas (0.9, 0.999), eps 1e-8, no
    /// weight decay and clipping at norm 1. A constant schedule without
    /// warm-up. 100 steps of 8 pairs in micro-batches of 2, sequences up to
    /// 512 tokens, seed 0.
    fn default() -> Self {
        Self {
            lora: LoraConfig::default(),
            full: None,
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

/// One trained f32 tensor on the GPU with its gradient and AdamW moments.
struct ParamTensor {
    /// The tensor's name in the training state: empty for the LoRA
    /// adapter buffer, the GGUF name in full fine-tuning.
    name: String,
    /// The number of f32 values.
    len: usize,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    /// AdamW first moment.
    m: wgpu::Buffer,
    /// AdamW second moment.
    v: wgpu::Buffer,
}

impl ParamTensor {
    /// Returns the state-file name of this tensor's `kind` (`params`,
    /// `adam_m` or `adam_v`).
    fn state_name(&self, kind: &str) -> String {
        if self.name.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{}", self.name)
        }
    }
}

/// The trainable state on the GPU. In LoRA training: the adapter
/// parameters, their gradients, AdamW moments and the reference adapter,
/// all f32 [P] in the layout of `model.layout`. In full fine-tuning: the
/// gradient and AdamW moments of every trained tensor of `model.full`,
/// whose weights the model holds; the frozen base is the reference.
pub struct Trainer {
    pub model: TrainModel,
    pub config: TrainConfig,
    /// The LoRA adapter buffer, or every trained tensor of full
    /// fine-tuning in layout order.
    tensors: Vec<ParamTensor>,
    /// Full fine-tuning only: one f32 gradient buffer per tensor of the
    /// layout, in its order. The buffers of frozen tensors stay zero.
    full_grads: Vec<wgpu::Buffer>,
    /// f32 [P]: the reference policy's adapter; LoRA only.
    reference: Option<wgpu::Buffer>,
    /// f32 [1]: squared global gradient norm.
    sq_norm: wgpu::Buffer,
    /// f32 [tensors]: the squared gradient norm of each tensor.
    tensor_sq_norms: wgpu::Buffer,
    grad_norm: GradNorm,
    adamw: AdamW,
    /// Optimizer steps done.
    pub step: u32,
}

impl Trainer {
    /// Starts training on `model`. LoRA training starts from `params`
    /// (fresh ones from the seed when `None`), and the reference is the
    /// starting adapter. Full fine-tuning starts from the model's weights
    /// and takes no `params`.
    ///
    /// # Errors
    ///
    /// Fails when `params` does not match the layout, `config` and the
    /// model disagree on full fine-tuning, or a kernel does not compile.
    pub fn new(model: TrainModel, config: TrainConfig, params: Option<Vec<f32>>) -> Result<Self> {
        let gpu = model.gpu.clone();
        let tensor = |name: &str, params: wgpu::Buffer, grads: wgpu::Buffer, len: usize| {
            let label = if name.is_empty() { "lora" } else { name };
            ParamTensor {
                name: name.to_string(),
                len,
                params,
                grads,
                m: gpu.buffer_zeroed(&format!("{label}.adam_m"), len as u64 * 4),
                v: gpu.buffer_zeroed(&format!("{label}.adam_v"), len as u64 * 4),
            }
        };
        let (tensors, full_grads, reference) = match &model.full {
            Some(full) => {
                ensure!(
                    config.full == Some(full.layout.config),
                    "the model was loaded for full fine-tuning with {:?}, but the training \
                     settings ask for {:?}",
                    full.layout.config,
                    config.full
                );
                ensure!(
                    params.is_none(),
                    "full fine-tuning starts from the model's weights and takes no adapter"
                );
                let full_grads: Vec<wgpu::Buffer> = full
                    .layout
                    .tensors
                    .iter()
                    .map(|t| gpu.buffer_zeroed(&format!("{}.grad", t.name), t.len() as u64 * 4))
                    .collect();
                let tensors = full
                    .layout
                    .tensors
                    .iter()
                    .zip(&full.params)
                    .zip(&full_grads)
                    .filter(|((t, _), _)| t.trainable)
                    .map(|((t, p), g)| tensor(&t.name, p.clone(), g.clone(), t.len()))
                    .collect();
                (tensors, full_grads, None)
            }
            None => {
                ensure!(
                    config.full.is_none(),
                    "the training settings ask for full fine-tuning, but the model was loaded \
                     for LoRA; load it with TrainModel::new_full"
                );
                let len = model.layout.len;
                let params = params.unwrap_or_else(|| model.layout.init(config.seed));
                ensure!(
                    params.len() == len,
                    "adapter has {} parameters, the layout expects {len}",
                    params.len()
                );
                let buffer = gpu.buffer_from("lora.params", &params);
                let grads = gpu.buffer_zeroed("lora.grads", len as u64 * 4);
                let reference = gpu.buffer_from("lora.reference", &params);
                (
                    vec![tensor("", buffer, grads, len)],
                    Vec::new(),
                    Some(reference),
                )
            }
        };
        let sq_norms_bytes = tensors.len() as u64 * 4;
        Ok(Self {
            tensors,
            full_grads,
            reference,
            sq_norm: gpu.buffer_zeroed("train.sq_norm", 4),
            tensor_sq_norms: gpu.buffer_zeroed("train.tensor_sq_norms", sq_norms_bytes),
            grad_norm: GradNorm::new(&gpu)?,
            adamw: AdamW::new(&gpu)?,
            step: 0,
            model,
            config,
        })
    }

    /// Returns the LoRA adapter's parameter buffer, f32 [P], which an
    /// engine can share to generate with the adapter.
    ///
    /// # Panics
    ///
    /// Panics in full fine-tuning, which has no adapter.
    pub fn params_buffer(&self) -> &wgpu::Buffer {
        assert!(
            self.model.full.is_none(),
            "full fine-tuning has no adapter buffer"
        );
        &self.tensors[0].params
    }

    /// Reads the LoRA adapter's parameters back from the GPU.
    ///
    /// # Errors
    ///
    /// Fails in full fine-tuning, which has no adapter, or when the GPU
    /// fails.
    pub fn read_adapter(&self) -> Result<Vec<f32>> {
        ensure!(self.model.full.is_none(), "full fine-tuning has no adapter");
        let tensor = &self.tensors[0];
        self.model.gpu.read(&tensor.params, tensor.len as u64 * 4)
    }

    /// Returns `(state name, buffer, length)` of everything the training
    /// state holds: the parameters, then both AdamW moments of every
    /// tensor, then the LoRA reference adapter.
    fn state_buffers(&self) -> Vec<(String, &wgpu::Buffer, usize)> {
        let mut buffers = Vec::new();
        for kind in ["params", "adam_m", "adam_v"] {
            for tensor in &self.tensors {
                let buffer = match kind {
                    "params" => &tensor.params,
                    "adam_m" => &tensor.m,
                    _ => &tensor.v,
                };
                buffers.push((tensor.state_name(kind), buffer, tensor.len));
            }
        }
        if let Some(reference) = &self.reference {
            buffers.push(("reference".to_string(), reference, self.tensors[0].len));
        }
        buffers
    }

    /// Reads the training state back from the GPU as named tensors. LoRA
    /// training names them `params`, `adam_m`, `adam_v` and `reference`.
    /// Full fine-tuning has `params.{name}`, `adam_m.{name}` and
    /// `adam_v.{name}` for every trained tensor.
    ///
    /// # Errors
    ///
    /// Fails when the GPU fails.
    pub fn read_state(&self) -> Result<Vec<(String, Vec<f32>)>> {
        let gpu = &self.model.gpu;
        self.state_buffers()
            .into_iter()
            .map(|(name, buffer, len)| Ok((name, gpu.read(buffer, len as u64 * 4)?)))
            .collect()
    }

    /// Replaces the state with `state`, named as [`Trainer::read_state`]
    /// names it, at step `step`.
    ///
    /// # Errors
    ///
    /// Fails when a tensor is missing from `state` or has the wrong length.
    pub fn write_state(&mut self, state: &[(String, Vec<f32>)], step: u32) -> Result<()> {
        let saved: std::collections::HashMap<&str, &Vec<f32>> = state
            .iter()
            .map(|(name, values)| (name.as_str(), values))
            .collect();
        let gpu = &self.model.gpu;
        for (name, buffer, len) in self.state_buffers() {
            let values = saved
                .get(name.as_str())
                .with_context(|| format!("the saved state has no tensor `{name}`"))?;
            ensure!(
                values.len() == len,
                "saved tensor `{name}` has {} values, expected {len}",
                values.len()
            );
            gpu.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(values));
        }
        self.step = step;
        gpu.wait()
    }

    /// Makes the current policy the reference, as LASeR does at the start
    /// of each iteration.
    ///
    /// # Errors
    ///
    /// Fails in full fine-tuning, whose reference is the frozen base, or
    /// when the GPU fails.
    pub fn refresh_reference(&self) -> Result<()> {
        let Some(reference) = &self.reference else {
            bail!("full fine-tuning keeps the base model as its reference");
        };
        let gpu = &self.model.gpu;
        let mut encoder = gpu.encoder("reference refresh");
        encoder.raw().copy_buffer_to_buffer(
            &self.tensors[0].params,
            0,
            reference,
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
            let logprobs = match &self.reference {
                Some(reference) => self.model.forward(reference, &batch)?,
                None => self.model.forward_base(&batch)?,
            };
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
    /// Fails on an empty step, a pair that cannot be batched, a loss or
    /// gradient norm that is not finite (before the update, so the
    /// parameters stay as they were), or a GPU failure.
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
        let mut encoder = gpu.encoder("zero grads");
        for tensor in &self.tensors {
            encoder
                .raw()
                .clear_buffer(&tensor.grads, 0, Some(tensor.len as u64 * 4));
        }
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
            let logprobs = if self.model.full.is_some() {
                self.model.forward_full(&batch)?
            } else {
                self.model
                    .forward_train(&self.tensors[0].params, &batch, pass)?
            };
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
            if self.model.full.is_some() {
                self.model
                    .backward_full(&self.full_grads, &batch, &d_logprob)?;
            } else {
                let tensor = &self.tensors[0];
                self.model
                    .backward(&tensor.params, &tensor.grads, &batch, &d_logprob)?;
            }
            tokens += batch.rows() as usize;
        }

        let adamw = self.config.adamw(self.step);
        let sq_norm = self.global_sq_norm()?;
        let loss = loss_sum / pair_count;
        let grad_norm = f64::from(sq_norm).sqrt();
        // AdamW would write NaN into every parameter, so the step stops
        // before the update and the last saved state stays usable.
        if !loss.is_finite() || !grad_norm.is_finite() {
            let value = if loss.is_finite() {
                format!("the gradient norm is {grad_norm}")
            } else {
                format!("the loss is {loss}")
            };
            bail!(
                "training diverged at step {}: {value}, so the step's update was not applied; \
                 lower the learning rate (now {:e}) and check the training pairs for empty or \
                 broken responses",
                self.step + 1,
                self.config.lr
            );
        }
        let mut encoder = gpu.encoder("adamw");
        for tensor in &self.tensors {
            self.adamw.encode(
                &gpu,
                &mut encoder,
                &adamw,
                self.step + 1,
                &tensor.params,
                &tensor.grads,
                &tensor.m,
                &tensor.v,
                &self.sq_norm,
                tensor.len as u32,
            );
        }
        gpu.submit(encoder);
        gpu.wait()?;
        self.step += 1;

        Ok(StepMetrics {
            step: self.step,
            lr: adamw.lr,
            loss,
            margin: margin_sum / pair_count,
            accuracy: correct as f64 / pair_count,
            chosen_nll: nll_sum / pair_count,
            grad_norm,
            tokens,
            seconds: started.elapsed().as_secs_f64(),
            pair_losses,
        })
    }

    /// Computes the squared global gradient norm: each tensor's squared
    /// norm on the GPU, summed on the CPU in f64 in tensor order, and
    /// stored into `sq_norm` for AdamW's clipping. Returns it.
    fn global_sq_norm(&self) -> Result<f32> {
        let gpu = &self.model.gpu;
        let mut encoder = gpu.encoder("grad norm");
        for (i, tensor) in self.tensors.iter().enumerate() {
            let n = tensor.len as u32;
            self.grad_norm
                .encode(gpu, &mut encoder, &tensor.grads, &self.sq_norm, n);
            encoder.raw().copy_buffer_to_buffer(
                &self.sq_norm,
                0,
                &self.tensor_sq_norms,
                i as u64 * 4,
                4,
            );
        }
        gpu.submit(encoder);
        let bytes = self.tensors.len() as u64 * 4;
        let per_tensor: Vec<f32> = gpu.read(&self.tensor_sq_norms, bytes)?;
        let sq_norm = per_tensor.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
        gpu.queue
            .write_buffer(&self.sq_norm, 0, bytemuck::bytes_of(&sq_norm));
        Ok(sq_norm)
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
