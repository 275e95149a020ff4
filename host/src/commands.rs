//! Runs each subcommand.

mod bench;
mod compare;
mod dpo;
mod eval;
mod generate;
mod logits;
mod merge;
mod run;

use std::path::PathBuf;

use anyhow::{Context, Result};
use laser_gpu::Gpu;

use crate::cli::{Cli, Command, ModelArgs, ModelsCommand, PluginsCommand};
use crate::engine::Engine;
use crate::fetch;

/// Runs the command `cli` names.
///
/// # Errors
///
/// Returns the command's error, with context for each layer.
pub fn run(cli: Cli) -> Result<()> {
    if cli.plugins.is_some()
        && cli.given.iter().any(|id| id == "plugins")
        && !cli.command.uses_plugins()
    {
        eprintln!("warning: this command reads no plugin folder, so --plugins is ignored");
    }
    if matches!(
        cli.command,
        Command::Train(_) | Command::BestOfN(_) | Command::Compare(_) | Command::Dpo(_)
    ) {
        crate::interrupt::install();
    }
    match cli.command {
        Command::Train(args) => run::run(
            &args.run,
            &args.preference,
            crate::laser::Mode::Train,
            cli.plugins,
            &cli.given,
            cli.verbose,
        ),
        Command::BestOfN(args) => run::run(
            &args,
            &crate::cli::PreferenceArgs::default(),
            crate::laser::Mode::BestOfN,
            cli.plugins,
            &cli.given,
            cli.verbose,
        ),
        Command::Eval(args) => eval::run(&args, cli.plugins, cli.verbose),
        Command::Compare(args) => compare::run(&args, cli.plugins, &cli.given, cli.verbose),
        Command::Report { run } => {
            crate::laser::report::write_from_folder(&run)?;
            println!("{}", run.join("report.md").display());
            Ok(())
        }
        Command::Generate(args) => generate::run(&args, cli.verbose),
        Command::Dpo(args) => dpo::run(&args, &cli.given, cli.verbose),
        Command::Merge(args) => merge::run(&args, cli.verbose),
        Command::Logits(args) => logits::run(&args, cli.verbose),
        Command::Models(ModelsCommand::Fetch) => {
            let path = fetch::default_model_path();
            if path.exists() && fetch::sha256_file(&path)? == fetch::DEFAULT_SHA256 {
                println!("{} (already cached, sha256 ok)", path.display());
                return Ok(());
            }
            fetch::fetch_default_model(&path)?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Models(ModelsCommand::Path) => {
            println!("{}", fetch::default_model_path().display());
            Ok(())
        }
        Command::Plugins(PluginsCommand::List { dir }) => {
            let dir = dir.or(cli.plugins).context(
                "missing plugin folder: pass it as `plugins list DIR` or with --plugins DIR",
            )?;
            let report = laser_plugins::list_plugins(&dir)?;
            print!("{report}");
            report.plugins.iter().for_each(warn_unserved_models);
            Ok(())
        }
        Command::Plugins(PluginsCommand::Check { file }) => {
            let report = laser_plugins::check_plugin(&file)?;
            print!("{report}");
            warn_unserved_models(&report);
            Ok(())
        }
        Command::Bench(crate::cli::BenchCommand::Engine(args)) => bench::engine(&args, cli.verbose),
        Command::Bench(crate::cli::BenchCommand::Train(args)) => bench::train(&args, cli.verbose),
        Command::Bench(crate::cli::BenchCommand::Plugins {
            selector,
            iterations,
        }) => {
            print!("{}", laser_plugins::bench_plugins(&selector, iterations)?);
            Ok(())
        }
    }
}

/// Warns when a plugin's manifest names models other than the policy,
/// which is the only model this host serves: runs reject such a plugin
/// when they start, though it loads here with stub models.
fn warn_unserved_models(report: &laser_plugins::PluginReport) {
    let unserved: Vec<&String> = report
        .models
        .iter()
        .filter(|model| model.as_str() != crate::laser::service::POLICY)
        .collect();
    if !unserved.is_empty() {
        eprintln!(
            "warning: {} requests models {unserved:?}, but laser-host serves only {:?}, so \
             runs will reject it until `models` in its manifest lists only that",
            report.name,
            crate::laser::service::POLICY
        );
    }
}

/// Opens the GPU, printing what was chosen when `verbose`.
pub(crate) fn open_gpu(verbose: bool) -> Result<Gpu> {
    let gpu = Gpu::new()?;
    if verbose {
        eprintln!("adapter: {}", gpu.describe());
        let limits = &gpu.limits;
        eprintln!(
            "limits: max_buffer_size {} MiB, max_storage_buffer_binding_size {} MiB, \
             max_compute_workgroup_storage_size {} KiB, max_compute_invocations_per_workgroup {}",
            limits.max_buffer_size >> 20,
            limits.max_storage_buffer_binding_size >> 20,
            limits.max_compute_workgroup_storage_size >> 10,
            limits.max_compute_invocations_per_workgroup
        );
        eprintln!("kernels: {}", gpu.describe_kernels());
    }
    Ok(gpu)
}

/// Checks that `out` can take a new run without overwriting anything: it
/// does not exist yet, or is an empty folder.
///
/// # Errors
///
/// Fails unless `value`, the value of `option`, is a finite number above
/// 0. The message shows the value as given: an f32 widened to f64 would
/// print 0.1 as 0.10000000149011612.
pub(crate) fn ensure_positive<T: Into<f64> + std::fmt::Display + Copy>(
    option: &str,
    value: T,
) -> Result<()> {
    let number: f64 = value.into();
    anyhow::ensure!(
        number.is_finite() && number > 0.0,
        "{option} must be a positive number, got {value}"
    );
    Ok(())
}

/// Fails unless `value`, the value of `option`, is a finite number of at
/// least 0, showing the value as [`ensure_positive`] does.
pub(crate) fn ensure_non_negative<T: Into<f64> + std::fmt::Display + Copy>(
    option: &str,
    value: T,
) -> Result<()> {
    let number: f64 = value.into();
    anyhow::ensure!(
        number.is_finite() && number >= 0.0,
        "{option} must be a number of at least 0, got {value}"
    );
    Ok(())
}

/// Names `out` when it is a file or a folder with entries.
pub(crate) fn ensure_empty_out(out: &std::path::Path) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    anyhow::ensure!(
        out.is_dir(),
        "--out {} is a file, not a folder; choose a folder path for --out",
        out.display()
    );
    let mut entries = std::fs::read_dir(out)
        .with_context(|| format!("failed to read the --out folder {}", out.display()))?;
    anyhow::ensure!(
        entries.next().is_none(),
        "--out {} is not empty; choose a new or empty folder, so that nothing in it is overwritten",
        out.display()
    );
    Ok(())
}

/// Resolves `--model`, fetching the default model when none is given.
pub(crate) fn model_path(args: &ModelArgs) -> Result<PathBuf> {
    match &args.model {
        Some(path) => Ok(path.clone()),
        None => fetch::ensure_default_model(),
    }
}

/// Opens the GPU and loads the model `args` names.
pub(crate) fn load_engine(args: &ModelArgs, verbose: bool) -> Result<Engine> {
    let path = model_path(args)?;
    let gpu = open_gpu(verbose)?;
    let started = std::time::Instant::now();
    let engine = Engine::load(gpu, &path)?;
    tracing::debug!(
        model = %path.display(),
        seconds = started.elapsed().as_secs_f64(),
        gpu_mib = engine.gpu_bytes() >> 20,
        "model loaded"
    );
    if verbose {
        eprintln!(
            "model: {} ({} MiB on the GPU, loaded in {:.1} s)",
            path.display(),
            engine.gpu_bytes() >> 20,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(engine)
}
