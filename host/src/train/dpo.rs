//! The preference-training loop over a fixed set of pairs, as the `dpo`
//! command runs it: reference log-probabilities once per pair, then
//! optimizer steps with metrics, checkpoints and resumption.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

mod pairs;

use anyhow::{Context, Result, bail};

use super::batch::TokenizedPair;
use super::model::TrainModel;
use super::{StepMetrics, TrainConfig, Trainer, checkpoint, full, peft, step_indices};

pub use pairs::load_pairs;

/// Per-step metrics, one JSON object a line.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Where and how a run writes its output.
pub struct RunOptions {
    /// The folder for the adapter, the training state and the metrics.
    pub out: PathBuf,
    /// Written into `adapter_config.json` as `base_model_name_or_path`.
    pub base_model: String,
    /// Checkpoint every this many steps (and after the last one).
    pub save_every: u32,
    /// Continue from the training state in `out`.
    pub resume: bool,
    /// Return after this many steps are done, as if the process were
    /// killed there (for tests of resumption).
    pub stop_after: Option<u32>,
}

/// Trains on `pairs` for `config.steps` steps, calling `on_step` after
/// each; returns the trainer at the end. After an interrupt (see
/// [`crate::interrupt`]) it saves the state once the step in progress is
/// done, then returns an error saying how to resume.
///
/// # Errors
///
/// Fails when a saved state does not match `config`, training diverges
/// (see [`Trainer::train_step`]), an interrupt stops the run, or on a GPU
/// or file failure.
pub fn run(
    model: TrainModel,
    config: TrainConfig,
    pairs: &[TokenizedPair],
    options: &RunOptions,
    mut on_step: impl FnMut(&StepMetrics),
) -> Result<Trainer> {
    let saved = if options.resume {
        checkpoint::load(&options.out)?
    } else {
        None
    };
    let mut trainer = Trainer::new(model, config.clone(), None)?;
    let metrics_path = options.out.join(METRICS_FILE);
    if let Some(saved) = saved {
        if saved.config != config {
            bail!(
                "the training state in {} was made with other settings ({}); resume with the same \
                 options or use a new folder",
                options.out.display(),
                changed_settings(&saved.config, &config)
            );
        }
        trainer.write_state(&saved.tensors, saved.step)?;
        keep_metrics_up_to(&metrics_path, saved.step)?;
        tracing::debug!(step = saved.step, "resumed training state");
    } else {
        std::fs::create_dir_all(&options.out)
            .with_context(|| format!("failed to create {}", options.out.display()))?;
        crate::atomic::write(&metrics_path, b"")?;
    }

    let all: Vec<usize> = (0..pairs.len()).collect();
    let references = trainer.reference_logprobs(pairs, &all)?;
    let save_every = options.save_every.max(1);
    let mut saved_step = None;
    while trainer.step < config.steps {
        if crate::interrupt::requested() {
            if saved_step != Some(trainer.step) {
                save(&options.out, &trainer, &options.base_model)?;
            }
            bail!(
                "stopped after step {} of {} on request; run the same command with --resume \
                 to continue from {}",
                trainer.step,
                config.steps,
                options.out.display()
            );
        }
        let indices = step_indices(
            config.seed,
            trainer.step,
            pairs.len(),
            config.pairs_per_step,
        );
        let step_references: Vec<_> = indices.iter().map(|&i| references[i]).collect();
        let metrics = trainer.train_step(pairs, &indices, &step_references)?;
        append_metrics(&metrics_path, &metrics)?;
        on_step(&metrics);
        if trainer.step % save_every == 0 || trainer.step == config.steps {
            save(&options.out, &trainer, &options.base_model)?;
            saved_step = Some(trainer.step);
        }
        if options.stop_after.is_some_and(|stop| trainer.step >= stop) {
            break;
        }
    }
    Ok(trainer)
}

/// Writes the PEFT adapter (in full fine-tuning, the weights as
/// `model.safetensors` and `config.json`) and the training state into
/// `dir`.
///
/// # Errors
///
/// Fails when a value of the state is not finite (before anything is
/// written), or on a GPU or file failure.
pub fn save(dir: &Path, trainer: &Trainer, base_model: &str) -> Result<()> {
    let state = trainer.read_state()?;
    checkpoint::ensure_finite(&state, trainer.step)?;
    let model = &trainer.model;
    match &model.full {
        Some(full) => {
            full::save_model(dir, &model.gpu, &model.config, &full.layout, &full.params)?;
        }
        None => {
            let params = trainer.read_adapter()?;
            peft::save(dir, &model.layout, &model.config, &params, base_model)?;
        }
    }
    checkpoint::write(dir, trainer, &state)
}

/// Names the settings that differ between `saved` and `given`, with both
/// values, as `lr: 0.0001 saved, 0.001 given`.
fn changed_settings(saved: &TrainConfig, given: &TrainConfig) -> String {
    let (Ok(serde_json::Value::Object(saved)), Ok(serde_json::Value::Object(given))) =
        (serde_json::to_value(saved), serde_json::to_value(given))
    else {
        return "unknown".to_string();
    };
    // Most settings are f32, which JSON widens to f64 digits.
    let show = |value: &serde_json::Value| match value.as_f64() {
        Some(number) if !value.is_i64() && !value.is_u64() => (number as f32).to_string(),
        _ => value.to_string(),
    };
    let changed: Vec<String> = saved
        .iter()
        .filter(|(key, value)| given.get(*key) != Some(value))
        .map(|(key, value)| {
            let now = given.get(key).map_or("none".to_string(), show);
            format!("{key}: {} saved, {now} given", show(value))
        })
        .collect();
    changed.join("; ")
}

fn append_metrics(path: &Path, metrics: &StepMetrics) -> Result<()> {
    let mut line = serde_json::to_string(metrics)?;
    line.push('\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    file.write_all(line.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))
}

/// Drops metrics lines past step `step` (and any torn last line) from a
/// run being resumed.
fn keep_metrics_up_to(path: &Path, step: u32) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut kept = String::new();
    for line in text.lines() {
        let Ok(metrics) = serde_json::from_str::<StepMetrics>(line) else {
            continue;
        };
        if metrics.step <= step {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    crate::atomic::write(path, kept.as_bytes())
}
