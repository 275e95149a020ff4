//! Shared test setup: builds the test plugins once per test binary and lays
//! them out in temporary plugin folders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use laser_plugins::{
    Instance, PluginHost, RewardModelPlugin, ScoredInstance, SelectorPlugin, StubModelService,
};
use tempfile::TempDir;

/// Test plugins in `plugins/testing`, by package name.
pub const TEST_PLUGINS: &[&str] = &[
    "good-rm",
    "spin-rm",
    "sleep-rm",
    "alloc-rm",
    "escape-rm",
    "panic-rm",
    "bad-scores-rm",
    "counting-selector",
    "wrong-version-rm",
    "big-info-rm",
];

/// Returns the repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// Builds the plugins `names` of the plugins workspace for wasm32-wasip2
/// and returns the folder of the built components. The build failure
/// message names them as `description`.
///
/// The plugins workspace has its own target folder, so this nested cargo
/// does not wait on the lock of the cargo running the tests.
fn build_components<S: AsRef<str>>(names: &[S], description: &str) -> PathBuf {
    let root = repo_root();
    let target_dir = root.join("plugins/target");
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(root.join("plugins/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir);
    for name in names {
        command.args(["-p", name.as_ref()]);
    }
    let status = command.status().expect("failed to run cargo");
    assert!(status.success(), "building {description} failed");
    target_dir.join("wasm32-wasip2/release")
}

/// Builds every test plugin once per test binary and returns the folder of
/// the built components.
pub fn built_plugins() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_components(TEST_PLUGINS, "the test plugins"))
}

/// Returns the names of the bundled selectors: every `plugins/selector/NAME`
/// folder with a manifest `NAME.toml`, as `plugins/build.sh` finds them.
pub fn bundled_selectors() -> Vec<String> {
    let selectors = repo_root().join("plugins/selector");
    let mut names: Vec<String> = std::fs::read_dir(&selectors)
        .unwrap_or_else(|e| panic!("list {}: {e}", selectors.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| selectors.join(name).join(format!("{name}.toml")).is_file())
        .collect();
    names.sort();
    names
}

/// Builds every bundled selector once per test binary and returns the
/// folder of the built components.
pub fn built_bundled_selectors() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_components(&bundled_selectors(), "the bundled selectors"))
}

/// Copies bundled selector `name`'s component and manifest into `dir` as
/// `NAME.wasm` and `NAME.toml`, and returns the component path.
pub fn install_bundled_selector(dir: &Path, name: &str) -> PathBuf {
    copy_plugin(built_bundled_selectors(), "plugins/selector", dir, name)
}

/// Copies plugin `name`'s component and manifest into `dir` as
/// `NAME.wasm` and `NAME.toml`, and returns the component path.
pub fn install(dir: &Path, name: &str) -> PathBuf {
    copy_plugin(built_plugins(), "plugins/testing", dir, name)
}

/// Copies the component of `name` from `built` and its manifest from the
/// repository folder `source/NAME` into `dir`, and returns the component
/// path.
fn copy_plugin(built: &Path, source: &str, dir: &Path, name: &str) -> PathBuf {
    let component = built.join(format!("{}.wasm", name.replace('-', "_")));
    let wasm = dir.join(format!("{name}.wasm"));
    std::fs::copy(&component, &wasm)
        .unwrap_or_else(|e| panic!("copy {}: {e}", component.display()));
    let manifest = repo_root().join(format!("{source}/{name}/{name}.toml"));
    std::fs::copy(&manifest, dir.join(format!("{name}.toml")))
        .unwrap_or_else(|e| panic!("copy {}: {e}", manifest.display()));
    wasm
}

/// Rewrites the manifest of `name` in `dir`: replaces its `[config]`
/// table, if any, with `config` (TOML lines, without the header).
pub fn set_config(dir: &Path, name: &str, config: &str) {
    let path = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let head = text.split("\n[config]").next().unwrap();
    std::fs::write(&path, format!("{head}\n[config]\n{config}\n")).unwrap();
}

/// Applies `edit` to the manifest text of `name` in `dir`.
pub fn edit_manifest(dir: &Path, name: &str, edit: impl FnOnce(String) -> String) {
    let path = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

/// Creates a host with stub models and a compile cache shared by the test
/// binary.
pub fn host() -> PluginHost {
    static CACHE: OnceLock<TempDir> = OnceLock::new();
    let cache = CACHE.get_or_init(|| TempDir::new().unwrap());
    PluginHost::with_cache_dir(Arc::new(StubModelService), Some(cache.path().to_path_buf()))
        .unwrap()
}

/// Installs and loads reward model `name` in a fresh folder, after
/// applying `config` when given.
pub fn load_rm(
    host: &PluginHost,
    name: &str,
    config: Option<&str>,
) -> (TempDir, RewardModelPlugin) {
    let dir = TempDir::new().unwrap();
    let wasm = install(dir.path(), name);
    if let Some(config) = config {
        set_config(dir.path(), name, config);
    }
    let plugin = host
        .load_reward_model(&wasm)
        .unwrap_or_else(|e| panic!("load {name}: {e}"));
    (dir, plugin)
}

/// Installs and loads selector `name` in a fresh folder.
pub fn load_selector(
    host: &PluginHost,
    name: &str,
    config: Option<&str>,
) -> (TempDir, SelectorPlugin) {
    let dir = TempDir::new().unwrap();
    let wasm = install(dir.path(), name);
    if let Some(config) = config {
        set_config(dir.path(), name, config);
    }
    let plugin = host
        .load_selector(&wasm)
        .unwrap_or_else(|e| panic!("load {name}: {e}"));
    (dir, plugin)
}

/// Builds a batch of `n` instances with two candidates each: "a b c" and
/// "d e".
pub fn batch(n: usize) -> Vec<ScoredInstance> {
    (0..n)
        .map(|i| ScoredInstance {
            instance: Instance {
                id: format!("prompt-{i}"),
                prompt: format!("question {i}"),
                reference: None,
                category: Some("test".to_string()),
            },
            candidates: vec!["a b c".to_string(), "d e".to_string()],
        })
        .collect()
}

/// Asserts that the control reward model still scores correctly.
pub fn assert_good_rm_works(good: &mut RewardModelPlugin) {
    let scores = good.score(&batch(2)).expect("good-rm keeps working");
    assert_eq!(scores, vec![vec![5.0, 3.0], vec![5.0, 3.0]]);
}
