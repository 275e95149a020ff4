//! A plugin folder: loads every `NAME.toml` + `NAME.wasm` pair, and on
//! rescan only the files that are new or changed since the last scan.
//! Symbolic links to regular files count as those files. Plugin names that
//! differ only in case are rejected, since they clash on case-insensitive
//! file systems.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::LoadError;
use crate::host::{LoadedPlugin, PluginHost};

/// Extension of precompiled components, which a plugin folder must not
/// contain.
const PRECOMPILED_EXTENSION: &str = "cwasm";

/// Size and modification time of a file, to notice when it changes.
type Stamp = (u64, Option<SystemTime>);

/// Plugin files that cannot be read as regular files (a symbolic link that
/// cannot be followed, a directory, a device), each with the reason.
type Unreadable = BTreeMap<PathBuf, std::io::Error>;

/// A plugin folder, remembering which files it has seen.
#[derive(Debug)]
pub struct PluginDir {
    dir: PathBuf,
    /// Size and modification time of each file at its last scan, so that a
    /// file that failed is retried only when it changes.
    seen: BTreeMap<PathBuf, Stamp>,
    /// Plugins loaded since the last full scan, as paths without extension.
    /// They are not loaded again, so a run never gets the same arm twice.
    loaded: BTreeSet<PathBuf>,
}

/// The outcome of a scan: the plugins loaded and the files that failed.
/// A failed file does not stop the others from loading.
pub struct ScanReport {
    /// Loaded plugins, in file-name order.
    pub loaded: Vec<LoadedPlugin>,
    /// One error per file that failed to load.
    pub errors: Vec<LoadError>,
    /// Manifests of loaded plugins whose component or manifest changed
    /// since the last scan. They are not loaded again (see
    /// [`PluginDir::rescan`]).
    pub changed: Vec<PathBuf>,
}

impl PluginDir {
    /// Opens `dir` without reading it yet.
    pub fn new(dir: impl Into<PathBuf>) -> PluginDir {
        PluginDir {
            dir: dir.into(),
            seen: BTreeMap::new(),
            loaded: BTreeSet::new(),
        }
    }

    /// Returns the folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Loads every plugin in the folder, forgetting earlier scans.
    ///
    /// # Errors
    ///
    /// Returns an error when the folder cannot be listed. Plugins that
    /// fail to load are reported in [`ScanReport::errors`].
    pub fn scan(&mut self, host: &PluginHost) -> std::io::Result<ScanReport> {
        self.seen.clear();
        self.loaded.clear();
        self.rescan(host)
    }

    /// Loads the plugins that appeared since the last scan, for plugins
    /// dropped into the folder during a run. A plugin that failed to load
    /// is retried once its component or manifest changes. A plugin that
    /// loaded is not loaded again, even when its files change: it is listed
    /// in [`ScanReport::changed`] instead. A plugin
    /// whose name differs only in case from one that appeared before it is
    /// rejected with [`LoadError::NameCaseClash`].
    ///
    /// # Errors
    ///
    /// As [`PluginDir::scan`].
    pub fn rescan(&mut self, host: &PluginHost) -> std::io::Result<ScanReport> {
        let (files, mut unreadable) = self.list_files()?;

        let mut report = ScanReport {
            loaded: Vec::new(),
            errors: Vec::new(),
            changed: Vec::new(),
        };
        let mut stems = BTreeMap::<PathBuf, bool>::new();
        for (path, stamp) in &files {
            let changed = self.seen.get(path) != Some(stamp);
            let extension = path.extension().and_then(|e| e.to_str());
            match extension {
                Some("wasm" | "toml") => {
                    let stem = path.with_extension("");
                    *stems.entry(stem).or_default() |= changed;
                }
                Some(PRECOMPILED_EXTENSION) if changed => {
                    report
                        .errors
                        .push(LoadError::Precompiled { path: path.clone() });
                }
                _ => {}
            }
        }

        let names = self.name_owners(stems.keys());
        for (stem, changed) in stems {
            let name_owner = &names[&lowercase_name(&stem)];
            if !changed {
                continue;
            }
            if self.loaded.contains(&stem) {
                report.changed.push(with_suffix(&stem, "toml"));
                continue;
            }
            if *name_owner != stem {
                report.errors.push(LoadError::NameCaseClash {
                    path: plugin_file(&stem, &files),
                    name: plugin_name(&stem),
                    other: plugin_file(name_owner, &files),
                });
                continue;
            }
            let wasm = with_suffix(&stem, "wasm");
            let toml = with_suffix(&stem, "toml");
            let mut any_unreadable = false;
            for path in [&wasm, &toml] {
                if let Some(error) = unreadable.remove(path) {
                    report.errors.push(LoadError::Io {
                        path: path.clone(),
                        error,
                    });
                    any_unreadable = true;
                }
            }
            if any_unreadable {
                continue;
            }
            if !files.contains_key(&wasm) {
                report.errors.push(LoadError::MissingComponent {
                    other_case: other_case_file(&wasm),
                    path: toml,
                    component: wasm,
                });
                continue;
            }
            match host.load(&wasm) {
                Ok(plugin) => {
                    self.loaded.insert(stem);
                    report.loaded.push(plugin);
                }
                Err(error) => {
                    tracing::warn!(path = %wasm.display(), %error, "plugin not loaded");
                    report.errors.push(error);
                }
            }
        }
        self.seen = files;
        Ok(report)
    }

    /// Maps each lowercase plugin name to the plugin that keeps it: a plugin
    /// loaded earlier, else one with a file seen by the last scan, else the
    /// first in file-name order, even when that plugin failed to load.
    fn name_owners<'a>(
        &self,
        stems: impl Iterator<Item = &'a PathBuf> + Clone,
    ) -> BTreeMap<String, PathBuf> {
        let mut owners: BTreeMap<String, PathBuf> = self
            .loaded
            .iter()
            .map(|stem| (lowercase_name(stem), stem.clone()))
            .collect();
        let seen_before = |stem: &&PathBuf| {
            self.seen.contains_key(&with_suffix(stem, "wasm"))
                || self.seen.contains_key(&with_suffix(stem, "toml"))
        };
        for stem in stems.clone().filter(seen_before).chain(stems) {
            owners
                .entry(lowercase_name(stem))
                .or_insert_with(|| stem.clone());
        }
        owners
    }

    /// Lists the regular files of the folder with their stamps, following
    /// symbolic links. Links that cannot be followed, and `.wasm` or `.toml`
    /// entries that are not regular files, are returned apart with the
    /// error, and also listed, so each is reported once and retried when it
    /// changes.
    fn list_files(&self) -> std::io::Result<(BTreeMap<PathBuf, Stamp>, Unreadable)> {
        let mut files = BTreeMap::new();
        let mut unreadable = Unreadable::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(metadata) if metadata.is_file() => {
                    files.insert(path, (metadata.len(), metadata.modified().ok()));
                }
                Ok(metadata) => {
                    let extension = path.extension().and_then(|e| e.to_str());
                    if matches!(extension, Some("wasm" | "toml")) {
                        files.insert(path.clone(), (0, metadata.modified().ok()));
                        unreadable.insert(path, not_regular_error(&metadata));
                    }
                }
                Err(error) if entry.file_type()?.is_symlink() => {
                    files.insert(path.clone(), (0, None));
                    unreadable.insert(path.clone(), broken_link_error(&path, &error));
                }
                // The file was removed since the listing.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok((files, unreadable))
    }
}

/// Returns a file beside `expected` whose name differs from it only in the
/// case of the extension, such as `NAME.WASM` for `NAME.wasm`.
pub(crate) fn other_case_file(expected: &Path) -> Option<PathBuf> {
    let stem = expected.with_extension("");
    let extension = expected.extension()?;
    let parent = match expected.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::read_dir(parent)
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| expected.with_file_name(entry.file_name()))
        .find(|path| {
            path.with_extension("") == stem
                && path
                    .extension()
                    .is_some_and(|e| e != extension && e.eq_ignore_ascii_case(extension))
        })
}

/// Returns `stem` with `.extension` appended. `Path::with_extension` would
/// replace the part after a dot in the name itself (`my.rm` to `my.wasm`).
fn with_suffix(stem: &Path, extension: &str) -> PathBuf {
    let mut path = stem.as_os_str().to_owned();
    path.push(".");
    path.push(extension);
    PathBuf::from(path)
}

/// Returns the plugin name of `stem`, a path without extension.
fn plugin_name(stem: &Path) -> String {
    stem.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Returns the plugin name of `stem` in lowercase, the form in which two
/// names that differ only in case are equal.
fn lowercase_name(stem: &Path) -> String {
    plugin_name(stem).to_lowercase()
}

/// Returns a file of the plugin at `stem` to name in errors: its component
/// when the folder has one, else its manifest. A plugin loaded earlier whose
/// files are gone is named by its component.
fn plugin_file(stem: &Path, files: &BTreeMap<PathBuf, Stamp>) -> PathBuf {
    let wasm = with_suffix(stem, "wasm");
    let toml = with_suffix(stem, "toml");
    if !files.contains_key(&wasm) && files.contains_key(&toml) {
        toml
    } else {
        wasm
    }
}

/// Builds the error for a symbolic link in the folder that cannot be
/// followed, because its target is missing or cannot be read.
fn broken_link_error(path: &Path, error: &std::io::Error) -> std::io::Error {
    let target = match std::fs::read_link(path) {
        Ok(target) => target.display().to_string(),
        Err(error) => format!("an unreadable target ({error})"),
    };
    let reason = match error.kind() {
        std::io::ErrorKind::NotFound => format!(
            "it is a symbolic link to {target}, which does not exist: fix or remove the link"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "it is a symbolic link to {target}, which cannot be read ({error}): \
             fix its permissions or remove the link"
        ),
        // A loop of links, or a target path that is too long.
        _ => format!(
            "it is a symbolic link to {target}, which cannot be followed ({error}): \
             fix or remove the link"
        ),
    };
    std::io::Error::new(error.kind(), reason)
}

/// Returns the error for a plugin file that is a directory, a device or
/// anything else but a regular file.
fn not_regular_error(metadata: &std::fs::Metadata) -> std::io::Error {
    let file_type = if metadata.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    std::io::Error::other(format!(
        "it is {file_type}: a plugin is two regular files, NAME.wasm and NAME.toml, \
         or symbolic links to them"
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tempfile::TempDir;

    use super::*;
    use crate::StubModelService;

    #[test]
    fn suffix_keeps_dotted_name() {
        let stem = Path::new("plugins/my.rm");
        assert_eq!(with_suffix(stem, "wasm"), Path::new("plugins/my.rm.wasm"));
        assert_eq!(with_suffix(stem, "toml"), Path::new("plugins/my.rm.toml"));
    }

    fn host(cache: &TempDir) -> PluginHost {
        PluginHost::with_cache_dir(Arc::new(StubModelService), Some(cache.path().to_path_buf()))
            .unwrap()
    }

    /// Writes `NAME.wasm` (not a valid component) and `NAME.toml` into `dir`.
    fn write_plugin(dir: &Path, name: &str) {
        std::fs::write(dir.join(format!("{name}.wasm")), b"not wasm").unwrap();
        std::fs::write(dir.join(format!("{name}.toml")), format!("name = {name:?}")).unwrap();
    }

    /// Returns the `NameCaseClash` errors of `report` as (path, name, other).
    fn name_case_errors(report: &ScanReport) -> Vec<(PathBuf, String, PathBuf)> {
        report
            .errors
            .iter()
            .filter_map(|error| match error {
                LoadError::NameCaseClash { path, name, other } => {
                    Some((path.clone(), name.clone(), other.clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn scan_rejects_name_differing_in_case() {
        let cache = TempDir::new().unwrap();
        let dir = TempDir::new().unwrap();
        write_plugin(dir.path(), "Length");
        write_plugin(dir.path(), "length");

        let report = PluginDir::new(dir.path()).scan(&host(&cache)).unwrap();

        assert_eq!(report.errors.len(), 2, "{:#?}", report.errors);
        assert!(
            !matches!(report.errors[0], LoadError::NameCaseClash { .. }),
            "the first in file-name order keeps the name: {}",
            report.errors[0]
        );
        let clashes = name_case_errors(&report);
        let expected = (
            dir.path().join("length.wasm"),
            "length".to_string(),
            dir.path().join("Length.wasm"),
        );
        assert_eq!(clashes, [expected]);
        let message = report.errors[1].to_string();
        assert!(
            message.contains("length.wasm: plugin name \"length\""),
            "{message}"
        );
        assert!(message.contains("Length.wasm"), "{message}");
        assert!(message.contains("rename or remove one"), "{message}");
    }

    #[test]
    fn scan_names_manifest_without_component() {
        let cache = TempDir::new().unwrap();
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("Length.toml"), "name = \"Length\"").unwrap();
        write_plugin(dir.path(), "length");

        let report = PluginDir::new(dir.path()).scan(&host(&cache)).unwrap();

        let clashes = name_case_errors(&report);
        assert_eq!(clashes.len(), 1, "{:#?}", report.errors);
        assert_eq!(clashes[0].2, dir.path().join("Length.toml"));
    }

    #[test]
    fn scan_points_out_upper_case_extension() {
        let cache = TempDir::new().unwrap();
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("upper.toml"), "name = \"upper\"").unwrap();
        std::fs::write(dir.path().join("upper.WASM"), b"\0asm").unwrap();

        let report = PluginDir::new(dir.path()).scan(&host(&cache)).unwrap();

        assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
        let message = report.errors[0].to_string();
        assert!(message.contains("missing component"), "{message}");
        assert!(message.contains("found"), "{message}");
        assert!(message.contains("upper.WASM"), "{message}");
        assert!(message.contains("must be lowercase"), "{message}");
    }

    #[test]
    fn scan_rejects_directory_as_component() {
        let cache = TempDir::new().unwrap();
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("folder.toml"), "name = \"folder\"").unwrap();
        std::fs::create_dir(dir.path().join("folder.wasm")).unwrap();

        let mut plugins = PluginDir::new(dir.path());
        let report = plugins.scan(&host(&cache)).unwrap();

        assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
        let message = report.errors[0].to_string();
        assert!(message.contains("folder.wasm"), "{message}");
        assert!(message.contains("it is a directory"), "{message}");
        assert!(!message.contains("missing component"), "{message}");
        let report = plugins.rescan(&host(&cache)).unwrap();
        assert!(
            report.errors.is_empty(),
            "reported once: {:#?}",
            report.errors
        );
    }

    #[cfg(unix)]
    #[test]
    fn scan_reports_symlink_loop() {
        let cache = TempDir::new().unwrap();
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("looped.toml"), "name = \"looped\"").unwrap();
        let wasm = dir.path().join("looped.wasm");
        std::os::unix::fs::symlink(&wasm, &wasm).unwrap();

        let report = PluginDir::new(dir.path()).scan(&host(&cache)).unwrap();

        assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
        let message = report.errors[0].to_string();
        assert!(message.contains("cannot be followed"), "{message}");
        assert!(message.contains("fix or remove the link"), "{message}");
        assert!(!message.contains("permissions"), "{message}");
    }

    #[test]
    fn rescan_keeps_name_of_loaded_plugin() {
        let cache = TempDir::new().unwrap();
        let dir = TempDir::new().unwrap();
        let mut plugins = PluginDir::new(dir.path());
        // "LENGTH" sorts before "length", but a plugin loaded earlier keeps
        // its name even after its files are removed.
        plugins.loaded.insert(dir.path().join("length"));
        write_plugin(dir.path(), "LENGTH");

        let report = plugins.rescan(&host(&cache)).unwrap();

        let clashes = name_case_errors(&report);
        let expected = (
            dir.path().join("LENGTH.wasm"),
            "LENGTH".to_string(),
            dir.path().join("length.wasm"),
        );
        assert_eq!(clashes, [expected]);
        assert_eq!(report.errors.len(), 1);
    }

    #[test]
    fn rescan_keeps_name_of_earlier_plugin() {
        let cache = TempDir::new().unwrap();
        let dir = TempDir::new().unwrap();
        let host = host(&cache);
        let mut plugins = PluginDir::new(dir.path());
        write_plugin(dir.path(), "length");
        let first = plugins.scan(&host).unwrap();
        assert_eq!(first.errors.len(), 1, "the invalid component is reported");

        // "Length" sorts before "length", but "length" was there first and
        // keeps its name although it failed to load.
        write_plugin(dir.path(), "Length");
        let report = plugins.rescan(&host).unwrap();

        let clashes = name_case_errors(&report);
        let expected = (
            dir.path().join("Length.wasm"),
            "Length".to_string(),
            dir.path().join("length.wasm"),
        );
        assert_eq!(clashes, [expected]);
        assert_eq!(report.errors.len(), 1);
    }

    #[test]
    fn scan_accepts_distinct_names() {
        let cache = TempDir::new().unwrap();
        let dir = TempDir::new().unwrap();
        write_plugin(dir.path(), "length");
        write_plugin(dir.path(), "length-2");

        let report = PluginDir::new(dir.path()).scan(&host(&cache)).unwrap();

        assert!(name_case_errors(&report).is_empty());
        assert_eq!(report.errors.len(), 2);
    }
}
