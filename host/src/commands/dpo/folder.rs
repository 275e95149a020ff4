//! The `dpo` output folder: which folders a run may start or resume in,
//! and the fingerprints of the model and the pairs file that a resumed run
//! must match.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::laser::checkpoint::LOCK_FILE;
use crate::train::checkpoint::STATE_FILE;
use crate::train::dpo::METRICS_FILE;

/// The fingerprints of the run's inputs, written when a run starts.
pub(super) const INPUTS_FILE: &str = "inputs.json";

/// The files a run writes before its first checkpoint: the lock, the
/// inputs, the metrics and, in full fine-tuning, the tokenizer files.
const START_FILES: [&str; 5] = [
    LOCK_FILE,
    INPUTS_FILE,
    METRICS_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
];

/// The model and the pairs file a run trains on, with their fingerprints.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Inputs {
    model: Input,
    pairs: Input,
}

/// One input file or folder: its path as given and its fingerprint.
#[derive(Debug, Serialize, Deserialize)]
struct Input {
    path: PathBuf,
    fingerprint: String,
}

impl Inputs {
    /// Fingerprints the model at `model` ([`crate::fingerprint::model`])
    /// and the pairs file at `pairs` (its sha256).
    ///
    /// # Errors
    ///
    /// Fails when either cannot be read.
    pub(super) fn of(model: &Path, pairs: &Path) -> Result<Self> {
        Ok(Self {
            model: Input {
                path: model.to_path_buf(),
                fingerprint: crate::fingerprint::model(model)?,
            },
            pairs: Input {
                path: pairs.to_path_buf(),
                fingerprint: crate::fingerprint::data_file(pairs)?,
            },
        })
    }

    /// Writes these inputs into `out`, unless `out` already records the
    /// inputs of the run.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be written.
    pub(super) fn record(&self, out: &Path) -> Result<()> {
        let path = out.join(INPUTS_FILE);
        if path.is_file() {
            return Ok(());
        }
        crate::atomic::write(&path, &serde_json::to_vec_pretty(self)?)
    }

    /// Checks that these inputs are the ones recorded in `out`. A folder
    /// without a record (written by an older laser-host) passes.
    ///
    /// # Errors
    ///
    /// Names the model or the pairs file that changed, or fails when the
    /// record cannot be read.
    pub(super) fn check_recorded(&self, out: &Path) -> Result<()> {
        let path = out.join(INPUTS_FILE);
        if !path.is_file() {
            tracing::debug!(out = %out.display(), "no recorded inputs; skipped their check");
            return Ok(());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let recorded: Self = serde_json::from_str(&text)
            .with_context(|| format!("invalid JSON in {}", path.display()))?;
        let mut changed = Vec::new();
        for (option, given, saved) in [
            ("--model", &self.model, &recorded.model),
            ("--pairs", &self.pairs, &recorded.pairs),
        ] {
            if given.fingerprint != saved.fingerprint {
                changed.push(format!(
                    "{option} {} differs from the one the run started with ({})",
                    given.path.display(),
                    saved.path.display()
                ));
            }
        }
        if !changed.is_empty() {
            bail!(
                "cannot resume the run in {}: {}; resume with the original files, or start a \
                 new run with another --out",
                out.display(),
                changed.join("; ")
            );
        }
        Ok(())
    }
}

/// Checks that a new run can start in `out`: the folder does not exist or
/// is empty.
///
/// # Errors
///
/// Fails when `out` contains a run (suggesting `--resume`) or other files.
pub(super) fn check_new(out: &Path) -> Result<()> {
    ensure!(
        !out.join(STATE_FILE).exists(),
        "{} already contains a dpo run; pass --resume to continue it, or choose another --out",
        out.display()
    );
    if stopped_before_checkpoint(out)? {
        bail!(
            "{} contains a dpo run that stopped before its first checkpoint; pass --resume to \
             start it from step 0, or choose another --out",
            out.display()
        );
    }
    super::super::ensure_empty_out(out)
}

/// Checks that `out` contains a run that `--resume` can continue: a
/// training state, or only the files a run writes before its first
/// checkpoint, or nothing (then the run starts from step 0).
///
/// # Errors
///
/// Fails when `out` contains no training state but other files.
pub(super) fn check_resumable(out: &Path) -> Result<()> {
    if out.join(STATE_FILE).is_file() {
        return Ok(());
    }
    if !stopped_before_checkpoint(out)? {
        // Any other folder contains files this run must not overwrite.
        super::super::ensure_empty_out(out).with_context(|| {
            format!("{} contains no dpo training state to resume", out.display())
        })?;
    }
    eprintln!(
        "warning: {} contains no training state yet; starting from step 0",
        out.display()
    );
    Ok(())
}

/// Returns whether `out` is a folder that contains some of the files a run
/// writes before its first checkpoint and nothing else.
fn stopped_before_checkpoint(out: &Path) -> Result<bool> {
    if !out.is_dir() {
        return Ok(false);
    }
    let entries = std::fs::read_dir(out)
        .with_context(|| format!("failed to read the --out folder {}", out.display()))?;
    let mut any = false;
    for entry in entries {
        let entry =
            entry.with_context(|| format!("failed to read the --out folder {}", out.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // `atomic::write` leaves `.NAME.tmp-PID` behind when killed.
        let start_file = START_FILES.iter().any(|file| {
            name == *file
                || name
                    .strip_prefix(&format!(".{file}.tmp-"))
                    .is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        });
        if !start_file || !entry.path().is_file() {
            return Ok(false);
        }
        any = true;
    }
    Ok(any)
}
