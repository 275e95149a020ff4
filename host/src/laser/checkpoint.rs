//! The run folder's resumable state. After every batch the loop appends
//! that batch's lines to `metrics.jsonl` and `selections.jsonl`, then writes
//! `state.json` atomically with the line counts, the selector's state and
//! the position in the data. A resumed run first cuts both JSONL files back
//! to the counts in `state.json`, so lines from a batch that was killed
//! half-way are dropped and written again.
//!
//! In `train` mode the policy (adapter and optimizer state) is written
//! before `state.json`, into a new folder `policy-N` named by the number of
//! finished batches. `state.json` names that folder, so its atomic write is
//! the single commit point. A run killed before that write resumes from the
//! folder that the previous `state.json` names. Older folders are deleted
//! only after the commit.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::atomic;

/// The checkpoint file.
pub const STATE_FILE: &str = "state.json";
/// One line per batch.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// One line per instance.
pub const SELECTIONS_FILE: &str = "selections.jsonl";
/// The start of the name of each policy checkpoint folder.
const POLICY_PREFIX: &str = "policy-";
/// The file in a compare folder that contains the compare's settings.
pub const COMPARE_SETTINGS_FILE: &str = "compare-config.json";
/// The policy folder of runs saved before the folders were numbered.
pub const LEGACY_POLICY_DIR: &str = "policy";

/// The progress of a run: position, selector state and line counts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunState {
    /// The iteration in progress.
    pub iteration: u32,
    /// The next batch of that iteration.
    pub next_batch: usize,
    /// The selector's `save-state` bytes after its last update, stored as
    /// one hex string (a JSON array would spend a line per byte).
    #[serde(with = "hex_bytes")]
    pub selector_state: Option<Vec<u8>>,
    /// Lines of `metrics.jsonl` that belong to finished batches.
    pub metrics_lines: usize,
    /// Lines of `selections.jsonl` that belong to finished batches.
    pub selection_lines: usize,
    /// Held-out accuracy before training.
    pub eval_before: Option<f64>,
    /// Held-out accuracy after each iteration.
    pub eval_per_iteration: Vec<f64>,
    /// The folder, inside the run folder, with the policy checkpoint that
    /// belongs to this state. `None` in `best-of-n` runs and in runs saved
    /// before the folders were numbered, which used [`LEGACY_POLICY_DIR`].
    #[serde(default)]
    pub policy_dir: Option<String>,
    /// The lowest bandit reward of the run so far, given to prompts whose
    /// reward model formed no preference pair (`train` only).
    #[serde(default)]
    pub lowest_reward: Option<f64>,
    /// Held-out (correct, total) per category before training, where this
    /// run measured it.
    #[serde(default)]
    pub eval_before_by_category: Option<CategoryCounts>,
    /// Held-out (correct, total) per category after each iteration.
    #[serde(default)]
    pub eval_by_category: Vec<CategoryCounts>,
    /// Fingerprints of the data files and the model the run started with;
    /// `None` in runs saved before they were recorded.
    #[serde(default)]
    pub inputs: Option<Inputs>,
    /// Each reward model's running score statistics, which standardize
    /// scores for ensembles. Runs saved before they were kept start anew.
    #[serde(default)]
    pub score_stats: laser_plugins::ScoreNormalizer,
}

/// Fingerprints of a run's inputs (see [`crate::fingerprint`]), which
/// `--resume` checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// The sha256 of each data file, in `--data` order.
    pub data: Vec<String>,
    /// The fingerprint of the model.
    pub model: String,
}

impl Inputs {
    /// Fingerprints `data` and `model`.
    ///
    /// # Errors
    ///
    /// Fails when a file cannot be read.
    pub fn of(data: &[PathBuf], model: &Path) -> Result<Inputs> {
        Ok(Inputs {
            data: data
                .iter()
                .map(|path| crate::fingerprint::data_file(path))
                .collect::<Result<_>>()?,
            model: crate::fingerprint::model(model)?,
        })
    }

    /// Rejects `current`, the fingerprints of the files a resumed run
    /// found, unless they equal these, which the run recorded when it
    /// started. `data` and `model` are the paths, for the message.
    ///
    /// # Errors
    ///
    /// Names the first file that changed.
    pub fn check_unchanged(&self, current: &Inputs, data: &[PathBuf], model: &Path) -> Result<()> {
        let advice = "the records so far came from the old contents: restore them, or start \
                      a new run with another --out";
        for ((saved, now), path) in self.data.iter().zip(&current.data).zip(data) {
            ensure!(
                saved == now,
                "the data file {} changed since the run started (its sha256 differs), and \
                 {advice}",
                path.display()
            );
        }
        ensure!(
            self.model == current.model,
            "the model {} changed since the run started, and {advice}",
            model.display()
        );
        Ok(())
    }
}

/// (correct, total) per category.
pub type CategoryCounts = std::collections::BTreeMap<String, (usize, usize)>;

impl RunState {
    /// Reads the state of the run in `dir` and cuts its JSONL files back to
    /// the last finished batch.
    ///
    /// # Errors
    ///
    /// Fails when `dir` contains no run or its files are damaged.
    pub fn load(dir: &Path) -> Result<Self> {
        let state = Self::read(dir)?;
        truncate_lines(&dir.join(METRICS_FILE), state.metrics_lines)?;
        truncate_lines(&dir.join(SELECTIONS_FILE), state.selection_lines)?;
        Ok(state)
    }

    /// Reads the state of the run in `dir` and changes nothing, so that it
    /// is safe while the run goes on.
    ///
    /// # Errors
    ///
    /// Fails when `dir` contains no run or its state is damaged.
    pub fn read(dir: &Path) -> Result<Self> {
        ensure!(
            dir.exists(),
            "no run folder {}: it does not exist",
            dir.display()
        );
        ensure!(
            dir.is_dir(),
            "{} is a file, not a run folder",
            dir.display()
        );
        let path = dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            // A missing state file has a cause worth naming, and the
            // operating system's "not found" adds nothing to it.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if dir.join(COMPARE_SETTINGS_FILE).is_file() {
                    let table = dir.join("compare.md");
                    ensure!(
                        !table.is_file(),
                        "{} contains a compare, whose runs are its subfolders: pass one of \
                         them, and find the compare's table in {}",
                        dir.display(),
                        table.display()
                    );
                    bail!(
                        "{} contains a compare, whose runs are its subfolders: pass one of \
                         them, or finish the compare with `laser-host compare --resume {}`",
                        dir.display(),
                        dir.display()
                    );
                }
                if dir.join("config.json").is_file() {
                    bail!(
                        "the run in {} stopped before it saved any progress ({} is missing); \
                         delete the folder and start the run again",
                        dir.display(),
                        path.display()
                    );
                }
                bail!("no run in {}: {} is missing", dir.display(), path.display());
            }
            Err(err) => {
                return Err(err).with_context(|| format!("failed to read {}", path.display()));
            }
        };
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    /// Writes the state atomically into `dir`.
    ///
    /// # Errors
    ///
    /// Fails when the folder is not writable.
    pub fn save(&self, dir: &Path) -> Result<()> {
        atomic::write_json(&dir.join(STATE_FILE), self)
    }
}

/// Returns the name of the policy folder written after `batches` finished
/// batches.
pub fn policy_dir_name(batches: usize) -> String {
    format!("{POLICY_PREFIX}{batches:06}")
}

/// Deletes the policy folders in `dir` other than `keep`: numbered ones
/// from earlier batches or from a batch whose `state.json` was never
/// written, and [`LEGACY_POLICY_DIR`].
///
/// # Errors
///
/// Fails when `dir` cannot be listed or a folder cannot be deleted.
pub fn remove_stale_policies(dir: &Path, keep: &str) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let numbered = name
            .strip_prefix(POLICY_PREFIX)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let stale = (numbered || name == LEGACY_POLICY_DIR) && name != keep;
        if stale && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            fs::remove_dir_all(&path)
                .with_context(|| format!("failed to delete {}", path.display()))?;
        }
    }
    Ok(())
}

/// Appends one JSON line per record to `path` and flushes it, adding the
/// count to `lines`.
///
/// # Errors
///
/// Fails when the file cannot be written.
pub fn append_jsonl<T: Serialize>(path: &Path, records: &[&T], lines: &mut usize) -> Result<()> {
    let mut text = String::new();
    for record in records {
        text.push_str(&serde_json::to_string(record)?);
        text.push('\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("failed to append to {}", path.display()))?;
    *lines += records.len();
    Ok(())
}

/// The file whose lock marks a run folder as in use by a process.
pub const LOCK_FILE: &str = ".laser-host.lock";

/// Locks the run folder `dir` for this process, so that a second process
/// cannot resume the run while this one writes it: both would append the
/// same batches to its JSONL files. The lock lasts while the returned file
/// stays open, and the operating system drops it when the process dies.
///
/// # Errors
///
/// Fails when another process holds the lock, naming its process id, or
/// when the lock file cannot be written.
pub fn lock_run_folder(dir: &Path) -> Result<fs::File> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let process = if holder.is_empty() {
                "another laser-host process".to_owned()
            } else {
                format!("another laser-host process (pid {holder})")
            };
            bail!(
                "{} is in use by {process}; wait for it to finish or stop it, then run \
                 this again",
                dir.display()
            );
        }
        Err(fs::TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("failed to lock {}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| write!(file, "{}", std::process::id()))
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(file)
}

/// Keeps the first `keep` lines of `path`.
fn truncate_lines(path: &Path, keep: usize) -> Result<()> {
    let Ok(text) = fs::read_to_string(path) else {
        ensure!(
            keep == 0,
            "{} is missing but the checkpoint expects {keep} lines",
            path.display()
        );
        return Ok(());
    };
    let count = text.lines().count();
    ensure!(
        count >= keep,
        "{} has {count} lines but the checkpoint expects at least {keep}",
        path.display()
    );
    if count > keep {
        let kept: String = text.lines().take(keep).map(|l| format!("{l}\n")).collect();
        atomic::write(path, kept.as_bytes())?;
    }
    Ok(())
}

/// Serializes optional bytes as a lowercase hex string.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => {
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                serializer.serialize_some(&hex)
            }
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let Some(hex) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        if hex.len() % 2 != 0 {
            return Err(serde::de::Error::custom(
                "selector_state has an odd number of hex digits",
            ));
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("selector_state is not a hex string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_folder_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_run_folder(dir.path()).unwrap();
        let message = lock_run_folder(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains("is in use by another laser-host process"),
            "{message}"
        );
        assert!(
            message.contains(&format!("(pid {})", std::process::id())),
            "{message}"
        );
        drop(first);
        assert!(lock_run_folder(dir.path()).is_ok());
    }

    #[test]
    fn load_drops_lines_of_unfinished_batch() {
        let dir = tempfile::tempdir().unwrap();
        let state = RunState {
            metrics_lines: 1,
            ..RunState::default()
        };
        state.save(dir.path()).unwrap();
        fs::write(dir.path().join(METRICS_FILE), "{\"a\":1}\n{\"a\":2}\n").unwrap();
        let loaded = RunState::load(dir.path()).unwrap();
        assert_eq!(loaded.metrics_lines, 1);
        let text = fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap();
        assert_eq!(text, "{\"a\":1}\n");
    }

    #[test]
    fn selector_state_round_trips_as_hex() {
        let dir = tempfile::tempdir().unwrap();
        let state = RunState {
            selector_state: Some(vec![0, 15, 16, 255]),
            ..RunState::default()
        };
        state.save(dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(text.contains("\"000f10ff\""), "{text}");
        let loaded = RunState::load(dir.path()).unwrap();
        assert_eq!(loaded.selector_state, state.selector_state);
    }

    #[test]
    fn stale_policies_removed_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "policy-000003",
            "policy-000004",
            "policy-000005",
            "policy",
            "policy-notes",
        ] {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        fs::write(dir.path().join("policy-000006"), "a file, not a folder").unwrap();

        remove_stale_policies(dir.path(), "policy-000004").unwrap();

        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["policy-000004", "policy-000006", "policy-notes"]);
    }

    #[test]
    fn policy_dir_name_pads_batches() {
        assert_eq!(policy_dir_name(7), "policy-000007");
        assert_eq!(policy_dir_name(1_234_567), "policy-1234567");
    }

    #[test]
    fn state_without_policy_dir_loads() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(STATE_FILE),
            r#"{"iteration": 1, "next_batch": 2, "selector_state": null,
               "metrics_lines": 0, "selection_lines": 0, "eval_before": null,
               "eval_per_iteration": []}"#,
        )
        .unwrap();
        let loaded = RunState::load(dir.path()).unwrap();
        assert_eq!(loaded.next_batch, 2);
        assert_eq!(loaded.policy_dir, None);
    }

    #[test]
    fn load_without_state_names_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunState::load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("no run in"));
    }
}
