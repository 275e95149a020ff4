//! The resumable training state: adapter parameters, AdamW moments, the
//! reference adapter, the step and the config (in full fine-tuning, the
//! trained weights and their AdamW moments), in one safetensors file
//! written atomically, so a run killed at any moment resumes from its last
//! complete checkpoint. The pair order, the adapter init and the LoRA
//! dropout masks are functions of the seed and the step (see
//! [`super::step_indices`] and [`super::lora::DropoutPass`]), so the seed
//! and the step are the whole random state.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use super::{TrainConfig, Trainer};

/// The training state file, beside the PEFT adapter files.
pub const STATE_FILE: &str = "training_state.safetensors";

/// The metadata key holding [`StateHeader`] as JSON.
const HEADER_KEY: &str = "laser_host_training_state";

/// The step and config, stored in the file's metadata.
#[derive(Serialize, Deserialize)]
struct StateHeader {
    step: u32,
    config: TrainConfig,
}

/// Writes `trainer`'s state into `dir` atomically.
///
/// # Errors
///
/// Fails when the GPU fails, the state contains a value that is not
/// finite, or the file cannot be written.
pub fn save(dir: &Path, trainer: &Trainer) -> Result<()> {
    let state = trainer.read_state()?;
    ensure_finite(&state, trainer.step)?;
    write(dir, trainer, &state)
}

/// Checks that every value of `state`, read at step `step`, is finite, so
/// that a diverged run never overwrites its last good checkpoint.
///
/// # Errors
///
/// Names the first tensor with a NaN or infinite value.
pub fn ensure_finite(state: &[(String, Vec<f32>)], step: u32) -> Result<()> {
    for (name, values) in state {
        if let Some(value) = values.iter().find(|value| !value.is_finite()) {
            anyhow::bail!(
                "training diverged at step {step}: tensor `{name}` of the training state \
                 contains {value}, so it was not saved; lower the learning rate and check the \
                 training pairs"
            );
        }
    }
    Ok(())
}

/// Writes `state`, read from `trainer` by [`Trainer::read_state`], into
/// `dir` atomically.
///
/// # Errors
///
/// Fails when the file cannot be written.
pub fn write(dir: &Path, trainer: &Trainer, state: &[(String, Vec<f32>)]) -> Result<()> {
    let views = state
        .iter()
        .map(|(name, values)| {
            Ok((
                name.as_str(),
                TensorView::new(Dtype::F32, vec![values.len()], bytemuck::cast_slice(values))?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    // One metadata key: safetensors writes a HashMap's keys in its random
    // order, and the file must be the same bytes for the same state.
    let header = StateHeader {
        step: trainer.step,
        config: trainer.config.clone(),
    };
    let metadata = HashMap::from([(HEADER_KEY.to_string(), serde_json::to_string(&header)?)]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .context("failed to serialize the training state")?;
    crate::atomic::write(&dir.join(STATE_FILE), &bytes)
}

/// A training state read from disk.
pub struct SavedState {
    pub step: u32,
    pub config: TrainConfig,
    /// Every tensor of the state by name, as [`Trainer::read_state`] names
    /// them.
    pub tensors: Vec<(String, Vec<f32>)>,
}

/// Reads the training state in `dir`, or `None` when there is none.
///
/// # Errors
///
/// Fails when the file exists but is malformed.
pub fn load(dir: &Path) -> Result<Option<SavedState>> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes =
        std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("invalid safetensors file {}", path.display()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let text = metadata
        .get(HEADER_KEY)
        .with_context(|| format!("{}: missing `{HEADER_KEY}` metadata", path.display()))?;
    let StateHeader { step, config } = serde_json::from_str(text)
        .with_context(|| format!("{}: invalid `{HEADER_KEY}` metadata", path.display()))?;
    let file = SafeTensors::deserialize(&bytes)?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        ensure!(
            view.dtype() == Dtype::F32,
            "{}: tensor `{name}` is not F32",
            path.display()
        );
        tensors.push((name, bytemuck::pod_collect_to_vec(view.data())));
    }
    Ok(Some(SavedState {
        step,
        config,
        tensors,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn state_file_is_not_read_as_weights() {
        // The state is saved beside the model's shards, which a folder
        // without an index lists by their extension.
        assert!(laser_model::hf::NOT_SHARDS.contains(&super::STATE_FILE));
    }
}
