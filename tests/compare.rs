//! `laser-host compare` with selectors that fail: the others still run, the
//! table lists every run, and `--resume` retries only the failed ones.

#[path = "support/bundled_plugins.rs"]
mod bundled_plugins;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use bundled_plugins::copy_bundled;
use tiny_model::{TinySpec, write_tiny_model};

/// The bundled plugins that the compares here load.
const BUNDLED: [&str; 5] = ["verifier", "format", "length", "round-robin", "random"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the test selector `counting-selector` once per test binary and
/// returns its component. Its `[config] fail_update_at = N` makes its N-th
/// update fail.
fn counting_selector() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        // The plugins workspace has its own target folder, so this nested
        // cargo does not wait on the lock of the cargo running the tests.
        let target_dir = repo_root().join("plugins/target");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .args(["-p", "counting-selector"])
            .arg("--manifest-path")
            .arg(repo_root().join("plugins/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .unwrap();
        assert!(status.success(), "building counting-selector failed");
        target_dir.join("wasm32-wasip2/release/counting_selector.wasm")
    })
}

fn model() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-tiny.gguf");
        write_tiny_model(&path, &TinySpec::default());
        path
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|err| panic!("copy {} to {}: {err}", from.display(), to.display()));
}

/// Writes the manifest of `counting-selector` into `dir` with `config` as
/// its `[config]` table.
fn write_counting_manifest(dir: &Path, config: &str) {
    let manifest = repo_root().join("plugins/testing/counting-selector/counting-selector.toml");
    let text = format!("{}\n[config]\n{config}\n", read(&manifest));
    std::fs::write(dir.join("counting-selector.toml"), text).unwrap();
}

/// Fills `dir` with the plugins of [`BUNDLED`] and two selectors that
/// fail: `counting-selector` in its first update, and `broken`, whose
/// component is not Wasm, when its run opens.
fn write_failing_plugins(dir: &Path) {
    copy_bundled(dir, &BUNDLED);
    copy(counting_selector(), &dir.join("counting-selector.wasm"));
    write_counting_manifest(dir, "fail_update_at = 1");
    let random = read(&dir.join("random.toml"));
    let broken = random.replace("name = \"random\"", "name = \"broken\"");
    std::fs::write(dir.join("broken.toml"), broken).unwrap();
    std::fs::write(dir.join("broken.wasm"), "not a component").unwrap();
}

fn laser_host(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap()
}

/// Runs `compare` of `selectors` on the tiny model over the verifier,
/// format and length reward models, one iteration on 6 built-in instances.
fn compare(plugins: &Path, out: &Path, selectors: &str) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec!["--plugins".as_ref(), plugins.as_os_str()];
    args.extend(["compare".as_ref(), "--model".as_ref(), model().as_os_str()]);
    for arg in [
        "--rms",
        "verifier,format,length",
        "--selectors",
        selectors,
        "--iterations",
        "1",
        "--batch-size",
        "2",
        "--n",
        "2",
        "--builtin-count",
        "6",
        "--eval-size",
        "0",
        "--max-new-tokens",
        "4",
        "--out",
    ] {
        args.push(arg.as_ref());
    }
    args.push(out.as_os_str());
    laser_host(&args)
}

/// Returns the stderr lines that a compare printed for the run `label`,
/// between its `== label` line and the next run's.
fn run_lines<'a>(stderr: &'a str, label: &str) -> Vec<&'a str> {
    let header = format!("== {label}");
    stderr
        .lines()
        .skip_while(|line| *line != header)
        .skip(1)
        .take_while(|line| !line.starts_with("== "))
        .collect()
}

#[test]
fn compare_goes_on_after_failed_selector() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    write_failing_plugins(&plugins);
    let out = dir.path().join("compare");

    let output = compare(
        &plugins,
        &out,
        "round-robin,counting-selector,broken,random",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("warning: selector counting-selector failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: selector broken failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 2 of 4 selectors failed (counting-selector, broken)"),
        "{stderr}"
    );
    assert!(stderr.contains("--resume"), "{stderr}");

    // The table is written before the error, with a row for every run.
    let table = read(&out.join("compare.md"));
    assert!(table.contains("| round-robin | "), "{table}");
    assert!(
        table.contains("| counting-selector (failed) | - |"),
        "{table}"
    );
    assert!(table.contains("| broken (failed) | - |"), "{table}");
    // `random` ran after both failures, so the engine was recovered.
    assert!(table.contains("| random | "), "{table}");
    assert!(table.contains("- counting-selector: "), "{table}");
    assert!(table.contains("update 1 fails on purpose"), "{table}");
    assert!(table.contains("- broken: "), "{table}");

    let rows: serde_json::Value = serde_json::from_str(&read(&out.join("compare.json"))).unwrap();
    let labels: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["round-robin", "counting-selector", "broken", "random"]
    );
    assert!(rows[0][1].get("error").is_none(), "{}", rows[0]);
    assert!(rows[0][1]["rm_calls"].as_u64().unwrap() > 0, "{}", rows[0]);
    let error = rows[1][1]["error"].as_str().unwrap();
    assert!(error.contains("update 1 fails on purpose"), "{error}");
    assert!(rows[1][1].get("rm_calls").is_none(), "{}", rows[1]);
    assert!(rows[2][1]["error"].is_string(), "{}", rows[2]);
    assert!(rows[3][1].get("error").is_none(), "{}", rows[3]);

    // With both selectors fixed, a resume runs only them. The counting
    // selector's settings changed, so its folder is deleted first, as the
    // error message directs.
    write_counting_manifest(&plugins, "");
    copy(&plugins.join("random.wasm"), &plugins.join("broken.wasm"));
    std::fs::remove_dir_all(out.join("counting-selector")).unwrap();
    let metrics = out.join("round-robin").join("metrics.jsonl");
    let finished_metrics = read(&metrics);
    let output = laser_host(&["compare".as_ref(), "--resume".as_ref(), out.as_os_str()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stderr}");
    assert!(!stdout.contains("(failed)"), "{stdout}");
    assert!(stdout.contains("| counting-selector | "), "{stdout}");
    assert!(stdout.contains("| broken | "), "{stdout}");
    for label in ["round-robin", "random"] {
        let lines = run_lines(&stderr, label);
        assert!(
            !lines.iter().any(|line| line.starts_with("iteration")),
            "{label} ran again: {stderr}"
        );
    }
    for label in ["counting-selector", "broken"] {
        let lines = run_lines(&stderr, label);
        assert!(
            lines.iter().any(|line| line.starts_with("iteration")),
            "{label} was not retried: {stderr}"
        );
    }
    assert_eq!(read(&metrics), finished_metrics);
    let rows: serde_json::Value = serde_json::from_str(&read(&out.join("compare.json"))).unwrap();
    for row in rows.as_array().unwrap() {
        assert!(row[1].get("error").is_none(), "{row}");
    }
}
