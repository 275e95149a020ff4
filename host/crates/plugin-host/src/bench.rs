//! Host-to-plugin call overhead and load time, for
//! `laser-host bench plugins`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::component_path;
use crate::{
    ArmInfo, LoadedPlugin, Manifest, PluginHost, PluginKind, SelectorPlugin, StubModelService,
};

/// Context dimension of the `choose` benchmark: 576, the hidden size of
/// SmolLM2-135M.
pub const BENCH_CONTEXT_DIM: usize = 576;

/// Number of arms of the `choose` benchmark.
pub const BENCH_ARMS: usize = 8;

/// Timings of one benchmark run. Call times are means over the iterations.
/// Its `Display` form ends with a newline.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The selector plugin measured.
    pub plugin: String,
    /// Calls per measurement.
    pub iterations: u32,
    /// Load with an empty compile cache: read, compile, instantiate,
    /// `info`, `configure`.
    pub load_cold: Duration,
    /// Load with the compiled component in the cache.
    pub load_cached: Duration,
    /// `choose` with no contexts and the [`BENCH_ARMS`] arms: the fixed
    /// cost of a call.
    pub empty_call: Duration,
    /// `choose` with one context of [`BENCH_CONTEXT_DIM`] and
    /// [`BENCH_ARMS`] arms.
    pub choose_one: Duration,
    /// `choose` with 64 such contexts.
    pub choose_batch64: Duration,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let calls = if self.iterations == 1 {
            "call"
        } else {
            "calls"
        };
        writeln!(
            f,
            "plugin {} ({} {calls} each)",
            self.plugin, self.iterations
        )?;
        writeln!(
            f,
            "  load, cold cache:              {:>10.2?}",
            self.load_cold
        )?;
        writeln!(
            f,
            "  load, warm cache:              {:>10.2?}",
            self.load_cached
        )?;
        writeln!(
            f,
            "  empty call:                    {:>10.2?}",
            self.empty_call
        )?;
        writeln!(
            f,
            "  choose, 1 x {BENCH_CONTEXT_DIM}-dim, {BENCH_ARMS} arms:    {:>10.2?}",
            self.choose_one
        )?;
        writeln!(
            f,
            "  choose, 64 x {BENCH_CONTEXT_DIM}-dim, {BENCH_ARMS} arms:   {:>10.2?}",
            self.choose_batch64
        )
    }
}

/// Measures load time and call overhead with the selector plugin at `path`,
/// its `NAME.wasm` component or its `NAME.toml` manifest, using a temporary
/// compile cache. Each call time is the mean of `iterations` calls.
///
/// # Errors
///
/// Returns an error when `iterations` is 0, `path` is neither a `.wasm` nor
/// a `.toml` file, the plugin is a reward model, it fails to load, or a call
/// fails.
pub fn bench_plugins(path: &Path, iterations: u32) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        iterations > 0,
        "invalid iteration count 0: each measurement is the mean of its calls, \
         so pass 1 or more (--iterations)"
    );
    let wasm = component_path(path)?;
    let cache_dir = temporary_cache_dir();
    let result = run_bench(&wasm, iterations, &cache_dir);
    let _ = std::fs::remove_dir_all(&cache_dir);
    result
}

fn run_bench(wasm: &Path, iterations: u32, cache_dir: &Path) -> anyhow::Result<BenchReport> {
    let load = || -> anyhow::Result<(SelectorPlugin, Duration)> {
        let host =
            PluginHost::with_cache_dir(Arc::new(StubModelService), Some(cache_dir.to_path_buf()))?;
        let started = Instant::now();
        let plugin = host.load(wasm)?;
        let elapsed = started.elapsed();
        match plugin {
            LoadedPlugin::Selector(plugin) => Ok((plugin, elapsed)),
            LoadedPlugin::RewardModel(plugin) => Err(not_a_selector(wasm, &plugin.meta().label())),
        }
    };
    let (_, load_cold) = load()?;
    let (mut plugin, load_cached) = load()?;
    anyhow::ensure!(
        plugin.meta().from_cache,
        "the second load did not use the compile cache in {}",
        cache_dir.display()
    );

    let arms = bench_arms(&plugin.meta().manifest.config);
    let context: Vec<f32> = (0..BENCH_CONTEXT_DIM)
        .map(|i| (i as f32 * 0.01).sin())
        .collect();
    let one = vec![context.clone()];
    let batch = vec![context; 64];

    // The first call of each measurement is a warm-up and is not timed. The
    // empty call comes first, so the selector learns its arms there, as in a
    // run, where every `choose` passes the arms.
    let mut time = |contexts: &[Vec<f32>]| -> anyhow::Result<Duration> {
        plugin.choose(contexts, &arms)?;
        let started = Instant::now();
        for _ in 0..iterations {
            plugin.choose(contexts, &arms)?;
        }
        Ok(started.elapsed() / iterations)
    };
    let empty_call = time(&[])?;
    let choose_one = time(&one)?;
    let choose_batch64 = time(&batch)?;

    Ok(BenchReport {
        plugin: plugin.meta().label(),
        iterations,
        load_cold,
        load_cached,
        empty_call,
        choose_one,
        choose_batch64,
    })
}

/// Builds the [`BENCH_ARMS`] enabled arms of the benchmark, named `arm-0`,
/// `arm-1` and so on. A selector whose `[config]` names the arm it picks in
/// the key `arm`, as `fixed` does, gets that name for arm 0, so that the
/// arm exists as it does in a run.
fn bench_arms(config: &BTreeMap<String, toml::Value>) -> Vec<ArmInfo> {
    let mut names: Vec<String> = (0..BENCH_ARMS).map(|k| format!("arm-{k}")).collect();
    if let Some(toml::Value::String(configured)) = config.get("arm")
        && !names.contains(configured)
    {
        names[0] = configured.clone();
    }
    names
        .into_iter()
        .map(|name| ArmInfo {
            name,
            version: "0.1.0".to_string(),
            tags: Vec::new(),
            enabled: true,
        })
        .collect()
}

/// Builds the error for a reward model passed to the benchmark, listing
/// the selectors whose manifests sit in the same folder.
fn not_a_selector(wasm: &Path, label: &str) -> anyhow::Error {
    let dir = wasm.parent().unwrap_or(Path::new("."));
    let selectors = selector_names(dir);
    let hint = if selectors.is_empty() {
        "pass a selector's NAME.wasm or NAME.toml".to_string()
    } else {
        format!(
            "pass a selector's NAME.wasm or NAME.toml; the selectors in {} are: {}",
            dir.display(),
            selectors.join(", ")
        )
    };
    anyhow::anyhow!(
        "{}: {label} is a reward model, but `bench plugins` measures selectors: {hint}",
        wasm.display()
    )
}

/// Returns the sorted names of the selector manifests in `dir`. A folder or
/// manifest that cannot be read is left out, because the names only help
/// the error message.
fn selector_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .filter_map(|path| Manifest::from_file(&path).ok())
        .filter(|manifest| manifest.kind == PluginKind::Selector)
        .map(|manifest| manifest.name)
        .collect();
    names.sort();
    names
}

fn temporary_cache_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "laser-plugins-bench-{}-{nanos}",
        std::process::id()
    ))
}
