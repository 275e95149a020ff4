//! The parts every loaded plugin shares: its load-time facts, its store,
//! and the call wrapper that applies deadlines and limits and sorts
//! failures into [`PluginErrorKind`]s.

use std::path::{Path, PathBuf};

use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap};
use wasmtime_wasi::I32Exit;

use crate::error::{DeadlineExceeded, LoadError, PluginError, PluginErrorKind, guest_message};
use crate::host::{PluginHost, Prepared, ticks_for};
use crate::manifest::{Limits, Manifest, PluginKind};
use crate::sandbox::HostState;
use crate::{PluginInfo, size};

/// The maximum size of an `info` result, as the output limit counts it.
/// A reward model's tags go to the selector in every `choose` call, so a
/// reward model with huge tags could otherwise push the selector's input
/// past its limit and stop the run.
pub const MAX_INFO_BYTES: usize = 64 * 1024;

/// Facts about a loaded plugin, for listings and run outputs.
#[derive(Debug, Clone)]
pub struct PluginMeta {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The component file.
    pub path: PathBuf,
    /// Hex sha256 digest of the component file.
    pub digest: String,
    /// The plugin's `info`, as returned at load.
    pub info: PluginInfo,
    /// Whether the compiled code came from the compile cache.
    pub from_cache: bool,
}

impl PluginMeta {
    /// Returns `name@version` from the manifest.
    pub fn label(&self) -> String {
        self.manifest.label()
    }

    /// Returns the plugin's kind.
    pub fn kind(&self) -> PluginKind {
        self.manifest.kind
    }

    /// Returns the plugin's limits.
    pub fn limits(&self) -> &Limits {
        &self.manifest.limits
    }

    /// Returns the component file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A plugin's store with the facts needed to call into it.
pub(crate) struct PluginCore {
    pub(crate) meta: PluginMeta,
    pub(crate) label: String,
    pub(crate) store: Store<HostState>,
    /// Stdout and stderr of the plugin in its last successful call.
    pub(crate) last_output: String,
}

/// Links a prepared component against the host, then checks its exports
/// with `typed`, a world's `*Pre::new`.
pub(crate) fn link<P>(
    host: &PluginHost,
    prepared: &Prepared,
    typed: impl FnOnce(InstancePre<HostState>) -> wasmtime::Result<P>,
) -> Result<P, LoadError> {
    host.linker()
        .instantiate_pre(&prepared.component)
        .and_then(typed)
        .map_err(|e| LoadError::Wasm {
            path: prepared.path.clone(),
            action: "link",
            reason: format!("{e:#}"),
        })
}

impl PluginCore {
    /// Wraps a fresh store; `info` is filled in by the caller after the
    /// first call.
    pub(crate) fn new(prepared: &Prepared, store: Store<HostState>) -> PluginCore {
        let manifest = prepared.manifest.clone();
        PluginCore {
            label: manifest.label(),
            meta: PluginMeta {
                manifest,
                path: prepared.path.clone(),
                digest: prepared.digest.clone(),
                info: PluginInfo {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                    models: Vec::new(),
                    tags: Vec::new(),
                },
                from_cache: prepared.from_cache,
            },
            store,
            last_output: String::new(),
        }
    }

    /// Builds an error of `kind` for this plugin.
    pub(crate) fn error(&self, kind: PluginErrorKind) -> PluginError {
        PluginError {
            plugin: self.label.clone(),
            kind,
            output: String::new(),
        }
    }

    /// Runs `call` against the store, after checking `input_size` against
    /// the input limit and under the call deadline.
    ///
    /// A wasmtime error becomes a timeout, a memory-limit error or a trap,
    /// with the output the plugin wrote attached. A call that returns after
    /// its deadline is a timeout too, and its result is dropped.
    pub(crate) fn call<R>(
        &mut self,
        input_size: usize,
        call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let limits = &self.meta.manifest.limits;
        if input_size as u64 > limits.max_input_bytes {
            return Err(self.error(PluginErrorKind::InputTooLarge {
                size: input_size,
                limit: limits.max_input_bytes,
            }));
        }

        let state = self.store.data_mut();
        state.clock.start();
        state.memory_denied = None;
        let deadline = state.clock.deadline;
        self.store.set_epoch_deadline(ticks_for(deadline));

        let result = call(&mut self.store);
        let output = self.store.data().output.take();

        // The epoch ticker can lag the wall clock on a loaded machine, and
        // a capped sleep wakes just after the deadline, so a call may return
        // after its deadline without an epoch check noticing.
        let late = self.store.data().clock.remaining().is_none();
        let result = match result {
            Ok(_) if late => Err(DeadlineExceeded.into()),
            other => other,
        };
        match result {
            Ok(value) => {
                if !output.is_empty() {
                    tracing::debug!(plugin = %self.label, %output, "plugin output");
                }
                self.last_output = output;
                Ok(value)
            }
            Err(error) => {
                let kind = self.classify(&error);
                tracing::debug!(plugin = %self.label, %kind, "plugin call failed");
                Err(PluginError {
                    plugin: self.label.clone(),
                    kind,
                    output,
                })
            }
        }
    }

    /// Runs a call whose WIT result is `result<T, string>`, as
    /// [`PluginCore::call`], and turns an error value into
    /// [`PluginErrorKind::Guest`].
    pub(crate) fn call_guest<R>(
        &mut self,
        input_size: usize,
        call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, PluginError> {
        match self.call(input_size, call)? {
            Ok(value) => Ok(value),
            Err(message) => Err(self.error(PluginErrorKind::Guest(guest_message(&message)))),
        }
    }

    /// Calls the plugin's `info` and keeps its result in [`PluginMeta`],
    /// once its size is within [`MAX_INFO_BYTES`]. The output limit does not
    /// apply, so that a plugin may set it below the size of its `info`.
    pub(crate) fn read_info(
        &mut self,
        info: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<PluginInfo>,
    ) -> Result<(), PluginError> {
        let info = self.call(0, info)?;
        let size = size::info(&info);
        if size > MAX_INFO_BYTES {
            return Err(self.error(PluginErrorKind::InvalidOutput(format!(
                "`info` returned {size} bytes, more than the {MAX_INFO_BYTES} bytes \
                 allowed: shorten its tags and description"
            ))));
        }
        self.meta.info = info;
        Ok(())
    }

    /// Passes the manifest's `[config]` to the plugin's `configure`.
    pub(crate) fn configure(
        &mut self,
        configure: impl FnOnce(&mut Store<HostState>, &str) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<(), PluginError> {
        let config = self.meta.manifest.config_json();
        self.call_guest(size::string(&config), |store| configure(store, &config))
    }

    fn classify(&self, error: &wasmtime::Error) -> PluginErrorKind {
        let limits = &self.meta.manifest.limits;
        if error.downcast_ref::<DeadlineExceeded>().is_some() {
            return PluginErrorKind::Timeout {
                deadline_ms: limits.call_deadline_ms,
            };
        }
        if let Some(requested) = self.store.data().memory_denied {
            return PluginErrorKind::MemoryLimit {
                limit_mib: limits.memory_mib,
                requested,
            };
        }
        // The wasm backtrace of a stripped plugin names no functions, so it
        // goes to the debug log rather than into the message.
        tracing::debug!(plugin = %self.label, "trap: {error:?}");
        if let Some(exit) = error.downcast_ref::<I32Exit>() {
            return PluginErrorKind::Trap(format!(
                "the plugin called exit with status {}, but a plugin must return \
                 from each call",
                exit.0
            ));
        }
        // The root cause leaves out the wasm backtrace that wasmtime adds
        // as context.
        let reason = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        };
        PluginErrorKind::Trap(reason)
    }

    /// Checks the size of a result against the output limit.
    pub(crate) fn check_output_size(&self, size: usize) -> Result<(), PluginError> {
        let limit = self.meta.manifest.limits.max_output_bytes;
        if size as u64 > limit {
            Err(self.error(PluginErrorKind::OutputTooLarge { size, limit }))
        } else {
            Ok(())
        }
    }
}
