//! `laser-host compare`: runs several selectors on the same data, seed and
//! budget, one run folder each, and writes a table like the LASeR paper's:
//! accuracy before and after, reward-model calls and tokens, and wall time
//! per phase.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::atomic;
use crate::cli::CompareArgs;
use crate::engine::Engine;
use crate::laser::{Run, RunSummary};

/// One row of the table: a selector with its config.
struct Variant {
    /// The row's name: the selector's, or `fixed:RM` for a fixed arm.
    label: String,
    selector: String,
    selector_config: BTreeMap<String, toml::Value>,
}

/// The phases whose time the table shows, in loop order.
const PHASES: [&str; 6] = ["context", "choose", "generate", "score", "train", "update"];

pub(crate) fn run(args: &CompareArgs, plugins: Option<PathBuf>, verbose: bool) -> Result<()> {
    let base = super::run::config_from_args(&args.run, &args.preference, args.mode, plugins)?;
    let out = args.run.out.clone();
    fs::create_dir_all(&out).with_context(|| format!("failed to create {}", out.display()))?;

    // Expand `fixed` into one variant per reward model, each setting the
    // arm in the selector's config.
    let rms = if base.rms.is_empty() {
        reward_model_names(&base.plugins)?
    } else {
        base.rms.clone()
    };
    let mut variants: Vec<Variant> = Vec::new();
    for selector in &args.selectors {
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
        if let Some(accuracy) = eval_before {
            run.set_eval_before(accuracy);
        }
        run.run()?;
        let summary = run.summary()?;
        eval_before = eval_before.or(summary.eval_before);
        rows.push((variant.label, summary));
        engine = run.into_engine()?;
    }

    let table = render_table(&rows)?;
    print!("{table}");
    atomic::write(&out.join("compare.md"), table.as_bytes())?;
    atomic::write_json(&out.join("compare.json"), &rows)?;
    Ok(())
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
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let manifest = laser_plugins::Manifest::from_file(&path)
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            if manifest.kind == laser_plugins::PluginKind::RewardModel {
                names.push(manifest.name);
            }
        }
    }
    names.sort();
    Ok(names)
}
