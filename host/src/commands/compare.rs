//! `laser-host compare`: runs several selectors on the same data, seed and
//! budget, one run folder each, and writes a table like the LASeR paper's:
//! accuracy before and after, reward-model calls and tokens, and wall time
//! per phase.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::cli::CompareArgs;
use crate::engine::Engine;
use crate::laser::{Run, RunConfig, RunSummary};

/// One row of the table: a selector with its config.
struct Variant {
    /// The row's name: the selector's, or `fixed:RM` for a fixed arm.
    label: String,
    selector: String,
    selector_config: BTreeMap<String, toml::Value>,
}

/// The phases whose time the table shows, in loop order.
const PHASES: [&str; 6] = ["context", "choose", "generate", "score", "train", "update"];

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

    // Expand `fixed` into one variant per reward model, each setting the
    // arm in the selector's config.
    let rms = if base.rms.is_empty() {
        reward_model_names(&base.plugins)?
    } else {
        base.rms.clone()
    };
    let mut variants: Vec<Variant> = Vec::new();
    for selector in &settings.selectors {
        if selector == "fixed" {
            for rm in &rms {
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

    let gpu = super::open_gpu(verbose)?;
    let mut engine = Engine::load(gpu, &base.model)?;
    let mut rows: Vec<(String, RunSummary)> = Vec::new();
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
        let resume = dir.join(crate::laser::checkpoint::STATE_FILE).exists();
        let mut run = Run::open(config, engine, &dir, resume)?;
        if let Some(before) = &eval_before {
            run.set_eval_before(before);
        }
        run.run()?;
        let summary = run.summary()?;
        eval_before = eval_before.or_else(|| run.eval_before());
        rows.push((variant.label, summary));
        engine = run.into_engine()?;
    }

    let table = render_table(&rows)?;
    print!("{table}");
    atomic::write(&out.join("compare.md"), table.as_bytes())?;
    atomic::write_json(&out.join("compare.json"), &rows)?;
    Ok(())
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
    Ok(settings)
}

fn render_table(rows: &[(String, RunSummary)]) -> Result<String> {
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
    for (label, s) in rows {
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
