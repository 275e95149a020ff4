//! The plugin manifest: `NAME.toml` beside `NAME.wasm`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::API_VERSION;

/// What a plugin is, which decides the WIT world it must export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Exports the `reward-model` world: scores candidates.
    RewardModel,
    /// Exports the `selector` world: weighs reward models per prompt.
    Selector,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginKind::RewardModel => f.write_str("reward-model"),
            PluginKind::Selector => f.write_str("selector"),
        }
    }
}

/// Resource limits of one plugin, from the manifest's `[limits]` table.
///
/// Every field is optional in the manifest; the defaults are those of
/// [`Limits::default`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Maximum linear memory of the plugin, in MiB. Default 512.
    pub memory_mib: u64,
    /// Maximum time one call may compute, in milliseconds. Time spent in
    /// the host's `models` functions does not count. Default 30000.
    pub call_deadline_ms: u64,
    /// Maximum time the host's `models` functions may take during one
    /// call, in milliseconds. A `models` call that ends past it returns an
    /// error, and so does every later one in that call. Default 1800000
    /// (30 minutes).
    pub model_time_ms: u64,
    /// Maximum size of the arguments of one call, in bytes, counted as
    /// the sum of string bytes and 4 or 8 bytes per number. Default
    /// 64 MiB.
    pub max_input_bytes: u64,
    /// Maximum size of the result of one call, in bytes, counted the same
    /// way. Default 64 MiB.
    pub max_output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 512,
            call_deadline_ms: 30_000,
            model_time_ms: 1_800_000,
            max_input_bytes: 64 << 20,
            max_output_bytes: 64 << 20,
        }
    }
}

/// A parsed and validated plugin manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugin name. It must equal the file stem of the manifest.
    pub name: String,
    /// Version of the plugin itself, a semantic version such as `0.1.0`.
    pub version: String,
    /// Whether the plugin is a reward model or a selector.
    pub kind: PluginKind,
    /// The WIT package version the plugin is built against, such as
    /// `laser:plugin@0.1.0`.
    pub api: String,
    /// One-line description for listings.
    #[serde(default)]
    pub description: String,
    /// Host models the plugin may call. Default `["policy"]`.
    #[serde(default = "default_models")]
    pub models: Vec<String>,
    /// Resource limits; omitted fields take their defaults.
    #[serde(default)]
    pub limits: Limits,
    /// Free settings passed to the plugin's `configure` as JSON.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
}

fn default_models() -> Vec<String> {
    vec!["policy".to_string()]
}

/// A manifest that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
#[error("invalid manifest {}: {message}", path.display())]
pub struct ManifestError {
    /// The manifest file.
    pub path: PathBuf,
    /// The problem, naming the field.
    pub message: String,
}

/// The arm name that run reports give prompts whose selector spread its
/// weights over several reward models, so no reward model may take it.
pub const RESERVED_ARM_NAME: &str = "ensemble";

impl Manifest {
    /// Reads and validates the manifest at `path`.
    ///
    /// # Errors
    ///
    /// Returns an error naming the file when it cannot be read, is not
    /// valid TOML, has an unknown or missing field, names a different
    /// plugin than its file stem, names a reward model
    /// [`RESERVED_ARM_NAME`], has a `version` that is not a semantic
    /// version, or has zero limits.
    pub fn from_file(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            path: path.to_path_buf(),
            message: format!("cannot read the file: {e}"),
        })?;
        Manifest::parse(&text, path)
    }

    /// Parses and validates manifest text; `path` names it in errors and
    /// its file stem must equal the `name` field.
    ///
    /// # Errors
    ///
    /// As [`Manifest::from_file`], less the read.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let error = |message: String| ManifestError {
            path: path.to_path_buf(),
            message,
        };
        let manifest: Manifest = toml::from_str(text).map_err(|e| error(toml_message(&e, text)))?;

        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if manifest.name != stem {
            return Err(error(format!(
                "`name` is {:?} but the file is {stem}.toml: name the \
                 manifest and the component after the plugin",
                manifest.name
            )));
        }
        if manifest.name.is_empty() {
            return Err(error("`name` is empty".to_string()));
        }
        if let Some(reason) = invalid_name_reason(&manifest.name) {
            return Err(error(format!(
                "`name` {:?} {reason}: use ASCII letters, digits, `-`, `_` and \
                 `.`, starting with a letter or digit, because the name is \
                 given in comma-separated `--rms` lists, written in report \
                 tables and used as a file name on every file system. Rename \
                 the plugin (manifest `name` and both file names)",
                manifest.name
            )));
        }
        if manifest.kind == PluginKind::RewardModel && manifest.name == RESERVED_ARM_NAME {
            return Err(error(format!(
                "`name` {RESERVED_ARM_NAME:?} is reserved for a reward model: run reports \
                 use it for prompts whose selector spread its weights over several \
                 reward models. Rename the plugin (manifest `name` and both file names)"
            )));
        }
        if let Err(e) = semver::Version::parse(&manifest.version) {
            return Err(error(format!(
                "`version` is {:?}, which is not a semantic version ({e}): \
                 write MAJOR.MINOR.PATCH such as \"0.1.0\", optionally with \
                 a pre-release or build suffix such as \"0.2.0-beta.1\"",
                manifest.version
            )));
        }
        let limits = &manifest.limits;
        for (field, value) in [
            ("limits.memory_mib", limits.memory_mib),
            ("limits.call_deadline_ms", limits.call_deadline_ms),
            ("limits.model_time_ms", limits.model_time_ms),
            ("limits.max_input_bytes", limits.max_input_bytes),
            ("limits.max_output_bytes", limits.max_output_bytes),
        ] {
            if value == 0 {
                return Err(error(format!("`{field}` must be greater than 0")));
            }
        }
        if limits.memory_mib > 4096 {
            return Err(error(format!(
                "`limits.memory_mib` is {} but a wasm32 memory holds at \
                 most 4096 MiB",
                limits.memory_mib
            )));
        }
        Ok(manifest)
    }

    /// Checks that the host serves the manifest's `api` version.
    ///
    /// # Errors
    ///
    /// Returns the expected and the found version when they differ.
    pub fn check_api(&self, path: &Path) -> Result<(), ManifestError> {
        if self.api == API_VERSION {
            Ok(())
        } else {
            Err(ManifestError {
                path: path.to_path_buf(),
                message: format!(
                    "`api` is {:?} but this host serves {API_VERSION:?}",
                    self.api
                ),
            })
        }
    }

    /// Returns the `[config]` table as a JSON object, as `configure` takes
    /// it.
    pub fn config_json(&self) -> String {
        // A TOML table always converts to JSON: TOML dates become strings.
        serde_json::to_string(&self.config).expect("a TOML table serializes as JSON")
    }

    /// Returns `name@version`, as errors and logs name the plugin.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Flattens a TOML error onto one line: the message, then the line and
/// column (1-based) where it was found.
fn toml_message(error: &toml::de::Error, text: &str) -> String {
    let message = error.message().trim().to_string();
    let Some(span) = error.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{message} (line {line}, column {column})")
}

/// Returns why `name` is not a valid plugin name, or `None` when it is.
fn invalid_name_reason(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(c) = name.chars().find(|&c| !allowed(c)) {
        return Some(format!("contains {c:?}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("does not start with a letter or digit".to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "length"
        version = "0.1.0"
        kind = "reward-model"
        api = "laser:plugin@0.1.0"
        description = "scores by length"

        [limits]
        memory_mib = 64

        [config]
        scale = 2.5
    "#;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new("plugins/length.toml"))
    }

    #[test]
    fn manifest_fills_defaults() {
        let manifest = parse(GOOD).unwrap();
        assert_eq!(manifest.kind, PluginKind::RewardModel);
        assert_eq!(manifest.models, vec!["policy".to_string()]);
        assert_eq!(manifest.limits.memory_mib, 64);
        assert_eq!(manifest.limits.call_deadline_ms, 30_000);
        assert_eq!(manifest.config_json(), r#"{"scale":2.5}"#);
    }

    #[test]
    fn manifest_rejects_unknown_field() {
        let text = format!("{GOOD}\n[extra]\nx = 1\n");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("plugins/length.toml"), "{error}");
        assert!(error.contains("unknown field `extra`"), "{error}");
    }

    #[test]
    fn manifest_rejects_unknown_limit() {
        let text = GOOD.replace("memory_mib = 64", "memory_gb = 1");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("unknown field `memory_gb`"), "{error}");
    }

    #[test]
    fn manifest_rejects_missing_field() {
        let text = GOOD.replace("kind = \"reward-model\"", "");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("missing field `kind`"), "{error}");
    }

    #[test]
    fn manifest_rejects_name_mismatch() {
        let text = GOOD.replace("\"length\"", "\"other\"");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("file is length.toml"), "{error}");
    }

    #[test]
    fn manifest_rejects_unsafe_names() {
        let names = [
            "a,b",
            "a|b",
            "sp ace",
            "caf\u{e9}",
            "rtl\u{202e}evil",
            "-flag",
            ".hidden",
        ];
        for name in names {
            let text = GOOD.replace("\"length\"", &format!("\"{name}\""));
            let path = PathBuf::from(format!("plugins/{name}.toml"));
            let error = Manifest::parse(&text, &path).unwrap_err().to_string();
            assert!(
                error.contains("use ASCII letters, digits"),
                "{name}: {error}"
            );
        }
        for name in ["rm-2", "my_rm", "v1.2", "Length"] {
            let text = GOOD.replace("\"length\"", &format!("\"{name}\""));
            let path = PathBuf::from(format!("plugins/{name}.toml"));
            assert!(Manifest::parse(&text, &path).is_ok(), "{name} rejected");
        }
    }

    #[test]
    fn manifest_rejects_reserved_name() {
        let text = GOOD.replace("\"length\"", "\"ensemble\"");
        let path = Path::new("plugins/ensemble.toml");
        let error = Manifest::parse(&text, path).unwrap_err().to_string();
        assert!(error.contains("is reserved"), "{error}");
        assert!(error.contains("Rename the plugin"), "{error}");

        // A selector may take the name, as the bundled ensemble does.
        let selector = text.replace("reward-model", "selector");
        assert!(Manifest::parse(&selector, path).is_ok());
    }

    #[test]
    fn manifest_accepts_semantic_versions() {
        for version in [
            "0.1.0",
            "10.20.30",
            "1.0.0-beta.1",
            "1.0.0+build.5",
            "1.0.0-rc.1+sha.5114f85",
        ] {
            let text = GOOD.replace("\"0.1.0\"", &format!("{version:?}"));
            let manifest = parse(&text).unwrap_or_else(|e| panic!("{version}: {e}"));
            assert_eq!(manifest.version, version);
        }
    }

    #[test]
    fn manifest_rejects_invalid_version() {
        for version in [
            "banana", "", "1", "1.0", "1.0.0.0", "v1.0.0", "01.0.0", "1.0.0 ", "1.0.0-",
        ] {
            let text = GOOD.replace("\"0.1.0\"", &format!("{version:?}"));
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.contains("plugins/length.toml"), "{error}");
            assert!(
                error.contains(&format!("`version` is {version:?}")),
                "{error}"
            );
            assert!(error.contains("not a semantic version"), "{error}");
        }
    }

    #[test]
    fn manifest_rejects_zero_limit() {
        let text = GOOD.replace("memory_mib = 64", "memory_mib = 0");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("limits.memory_mib"), "{error}");
    }

    #[test]
    fn manifest_rejects_other_api() {
        let text = GOOD.replace("@0.1.0", "@9.0.0");
        let manifest = parse(&text).unwrap();
        let path = Path::new("plugins/length.toml");
        let error = manifest.check_api(path).unwrap_err().to_string();
        assert!(error.contains("laser:plugin@9.0.0"), "{error}");
        assert!(error.contains("laser:plugin@0.1.0"), "{error}");
    }
}
