//! Host-to-plugin call overhead and load time, for
//! `laser-host bench plugins`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{ArmInfo, PluginHost, SelectorPlugin, StubModelService};

/// Context dimension of the `choose` benchmark: 576, the hidden size of
/// SmolLM2-135M.
pub const BENCH_CONTEXT_DIM: usize = 576;

/// Number of arms of the `choose` benchmark.
pub const BENCH_ARMS: usize = 8;

/// Timings of one benchmark run. Call times are means over the iterations.
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
    /// `choose` with no contexts and no arms: the fixed cost of a call.
    pub empty_call: Duration,
    /// `choose` with one context of [`BENCH_CONTEXT_DIM`] and
    /// [`BENCH_ARMS`] arms.
    pub choose_one: Duration,
    /// `choose` with 64 such contexts.
    pub choose_batch64: Duration,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plugin {} ({} calls each)", self.plugin, self.iterations)?;
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
        write!(
            f,
            "  choose, 64 x {BENCH_CONTEXT_DIM}-dim, {BENCH_ARMS} arms:   {:>10.2?}",
            self.choose_batch64
        )
    }
}

/// Measures load time and call overhead with the selector plugin `wasm`
/// (a `NAME.wasm` with its `NAME.toml`), using a temporary compile cache.
///
/// # Errors
///
/// Returns an error when the plugin fails to load or a call fails.
pub fn bench_plugins(wasm: &Path, iterations: u32) -> anyhow::Result<BenchReport> {
    let cache_dir = temporary_cache_dir();
    let result = run_bench(wasm, iterations.max(1), &cache_dir);
    let _ = std::fs::remove_dir_all(&cache_dir);
    result
}

fn run_bench(wasm: &Path, iterations: u32, cache_dir: &Path) -> anyhow::Result<BenchReport> {
    let load = || -> anyhow::Result<(SelectorPlugin, Duration)> {
        let host =
            PluginHost::with_cache_dir(Arc::new(StubModelService), Some(cache_dir.to_path_buf()))?;
        let started = Instant::now();
        let plugin = host.load_selector(wasm)?;
        Ok((plugin, started.elapsed()))
    };
    let (_, load_cold) = load()?;
    let (mut plugin, load_cached) = load()?;
    anyhow::ensure!(
        plugin.meta().from_cache,
        "the second load did not use the compile cache in {}",
        cache_dir.display()
    );

    let arms: Vec<ArmInfo> = (0..BENCH_ARMS)
        .map(|k| ArmInfo {
            name: format!("arm-{k}"),
            version: "0.1.0".to_string(),
            tags: Vec::new(),
            enabled: true,
        })
        .collect();
    let context: Vec<f32> = (0..BENCH_CONTEXT_DIM)
        .map(|i| (i as f32 * 0.01).sin())
        .collect();
    let one = vec![context.clone()];
    let batch = vec![context; 64];

    let mut time = |contexts: &[Vec<f32>], arms: &[ArmInfo]| -> anyhow::Result<Duration> {
        plugin.choose(contexts, arms)?;
        let started = Instant::now();
        for _ in 0..iterations {
            plugin.choose(contexts, arms)?;
        }
        Ok(started.elapsed() / iterations)
    };
    let empty_call = time(&[], &[])?;
    let choose_one = time(&one, &arms)?;
    let choose_batch64 = time(&batch, &arms)?;

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

fn temporary_cache_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "laser-plugins-bench-{}-{nanos}",
        std::process::id()
    ))
}
