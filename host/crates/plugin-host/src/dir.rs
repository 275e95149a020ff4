//! A plugin folder: loads every `NAME.toml` + `NAME.wasm` pair, and on
//! rescan only the files that are new or changed since the last scan.
//! Symbolic links to regular files count as those files.

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

/// Symbolic links that cannot be followed, with the error of following each.
type BrokenLinks = BTreeMap<PathBuf, std::io::Error>;

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
    /// loaded is not loaded again, even when its files change.
    ///
    /// # Errors
    ///
    /// As [`PluginDir::scan`].
    pub fn rescan(&mut self, host: &PluginHost) -> std::io::Result<ScanReport> {
        let (files, broken) = self.list_files()?;

        let mut report = ScanReport {
            loaded: Vec::new(),
            errors: Vec::new(),
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

        for (stem, changed) in stems {
            if !changed || self.loaded.contains(&stem) {
                continue;
            }
            let wasm = stem.with_extension("wasm");
            let toml = stem.with_extension("toml");
            let mut link_broken = false;
            for path in [&wasm, &toml] {
                if let Some(error) = broken.get(path) {
                    report.errors.push(broken_link_error(path, error));
                    link_broken = true;
                }
            }
            if link_broken {
                continue;
            }
            if !files.contains_key(&wasm) {
                report.errors.push(LoadError::MissingComponent {
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

    /// Lists the regular files of the folder with their stamps, following
    /// symbolic links. Links that cannot be followed are returned apart with
    /// the error, and also listed with an empty stamp, so each is reported
    /// once and retried when it changes.
    fn list_files(&self) -> std::io::Result<(BTreeMap<PathBuf, Stamp>, BrokenLinks)> {
        let mut files = BTreeMap::new();
        let mut broken = BrokenLinks::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(metadata) if metadata.is_file() => {
                    files.insert(path, (metadata.len(), metadata.modified().ok()));
                }
                Ok(_) => {}
                Err(error) if entry.file_type()?.is_symlink() => {
                    files.insert(path.clone(), (0, None));
                    broken.insert(path, error);
                }
                // The file was removed since the listing.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok((files, broken))
    }
}

/// Builds the error for a symbolic link in the folder that cannot be
/// followed, because its target is missing or cannot be read.
fn broken_link_error(path: &Path, error: &std::io::Error) -> LoadError {
    let target = match std::fs::read_link(path) {
        Ok(target) => target.display().to_string(),
        Err(error) => format!("an unreadable target ({error})"),
    };
    let reason = if error.kind() == std::io::ErrorKind::NotFound {
        format!("it is a symbolic link to {target}, which does not exist: fix or remove the link")
    } else {
        format!(
            "it is a symbolic link to {target}, which cannot be read ({error}): \
             fix its permissions or remove the link"
        )
    };
    LoadError::Io {
        path: path.to_path_buf(),
        error: std::io::Error::new(error.kind(), reason),
    }
}
