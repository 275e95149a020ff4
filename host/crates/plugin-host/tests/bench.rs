//! Runs the plugin benchmark as `laser-host bench plugins` would: once on a
//! test selector, printing its numbers (`cargo test --release -p
//! laser-plugins --test bench -- --nocapture`), on every bundled selector,
//! and on the inputs it rejects.

mod support;

use laser_plugins::bench_plugins;
use support::{bundled_selectors, install, install_bundled_selector};

#[test]
fn bench_reports_timings() {
    let dir = tempfile::TempDir::new().unwrap();
    let wasm = install(dir.path(), "counting-selector");

    let report = bench_plugins(&wasm, 200).unwrap();
    println!("{report}");

    assert!(report.load_cached < report.load_cold, "{report}");
    assert!(report.empty_call <= report.choose_batch64, "{report}");
}

#[test]
fn bench_runs_every_bundled_selector() {
    let names = bundled_selectors();
    for expected in ["ensemble", "fixed", "linucb"] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing from the bundled selectors {names:?}"
        );
    }
    let dir = tempfile::TempDir::new().unwrap();
    let mut failures = Vec::new();
    for name in &names {
        let wasm = install_bundled_selector(dir.path(), name);
        match bench_plugins(&wasm, 2) {
            Ok(report) => print!("{report}"),
            Err(error) => failures.push(format!("{name}: {error:#}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bench_accepts_manifest_path() {
    let dir = tempfile::TempDir::new().unwrap();
    let wasm = install(dir.path(), "counting-selector");

    let report = bench_plugins(&wasm.with_extension("toml"), 1).unwrap();

    assert_eq!(report.plugin, "counting-selector@0.1.0");
}

#[test]
fn bench_report_ends_with_newline() {
    let dir = tempfile::TempDir::new().unwrap();
    let wasm = install(dir.path(), "counting-selector");

    let text = bench_plugins(&wasm, 1).unwrap().to_string();

    assert!(
        text.starts_with("plugin counting-selector@0.1.0 (1 call each)\n"),
        "{text}"
    );
    assert!(text.ends_with('\n'), "{text:?}");
    assert!(!text.ends_with("\n\n"), "{text:?}");
}

#[test]
fn bench_rejects_zero_iterations() {
    let dir = tempfile::TempDir::new().unwrap();
    let wasm = install(dir.path(), "counting-selector");

    let error = bench_plugins(&wasm, 0).unwrap_err().to_string();

    assert!(error.contains("invalid iteration count 0"), "{error}");
    assert!(error.contains("--iterations"), "{error}");
    assert!(!error.contains("  "), "{error:?}");
}

#[test]
fn bench_rejects_other_extension() {
    let dir = tempfile::TempDir::new().unwrap();
    let wasm = install(dir.path(), "counting-selector");

    let error = bench_plugins(&wasm.with_extension("md"), 1)
        .unwrap_err()
        .to_string();

    assert!(
        error.contains("counting-selector.md is not a plugin"),
        "{error}"
    );
    assert!(error.contains("NAME.toml"), "{error}");
}

#[test]
fn bench_rejects_reward_model() {
    let dir = tempfile::TempDir::new().unwrap();
    let rm = install(dir.path(), "good-rm");
    install(dir.path(), "counting-selector");

    let error = bench_plugins(&rm, 1).unwrap_err().to_string();

    assert!(error.contains("good-rm@0.1.0 is a reward model"), "{error}");
    assert!(error.contains("measures selectors"), "{error}");
    assert!(error.contains("are: counting-selector"), "{error}");
}
