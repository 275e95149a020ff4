//! `laser-host compare`: runs several selectors on the same data, seed and
//! budget, one run folder each, and writes a table like the LASeR paper's:
//! accuracy before and after, reward-model calls and tokens, and wall time
//! per phase.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::cli::CompareArgs;
use crate::engine::Engine;
use crate::laser::{EvalBefore, Run, RunConfig, RunSummary};

/// One row of the table: a selector with its config.
struct Variant {
    /// The row's name: the selector's, or `fixed:RM` for a fixed arm.
    label: String,
    selector: String,
    selector_config: BTreeMap<String, toml::Value>,
}

/// The phases whose time the table shows, in loop order.
const PHASES: [&str; 5] = ["generate", "choose", "score", "train", "update"];

/// The settings of a compare, saved in its folder so that `--resume`
/// finishes it with the same ones.
#[derive(Serialize, Deserialize)]
struct CompareSettings {
    config: RunConfig,
    selectors: Vec<String>,
}

/// The file in a compare folder that contains its [`CompareSettings`].
const SETTINGS_FILE: &str = crate::laser::checkpoint::COMPARE_SETTINGS_FILE;

pub(crate) fn run(
    args: &CompareArgs,
    plugins: Option<PathBuf>,
    given: &[String],
    verbose: bool,
) -> Result<()> {
    ensure!(
        !given.iter().any(|id| id == "selector"),
        "compare runs each selector of --selectors; --selector is an option of train and best-of-n"
    );
    let (settings, out) = match &args.run.resume {
        Some(dir) => (saved_settings(dir, plugins.as_deref(), given)?, dir.clone()),
        None => {
            let out = args.run.out.clone();
            ensure!(
                !out.join(SETTINGS_FILE).exists(),
                "{} already contains a compare; pass --resume {} to finish it, or choose another --out",
                out.display(),
                out.display()
            );
            let settings = CompareSettings {
                config: super::run::config_from_args(
                    &args.run,
                    &args.preference,
                    args.mode,
                    plugins,
                )?,
                selectors: args.selectors.clone(),
            };
            check_names(&settings.config, &settings.selectors)?;
            super::ensure_empty_out(&out)?;
            fs::create_dir_all(&out)
                .with_context(|| format!("failed to create {}", out.display()))?;
            atomic::write_json(&out.join(SETTINGS_FILE), &settings)?;
            (settings, out)
        }
    };
    let base = settings.config;

    let rms = if base.rms.is_empty() {
        reward_model_names(&base.plugins)?
    } else {
        base.rms.clone()
    };
    let variants = variants(&settings.selectors, &rms);

    let gpu = super::open_gpu(verbose)?;
    let mut engine = Some(Engine::load(gpu.clone(), &base.model)?);
    let mut rows: Vec<(String, Outcome)> = Vec::new();
    // Every run starts from the same policy with the same seed and
    // held-out split, so the accuracy before training is measured once.
    let mut eval_before = None;
    for variant in variants {
        eprintln!("== {}", variant.label);
        let mut config = base.clone();
        config.selector = variant.selector;
        config.selector_config = variant.selector_config;
        config.rms = rms.clone();
        let dir = out.join(variant.label.replace(':', "-"));
        // A failed run can take the engine with it, so the model is loaded
        // again for the next run.
        let result = match engine.take() {
            Some(loaded) => Ok(loaded),
            None => Engine::load(gpu.clone(), &base.model),
        }
        .and_then(|loaded| run_variant(config, loaded, &dir, &mut eval_before, &mut engine));
        let outcome = match result {
            Ok(summary) => Outcome {
                summary: Some(summary),
                error: None,
            },
            // Ctrl-C stops the whole compare, which is resumed as a whole:
            // the run's own advice would resume only this selector.
            Err(_) if crate::interrupt::requested() => bail!(
                "compare stopped during selector {} on request; the finished batches are \
                 saved, and `laser-host compare --resume {}` continues",
                variant.label,
                out.display()
            ),
            Err(err) => {
                let error = format!("{err:#}");
                eprintln!(
                    "warning: selector {} failed, continuing with the other selectors: {error}",
                    variant.label
                );
                Outcome {
                    summary: None,
                    error: Some(error),
                }
            }
        };
        rows.push((variant.label, outcome));
    }

    let table = render_table(&rows)?;
    print!("{table}");
    let table_path = out.join("compare.md");
    atomic::write(&table_path, table.as_bytes())?;
    atomic::write_json(&out.join("compare.json"), &rows)?;

    let failed: Vec<&str> = rows
        .iter()
        .filter(|(_, outcome)| outcome.error.is_some())
        .map(|(label, _)| label.as_str())
        .collect();
    ensure!(
        failed.is_empty(),
        "{} of {} selectors failed ({}), and {} has the rows of the others. Fix what failed \
         and pass --resume {} to retry them (a run resumes only with the plugin files and \
         manifest settings it started with, so after changing a plugin delete that \
         selector's folder first), or start a new compare without them",
        failed.len(),
        rows.len(),
        failed.join(", "),
        table_path.display(),
        out.display()
    );
    Ok(())
}

/// The result of one selector's run: its summary, or the error that
/// stopped it.
#[derive(Serialize)]
struct Outcome {
    #[serde(flatten)]
    summary: Option<RunSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Expands the selectors of a compare into its variants: `fixed` becomes
/// one variant per reward model in `rms`, each setting the arm in the
/// selector's config.
fn variants(selectors: &[String], rms: &[String]) -> Vec<Variant> {
    let mut variants: Vec<Variant> = Vec::new();
    for selector in selectors {
        if selector == "fixed" {
            for rm in rms {
                variants.push(Variant {
                    label: format!("fixed:{rm}"),
                    selector: "fixed".into(),
                    selector_config: BTreeMap::from([(
                        "arm".to_string(),
                        toml::Value::String(rm.clone()),
                    )]),
                });
            }
        } else {
            variants.push(Variant {
                label: selector.clone(),
                selector: selector.clone(),
                selector_config: BTreeMap::new(),
            });
        }
    }
    variants
}

/// Runs one variant in `dir`, resuming the run there if it has one, and
/// returns its summary. A finished run only has its summary read again.
///
/// Shares `eval_before` between the runs. Puts the engine back in `engine`
/// unless the run lost it, because [`Run::open`] drops it when it fails and
/// a run cannot hand it back while a plugin still has a reference to it.
fn run_variant(
    config: RunConfig,
    loaded: Engine,
    dir: &Path,
    eval_before: &mut Option<EvalBefore>,
    engine: &mut Option<Engine>,
) -> Result<RunSummary> {
    let resume = dir.join(crate::laser::checkpoint::STATE_FILE).exists();
    let mut run = Run::open(config, loaded, dir, resume)?;
    if let Some(before) = eval_before.as_ref() {
        run.set_eval_before(before);
    }
    let result = run.run().and_then(|()| run.summary());
    // A run that failed after measuring the accuracy before training
    // measured it on the same policy and split as the others.
    if eval_before.is_none() {
        *eval_before = run.eval_before();
    }
    match run.into_engine() {
        Ok(returned) => *engine = Some(returned),
        Err(err) => eprintln!("warning: {err:#}, so the next run loads the model again"),
    }
    result
}

/// Reads the settings of the compare in `dir`, after checking that no
/// option in `given` (typed on the command line) would be ignored.
fn saved_settings(dir: &Path, plugins: Option<&Path>, given: &[String]) -> Result<CompareSettings> {
    let what = format!("the compare in {}", dir.display());
    super::run::check_resume_options(&what, SETTINGS_FILE, given)?;
    let path = dir.join(SETTINGS_FILE);
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "no compare to resume in {}: {} is missing",
            dir.display(),
            path.display()
        )
    })?;
    let settings: CompareSettings =
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
    super::run::check_resume_plugins(&what, plugins, &settings.config.plugins)?;
    super::run::check_resume_inputs(&what, &settings.config)?;
    Ok(settings)
}

/// Renders the compare table. A failed run's row shows `-` in every
/// column, and its error follows the table.
fn render_table(rows: &[(String, Outcome)]) -> Result<String> {
    let mut table = String::new();
    let format = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    writeln!(
        table,
        "| selector | eval before | eval after | picked correct | RM calls | RM candidates | RM tokens | {} |",
        PHASES.map(|p| format!("{p} s")).join(" | ")
    )?;
    writeln!(
        table,
        "|---|---|---|---|---|---|---|{}",
        "---|".repeat(PHASES.len())
    )?;
    for (label, outcome) in rows {
        let Some(s) = &outcome.summary else {
            // The six summary columns, then one per phase.
            let columns = 6 + PHASES.len();
            writeln!(table, "| {label} (failed) |{}", " - |".repeat(columns))?;
            continue;
        };
        let seconds: Vec<String> = PHASES
            .iter()
            .map(|p| format!("{:.1}", s.seconds.get(*p).copied().unwrap_or(0.0)))
            .collect();
        writeln!(
            table,
            "| {label} | {} | {} | {} | {} | {} | {} | {} |",
            format(s.eval_before),
            format(s.eval_after),
            format(s.pick_accuracy),
            s.rm_calls,
            s.rm_candidates,
            s.rm_tokens,
            seconds.join(" | ")
        )?;
    }
    let errors: Vec<(&String, &String)> = rows
        .iter()
        .filter_map(|(label, outcome)| outcome.error.as_ref().map(|error| (label, error)))
        .collect();
    if !errors.is_empty() {
        writeln!(table, "\nFailed runs:\n")?;
        for (label, error) in errors {
            // One list item per run, even when a plugin's message has
            // several lines.
            writeln!(table, "- {label}: {}", error.replace('\n', " "))?;
        }
    }
    Ok(table)
}

/// The names of the reward-model manifests in `dir`.
fn reward_model_names(dir: &Path) -> Result<Vec<String>> {
    manifest_names(dir, laser_plugins::PluginKind::RewardModel)
}

/// Returns the sorted names of the manifests of plugins of `kind` in `dir`. A
/// manifest that does not parse is left out here; loading the folder
/// reports it.
fn manifest_names(dir: &Path, kind: laser_plugins::PluginKind) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml")
            && let Ok(manifest) = laser_plugins::Manifest::from_file(&path)
            && manifest.kind == kind
        {
            names.push(manifest.name);
        }
    }
    names.sort();
    Ok(names)
}

/// Checks the selector and reward-model names of a new compare against the
/// plugin folder, so that a typo fails before any run starts.
fn check_names(config: &RunConfig, selectors: &[String]) -> Result<()> {
    let dir = &config.plugins;
    let known_selectors = manifest_names(dir, laser_plugins::PluginKind::Selector)?;
    let known_rms = reward_model_names(dir)?;
    for (i, name) in selectors.iter().enumerate() {
        ensure!(
            !name.trim().is_empty(),
            "--selectors contains an empty name; list selectors separated by commas, such as \
             --selectors linucb,random"
        );
        ensure!(
            !selectors[..i].contains(name),
            "--selectors names {name:?} twice"
        );
        ensure!(
            !known_rms.contains(name),
            "{name:?} in --selectors is a reward model; compare runs it alone as `fixed`, \
             which runs once per reward model"
        );
        ensure!(
            name == "fixed" || known_selectors.contains(name),
            "selector {name:?} not found in {}; the selectors there are: {}",
            dir.display(),
            known_selectors.join(", ")
        );
    }
    for name in &config.rms {
        ensure!(
            !known_selectors.contains(name),
            "{name:?} in --rms is a selector, not a reward model"
        );
        ensure!(
            known_rms.contains(name),
            "reward model {name:?} not found in {}; the reward models there are: {}",
            dir.display(),
            known_rms.join(", ")
        );
    }
    Ok(())
}
