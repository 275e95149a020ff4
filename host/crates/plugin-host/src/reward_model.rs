//! A loaded reward-model plugin: scores batches, and is disabled for the
//! rest of the run at its first failure.

use crate::bindings::v0_1_0::reward_model::{RewardModel, RewardModelPre};
use crate::error::{LoadError, PluginError, PluginErrorKind};
use crate::host::{PluginHost, Prepared};
use crate::plugin::{PluginCore, PluginMeta, link};
use crate::{PluginInfo, ScoredInstance, size};

/// The largest score magnitude accepted from a reward model. The ensemble
/// standardizes scores with running sums of squares, which overflow near
/// f64's limit. Log-probabilities, verdicts and lengths stay far below.
pub const MAX_SCORE: f64 = 1e30;

/// A reward model running in its own sandboxed store.
///
/// The first failed call (a trap, an error, a timeout, invalid output)
/// disables it: later calls return [`PluginErrorKind::Disabled`] without
/// running plugin code, while the other reward models go on.
pub struct RewardModelPlugin {
    core: PluginCore,
    bindings: RewardModel,
    disabled: Option<String>,
}

impl RewardModelPlugin {
    /// Instantiates a prepared plugin, reads its `info` and applies its
    /// manifest's `[config]`.
    pub(crate) fn instantiate(
        host: &PluginHost,
        prepared: Prepared,
    ) -> Result<RewardModelPlugin, LoadError> {
        let pre = link(host, &prepared, RewardModelPre::new)?;
        let store = PluginHost::new_store(host.engine(), &prepared.manifest, host.models());
        let mut core = PluginCore::new(&prepared, store);

        let call_error = |error| LoadError::Call {
            path: prepared.path.clone(),
            error,
        };
        let bindings = core
            .call(0, |store| pre.instantiate(store))
            .map_err(call_error)?;
        core.read_info(|store| bindings.call_info(store))
            .map_err(call_error)?;
        core.configure(|store, config| bindings.call_configure(store, config))
            .map_err(call_error)?;

        tracing::debug!(plugin = %core.label, "loaded reward model");
        Ok(RewardModelPlugin {
            core,
            bindings,
            disabled: None,
        })
    }

    /// Returns the plugin's load-time facts.
    pub fn meta(&self) -> &PluginMeta {
        &self.core.meta
    }

    /// Returns what the plugin's `info` returned at load.
    pub fn info(&self) -> &PluginInfo {
        &self.core.meta.info
    }

    /// Returns the hex sha256 digest of the component file.
    pub fn digest(&self) -> &str {
        &self.core.meta.digest
    }

    /// Returns what the plugin wrote to stdout and stderr during its last
    /// successful call, capped at [`crate::MAX_CAPTURED_OUTPUT`] bytes. A
    /// failed call's output is in its [`PluginError`].
    pub fn last_output(&self) -> &str {
        &self.core.last_output
    }

    /// Returns why the plugin is disabled, or `None` while it is enabled.
    pub fn disabled_reason(&self) -> Option<&str> {
        self.disabled.as_deref()
    }

    /// Scores a batch: for each instance, one finite score per candidate.
    ///
    /// # Errors
    ///
    /// Returns an error when the plugin is disabled or the batch exceeds
    /// `max_input_bytes`. Also when the plugin traps, times out, exceeds
    /// its memory or returns an error. Also when its result is too large,
    /// has the wrong number of rows or scores, or a non-finite score. Each
    /// failure but an oversized input disables the plugin.
    pub fn score(&mut self, batch: &[ScoredInstance]) -> Result<Vec<Vec<f64>>, PluginError> {
        if let Some(reason) = &self.disabled {
            return Err(self.core.error(PluginErrorKind::Disabled(reason.clone())));
        }
        let input_size = size::scored_batch(batch);
        let bindings = &self.bindings;
        let result = self
            .core
            .call_guest(input_size, |store| bindings.call_score(store, batch))
            .and_then(|scores| self.check_scores(batch, scores));
        if let Err(error) = &result
            && !matches!(error.kind, PluginErrorKind::InputTooLarge { .. })
        {
            tracing::warn!(
                plugin = %self.core.label,
                error = %error,
                "reward model disabled for the rest of the run"
            );
            self.disabled = Some(error.summary());
        }
        result
    }

    fn check_scores(
        &self,
        batch: &[ScoredInstance],
        scores: Vec<Vec<f64>>,
    ) -> Result<Vec<Vec<f64>>, PluginError> {
        self.core.check_output_size(size::matrix(&scores))?;
        let invalid = |reason| self.core.error(PluginErrorKind::InvalidOutput(reason));
        if scores.len() != batch.len() {
            return Err(invalid(format!(
                "expected {} rows of scores, one per instance, got {}",
                batch.len(),
                scores.len()
            )));
        }
        for (i, (row, item)) in scores.iter().zip(batch).enumerate() {
            if row.len() != item.candidates.len() {
                return Err(invalid(format!(
                    "instance {i} ({:?}): expected {} scores, one per \
                     candidate, got {}",
                    item.instance.id,
                    item.candidates.len(),
                    row.len()
                )));
            }
            let out_of_range = |v: &f64| !v.is_finite() || v.abs() > MAX_SCORE;
            if let Some((j, value)) = row.iter().enumerate().find(|(_, v)| out_of_range(v)) {
                return Err(invalid(format!(
                    "instance {i} ({:?}), candidate {j}: score {value:e} is \
                     not a finite number of magnitude at most {MAX_SCORE:e}",
                    item.instance.id
                )));
            }
        }
        Ok(scores)
    }
}
