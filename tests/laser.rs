//! LASeR runs of the `laser-host` binary on a tiny random model with the
//! bundled plugins: the run folder, resume after `kill -9`, and errors for
//! bad arguments.

#[path = "support/bundled_plugins.rs"]
mod bundled_plugins;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bundled_plugins::{bundled_plugins, copy_bundled};
use tiny_model::{TinySpec, write_tiny_model};

fn model() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("laser-tiny.gguf");
        write_tiny_model(&path, &TinySpec::default());
        path
    })
}

fn command(out: &Path, extra: &[&str]) -> Command {
    subcommand("best-of-n", out, extra)
}

/// Returns `laser-host SUBCOMMAND` on the tiny model: 2 iterations over 7
/// training instances in batches of 2, with 2 held out. An option in
/// `extra` replaces its default here.
fn subcommand(name: &str, out: &Path, extra: &[&str]) -> Command {
    let defaults = [
        ("--rms", "verifier,format,length"),
        ("--iterations", "2"),
        ("--batch-size", "2"),
        ("--n", "3"),
        ("--builtin-count", "9"),
        ("--eval-size", "2"),
        ("--max-new-tokens", "6"),
        ("--seed", "5"),
    ];
    let mut command = Command::new(env!("CARGO_BIN_EXE_laser-host"));
    command.arg("--plugins").arg(bundled_plugins()).arg(name);
    command.arg("--model").arg(model());
    for (option, value) in defaults {
        if !extra.contains(&option) {
            command.args([option, value]);
        }
    }
    command
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run(out: &Path, extra: &[&str]) -> Output {
    command(out, extra).output().unwrap()
}

/// Runs `laser-host SUBCOMMAND --resume RUN_DIR`.
fn resume(subcommand: &str, run_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .args([subcommand, "--resume"])
        .arg(run_dir)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn best_of_n_writes_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = run(&out, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in [
        "config.json",
        "plugins.json",
        "metrics.jsonl",
        "selections.jsonl",
        "state.json",
        "report.md",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    // 9 instances, 2 held out: 7 a pass in 4 batches of at most 2.
    assert_eq!(read(&out.join("metrics.jsonl")).lines().count(), 8);
    assert_eq!(read(&out.join("selections.jsonl")).lines().count(), 14);
    let plugins: serde_json::Value =
        serde_json::from_str(&read(&out.join("plugins.json"))).unwrap();
    assert_eq!(plugins.as_array().unwrap().len(), 4);
    assert_eq!(plugins[0]["digest"].as_str().unwrap().len(), 64);

    // `report` rebuilds the same report from the folder alone.
    let report = read(&out.join("report.md"));
    assert!(report.contains("| reward model | prompts |"), "{report}");
    assert!(!report.contains("ensemble"), "{report}");
    std::fs::remove_file(out.join("report.md")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .arg("report")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(read(&out.join("report.md")), report);

    // A records file with fewer lines than state.json counts is damage,
    // which `report` must not turn into a report of zeros.
    std::fs::write(out.join("metrics.jsonl"), "").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .arg("report")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("metrics.jsonl has 0 lines, though state.json records 8"),
        "{stderr}"
    );
}

#[test]
fn killed_run_resumes_to_same_result() {
    assert_killed_run_resumes_to_same_result(&[]);
}

#[test]
fn killed_ensemble_run_resumes_identically() {
    // The ensemble standardizes each reward model's scores with its
    // statistics over the run so far, which the checkpoint must keep.
    assert_killed_run_resumes_to_same_result(&["--selector", "ensemble"]);
}

/// Runs best-of-n with `extra` twice, killing the second run after two
/// batches and resuming it, and checks that both end the same.
fn assert_killed_run_resumes_to_same_result(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let output = run(&whole, extra);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Kill a second run once it has finished some batches, then resume it.
    let killed = dir.path().join("killed");
    let mut child = command(&killed, extra).spawn().unwrap();
    let started = Instant::now();
    loop {
        let state = std::fs::read_to_string(killed.join("state.json")).unwrap_or_default();
        if state.contains("\"next_batch\": 2") || started.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = resume("best-of-n", &killed);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        read(&killed.join("selections.jsonl")),
        read(&whole.join("selections.jsonl"))
    );
    let state = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&read(&dir.join("state.json"))).unwrap()
    };
    assert_eq!(
        state(&killed)["selector_state"],
        state(&whole)["selector_state"]
    );
}

/// Starts `command`, a run writing into `out`, sends it SIGINT once its
/// first batch is recorded, and returns its output.
#[cfg(unix)]
fn interrupt_after_first_batch(mut command: Command, out: &Path) -> Output {
    use std::os::unix::process::CommandExt;

    // SAFETY: only resets a signal's action between fork and exec. The
    // test runner may have been started with SIGINT ignored, which a
    // child would keep.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    let started = Instant::now();
    while !out.join("metrics.jsonl").is_file() && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
#[test]
fn interrupted_run_stops_after_batch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = interrupt_after_first_batch(command(&out, &[]), &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("stopped after batch"), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");

    // The batch in progress was finished and saved, and the run resumes.
    let state: serde_json::Value = serde_json::from_str(&read(&out.join("state.json"))).unwrap();
    let done = state["iteration"].as_u64().unwrap() * 4 + state["next_batch"].as_u64().unwrap();
    assert!(done >= 1, "{state}");
    let resumed = resume("best-of-n", &out);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
}

#[test]
fn resume_rejects_changed_data_or_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("q.jsonl");
    let lines: Vec<String> = (1..=8)
        .map(|i| {
            format!(
                "{{\"prompt\": \"What is {i} plus {i}?\", \"reference\": \"{}\"}}",
                2 * i
            )
        })
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let model_copy = dir.path().join("m.gguf");
    std::fs::copy(model(), &model_copy).unwrap();
    let out = dir.path().join("run");
    let output = Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .arg("--plugins")
        .arg(bundled_plugins())
        .args(["best-of-n", "--rms", "verifier,length", "--iterations", "1"])
        .args(["--batch-size", "4", "--n", "2", "--eval-size", "2"])
        .args(["--max-new-tokens", "4", "--model"])
        .arg(&model_copy)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let resumed = resume("best-of-n", &out);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );

    std::fs::write(&data, lines[..7].join("\n") + "\n").unwrap();
    let resumed = resume("best-of-n", &out);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(!resumed.status.success());
    assert!(
        stderr.contains("q.jsonl changed since the run started"),
        "{stderr}"
    );

    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let mut bytes = std::fs::read(&model_copy).unwrap();
    bytes.extend([0u8; 64]);
    std::fs::write(&model_copy, bytes).unwrap();
    let resumed = resume("best-of-n", &out);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(!resumed.status.success());
    assert!(
        stderr.contains("m.gguf changed since the run started"),
        "{stderr}"
    );

    std::fs::rename(&data, dir.path().join("moved.jsonl")).unwrap();
    let resumed = resume("best-of-n", &out);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(!resumed.status.success());
    assert!(stderr.contains("started with the data file"), "{stderr}");
    assert!(stderr.contains("q.jsonl, which is missing"), "{stderr}");

    std::fs::rename(dir.path().join("moved.jsonl"), &data).unwrap();
    std::fs::remove_file(&model_copy).unwrap();
    let resumed = resume("best-of-n", &out);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(!resumed.status.success());
    assert!(stderr.contains("m.gguf, which is missing"), "{stderr}");
}

/// A reward model copied into the plugin folder while a run is stopped
/// joins at the next iteration start, as one added while the run goes on
/// does, not in the middle of the iteration the run resumes.
#[cfg(unix)]
#[test]
fn added_reward_model_joins_at_iteration_start() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    copy_bundled(&plugins, &["linucb", "verifier", "length"]);
    let out = dir.path().join("run");
    let mut command = Command::new(env!("CARGO_BIN_EXE_laser-host"));
    command
        .arg("--plugins")
        .arg(&plugins)
        .args([
            "best-of-n",
            "--iterations",
            "2",
            "--batch-size",
            "2",
            "--n",
            "2",
        ])
        .args([
            "--builtin-count",
            "9",
            "--eval-size",
            "2",
            "--max-new-tokens",
            "24",
        ])
        .args(["--seed", "5", "--model"])
        .arg(model())
        .arg("--out")
        .arg(&out)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    interrupt_after_first_batch(command, &out);
    let state: serde_json::Value = serde_json::from_str(&read(&out.join("state.json"))).unwrap();
    let stopped_at = (
        state["iteration"].as_u64().unwrap(),
        state["next_batch"].as_u64().unwrap(),
    );

    // `format` sorts before the others but joins as the last arm. Kill the
    // resumed run once it has, and resume again: the arms keep that order.
    copy_bundled(&plugins, &["format"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .args(["best-of-n", "--resume"])
        .arg(&out)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(300) {
        let state = std::fs::read_to_string(out.join("state.json")).unwrap_or_default();
        let state: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
        if state["iteration"] == 1 && state["next_batch"].as_u64() >= Some(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = resume("best-of-n", &out);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    let recorded: Vec<serde_json::Value> =
        serde_json::from_str(&read(&out.join("plugins.json"))).unwrap();
    let names: Vec<&str> = recorded[1..]
        .iter()
        .map(|plugin| plugin["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["length@0.1.0", "verifier@0.1.0", "format@0.1.0"]);
    let rows: Vec<serde_json::Value> = read(&out.join("selections.jsonl"))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for row in &rows {
        let arms = row["weights"].as_array().unwrap().len();
        let expected = if row["iteration"].as_u64().unwrap() == 0 {
            2
        } else {
            3
        };
        assert_eq!(arms, expected, "stopped at {stopped_at:?}: {row}");
    }
}

#[test]
fn unused_ensemble_lambda_warns() {
    let dir = tempfile::tempdir().unwrap();
    // The unknown reward model stops the run once the options are read.
    let extra = [
        "--rms",
        "oracle",
        "--ensemble",
        "min",
        "--ensemble-lambda",
        "3",
    ];
    let output = run(&dir.path().join("run"), &extra);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: --ensemble-lambda 3 applies only to --ensemble mean-minus-std"),
        "{stderr}"
    );

    let extra = [
        "--rms",
        "oracle",
        "--ensemble",
        "mean-minus-std",
        "--ensemble-lambda",
        "3",
    ];
    let output = run(&dir.path().join("run"), &extra);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("--ensemble-lambda 3 applies"), "{stderr}");
}

#[test]
fn unknown_reward_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(&dir.path().join("run"), &["--rms", "verifier,oracle"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("\"oracle\" not found"), "{stderr}");
}

#[test]
fn broken_reward_model_is_not_called_missing() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    copy_bundled(&plugins, &["linucb", "verifier", "length"]);
    std::fs::write(plugins.join("length.wasm"), b"\0asm").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .arg("--plugins")
        .arg(&plugins)
        .args(["best-of-n", "--rms", "verifier,length", "--model"])
        .arg(model())
        .arg("--out")
        .arg(dir.path().join("run"))
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("skipped plugin"), "{stderr}");
    assert!(stderr.contains("reward model \"length\" in"), "{stderr}");
    assert!(stderr.contains("failed to load"), "{stderr}");
}

/// Runs best-of-n on the tiny model in batches of 2, with `selector` and
/// the verifier and length reward models, `n` samples of up to
/// `max_new_tokens` for `count` built-in prompts. The verifier's output
/// limit is so low that it fails at its first `score` call. Returns the
/// output and the run folder, which lives as long as the returned
/// temporary folder.
fn run_with_failing_verifier(
    selector: &str,
    n: u32,
    count: u32,
    max_new_tokens: u32,
) -> (Output, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    copy_bundled(&plugins, &[selector, "verifier", "length"]);
    let manifest = plugins.join("verifier.toml");
    let text = read(&manifest);
    std::fs::write(
        &manifest,
        format!("{text}\n[limits]\nmax_output_bytes = 8\n"),
    )
    .unwrap();

    let out = dir.path().join("run");
    let output = Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .arg("--plugins")
        .arg(&plugins)
        .args(["best-of-n", "--selector", selector])
        .args([
            "--rms",
            "verifier,length",
            "--eval-size",
            "2",
            "--batch-size",
            "2",
        ])
        .args(["--n", &n.to_string(), "--builtin-count", &count.to_string()])
        .args(["--max-new-tokens", &max_new_tokens.to_string()])
        .arg("--model")
        .arg(model())
        .arg("--out")
        .arg(&out)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    (output, out, dir)
}

#[test]
fn failed_reward_model_leaves_prompts_unscored() {
    // The fixed selector has no arm but the failing verifier.
    let (output, out, _dir) = run_with_failing_verifier("fixed", 3, 6, 6);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("so 2 of this batch's prompts get no pick"),
        "{stderr}"
    );
    assert!(stderr.contains("`limits.max_output_bytes`"), "{stderr}");
    assert!(stderr.contains("picks verifier 2 (2 unscored)"), "{stderr}");
    assert!(stderr.contains("arm `verifier` is disabled"), "{stderr}");
    let metrics = read(&out.join("metrics.jsonl"));
    assert!(metrics.contains("\"unscored\":2"), "{metrics}");
}

#[test]
fn failed_ensemble_member_keeps_prompts_scored() {
    // The ensemble selector spreads every prompt's weights over the
    // failing verifier and length.
    let (output, out, _dir) = run_with_failing_verifier("ensemble", 2, 4, 4);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("so 2 of this batch's prompts lose its scores from their ensemble"),
        "{stderr}"
    );
    assert!(!stderr.contains("get no pick"), "{stderr}");
    let metrics = read(&out.join("metrics.jsonl"));
    assert!(metrics.contains("\"unscored\":0"), "{metrics}");
}

#[test]
fn misplaced_plugin_names_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--rms", "linucb"], "is a selector, not a reward model"),
        (&["--rms", ","], "--rms contains an empty name"),
        (
            &["--selector", "length"],
            "is a reward model, not a selector",
        ),
        // The bundled `fixed` selector's manifest names the verifier.
        (
            &["--selector", "fixed", "--rms", "format,length"],
            "cannot choose among the reward models",
        ),
    ];
    for (extra, expected) in cases {
        let out = dir.path().join("run");
        let output = run(&out, extra);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!out.exists(), "{extra:?} left a run folder");
    }
}

#[test]
fn missing_data_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        &dir.path().join("run"),
        &["--data", "/nonexistent/gsm8k.jsonl"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("/nonexistent/gsm8k.jsonl"), "{stderr}");
}

#[test]
fn data_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gsm8k");
    std::fs::create_dir(&data).unwrap();
    let out = dir.path().join("run");
    let output = run(&out, &["--data", data.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "data file {} is not a regular file",
            data.display()
        )),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn mixed_data_keeps_file_categories() {
    let dir = tempfile::tempdir().unwrap();
    let gsm8k = dir.path().join("train.jsonl");
    std::fs::write(
        &gsm8k,
        "{\"question\": \"What is 2 + 3?\", \"answer\": \"#### 5\"}\n\
         {\"question\": \"What is 4 * 4?\", \"answer\": \"#### 16\"}\n",
    )
    .unwrap();
    let strategyqa = dir.path().join("train.json");
    std::fs::write(
        &strategyqa,
        r#"[{"qid": "q1", "question": "Is ice cold?", "answer": true},
            {"qid": "q2", "question": "Can a cat fly?", "answer": false}]"#,
    )
    .unwrap();
    let generic = dir.path().join("capitals.jsonl");
    std::fs::write(
        &generic,
        "{\"prompt\": \"Capital of France?\", \"reference\": \"Paris\"}\n\
         {\"prompt\": \"Is 7 prime?\", \"reference\": \"yes\", \"category\": \"primes\"}\n",
    )
    .unwrap();

    let out = dir.path().join("run");
    let mut extra = vec!["--eval-size", "0", "--iterations", "1"];
    for path in [&gsm8k, &strategyqa, &generic] {
        extra.extend(["--data", path.to_str().unwrap()]);
    }
    let output = run(&out, &extra);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut categories: Vec<(String, String)> = read(&out.join("selections.jsonl"))
        .lines()
        .map(|line| {
            let selection: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = selection["id"].as_str().unwrap().to_owned();
            let category = selection["category"].as_str().unwrap().to_owned();
            (id, category)
        })
        .collect();
    categories.sort();
    let expected = [
        ("capitals-0", "capitals"),
        ("capitals-1", "primes"),
        ("gsm8k-0", "gsm8k"),
        ("gsm8k-1", "gsm8k"),
        ("q1", "strategyqa"),
        ("q2", "strategyqa"),
    ]
    .map(|(id, category)| (id.to_owned(), category.to_owned()));
    assert_eq!(categories, expected);

    let report = read(&out.join("report.md"));
    for category in ["capitals", "gsm8k", "primes", "strategyqa"] {
        assert!(report.contains(&format!("| {category} |")), "{report}");
    }
    let config: serde_json::Value = serde_json::from_str(&read(&out.join("config.json"))).unwrap();
    assert_eq!(config["data"].as_array().unwrap().len(), 3);
}

#[test]
fn data_format_count_must_match_files() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        &dir.path().join("run"),
        &[
            "--data",
            "a.jsonl",
            "--data",
            "b.json",
            "--data",
            "c.jsonl",
            "--data-format",
            "gsm8k",
            "--data-format",
            "strategyqa",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("got 2 --data-format values for 3 --data files"),
        "{stderr}"
    );
}

#[test]
fn existing_run_folder_needs_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(run(&out, &[]).status.success());
    let output = run(&out, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--resume"), "{stderr}");
}

#[test]
fn prompt_longer_than_context_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("prompts.jsonl");
    // The tiny model's context is 256 tokens.
    let long = "word ".repeat(400);
    std::fs::write(
        &data,
        format!(
            "{{\"prompt\": \"Is 7 prime?\", \"reference\": \"yes\"}}\n\
             {{\"id\": \"too-long\", \"prompt\": \"{long}\"}}\n\
             {{\"prompt\": \"Is 9 prime?\", \"reference\": \"no\"}}\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let data = data.to_str().unwrap();
    let output = run(
        &out,
        &["--data", data, "--eval-size", "0", "--iterations", "1"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped training instance too-long"),
        "{stderr}"
    );
    assert_eq!(read(&out.join("selections.jsonl")).lines().count(), 2);
}

#[test]
fn non_empty_out_folder_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.md");
    std::fs::write(&notes, "mine").unwrap();
    let output = run(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(read(&notes), "mine");
    assert!(!dir.path().join("config.json").exists());
}

#[test]
fn resume_rejects_changed_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(run(&out, &["--iterations", "1"]).status.success());
    let output = Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .args(["best-of-n", "--n", "5", "--resume"])
        .arg(&out)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("takes no other options; drop --n,"),
        "{stderr}"
    );
}

/// Runs `compare` of `selectors` over the verifier, format and length
/// reward models, one iteration on 6 built-in instances.
fn compare(out: &Path, selectors: &str, eval_size: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .arg("--plugins")
        .arg(bundled_plugins())
        .arg("compare")
        .arg("--model")
        .arg(model())
        .args(["--rms", "verifier,format,length", "--selectors", selectors])
        .args(["--iterations", "1", "--batch-size", "2", "--n", "2"])
        .args(["--builtin-count", "6", "--eval-size", eval_size])
        .args(["--max-new-tokens", "4"])
        .arg("--out")
        .arg(out)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap()
}

#[test]
fn compare_counts_one_rm_per_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compare");
    let output = compare(&out, "linucb,ensemble", "0");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.join("compare.md").exists());
    let rows: serde_json::Value = serde_json::from_str(&read(&out.join("compare.json"))).unwrap();
    let candidates = |i: usize| rows[i][1]["rm_candidates"].as_u64().unwrap();
    assert_eq!(rows[0][0], "linucb");
    assert_eq!(rows[1][0], "ensemble");
    // Three reward models: the ensemble scores every candidate three times.
    assert_eq!(candidates(1), 3 * candidates(0));
}

/// Runs `plugins check` on a copy of bundled plugin `name` whose manifest
/// text `edit` changed.
fn check_edited_plugin(name: &str, edit: impl Fn(String) -> String) -> Output {
    let dir = tempfile::tempdir().unwrap();
    copy_bundled(dir.path(), &[name]);
    let manifest = dir.path().join(format!("{name}.toml"));
    std::fs::write(&manifest, edit(read(&manifest))).unwrap();
    plugins_check(&manifest)
}

/// Runs `plugins check` on `path`.
fn plugins_check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .args(["plugins", "check"])
        .arg(path)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap()
}

#[test]
fn plugins_check_prints_error_once() {
    let output = check_edited_plugin("fixed", |text| {
        text.replace("arm = \"verifier\"", "arm = \"\"")
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        stderr
            .matches("expected the name of a reward model")
            .count(),
        1,
        "{stderr}"
    );
}

#[test]
fn plugins_check_names_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = plugins_check(&dir.path().join("absent.wasm"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("absent.wasm not found"), "{stderr}");
    assert!(!stderr.contains("manifest"), "{stderr}");

    // A manifest whose component has an upper-case extension.
    std::fs::copy(
        bundled_plugins().join("length.toml"),
        dir.path().join("length.toml"),
    )
    .unwrap();
    std::fs::copy(
        bundled_plugins().join("length.wasm"),
        dir.path().join("length.WASM"),
    )
    .unwrap();
    for file in ["length.toml", "length.wasm"] {
        let output = plugins_check(&dir.path().join(file));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{file}");
        assert!(stderr.contains("found"), "{file}: {stderr}");
        assert!(stderr.contains("length.WASM"), "{file}: {stderr}");
        assert!(stderr.contains("must be lowercase"), "{file}: {stderr}");
        assert!(!stderr.contains("os error"), "{file}: {stderr}");
    }
}

#[test]
fn plugins_check_rejects_reward_model_named_ensemble() {
    let dir = tempfile::tempdir().unwrap();
    for extension in ["wasm", "toml"] {
        std::fs::copy(
            bundled_plugins().join(format!("length.{extension}")),
            dir.path().join(format!("ensemble.{extension}")),
        )
        .unwrap();
    }
    let manifest = dir.path().join("ensemble.toml");
    let text = read(&manifest).replace("name = \"length\"", "name = \"ensemble\"");
    std::fs::write(&manifest, text).unwrap();
    let output = plugins_check(&manifest);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("is reserved for a reward model"),
        "{stderr}"
    );
}

#[test]
fn plugins_check_warns_of_unserved_models() {
    let output = check_edited_plugin("length", |text| {
        let models_line = text
            .lines()
            .find(|line| line.starts_with("models"))
            .expect("the manifest lists its models");
        text.replace(models_line, "models = [\"policy\", \"judge-70b\"]")
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: length requests models [\"judge-70b\"]"),
        "{stderr}"
    );
}

#[test]
fn compare_checks_names_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compare");
    let output = compare(&out, "linucb,nosuch", "0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("selector \"nosuch\" not found"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn compare_finishes_only_with_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compare");
    let output = compare(&out, "round-robin", "0");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The same command again would show the old table as new results.
    let output = compare(&out, "round-robin", "0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--resume"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .args(["compare", "--resume"])
        .arg(&out)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("| round-robin |"), "{stdout}");
}

#[test]
fn compare_evaluates_start_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compare");
    let output = compare(&out, "fixed,round-robin", "2");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let evaluations = stderr
        .lines()
        .filter(|line| line.starts_with("eval before"))
        .count();
    assert_eq!(evaluations, 1, "{stderr}");

    let rows: serde_json::Value = serde_json::from_str(&read(&out.join("compare.json"))).unwrap();
    let rows = rows.as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|row| row[0].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "fixed:verifier",
            "fixed:format",
            "fixed:length",
            "round-robin"
        ]
    );
    let first = &rows[0][1]["eval_before"];
    assert!(first.is_f64(), "{first}");
    for row in rows {
        assert_eq!(&row[1]["eval_before"], first, "{}", row[0]);
    }
    // 6 instances, 2 held out: every training prompt goes to the fixed arm.
    for rm in ["verifier", "format", "length"] {
        let row = &rows[labels
            .iter()
            .position(|l| *l == format!("fixed:{rm}"))
            .unwrap()];
        assert_eq!(row[1]["arm_counts"], serde_json::json!({ rm: 4 }), "{rm}");
    }

    let config: serde_json::Value =
        serde_json::from_str(&read(&out.join("fixed-format").join("config.json"))).unwrap();
    assert_eq!(config["selector_config"]["arm"], "format");
    assert_eq!(
        config["plugins"].as_str().unwrap(),
        bundled_plugins().to_str().unwrap()
    );
    let folders: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !folders.iter().any(|name| name.starts_with("plugins-")),
        "{folders:?}"
    );
}

/// Returns the names of the `policy-*` folders in `dir`, sorted.
fn policy_folders(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("policy"))
        .collect();
    names.sort();
    names
}

#[test]
fn eval_picks_best_of_n_with_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = subcommand(
        "train",
        &out,
        &["--rms", "length,format", "--iterations", "1"],
    )
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let policy = out.join(&policy_folders(&out)[0]);
    let eval = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_laser-host"))
            .arg("--plugins")
            .arg(bundled_plugins())
            .arg("eval")
            .arg("--model")
            .arg(model())
            .arg("--adapter")
            .arg(&policy)
            .args(["--builtin-count", "9", "--eval-size", "2", "--seed", "5"])
            .args(["--max-new-tokens", "4"])
            .args(extra)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .unwrap()
    };
    for extra in [&[][..], &["--best-of", "3", "--rm", "length"]] {
        let output = eval(extra);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("of 2)"), "{extra:?}: {stdout}");
    }
    let output = eval(&["--best-of", "3"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--rm NAME"), "{stderr}");
}

#[test]
fn train_resume_ignores_orphan_policy() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    // The verifier scores the tiny model's noise 0 throughout, which makes
    // no preference pairs, so these runs use reward models that do.
    let rms = ["--rms", "length,format"];
    let output = subcommand("train", &whole, &rms).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let state = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&read(&dir.join("state.json"))).unwrap()
    };
    // The comparison below means something only if the policy trained.
    let trained = read(&whole.join("metrics.jsonl"))
        .lines()
        .filter(|line| !line.contains("\"loss\":null"))
        .count();
    assert!(trained > 0, "no batch trained the policy");
    // 4 batches per iteration, 2 iterations.
    assert_eq!(state(&whole)["policy_dir"], "policy-000008");
    assert_eq!(policy_folders(&whole), ["policy-000008"]);

    // Stop a second run after its first iteration, as a kill at that point
    // would, then resume it for the second.
    let resumed = dir.path().join("resumed");
    let output = subcommand(
        "train",
        &resumed,
        &[&rms[..], &["--iterations", "1"]].concat(),
    )
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(state(&resumed)["policy_dir"], "policy-000004");
    let config_path = resumed.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&read(&config_path)).unwrap();
    config["iterations"] = 2.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    // A kill after writing the next policy folder but before state.json
    // leaves a folder that state.json does not name; resume must ignore it.
    let orphan = resumed.join("policy-000005");
    std::fs::create_dir(&orphan).unwrap();
    std::fs::write(
        orphan.join("training_state.safetensors"),
        "not a checkpoint",
    )
    .unwrap();

    let output = resume("train", &resumed);

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(policy_folders(&resumed), ["policy-000008"]);
    assert_eq!(
        read(&resumed.join("selections.jsonl")),
        read(&whole.join("selections.jsonl"))
    );
    let training_state = |dir: &Path| {
        std::fs::read(dir.join("policy-000008").join("training_state.safetensors")).unwrap()
    };
    assert!(
        training_state(&resumed) == training_state(&whole),
        "training states differ"
    );
}

#[test]
fn train_resume_rejects_missing_policy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = subcommand("train", &out, &["--iterations", "1"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_dir_all(out.join("policy-000004")).unwrap();

    let output = resume("train", &out);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("policy-000004"), "{stderr}");
}

#[test]
fn tied_reward_model_still_gets_reward() {
    // The verifier scores all of the tiny model's responses 0, so its
    // prompts form no preference pair. Listed first, it is LinUCB's first
    // pick. Its prompts must still get a reward, because otherwise its
    // untried bound would win every later pick and `length` would never run.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = subcommand("train", &out, &["--rms", "verifier,length"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<serde_json::Value> = read(&out.join("selections.jsonl"))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();

    let rewarded = |arm: &str| {
        rows.iter()
            .filter(|row| row["arm"] == arm && row["reward"].is_number())
            .count()
    };
    assert!(rewarded("verifier") > 0, "the verifier was never rewarded");
    assert!(
        rewarded("length") > 0,
        "length was never picked and rewarded"
    );
    let state: serde_json::Value = serde_json::from_str(&read(&out.join("state.json"))).unwrap();
    let lowest = state["lowest_reward"]
        .as_f64()
        .expect("lowest_reward is set");
    for row in &rows {
        if let Some(reward) = row["reward"].as_f64() {
            assert!(
                reward >= lowest,
                "reward {reward} below the lowest {lowest}"
            );
        }
    }
}

#[test]
fn diverged_training_stops_the_run() {
    // A learning rate near f32's maximum makes the adapter's weights
    // overflow. Whether the trainer or the engine meets the overflow
    // first, the run must stop with advice about the learning rate and
    // must not blame the model file.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = subcommand("train", &out, &["--learning-rate", "3e38"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("lower learning rate") || stderr.contains("lower the learning rate"),
        "{stderr}"
    );
    assert!(!stderr.contains("fetch it again"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn invalid_training_settings_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("--learning-rate", "nan"),
        ("--beta", "-1"),
        ("--nll-weight", "inf"),
        ("--temperature", "0"),
    ];
    for (option, value) in cases {
        let out = dir.path().join(option.trim_start_matches('-'));
        let setting = format!("{option}={value}");
        let output = subcommand("train", &out, &[&setting]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{setting} was accepted");
        assert!(stderr.contains(option), "{setting}: {stderr}");
        assert!(!out.exists(), "{setting} left a run folder");
    }
}

/// Returns `laser-host eval` on the tiny model with `--data data`, greedy
/// and with at most 4 new tokens.
fn eval_on(data: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .arg("eval")
        .arg("--model")
        .arg(model())
        .arg("--data")
        .arg(data)
        .args(["--max-new-tokens", "4", "--seed", "5"])
        .args(extra)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap()
}

#[test]
fn eval_writes_graded_responses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tasks.jsonl");
    let records: String = (1..=4)
        .map(|i| {
            format!(
                "{{\"prompt\": \"What is {i} plus {i}?\", \"reference\": \"{}\"}}\n",
                2 * i
            )
        })
        .collect();
    std::fs::write(&data, records).unwrap();
    let responses = dir.path().join("responses.jsonl");
    let output = eval_on(
        &data,
        &[
            "--eval-size",
            "2",
            "--responses",
            responses.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = read(&responses);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        assert!(line["prompt"].as_str().unwrap().contains("plus"), "{line}");
        assert!(line["response"].is_string(), "{line}");
        assert!(line["correct"].is_boolean(), "{line}");
    }
}

#[test]
fn eval_keeps_repeated_prompts_together() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("twice.jsonl");
    let records: String = (0..8)
        .map(|i| {
            format!(
                "{{\"prompt\": \"What is {} plus 1?\", \"reference\": 0}}\n",
                i % 4
            )
        })
        .collect();
    std::fs::write(&data, records).unwrap();

    let output = eval_on(&data, &["--eval-size", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot hold out exactly 1 of 8 instances"),
        "{stderr}"
    );
    assert!(stderr.contains("choose an eval size of 2"), "{stderr}");
    assert!(!stderr.contains("context"), "{stderr}");

    let output = eval_on(&data, &["--eval-size", "2"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("of 2)"), "{stdout}");
}

#[test]
fn eval_leaves_out_unreferenced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("open.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"Is 7 prime?\", \"reference\": \"yes\"}\n\
         {\"prompt\": \"Is 9 prime?\", \"reference\": \"no\"}\n\
         {\"prompt\": \"Write a haiku.\"}\n\
         {\"prompt\": \"Name a color.\"}\n",
    )
    .unwrap();
    // Three of four held out: at least one has a reference and one not.
    let output = eval_on(&data, &["--eval-size", "3"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("without a reference answer"), "{stdout}");
    assert!(!stdout.contains("of 3)"), "{stdout}");
    assert!(stderr.contains("the accuracy leaves them out"), "{stderr}");

    let unreferenced = dir.path().join("unreferenced.jsonl");
    std::fs::write(
        &unreferenced,
        "{\"prompt\": \"Write a haiku.\"}\n{\"prompt\": \"Name a color.\"}\n",
    )
    .unwrap();
    let output = eval_on(&unreferenced, &["--eval-size", "1"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}");
    assert!(!stdout.contains("accuracy 0.000"), "{stdout}");
    assert!(stderr.contains("accuracy cannot be measured"), "{stderr}");
}

#[test]
fn eval_checks_options_like_train() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tasks.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"Is 7 prime?\", \"reference\": \"yes\"}\n",
    )
    .unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["--batch-size", "0"], "--batch-size must be at least 1"),
        (
            &["--best-of", "2", "--temperature", "inf"],
            "--temperature must be a finite number >= 0, got inf",
        ),
        (
            &["--builtin-count", "4000000000"],
            "4000000000 is more than the maximum of 1000000",
        ),
    ];
    for (extra, expected) in cases {
        let output = eval_on(&data, extra);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
    }
}
