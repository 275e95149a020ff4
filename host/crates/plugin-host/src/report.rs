//! Reports for the CLI: `laser-host plugins list DIR` and
//! `laser-host plugins check FILE`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dir::{PluginDir, other_case_file};
use crate::error::{LoadError, PluginError, lowercase_hint};
use crate::host::{LoadedPlugin, PluginHost};
use crate::manifest::{Limits, PluginKind};
use crate::{
    ArmInfo, Instance, PluginMeta, RewardModelPlugin, ScoredInstance, SelectorPlugin,
    StubModelService,
};

/// Summary of a loaded plugin, for listings. Its `Display` form ends with a
/// newline.
#[derive(Debug, Clone)]
pub struct PluginReport {
    /// The component file.
    pub path: PathBuf,
    /// Name from the manifest.
    pub name: String,
    /// Version from the manifest.
    pub version: String,
    /// Kind from the manifest.
    pub kind: PluginKind,
    /// WIT package version the plugin is built against.
    pub api: String,
    /// Description from the manifest.
    pub description: String,
    /// Host models the plugin may call.
    pub models: Vec<String>,
    /// Tags the plugin's `info` returned.
    pub tags: Vec<String>,
    /// Resource limits.
    pub limits: Limits,
    /// Hex sha256 digest of the component file.
    pub digest: String,
    /// Results of the sample calls of `plugins check`, one line per step;
    /// empty in listings.
    pub sample_calls: Vec<String>,
}

impl PluginReport {
    /// Builds the report of a loaded plugin.
    pub fn new(meta: &PluginMeta) -> PluginReport {
        let manifest = &meta.manifest;
        PluginReport {
            path: meta.path.clone(),
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            kind: manifest.kind,
            api: manifest.api.clone(),
            description: manifest.description.clone(),
            models: manifest.models.clone(),
            tags: meta.info.tags.clone(),
            limits: manifest.limits.clone(),
            digest: meta.digest.clone(),
            sample_calls: Vec::new(),
        }
    }
}

impl fmt::Display for PluginReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limits = &self.limits;
        writeln!(f, "{}@{} ({})", self.name, self.version, self.kind)?;
        if !self.description.is_empty() {
            writeln!(f, "  description: {}", self.description)?;
        }
        writeln!(f, "  file:        {}", self.path.display())?;
        writeln!(f, "  api:         {}", self.api)?;
        if self.models.is_empty() {
            writeln!(f, "  models:      none")?;
        } else {
            writeln!(f, "  models:      {}", self.models.join(", "))?;
        }
        if !self.tags.is_empty() {
            writeln!(f, "  tags:        {}", self.tags.join(", "))?;
        }
        writeln!(
            f,
            "  limits:      memory {} MiB, deadline {} ms, model time {} ms, \
             input {} bytes, output {} bytes",
            limits.memory_mib,
            limits.call_deadline_ms,
            limits.model_time_ms,
            limits.max_input_bytes,
            limits.max_output_bytes
        )?;
        writeln!(f, "  sha256:      {}", self.digest)?;
        for (i, line) in self.sample_calls.iter().enumerate() {
            let label = if i == 0 { "sample:" } else { "" };
            writeln!(f, "  {label:<12} {line}")?;
        }
        Ok(())
    }
}

/// The plugins of a folder, and the files that failed to load. Its
/// `Display` form ends with a newline.
#[derive(Debug)]
pub struct ListReport {
    /// The folder.
    pub dir: PathBuf,
    /// Loaded plugins, in file-name order.
    pub plugins: Vec<PluginReport>,
    /// Files that failed to load, each with its reason.
    pub errors: Vec<String>,
}

impl fmt::Display for ListReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} plugins loaded, {} rejected",
            self.dir.display(),
            self.plugins.len(),
            self.errors.len()
        )?;
        for plugin in &self.plugins {
            write!(f, "\n{plugin}")?;
        }
        for error in &self.errors {
            writeln!(f, "\nrejected: {error}")?;
        }
        Ok(())
    }
}

/// Loads every plugin in `dir` with stub models and reports each, or why
/// it was rejected.
///
/// # Errors
///
/// Returns an error when the host cannot start or the folder cannot be
/// listed; plugins that fail are listed in [`ListReport::errors`].
pub fn list_plugins(dir: &Path) -> anyhow::Result<ListReport> {
    let host = PluginHost::new(Arc::new(StubModelService))?;
    let report = PluginDir::new(dir)
        .scan(&host)
        .map_err(|e| anyhow::anyhow!("cannot list plugin folder {}: {e}", dir.display()))?;
    Ok(ListReport {
        dir: dir.to_path_buf(),
        plugins: report
            .loaded
            .iter()
            .map(|plugin| PluginReport::new(plugin.meta()))
            .collect(),
        errors: report.errors.iter().map(|e| format!("{e:#}")).collect(),
    })
}

/// Loads one plugin, given its `.wasm` or its `.toml`, with stub models,
/// calling `info` and `configure`, then makes the calls a run makes on a
/// small sample (see [`sample_score`] and [`sample_select`]).
///
/// # Errors
///
/// Returns an error when the host cannot start, the [`LoadError`] that
/// gives the reason the plugin is rejected, or the failure of a sample
/// call, which a run would meet too.
pub fn check_plugin(path: &Path) -> anyhow::Result<PluginReport> {
    let wasm = component_path(path)?;
    let host = PluginHost::new(Arc::new(StubModelService))?;
    let plugin: LoadedPlugin = host
        .load(&wasm)
        .map_err(|e: LoadError| anyhow::anyhow!(e))?;
    let mut report = PluginReport::new(plugin.meta());
    report.sample_calls = match plugin {
        LoadedPlugin::RewardModel(mut rm) => sample_score(&mut rm)?,
        LoadedPlugin::Selector(mut selector) => {
            let folder = match wasm.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            let arms = folder_arms(&host, folder);
            sample_select(&mut selector, &arms, folder)?
        }
    };
    Ok(report)
}

/// Tag of the arms [`folder_arms`] makes up for a folder without reward
/// models.
const PLACEHOLDER_TAG: &str = "placeholder";

/// Context width of the sample `choose` calls: the hidden size of the
/// default model, SmolLM2-135M.
const SAMPLE_CONTEXT_WIDTH: usize = 576;

/// Scores two prompts of two candidates each and returns one line that
/// gives the scores. The call goes through the checks a run applies to
/// scores (count, finite, magnitude), so a plugin that a run would
/// disable fails here.
fn sample_score(rm: &mut RewardModelPlugin) -> anyhow::Result<Vec<String>> {
    let instance = |id: &str, prompt: &str, reference: &str, category: &str| Instance {
        id: id.to_string(),
        prompt: prompt.to_string(),
        reference: Some(reference.to_string()),
        category: Some(category.to_string()),
    };
    let batch = [
        ScoredInstance {
            instance: instance("check-0", "What is 6 times 7?", "42", "gsm8k"),
            candidates: vec![
                "6 times 7 is 42. The answer is 42.".to_string(),
                "The answer is 13.".to_string(),
            ],
        },
        ScoredInstance {
            instance: instance(
                "check-1",
                "Is the Pacific the largest ocean on Earth?",
                "yes",
                "strategyqa",
            ),
            candidates: vec![
                "Yes.".to_string(),
                "No, the Atlantic is larger.".to_string(),
            ],
        },
    ];
    let name = rm.meta().manifest.name.clone();
    let scores = rm.score(&batch).map_err(|err| {
        anyhow::anyhow!(
            "{name} loaded, but a sample `score` call (2 prompts, 2 candidates each) failed, \
             as it would in a run: {err}"
        )
    })?;
    let rows: Vec<String> = scores.iter().map(|row| format_values(row)).collect();
    // The stub's outputs carry no meaning, so scores built on them carry
    // none either.
    let stub_note = if rm.meta().manifest.models.is_empty() {
        ""
    } else {
        " (its model calls went to a stub, so the values mean nothing)"
    };
    Ok(vec![format!(
        "score of 2 prompts with 2 candidates each: {}{stub_note}",
        rows.join(" and ")
    )])
}

/// Returns the reward models that load from `folder`, as arms, or three
/// placeholder arms when none does. Plugins that fail to load are left
/// out: `plugins list` reports them.
fn folder_arms(host: &PluginHost, folder: &Path) -> Vec<ArmInfo> {
    let arms: Vec<ArmInfo> = PluginDir::new(folder)
        .scan(host)
        .map(|report| {
            report
                .loaded
                .iter()
                .filter_map(|plugin| match plugin {
                    LoadedPlugin::RewardModel(rm) => Some(ArmInfo {
                        name: rm.meta().manifest.name.clone(),
                        version: rm.meta().manifest.version.clone(),
                        tags: rm.info().tags.clone(),
                        enabled: true,
                    }),
                    LoadedPlugin::Selector(_) => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !arms.is_empty() {
        return arms;
    }
    ["rm-a", "rm-b", "rm-c"]
        .iter()
        .map(|name| ArmInfo {
            name: (*name).to_string(),
            version: "0.1.0".to_string(),
            tags: vec![PLACEHOLDER_TAG.to_string()],
            enabled: true,
        })
        .collect()
}

/// Makes the calls a run makes on a selector: `choose` for two contexts,
/// `update` with the first pick, `save-state`, and `load-state` of that
/// state in a fresh instance. Returns one line per step, the last one
/// noting whether the fresh instance chose the same weights.
fn sample_select(
    selector: &mut SelectorPlugin,
    arms: &[ArmInfo],
    folder: &Path,
) -> anyhow::Result<Vec<String>> {
    let name = selector.meta().manifest.name.clone();
    let names: Vec<&str> = arms.iter().map(|arm| arm.name.as_str()).collect();
    let source = if arms
        .iter()
        .any(|arm| arm.tags.iter().any(|t| t == PLACEHOLDER_TAG))
    {
        format!(
            "placeholders, since no reward model loads from {}: put the run's reward \
             models beside it to check with those",
            folder.display()
        )
    } else {
        format!(
            "the reward models in {}, as a run from there would",
            folder.display()
        )
    };
    let failed = |method: &str, err: PluginError| {
        anyhow::anyhow!(
            "{name} loaded, but a sample `{method}` call with the arms {names:?} failed \
             ({source}): {err}"
        )
    };
    // Two unit-length contexts that differ, as pooled hidden states do.
    let width = SAMPLE_CONTEXT_WIDTH;
    let contexts: Vec<Vec<f32>> = (0..2)
        .map(|row| {
            let values: Vec<f32> = (0..width)
                .map(|i| ((i * (row + 3)) as f32 * 0.37).sin())
                .collect();
            let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
            values.iter().map(|v| v / norm).collect()
        })
        .collect();

    let weights = selector
        .choose(&contexts, arms)
        .map_err(|err| failed("choose", err))?;
    let pick = weights[0].iter().enumerate().fold(
        0,
        |best, (i, &w)| if w > weights[0][best] { i } else { best },
    );
    selector
        .update(pick as u32, &contexts[0], 0.5)
        .map_err(|err| failed("update", err))?;

    let state = selector.last_good_state().to_vec();
    let mut fresh = selector
        .fresh_copy()
        .map_err(|err| failed("configure", err))?;
    fresh
        .load_state(&state)
        .map_err(|err| failed("load-state", err))?;
    let before = selector
        .choose(&contexts, arms)
        .map_err(|err| failed("choose", err))?;
    let after = fresh
        .choose(&contexts, arms)
        .map_err(|err| failed("choose", err))?;

    let rows: Vec<String> = weights.iter().map(|row| format_values(row)).collect();
    let mut lines = vec![
        format!("arms {}", names.join(", ")),
        format!(
            "choose for 2 contexts of {width} values: {}",
            rows.join(" and ")
        ),
        format!(
            "update of arm {} with reward 0.5, then save-state: {} bytes of state",
            names[pick],
            state.len()
        ),
    ];
    // A selector may draw at random in `choose`, so differing weights
    // after a restore are worth a note but are no failure.
    lines.push(if before == after {
        "load-state into a fresh instance: it chooses the same weights".to_string()
    } else {
        "load-state into a fresh instance: ok, though it then chose other weights than \
         the original (expected only of a selector that draws at random)"
            .to_string()
    });
    Ok(lines)
}

/// Formats numbers as `[a, b, ...]`, rounded to 4 decimal places.
fn format_values<T: Into<f64> + Copy>(values: &[T]) -> String {
    let shown: Vec<String> = values
        .iter()
        .map(|&value| {
            let value: f64 = value.into();
            format!("{}", (value * 1e4).round() / 1e4)
        })
        .collect();
    format!("[{}]", shown.join(", "))
}

/// Returns the component path of a plugin given as its `NAME.wasm` or its
/// `NAME.toml`.
///
/// # Errors
///
/// Returns an error when `path` has neither extension or does not exist,
/// or when the component beside a manifest does not exist. The errors
/// about a missing file name a file whose extension differs only in case,
/// where there is one.
pub(crate) fn component_path(path: &Path) -> anyhow::Result<PathBuf> {
    let extension = path.extension().and_then(|e| e.to_str());
    let lowercase = extension.map(str::to_ascii_lowercase);
    anyhow::ensure!(
        matches!(extension, Some("wasm" | "toml")),
        "{} is not a plugin: pass a NAME.wasm component or its NAME.toml manifest{}",
        path.display(),
        match lowercase.as_deref() {
            Some("wasm" | "toml") => " (the extension must be lowercase)",
            _ => "",
        }
    );
    anyhow::ensure!(
        path.exists(),
        "{} not found: pass the path of an existing NAME.wasm or NAME.toml{}",
        path.display(),
        lowercase_hint(other_case_file(path).as_deref())
    );
    let wasm = path.with_extension("wasm");
    if !wasm.exists() {
        return Err(LoadError::MissingComponent {
            other_case: other_case_file(&wasm),
            path: path.to_path_buf(),
            component: wasm,
        }
        .into());
    }
    Ok(wasm)
}
