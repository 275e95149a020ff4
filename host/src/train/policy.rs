//! Preference training of the engine's own policy inside the LASeR loop.
//! The trainer's adapter parameters are shared with the engine, so every
//! update shows in the next generation. The reference policy is refreshed
//! from the policy at the start of each iteration.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use laser_model::checkpoint::Checkpoint;

use super::batch::TokenizedPair;
use super::lora::LoraLayout;
use super::model::TrainModel;
use super::{TrainConfig, Trainer, checkpoint, dpo};
use crate::engine::adapter::Adapter;
use crate::engine::{Engine, FinishReason, Generation, MAX_ROWS};
use crate::laser::PreferencePair;

/// The folder inside a run folder with the policy's adapter and training
/// state.
pub const POLICY_DIR: &str = "policy";

/// One training step's outcome.
pub struct PolicyOutcome {
    /// (instance index, mean loss of its pairs)
    pub losses: Vec<(usize, f64)>,
    /// Mean loss over the pairs, `None` when no pair could be trained on.
    pub loss: Option<f64>,
    /// Mean reward margin over the pairs.
    pub margin: Option<f64>,
}

/// A trainer whose adapter the engine applies.
pub struct PolicyTrainer {
    trainer: Trainer,
    /// Appended to responses that ended with an end-of-sequence token but
    /// do not name it (made outside the engine).
    eos: Option<u32>,
}

impl PolicyTrainer {
    /// Uploads a second copy of the base weights at `model_path` for
    /// training, restores the state saved in `state_dir` if there is one,
    /// and makes `engine` apply the trainer's adapter.
    ///
    /// # Errors
    ///
    /// Fails when the model cannot be loaded, the saved state was made with
    /// another config, or a kernel does not compile.
    pub fn open(
        engine: &mut Engine,
        model_path: &Path,
        config: TrainConfig,
        state_dir: &Path,
    ) -> Result<Self> {
        let checkpoint = Checkpoint::open(model_path)?;
        let layout = LoraLayout::new(config.lora.clone(), checkpoint.config())?;
        // NOTE: the training pass keeps its own copy of the base weights
        // beside the engine's (about 100 MiB for SmolLM2-135M Q4_1).
        let model = TrainModel::new(engine.gpu.clone(), &checkpoint, layout.clone())?;
        let mut trainer = Trainer::new(model, config.clone(), None)?;
        if let Some(saved) = checkpoint::load(state_dir)? {
            // The length limit only cuts sequences, and a run may widen it
            // when its longest prompt needs more room.
            let without_limit = |config: &TrainConfig| TrainConfig {
                max_len: 0,
                ..config.clone()
            };
            if without_limit(&saved.config) != without_limit(&config) {
                bail!(
                    "the policy state in {} was made with other training settings",
                    state_dir.display()
                );
            }
            trainer.write_state(&saved.tensors, saved.step)?;
        }
        let adapter = Adapter::new(
            &engine.gpu,
            layout,
            trainer.params_buffer().clone(),
            MAX_ROWS,
        )?;
        engine.set_adapter(Some(adapter));
        Ok(Self {
            trainer,
            eos: engine.tokenizer.eos_ids().first().copied(),
        })
    }

    /// Makes the current policy the reference.
    ///
    /// # Errors
    ///
    /// Fails when the GPU fails.
    pub fn refresh_reference(&self) -> Result<()> {
        self.trainer.refresh_reference()
    }

    /// Runs one optimizer step on `pairs`: the chosen and rejected
    /// responses are `generations[pair.chosen]` and
    /// `generations[pair.rejected]` after `prompts[pair.instance]`. Pairs
    /// with an empty response are skipped.
    ///
    /// # Errors
    ///
    /// Fails on a GPU failure.
    pub fn train(
        &mut self,
        prompts: &[Vec<u32>],
        generations: &[Generation],
        pairs: &[PreferencePair],
    ) -> Result<PolicyOutcome> {
        let response = |generation: &Generation| {
            let mut tokens = generation.tokens.clone();
            // The end-of-sequence token the model drew, of those it has.
            if generation.finish == FinishReason::Eos {
                tokens.extend(generation.eos_token.or(self.eos));
            }
            tokens
        };
        let mut kept = Vec::new();
        let mut tokenized = Vec::new();
        for pair in pairs {
            let chosen = response(&generations[pair.chosen]);
            let rejected = response(&generations[pair.rejected]);
            if chosen.is_empty() || rejected.is_empty() || prompts[pair.instance].is_empty() {
                continue;
            }
            kept.push(pair.instance);
            tokenized.push(TokenizedPair {
                prompt: prompts[pair.instance].clone(),
                chosen,
                rejected,
            });
        }
        if tokenized.is_empty() {
            return Ok(PolicyOutcome {
                losses: Vec::new(),
                loss: None,
                margin: None,
            });
        }

        let indices: Vec<usize> = (0..tokenized.len()).collect();
        let references = self.trainer.reference_logprobs(&tokenized, &indices)?;
        let metrics = self.trainer.train_step(&tokenized, &indices, &references)?;
        let mut per_instance: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
        for (i, loss) in metrics.pair_losses {
            let entry = per_instance.entry(kept[i]).or_default();
            entry.0 += loss;
            entry.1 += 1;
        }
        Ok(PolicyOutcome {
            losses: per_instance
                .into_iter()
                .map(|(i, (sum, n))| (i, sum / n as f64))
                .collect(),
            loss: Some(metrics.loss),
            margin: Some(metrics.margin),
        })
    }

    /// Writes the adapter (PEFT format) and the training state into `dir`.
    ///
    /// # Errors
    ///
    /// Fails on a GPU or file failure.
    pub fn save(&self, dir: &Path, base_model: &str) -> Result<()> {
        dpo::save(dir, &self.trainer, base_model)
    }
}
