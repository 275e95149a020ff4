//! `laser-host compare`: runs several selectors on the same data, seed and
//! budget, one run folder each, and writes a table like the LASeR paper's:
//! accuracy before and after, reward-model calls and tokens, and wall time
//! per phase.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::atomic;
use crate::cli::CompareArgs;
use crate::engine::Engine;
use crate::laser::{Run, RunSummary};

/// The phases whose time the table shows, in loop order.
const PHASES: [&str; 6] = ["context", "choose", "generate", "score", "train", "update"];

pub(crate) fn run(args: &CompareArgs, plugins: Option<PathBuf>, verbose: bool) -> Result<()> {
    let base = super::run::config_from_args(&args.run, &args.preference, args.mode, plugins)?;
    let out = args.run.out.clone();
    fs::create_dir_all(&out).with_context(|| format!("failed to create {}", out.display()))?;

    // Expand `fixed` into one variant per reward model, each with a plugin
    // folder whose `fixed` manifest names that reward model.
    let rms = if base.rms.is_empty() {
        reward_model_names(&base.plugins)?
    } else {
        base.rms.clone()
    };
    let mut variants: Vec<(String, String, PathBuf)> = Vec::new();
    for selector in &args.selectors {
        if selector == "fixed" {
            for rm in &rms {
                let folder = out.join(format!("plugins-fixed-{rm}"));
                fixed_plugin_folder(&base.plugins, &folder, rm)?;
                variants.push((format!("fixed:{rm}"), "fixed".into(), folder));
            }
        } else {
            variants.push((selector.clone(), selector.clone(), base.plugins.clone()));
        }
    }

    let gpu = super::open_gpu(verbose)?;
    let mut engine = Engine::load(gpu, &base.model)?;
    let mut rows: Vec<(String, RunSummary)> = Vec::new();
    for (label, selector, plugins) in variants {
        eprintln!("== {label}");
        let mut config = base.clone();
        config.selector = selector;
        config.plugins = plugins;
        config.rms = rms.clone();
        let dir = out.join(label.replace(':', "-"));
        let resume = dir.join(crate::laser::checkpoint::STATE_FILE).exists();
        let mut run = Run::open(config, engine, &dir, resume)?;
        run.run()?;
        rows.push((label, run.summary()?));
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

/// Copies the plugin folder `from` into `to`, with the `fixed` selector's
/// manifest set to pick `rm`.
fn fixed_plugin_folder(from: &Path, to: &Path, rm: &str) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("failed to create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("failed to read {}", from.display()))? {
        let path = entry?.path();
        if path.is_file() {
            let name = path.file_name().context("plugin file without a name")?;
            fs::copy(&path, to.join(name))
                .with_context(|| format!("failed to copy {}", path.display()))?;
        }
    }
    let manifest_path = to.join("fixed.toml");
    let text = fs::read_to_string(&manifest_path)
        .with_context(|| format!("the `fixed` selector is missing from {}", from.display()))?;
    let mut manifest: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", manifest_path.display()))?;
    let config = manifest
        .entry("config")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(config) = config {
        config.insert("arm".into(), toml::Value::String(rm.into()));
    }
    atomic::write(&manifest_path, toml::to_string(&manifest)?.as_bytes())
}
