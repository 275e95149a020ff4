//! `laser-host train` and `laser-host best-of-n`: a LASeR run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use crate::cli::{PreferenceArgs, RunArgs};
use crate::engine::{Engine, MAX_ROWS};
use crate::laser::{EnsembleMode, Mode, PairMode, Run, RunConfig};

/// Options that may come with `--resume`: they do not change the run.
const RESUME_OPTIONS: [&str; 3] = ["resume", "plugins", "verbose"];

/// Starts a LASeR run in `mode`, or resumes the run in `args.resume`.
/// `preference` sets the preference training of `train` mode; `given`
/// names the options typed on the command line.
pub(crate) fn run(
    args: &RunArgs,
    preference: &PreferenceArgs,
    mode: Mode,
    plugins: Option<PathBuf>,
    given: &[String],
    verbose: bool,
) -> Result<()> {
    let (config, out, resume) = match &args.resume {
        Some(dir) => {
            let what = format!("the run in {}", dir.display());
            check_resume_options(&what, "config.json", given)?;
            let path = dir.join("config.json");
            if !path.exists() {
                // The same message as for a missing state.json, which also
                // recognises a compare folder.
                crate::laser::checkpoint::RunState::read(dir)?;
            }
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no run to resume in {}: {} is missing",
                    dir.display(),
                    path.display()
                )
            })?;
            let config: RunConfig = serde_json::from_str(&text)
                .with_context(|| format!("{} is damaged", path.display()))?;
            check_resume_plugins(&what, plugins.as_deref(), &config.plugins)?;
            check_resume_inputs(&what, &config)?;
            ensure!(
                config.mode == mode,
                "the run in {} is a `{}` run; resume it with `laser-host {} --resume {}`",
                dir.display(),
                config.mode.name(),
                config.mode.name(),
                dir.display()
            );
            (config, dir.clone(), true)
        }
        None => (
            config_from_args(args, preference, mode, plugins)?,
            args.out.clone(),
            false,
        ),
    };
    let gpu = super::open_gpu(verbose)?;
    let engine = Engine::load(gpu, &config.model)?;
    let mut run = Run::open(config, engine, &out, resume)?;
    run.run()?;
    println!(
        "run finished: report at {}",
        out.join("report.md").display()
    );
    Ok(())
}

/// Returns `path` made absolute against the current folder.
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path)
        .with_context(|| format!("failed to make {} an absolute path", path.display()))
}

/// Checks that `given`, the options typed beside `--resume`, contains none
/// that would change `what` (a run or a compare), whose settings come from
/// its `settings_file`. Such an option would otherwise be ignored silently.
///
/// # Errors
///
/// Names the options to drop.
pub(crate) fn check_resume_options(
    what: &str,
    settings_file: &str,
    given: &[String],
) -> Result<()> {
    let extra: Vec<String> = given
        .iter()
        .filter(|id| !RESUME_OPTIONS.contains(&id.as_str()))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    ensure!(
        extra.is_empty(),
        "--resume continues {what} with the settings in its {settings_file} and takes no other \
         options; drop {}, or start anew with --out",
        extra.join(", ")
    );
    Ok(())
}

/// Checks that a `--plugins` folder given on resuming `what` is the one its
/// settings name, `saved`.
///
/// # Errors
///
/// Names both folders.
pub(crate) fn check_resume_plugins(what: &str, given: Option<&Path>, saved: &Path) -> Result<()> {
    if let Some(given) = given {
        ensure!(
            same_path(given, saved),
            "{what} uses the plugin folder {}, not {}; resume it without --plugins (and without \
             LASER_HOST_PLUGINS), or with the same folder",
            saved.display(),
            given.display()
        );
    }
    Ok(())
}

/// Checks that the data files and the model that `what` started with are
/// still at the paths its settings name, which `--resume` reads again.
///
/// # Errors
///
/// Names the first missing path.
pub(crate) fn check_resume_inputs(what: &str, config: &RunConfig) -> Result<()> {
    let data = config.data.iter().map(|path| ("data file", path));
    for (kind, path) in data.chain([("model", &config.model)]) {
        ensure!(
            path.exists(),
            "{what} started with the {kind} {}, which is missing now. Restore it at that path \
             to resume, or start a new run with another --out",
            path.display()
        );
    }
    Ok(())
}

/// Returns whether `a` and `b` name the same file or folder.
fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub(crate) fn config_from_args(
    args: &RunArgs,
    preference: &PreferenceArgs,
    mode: Mode,
    plugins: Option<PathBuf>,
) -> Result<RunConfig> {
    let plugins = plugins.context(
        "missing --plugins DIR: a folder of reward-model and selector plugins \
         (build the bundled ones with `plugins/build.sh DIR`)",
    )?;
    ensure!(args.batch_size >= 1, "--batch-size must be at least 1");
    ensure!(
        args.n >= 2,
        "--n must be at least 2 to compare samples, got {}",
        args.n
    );
    let sequences = args.batch_size as u128 * u128::from(args.n);
    ensure!(
        sequences <= u128::from(MAX_ROWS),
        "--batch-size {} times --n {} makes {sequences} sequences per batch, more than the \
         {MAX_ROWS} that the engine generates at once; lower --batch-size or --n",
        args.batch_size,
        args.n
    );
    ensure!(args.iterations >= 1, "--iterations must be at least 1");
    ensure!(
        args.temperature.is_finite() && args.temperature >= 0.0,
        "--temperature must be a finite number >= 0, got {}",
        args.temperature
    );
    ensure!(
        args.rms.iter().all(|name| !name.trim().is_empty()),
        "--rms contains an empty name; list reward models separated by commas, such as \
         --rms likelihood,length"
    );
    if args.temperature == 0.0 {
        eprintln!(
            "warning: --temperature 0 samples greedily, so the {} samples of a prompt are the same \
             and reward models have nothing to choose between",
            args.n
        );
    }
    ensure!(
        mode != Mode::Train || preference.pairs >= 1,
        "--pairs must be at least 1: with 0 pairs per prompt nothing trains"
    );
    if mode == Mode::Train && preference.pairs > 1 && preference.pair_mode != PairMode::TopP {
        eprintln!(
            "warning: --pairs {} applies to --pair-mode top-p; the other modes form one pair per \
             prompt",
            preference.pairs
        );
    }
    if args.ensemble != EnsembleMode::MeanMinusStd && args.ensemble_lambda != 1.0 {
        eprintln!(
            "warning: --ensemble-lambda {} applies only to --ensemble mean-minus-std, so it is \
             ignored",
            args.ensemble_lambda
        );
    }
    for (i, name) in args.rms.iter().enumerate() {
        ensure!(
            !args.rms[..i].contains(name),
            "--rms names reward model {name:?} twice"
        );
    }
    crate::laser::data_sources(&args.data, &args.data_format)?;
    ensure!(
        args.max_new_tokens >= 1,
        "--max-new-tokens must be at least 1"
    );
    for data in &args.data {
        ensure!(data.exists(), "data file {} not found", data.display());
        // A pipe would be used up by the sha256 that --resume checks.
        ensure!(
            data.is_file(),
            "data file {} is not a regular file but a folder, pipe or device. Save the data to a \
             file and pass its path",
            data.display()
        );
    }
    // Absolute paths, so that --resume works from any folder.
    let model = absolute(&super::model_path(&args.model)?)?;
    let plugins = absolute(&plugins)?;
    let data = args
        .data
        .iter()
        .map(|path| absolute(path))
        .collect::<Result<_>>()?;
    Ok(RunConfig {
        mode,
        data,
        data_format: args.data_format.clone(),
        builtin_count: args.builtin_count,
        model,
        plugins,
        selector: args.selector.clone(),
        selector_config: BTreeMap::new(),
        rms: args.rms.clone(),
        iterations: args.iterations,
        batch_size: args.batch_size,
        n: args.n,
        pairs: preference.pairs,
        pair_mode: preference.pair_mode,
        seed: args.seed,
        temperature: args.temperature,
        max_new_tokens: args.max_new_tokens,
        pooling: args.pooling,
        ensemble: args.ensemble,
        ensemble_lambda: args.ensemble_lambda,
        train_size: args.train_size,
        eval_size: args.eval_size,
        beta: preference.beta,
        nll_weight: preference.nll_weight,
        learning_rate: preference.learning_rate,
    })
}
