//! `laser-host eval`: accuracy on a held-out split, answering greedily or
//! picking the best of n samples with a reward model.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use laser_plugins::{LoadedPlugin, PluginDir, PluginHost};

use crate::cli::EvalArgs;
use crate::engine::MAX_ROWS;
use crate::laser::eval::{self, Accuracy, BestOfN};
use crate::laser::service::EngineService;

pub(crate) fn run(args: &EvalArgs, plugins: Option<PathBuf>, verbose: bool) -> Result<()> {
    check_args(args)?;
    let instances =
        crate::laser::load_instances(&args.data, &args.data_format, args.seed, args.builtin_count)?;
    let count = args.eval_size.min(instances.len().saturating_sub(1)).max(1);
    if count < args.eval_size {
        eprintln!(
            "warning: --eval-size {} leaves no training data from {} instances; evaluating {count}, \
             the split a run with this seed holds out",
            args.eval_size,
            instances.len()
        );
    }
    let split =
        laser_data::split_instances(instances, laser_data::EvalSize::Count(count), args.seed)
            .context("failed to split off the held-out instances")?;
    let held_out = split.eval.len();
    let instances = eval::keep_referenced(split.eval);
    ensure!(
        !instances.is_empty(),
        "accuracy cannot be measured: none of the {held_out} held-out instances has a reference \
         answer; give the records a `reference` field"
    );
    let mut engine = super::load_engine(&args.model, verbose)?;
    if let Some(dir) = &args.adapter {
        reject_run_folder(dir)?;
        engine.load_adapter(dir)?;
    }
    let referenced = instances.len();
    let (instances, _) =
        crate::laser::drop_long_prompts(&engine, instances, args.max_new_tokens, "held-out")?;
    ensure!(
        !instances.is_empty(),
        "none of the {referenced} held-out instances fits the model's context of {} tokens with \
         --max-new-tokens {}; lower --max-new-tokens or shorten the prompts",
        engine.config.context_length,
        args.max_new_tokens
    );
    let bar = indicatif::ProgressBar::new(instances.len() as u64);
    let progress = |done: usize| bar.set_position(done as u64);
    let accuracy = match args.best_of {
        None => eval::evaluate(
            &mut engine,
            &instances,
            args.batch_size,
            args.max_new_tokens,
            progress,
        )?,
        Some(n) => best_of_n(args, n, plugins, engine, &instances, progress)?,
    };
    bar.finish_and_clear();
    if let Some(path) = &args.responses {
        let mut lines = Vec::new();
        for response in &accuracy.responses {
            serde_json::to_writer(&mut lines, response)?;
            lines.push(b'\n');
        }
        crate::atomic::write(path, &lines)
            .with_context(|| format!("failed to write the responses to {}", path.display()))?;
    }
    let mut line = format!(
        "accuracy {:.3} ({} of {})",
        accuracy.rate(),
        accuracy.correct,
        accuracy.total
    );
    let mut left_out = Vec::new();
    if held_out > referenced {
        left_out.push(format!(
            "{} without a reference answer",
            held_out - referenced
        ));
    }
    if referenced > accuracy.total {
        left_out.push(format!(
            "{} too long for the context",
            referenced - accuracy.total
        ));
    }
    if !left_out.is_empty() {
        line.push_str(&format!(
            "; left out of {held_out} held-out instances: {}",
            left_out.join(", ")
        ));
    }
    println!("{line}");
    for (category, (correct, total)) in &accuracy.per_category {
        println!(
            "  {category}: {:.3} ({correct} of {total})",
            *correct as f64 / (*total).max(1) as f64
        );
    }
    Ok(())
}

/// Checks the options that do not need the data or the model, so that a
/// mistake fails before either is loaded.
fn check_args(args: &EvalArgs) -> Result<()> {
    ensure!(args.eval_size >= 1, "--eval-size must be at least 1");
    ensure!(args.batch_size >= 1, "--batch-size must be at least 1");
    if let Some(n) = args.best_of {
        ensure!(
            (1..=MAX_ROWS).contains(&n),
            "--best-of must be between 1 and {MAX_ROWS}, the samples the engine generates at \
             once, got {n}"
        );
        ensure!(
            args.temperature.is_finite() && args.temperature >= 0.0,
            "--temperature must be a finite number >= 0, got {}",
            args.temperature
        );
    }
    if let Some(path) = &args.responses {
        check_responses_path(path, &args.data)?;
    }
    Ok(())
}

/// Checks that `--responses` names a file that may be replaced. A folder
/// would fail only after the whole evaluation, and the responses would
/// overwrite a `--data` file.
fn check_responses_path(path: &Path, data: &[PathBuf]) -> Result<()> {
    ensure!(
        !path.is_dir(),
        "--responses {} is a folder. Give the path of a JSONL file to write",
        path.display()
    );
    if let Ok(target) = path.canonicalize() {
        for data in data {
            ensure!(
                data.canonicalize().ok().as_ref() != Some(&target),
                "--responses {} is the --data file {}, which writing the responses would \
                 replace. Choose another file",
                path.display(),
                data.display()
            );
        }
    }
    Ok(())
}

/// Evaluates best-of-`n` with the reward model `args.rm` from `plugins`.
fn best_of_n(
    args: &EvalArgs,
    n: u32,
    plugins: Option<PathBuf>,
    engine: crate::engine::Engine,
    instances: &[laser_data::Instance],
    progress: impl FnMut(usize),
) -> Result<Accuracy> {
    if args.temperature == 0.0 && n > 1 {
        eprintln!(
            "warning: --temperature 0 samples greedily, so the {n} samples of a prompt are the \
             same and --rm has nothing to choose between"
        );
    }

    let plugins = plugins.context(
        "--best-of needs --plugins DIR, the folder that contains the reward model named by --rm",
    )?;
    let name = args
        .rm
        .as_deref()
        .context("--best-of needs --rm NAME: the reward model that picks among the samples")?;

    // Load the plugin folder and find the reward model among its plugins.
    let engine = Arc::new(Mutex::new(engine));
    let host = PluginHost::new(Arc::new(EngineService::new(Arc::clone(&engine))))?;
    let report = PluginDir::new(&plugins)
        .scan(&host)
        .with_context(|| format!("failed to read plugin folder {}", plugins.display()))?;
    let mut names = Vec::new();
    let mut rm = None;
    for plugin in report.loaded {
        match plugin {
            LoadedPlugin::RewardModel(plugin) => {
                let plugin_name = plugin.meta().manifest.name.clone();
                if plugin_name == name {
                    rm = Some(plugin);
                } else {
                    names.push(plugin_name);
                }
            }
            LoadedPlugin::Selector(selector) => ensure!(
                selector.meta().manifest.name != name,
                "--rm {name:?} is a selector, not a reward model"
            ),
        }
    }
    let mut rm = rm.with_context(|| {
        format!(
            "reward model {name:?} not found in {}; the reward models there are: {}",
            plugins.display(),
            names.join(", ")
        )
    })?;

    let mut best_of = BestOfN {
        rm: &mut rm,
        n,
        temperature: args.temperature,
        seed: args.seed,
    };
    eval::evaluate_best_of_n(
        &engine,
        instances,
        args.batch_size,
        args.max_new_tokens,
        &mut best_of,
        progress,
    )
}

/// Fails when `--adapter` names a run folder rather than an adapter,
/// naming the run's policy folder, which contains its adapter, if it has one.
pub(crate) fn reject_run_folder(dir: &std::path::Path) -> Result<()> {
    use crate::laser::checkpoint::{LEGACY_POLICY_DIR, RunState, STATE_FILE};
    if !dir.join(STATE_FILE).exists() {
        return Ok(());
    }
    let state = RunState::read(dir)?;
    let legacy = dir.join(LEGACY_POLICY_DIR);
    let policy = match state.policy_dir {
        Some(name) => Some(dir.join(name)),
        None => legacy.is_dir().then_some(legacy),
    };
    match policy {
        Some(policy) => bail!(
            "--adapter {} is a run folder; pass its policy folder {}, which contains the adapter",
            dir.display(),
            policy.display()
        ),
        None => bail!(
            "--adapter {} is a run folder with no trained adapter (a best-of-n run, or a \
             train run stopped before its first batch)",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laser::checkpoint::RunState;

    #[test]
    fn run_folder_as_adapter_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        assert!(reject_run_folder(dir.path()).is_ok());

        let mut state = RunState::default();
        state.save(dir.path()).unwrap();
        let message = reject_run_folder(dir.path()).unwrap_err().to_string();
        assert!(message.contains("no trained adapter"), "{message}");

        state.policy_dir = Some("policy-000004".to_owned());
        state.save(dir.path()).unwrap();
        let message = reject_run_folder(dir.path()).unwrap_err().to_string();
        assert!(message.contains("policy-000004"), "{message}");
    }

    #[test]
    fn responses_path_spares_data_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("gsm8k.jsonl");
        std::fs::write(&data, "{}\n").unwrap();
        let fresh = dir.path().join("responses.jsonl");
        assert!(check_responses_path(&fresh, std::slice::from_ref(&data)).is_ok());

        let message = check_responses_path(dir.path(), &[])
            .unwrap_err()
            .to_string();
        assert!(message.contains("is a folder"), "{message}");

        // The same file under another spelling of its path.
        let other = dir.path().join(".").join("gsm8k.jsonl");
        let message = check_responses_path(&other, &[data])
            .unwrap_err()
            .to_string();
        assert!(message.contains("is the --data file"), "{message}");
    }
}
