//! Reports for the CLI: `laser-host plugins list DIR` and
//! `laser-host plugins check FILE`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dir::{PluginDir, other_case_file};
use crate::error::{LoadError, lowercase_hint};
use crate::host::{LoadedPlugin, PluginHost};
use crate::manifest::{Limits, PluginKind};
use crate::{PluginMeta, StubModelService};

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
            "  limits:      memory {} MiB, deadline {} ms, input {} bytes, \
             output {} bytes",
            limits.memory_mib,
            limits.call_deadline_ms,
            limits.max_input_bytes,
            limits.max_output_bytes
        )?;
        writeln!(f, "  sha256:      {}", self.digest)
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
/// calling `info` and `configure`.
///
/// # Errors
///
/// Returns an error when the host cannot start, or the [`LoadError`] that
/// gives the reason the plugin is rejected.
pub fn check_plugin(path: &Path) -> anyhow::Result<PluginReport> {
    let wasm = component_path(path)?;
    let host = PluginHost::new(Arc::new(StubModelService))?;
    let plugin: LoadedPlugin = host
        .load(&wasm)
        .map_err(|e: LoadError| anyhow::anyhow!(e))?;
    Ok(PluginReport::new(plugin.meta()))
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
