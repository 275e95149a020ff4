//! A loaded selector plugin, with the snapshot of its last good state.
//!
//! The host calls `save-state` after every successful update and keeps the
//! bytes. When a call fails, the run stops; [`SelectorPlugin::restore`]
//! starts a fresh instance from that snapshot, so no update that failed
//! half-way is ever kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bindings::v0_1_0::selector::{Selector, SelectorPre};
use crate::error::{LoadError, PluginError, PluginErrorKind};
use crate::host::{PluginHost, Prepared};
use crate::plugin::{PluginCore, PluginMeta, link};
use crate::{ArmInfo, ModelService, PluginInfo, size};

/// One observation for [`SelectorPlugin::update_batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct ArmUpdate {
    /// Index of the arm whose scores were used.
    pub arm: u32,
    /// The policy's embedding of the prompt.
    pub context: Vec<f32>,
    /// The reward observed.
    pub reward: f64,
}

/// A selector running in its own sandboxed store.
pub struct SelectorPlugin {
    core: PluginCore,
    pre: SelectorPre<crate::sandbox::HostState>,
    models: Arc<dyn ModelService>,
    bindings: Selector,
    last_good_state: Vec<u8>,
    /// Number of arms in the last `choose` call.
    arm_count: usize,
    failed: Option<String>,
}

impl SelectorPlugin {
    /// Instantiates a prepared plugin, reads its `info`, applies its
    /// manifest's `[config]` and takes the first state snapshot.
    pub(crate) fn instantiate(
        host: &PluginHost,
        prepared: Prepared,
    ) -> Result<SelectorPlugin, LoadError> {
        let path = prepared.path.clone();
        let pre = link(host, &prepared, SelectorPre::new)?;
        let store = PluginHost::new_store(host.engine(), &prepared.manifest, host.models());
        let core = PluginCore::new(&prepared, store);
        SelectorPlugin::start(core, pre, host.models(), None)
            .map_err(|error| LoadError::Call { path, error })
    }

    /// Instantiates `pre` in `core`'s store, configures it, and loads
    /// `state` or, without one, snapshots the initial state.
    fn start(
        mut core: PluginCore,
        pre: SelectorPre<crate::sandbox::HostState>,
        models: Arc<dyn ModelService>,
        state: Option<Vec<u8>>,
    ) -> Result<SelectorPlugin, PluginError> {
        let bindings = core.call(0, |store| pre.instantiate(store))?;
        core.read_info(|store| bindings.call_info(store))?;

        core.configure(|store, config| bindings.call_configure(store, config))?;

        let mut plugin = SelectorPlugin {
            core,
            pre,
            models,
            bindings,
            last_good_state: Vec::new(),
            arm_count: 0,
            failed: None,
        };
        match state {
            Some(state) => plugin.load_state(&state)?,
            None => plugin.last_good_state = plugin.save_state()?,
        }
        tracing::debug!(plugin = %plugin.core.label, "loaded selector");
        Ok(plugin)
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

    /// Returns the state saved after the last successful update or load.
    pub fn last_good_state(&self) -> &[u8] {
        &self.last_good_state
    }

    /// Returns one weight per arm for each context. Weights of disabled
    /// arms are set to 0 whatever the plugin returned.
    ///
    /// # Errors
    ///
    /// Returns an error when an earlier call failed, the arguments exceed
    /// `max_input_bytes`, the plugin fails, or the weights have the wrong
    /// shape, are negative or non-finite, or give no enabled arm a
    /// positive weight for some context.
    pub fn choose(
        &mut self,
        contexts: &[Vec<f32>],
        arms: &[ArmInfo],
    ) -> Result<Vec<Vec<f32>>, PluginError> {
        self.check_usable()?;
        let input_size = size::choose(contexts, arms);
        let bindings = &self.bindings;
        let result = self
            .core
            .call_guest(input_size, |store| {
                bindings.call_choose(store, contexts, arms)
            })
            .and_then(|weights| self.check_weights(contexts, arms, weights));
        if result.is_ok() {
            self.arm_count = arms.len();
        }
        self.note_failure(result)
    }

    /// Records `reward` for `arm` at `context`, then snapshots the state.
    ///
    /// # Errors
    ///
    /// Returns an error when an earlier call failed, `arm` is not an arm of
    /// the last `choose` call, `reward` is not finite, or the plugin fails
    /// in `update` or `save-state`. The last good state stays that of the
    /// previous successful update.
    pub fn update(&mut self, arm: u32, context: &[f32], reward: f64) -> Result<(), PluginError> {
        self.check_usable()?;
        self.check_update(arm, reward)?;
        let result = self.call_update(arm, context, reward);
        let result = self.note_failure(result);
        result?;
        self.snapshot()
    }

    /// Records several observations, then snapshots the state once. This
    /// saves one `save-state` call per observation when the state is large.
    ///
    /// # Errors
    ///
    /// As [`SelectorPlugin::update`]. When one update fails, the last good
    /// state stays that from before the batch.
    pub fn update_batch(&mut self, updates: &[ArmUpdate]) -> Result<(), PluginError> {
        self.check_usable()?;
        for update in updates {
            self.check_update(update.arm, update.reward)?;
        }
        for update in updates {
            let result = self.call_update(update.arm, &update.context, update.reward);
            self.note_failure(result)?;
        }
        self.snapshot()
    }

    /// Returns the plugin's serialized state.
    ///
    /// # Errors
    ///
    /// Returns an error when an earlier call failed, the plugin fails, or
    /// the state exceeds `max_output_bytes`.
    pub fn save_state(&mut self) -> Result<Vec<u8>, PluginError> {
        self.check_usable()?;
        let bindings = &self.bindings;
        let result = self
            .core
            .call(0, |store| bindings.call_save_state(store))
            .and_then(|state| {
                self.core.check_output_size(state.len())?;
                Ok(state)
            });
        self.note_failure(result)
    }

    /// Restores a state returned by [`SelectorPlugin::save_state`], which
    /// then becomes the last good state.
    ///
    /// # Errors
    ///
    /// Returns an error when an earlier call failed, the state exceeds
    /// `max_input_bytes`, or the plugin rejects it or fails.
    pub fn load_state(&mut self, state: &[u8]) -> Result<(), PluginError> {
        self.check_usable()?;
        let bindings = &self.bindings;
        let result = self
            .core
            .call_guest(state.len(), |store| bindings.call_load_state(store, state));
        self.note_failure(result)?;
        self.last_good_state = state.to_vec();
        Ok(())
    }

    /// Replaces the plugin instance with a fresh one that has loaded the
    /// last good state, so that calls work again after a failure.
    ///
    /// # Errors
    ///
    /// Returns an error when the fresh instance fails to start or to load
    /// the state; the plugin then stays unusable.
    pub fn restore(&mut self) -> Result<(), PluginError> {
        let core = self.fresh_core(self.core.meta.clone());
        let state = self.last_good_state.clone();
        let mut fresh = SelectorPlugin::start(
            core,
            self.pre.clone(),
            Arc::clone(&self.models),
            Some(state),
        )?;
        tracing::info!(plugin = %self.core.label, "selector restored to its last good state");
        fresh.arm_count = self.arm_count;
        *self = fresh;
        Ok(())
    }

    /// Replaces the plugin instance with a fresh one whose `configure`
    /// gets the manifest's `[config]` with `overrides` set over it, for
    /// settings chosen per run such as the arm of the `fixed` selector. The
    /// state starts fresh, and [`SelectorPlugin::restore`] keeps the
    /// overrides.
    ///
    /// # Errors
    ///
    /// Returns an error when the fresh instance fails to start or rejects
    /// the config. The plugin is then left as it was.
    pub fn reconfigure(
        &mut self,
        overrides: &BTreeMap<String, toml::Value>,
    ) -> Result<(), PluginError> {
        let mut meta = self.core.meta.clone();
        for (key, value) in overrides {
            meta.manifest.config.insert(key.clone(), value.clone());
        }
        let core = self.fresh_core(meta);
        let fresh = SelectorPlugin::start(core, self.pre.clone(), Arc::clone(&self.models), None)?;
        tracing::debug!(plugin = %self.core.label, ?overrides, "selector reconfigured");
        *self = fresh;
        Ok(())
    }

    /// Returns a new instance of this plugin with the same config
    /// (overrides included) and a fresh state. Calls on it leave this one
    /// as it is, so a caller can try a call without changing the run.
    ///
    /// # Errors
    ///
    /// Returns an error when the new instance fails to start.
    pub fn fresh_copy(&self) -> Result<SelectorPlugin, PluginError> {
        let core = self.fresh_core(self.core.meta.clone());
        SelectorPlugin::start(core, self.pre.clone(), Arc::clone(&self.models), None)
    }

    /// Creates a store for a new instance of this plugin, described by
    /// `meta`.
    fn fresh_core(&self, meta: PluginMeta) -> PluginCore {
        let engine = self.core.store.engine().clone();
        let store = PluginHost::new_store(&engine, &meta.manifest, Arc::clone(&self.models));
        PluginCore {
            meta,
            label: self.core.label.clone(),
            store,
            last_output: String::new(),
        }
    }

    fn call_update(&mut self, arm: u32, context: &[f32], reward: f64) -> Result<(), PluginError> {
        let input_size = 8 + 4 * context.len() + 12;
        let bindings = &self.bindings;
        self.core.call_guest(input_size, |store| {
            bindings.call_update(store, arm, context, reward)
        })
    }

    fn snapshot(&mut self) -> Result<(), PluginError> {
        self.last_good_state = self.save_state()?;
        Ok(())
    }

    fn check_usable(&self) -> Result<(), PluginError> {
        match &self.failed {
            Some(reason) => Err(self.core.error(PluginErrorKind::Disabled(format!(
                "{reason} (call restore() to continue from the last good state)"
            )))),
            None => Ok(()),
        }
    }

    /// Checks host-side update arguments; a bad argument is the caller's
    /// error, so it does not mark the plugin failed.
    fn check_update(&self, arm: u32, reward: f64) -> Result<(), PluginError> {
        if arm as usize >= self.arm_count {
            return Err(self.core.error(PluginErrorKind::InvalidInput(format!(
                "arm {arm} is out of range: the last choose call had {} arms",
                self.arm_count
            ))));
        }
        if !reward.is_finite() {
            return Err(self.core.error(PluginErrorKind::InvalidInput(format!(
                "reward {reward} for arm {arm} is not finite"
            ))));
        }
        Ok(())
    }

    /// Marks the plugin failed when `result` is an error other than an
    /// oversized input.
    fn note_failure<T>(&mut self, result: Result<T, PluginError>) -> Result<T, PluginError> {
        if let Err(error) = &result
            && !matches!(
                error.kind,
                PluginErrorKind::InputTooLarge { .. } | PluginErrorKind::InvalidInput(_)
            )
        {
            self.failed = Some(error.kind.to_string());
        }
        result
    }

    fn check_weights(
        &self,
        contexts: &[Vec<f32>],
        arms: &[ArmInfo],
        mut weights: Vec<Vec<f32>>,
    ) -> Result<Vec<Vec<f32>>, PluginError> {
        self.core.check_output_size(size::matrix(&weights))?;
        let invalid = |reason| self.core.error(PluginErrorKind::InvalidOutput(reason));
        if weights.len() != contexts.len() {
            return Err(invalid(format!(
                "expected {} rows of weights, one per context, got {}",
                contexts.len(),
                weights.len()
            )));
        }
        for (i, row) in weights.iter_mut().enumerate() {
            if row.len() != arms.len() {
                return Err(invalid(format!(
                    "context {i}: expected {} weights, one per arm, got {}",
                    arms.len(),
                    row.len()
                )));
            }
            if let Some((k, w)) = row
                .iter()
                .enumerate()
                .find(|(_, w)| !w.is_finite() || **w < 0.0)
            {
                return Err(invalid(format!(
                    "context {i}, arm {k}: weight {w} is not finite and \
                     non-negative"
                )));
            }
            for (weight, arm) in row.iter_mut().zip(arms) {
                if !arm.enabled {
                    *weight = 0.0;
                }
            }
            if row.iter().all(|w| *w == 0.0) && !arms.is_empty() {
                return Err(invalid(format!(
                    "context {i}: no enabled arm has a positive weight"
                )));
            }
        }
        Ok(weights)
    }
}
