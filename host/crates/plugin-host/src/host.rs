//! The plugin host: one wasmtime engine with its epoch ticker, the linker
//! that serves WASI and `models`, the compile cache, and loading.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker, Resource};
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::p2::DynPollable;

use crate::bindings::v0_1_0::reward_model::RewardModel as RewardModelWorld;
use crate::cache::{CompileCache, default_cache_dir, sha256_hex};
use crate::error::{DeadlineExceeded, LoadError};
use crate::manifest::{Manifest, PluginKind};
use crate::sandbox::HostState;
use crate::{API_PACKAGE, API_VERSION, ModelService, RewardModelPlugin, SelectorPlugin};

/// Interval between epoch ticks.
///
/// Deadlines are checked only when the epoch advances, so the tick bounds
/// how late a runaway plugin is stopped. At 10 ms a timeout fires within
/// about 10 ms of its deadline, and the ticker thread wakes only 100 times
/// a second.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Loads and runs plugins. One host owns one wasmtime engine, shared by
/// every plugin it loads, and each plugin gets a store of its own.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<CompileCache>,
    models: Arc<dyn ModelService>,
}

/// A plugin checked against its manifest and compiled, before it is
/// instantiated.
pub(crate) struct Prepared {
    pub(crate) manifest: Manifest,
    pub(crate) path: PathBuf,
    pub(crate) digest: String,
    pub(crate) component: Component,
    /// Whether the compiled code came from the compile cache.
    pub(crate) from_cache: bool,
}

/// A loaded plugin of either kind.
// A run loads a handful of plugins, so the size of the larger variant
// costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum LoadedPlugin {
    /// A reward model.
    RewardModel(RewardModelPlugin),
    /// A selector.
    Selector(SelectorPlugin),
}

impl LoadedPlugin {
    /// Returns the plugin's load-time facts.
    pub fn meta(&self) -> &crate::PluginMeta {
        match self {
            LoadedPlugin::RewardModel(plugin) => plugin.meta(),
            LoadedPlugin::Selector(plugin) => plugin.meta(),
        }
    }
}

impl PluginHost {
    /// Creates a host whose compile cache is [`default_cache_dir`].
    ///
    /// # Errors
    ///
    /// Returns an error when wasmtime cannot build the engine or the
    /// linker, or the epoch ticker thread cannot start.
    pub fn new(models: Arc<dyn ModelService>) -> anyhow::Result<PluginHost> {
        PluginHost::with_cache_dir(models, default_cache_dir())
    }

    /// Creates a host that caches compiled components in `cache_dir`, or
    /// compiles every load when it is `None`.
    ///
    /// # Errors
    ///
    /// As [`PluginHost::new`].
    pub fn with_cache_dir(
        models: Arc<dyn ModelService>,
        cache_dir: Option<PathBuf>,
    ) -> anyhow::Result<PluginHost> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("failed to create the wasmtime engine: {e}"))?;
        start_epoch_ticker(&engine)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow::anyhow!("failed to link WASI: {e}"))?;
        RewardModelWorld::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("failed to link laser:plugin: {e}"))?;
        cap_clock_subscriptions(&mut linker)
            .map_err(|e| anyhow::anyhow!("failed to link the capped clock: {e}"))?;

        let cache = cache_dir.map(|dir| CompileCache::new(&engine, dir));
        Ok(PluginHost {
            engine,
            linker,
            cache,
            models,
        })
    }

    /// Loads the plugin `NAME.wasm` with its manifest `NAME.toml`, as a
    /// reward model or a selector according to the manifest's `kind`.
    ///
    /// # Errors
    ///
    /// Returns a [`LoadError`] naming the file when the manifest is
    /// missing or invalid or the file is not a component. Also when the
    /// component imports a WIT version this host does not serve or
    /// something the sandbox does not provide, does not export its kind's
    /// world, or fails in `info` or `configure`.
    pub fn load(&self, wasm: &Path) -> Result<LoadedPlugin, LoadError> {
        let prepared = self.prepare(wasm)?;
        match prepared.manifest.kind {
            PluginKind::RewardModel => {
                RewardModelPlugin::instantiate(self, prepared).map(LoadedPlugin::RewardModel)
            }
            PluginKind::Selector => {
                SelectorPlugin::instantiate(self, prepared).map(LoadedPlugin::Selector)
            }
        }
    }

    /// Loads a reward-model plugin.
    ///
    /// # Errors
    ///
    /// As [`PluginHost::load`], and when the manifest's kind is not
    /// `reward-model`.
    pub fn load_reward_model(&self, wasm: &Path) -> Result<RewardModelPlugin, LoadError> {
        match self.load(wasm)? {
            LoadedPlugin::RewardModel(plugin) => Ok(plugin),
            LoadedPlugin::Selector(_) => Err(kind_error(wasm, "selector")),
        }
    }

    /// Loads a selector plugin.
    ///
    /// # Errors
    ///
    /// As [`PluginHost::load`], and when the manifest's kind is not
    /// `selector`.
    pub fn load_selector(&self, wasm: &Path) -> Result<SelectorPlugin, LoadError> {
        match self.load(wasm)? {
            LoadedPlugin::Selector(plugin) => Ok(plugin),
            LoadedPlugin::RewardModel(_) => Err(kind_error(wasm, "reward-model")),
        }
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    pub(crate) fn models(&self) -> Arc<dyn ModelService> {
        Arc::clone(&self.models)
    }

    /// Creates a store for one plugin instance, with its memory cap and
    /// deadline callback installed.
    pub(crate) fn new_store(
        engine: &Engine,
        manifest: &Manifest,
        models: Arc<dyn ModelService>,
    ) -> Store<HostState> {
        let mut store = Store::new(engine, HostState::new(manifest, models));
        store.limiter(|state| state);
        store.epoch_deadline_callback(|context| match context.data().clock.remaining() {
            Some(remaining) => Ok(UpdateDeadline::Continue(ticks_for(remaining))),
            None => Err(DeadlineExceeded.into()),
        });
        store
    }

    /// Reads the manifest and the component, checks them against each
    /// other and compiles the component, from the cache where possible.
    pub(crate) fn prepare(&self, wasm: &Path) -> Result<Prepared, LoadError> {
        let manifest_path = wasm.with_extension("toml");
        if !manifest_path.is_file() {
            return Err(LoadError::MissingManifest {
                path: wasm.to_path_buf(),
                manifest: manifest_path,
            });
        }
        let manifest = Manifest::from_file(&manifest_path)?;
        manifest.check_api(&manifest_path)?;

        let bytes = std::fs::read(wasm).map_err(|error| LoadError::Io {
            path: wasm.to_path_buf(),
            error,
        })?;
        check_header(wasm, &bytes)?;
        let digest = sha256_hex(&bytes);

        let cached = self
            .cache
            .as_ref()
            .and_then(|cache| cache.get(&self.engine, &digest));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => {
                let component =
                    Component::new(&self.engine, &bytes).map_err(|e| LoadError::Wasm {
                        path: wasm.to_path_buf(),
                        action: "compile",
                        reason: format!("{e:#}"),
                    })?;
                if let Some(cache) = &self.cache {
                    cache.put(&digest, &component);
                }
                component
            }
        };
        tracing::debug!(
            plugin = %manifest.label(),
            digest = %digest,
            from_cache,
            "compiled plugin"
        );

        check_api_imports(&self.engine, wasm, &component)?;
        check_kind_exports(&self.engine, wasm, &manifest, &component)?;
        Ok(Prepared {
            manifest,
            path: wasm.to_path_buf(),
            digest,
            component,
            from_cache,
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Returns the epoch ticks that cover `duration`, at least one.
pub(crate) fn ticks_for(duration: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = duration.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// Starts the thread that advances `engine`'s epoch every [`EPOCH_TICK`].
/// It holds a weak reference, so it ends once the engine is dropped.
fn start_epoch_ticker(engine: &Engine) -> anyhow::Result<()> {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("laser-plugins-epoch".to_string())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
    Ok(())
}

/// The WASI monotonic clock as wasmtime-wasi 48 defines it. Guests built
/// against older 0.2 versions link to it by semver.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces the clock's `subscribe-duration` and `subscribe-instant` with
/// versions that wake by the end of the current call's deadline.
///
/// Epoch interruption only stops wasm code, and a plugin that sleeps waits
/// inside the host's `poll`, so without this cap `std::thread::sleep` would
/// outlast any deadline. A capped sleep returns just after the deadline,
/// and the plugin then either hits an epoch check or returns, which
/// [`PluginCore::call`](crate::plugin::PluginCore) also reports as a
/// timeout.
fn cap_clock_subscriptions(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::clocks::WasiClocksView;
    use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host;

    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |store: wasmtime::StoreContextMut<'_, HostState>, (nanos,): (u64,)| {
            Ok((subscribe_capped(store, nanos)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: wasmtime::StoreContextMut<'_, HostState>, (when,): (u64,)| {
            let now = store.data_mut().clocks().now()?;
            Ok((subscribe_capped(store, when.saturating_sub(now))?,))
        },
    )?;
    linker.allow_shadowing(false);
    return Ok(());

    /// Subscribes to a sleep of `nanos`, capped at the call's remaining
    /// time plus one tick.
    fn subscribe_capped(
        mut store: wasmtime::StoreContextMut<'_, HostState>,
        nanos: u64,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let remaining = store.data().clock.remaining().unwrap_or_default() + EPOCH_TICK;
        let cap = u64::try_from(remaining.as_nanos()).unwrap_or(u64::MAX);
        store.data_mut().clocks().subscribe_duration(nanos.min(cap))
    }
}

fn kind_error(wasm: &Path, found: &str) -> LoadError {
    LoadError::Mismatch {
        path: wasm.to_path_buf(),
        reason: format!("the manifest's kind is {found}"),
    }
}

/// Checks the binary header: a component, not a core module, a
/// precompiled file or something else.
fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_VERSION: &[u8] = &[0x0d, 0x00, 0x01, 0x00];
    const MODULE_VERSION: &[u8] = &[0x01, 0x00, 0x00, 0x00];
    let not_a_component = |reason: &str| LoadError::NotAComponent {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };

    if Engine::detect_precompiled(bytes).is_some() {
        return Err(LoadError::Precompiled {
            path: path.to_path_buf(),
        });
    }
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(not_a_component(
            "the file does not start with the wasm magic bytes",
        ));
    }
    match &bytes[4..8] {
        COMPONENT_VERSION => Ok(()),
        MODULE_VERSION => Err(not_a_component(
            "it is a core wasm module: build for the wasm32-wasip2 target, \
             which links a component",
        )),
        other => Err(not_a_component(&format!(
            "unknown wasm version or layer {other:02x?}"
        ))),
    }
}

/// Checks that every `laser:plugin` interface the component imports is of
/// the version this host serves.
fn check_api_imports(engine: &Engine, path: &Path, component: &Component) -> Result<(), LoadError> {
    let prefix = format!("{API_PACKAGE}/");
    let served = API_VERSION.strip_prefix(&format!("{API_PACKAGE}@"));
    let mut imports_api = false;
    for (name, _) in component.component_type().imports(engine) {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let version = rest.split_once('@').map(|(_, v)| v);
        if version != served {
            return Err(LoadError::ApiVersion {
                path: path.to_path_buf(),
                expected: API_VERSION.to_string(),
                found: match version {
                    Some(version) => format!("{API_PACKAGE}@{version}"),
                    None => format!("{API_PACKAGE} without a version"),
                },
            });
        }
        imports_api = true;
    }
    if imports_api {
        Ok(())
    } else {
        Err(LoadError::Mismatch {
            path: path.to_path_buf(),
            reason: format!(
                "the component imports no {API_PACKAGE} interface, so it \
                 was not built against {API_VERSION}: build it with \
                 laser-plugin-sdk"
            ),
        })
    }
}

/// Checks that the component exports the functions of its manifest's
/// kind.
fn check_kind_exports(
    engine: &Engine,
    path: &Path,
    manifest: &Manifest,
    component: &Component,
) -> Result<(), LoadError> {
    let functions: Vec<String> = component
        .component_type()
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
        .map(|(name, _)| name.to_string())
        .collect();
    let exports = |name: &str| functions.iter().any(|f| f == name);
    let (expected, other) = match manifest.kind {
        PluginKind::RewardModel => ("score", "choose"),
        PluginKind::Selector => ("choose", "score"),
    };
    if exports(expected) {
        return Ok(());
    }
    let reason = if exports(other) {
        format!(
            "the manifest's kind is {} but the component exports the \
             other world (it has `{other}`, not `{expected}`)",
            manifest.kind
        )
    } else {
        format!(
            "the component does not export `{expected}`, so it is not a \
             {} plugin (exports: {})",
            manifest.kind,
            functions.join(", ")
        )
    };
    Err(LoadError::Mismatch {
        path: path.to_path_buf(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up() {
        assert_eq!(ticks_for(Duration::ZERO), 1);
        assert_eq!(ticks_for(EPOCH_TICK), 1);
        assert_eq!(ticks_for(EPOCH_TICK + Duration::from_nanos(1)), 2);
        assert_eq!(ticks_for(Duration::from_millis(500)), 50);
    }
}
