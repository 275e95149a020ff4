//! Runs the plugin benchmark once, as `laser-host bench plugins` would, and
//! prints its numbers (`cargo test --release -p laser-plugins --test bench
//! -- --nocapture`).

mod support;

use laser_plugins::bench_plugins;
use support::install;

#[test]
fn bench_reports_timings() {
    let dir = tempfile::TempDir::new().unwrap();
    let wasm = install(dir.path(), "counting-selector");

    let report = bench_plugins(&wasm, 200).unwrap();
    println!("{report}");

    assert!(report.load_cached < report.load_cold, "{report}");
    assert!(report.empty_call <= report.choose_batch64, "{report}");
}
