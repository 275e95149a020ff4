//! The `laser-host` binary as a user runs it: bad model files, bad input
//! files and bad arguments each get a one-line error and a non-zero exit.

#[path = "support/tiny_model.rs"]
mod tiny_model;

use std::path::Path;
use std::process::{Command, Output};

use tiny_model::{TinySpec, write_tiny_model};

fn laser_host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .args(args)
        .env(
            "LASER_HOST_CACHE",
            std::env::temp_dir().join("laser-host-cli-test-cache"),
        )
        .output()
        .unwrap()
}

/// Asserts that `output` failed with exactly one `error:` line naming
/// `needle`, and no panic.
fn assert_clean_failure(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "expected failure, stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "stderr: {stderr}");
    assert!(
        errors[0].contains(needle),
        "expected {needle:?} in {:?}",
        errors[0]
    );
}

fn tiny_model(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tiny.gguf");
    write_tiny_model(&path, &TinySpec::default());
    path
}

fn logits_with_model(model: &Path, dir: &Path) -> Output {
    let tokens = dir.join("tokens.jsonl");
    std::fs::write(&tokens, "[72, 101, 108]\n").unwrap();
    logits_of(model, &tokens)
}

/// Runs `logits` on `model` with the token file `tokens`.
fn logits_of(model: &Path, tokens: &Path) -> Output {
    laser_host(&[
        "logits",
        "--model",
        model.to_str().unwrap(),
        "--tokens-file",
        tokens.to_str().unwrap(),
    ])
}

/// Runs `generate` on a tiny model with the prompt "x" and `options`.
fn generate_with(options: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "x",
    ];
    args.extend_from_slice(options);
    laser_host(&args)
}

#[test]
fn truncated_gguf_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_failure(&logits_with_model(&model, dir.path()), "tiny.gguf");
}

#[test]
fn wrong_magic_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[..4].copy_from_slice(b"GGML");
    std::fs::write(&model, &bytes).unwrap();
    assert_clean_failure(&logits_with_model(&model, dir.path()), "magic");
}

#[test]
fn absurd_tensor_count_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let mut bytes = std::fs::read(&model).unwrap();
    // The tensor count is the u64 after the magic and the version.
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&model, &bytes).unwrap();
    assert_clean_failure(&logits_with_model(&model, dir.path()), "tensor");
}

#[test]
fn missing_model_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = logits_with_model(&dir.path().join("absent.gguf"), dir.path());
    assert_clean_failure(&output, "absent.gguf");
}

#[test]
fn malformed_tokens_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let tokens = dir.path().join("tokens.jsonl");
    std::fs::write(&tokens, "[1, 2]\nnot json\n").unwrap();
    let output = logits_of(&model, &tokens);
    assert_clean_failure(&output, "tokens.jsonl:2");
}

#[test]
fn logits_prints_one_line_per_position() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let output = logits_with_model(&model, dir.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["position"], 2);
    assert_eq!(lines[0]["ids"].as_array().unwrap().len(), 5);
}

#[test]
fn logits_checks_every_line_first() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let tokens = dir.path().join("tokens.jsonl");
    // A byte order mark, a good line, an empty line, then a line longer
    // than the tiny model's context of 256 tokens.
    let long: Vec<u32> = (0..300).map(|i| 40 + i % 50).collect();
    let text = format!(
        "\u{feff}[72, 101]\n\n{}\n",
        serde_json::to_string(&long).unwrap()
    );
    std::fs::write(&tokens, text).unwrap();
    let output = logits_of(&model, &tokens);
    assert_clean_failure(&output, "tokens.jsonl:3: 300 token ids");
    assert!(output.stdout.is_empty(), "printed before failing");
}

#[test]
fn generate_with_tiny_model_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let args = [
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "5",
        "--seed",
        "4",
        "--json",
    ];
    let first = laser_host(&args);
    let second = laser_host(&args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn streamed_text_matches_json_text() {
    // One plain sample is printed as it is generated. The printed text must
    // equal the final text, with stop strings and partial characters too.
    for seed in ["1", "2"] {
        for stop in [None, Some("e")] {
            let mut options = vec!["--max-new-tokens", "12", "--seed", seed];
            if let Some(stop) = stop {
                options.extend(["--stop", stop]);
            }
            let plain = generate_with(&options);
            options.push("--json");
            let json = generate_with(&options);
            assert!(
                plain.status.success() && json.status.success(),
                "{}",
                String::from_utf8_lossy(&plain.stderr)
            );
            let record: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
            let expected = format!("{}\n", record["text"].as_str().unwrap());
            assert_eq!(
                String::from_utf8_lossy(&plain.stdout),
                expected,
                "seed {seed}, stop {stop:?}"
            );
        }
    }
}

#[test]
fn bench_engine_prints_median_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let output = laser_host(&[
        "bench",
        "engine",
        "--model",
        model.to_str().unwrap(),
        "--prefill-tokens",
        "200",
        "--decode-tokens",
        "2",
        "--batch",
        "2",
        "--repeat",
        "2",
        "--skip-matmul",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // "decode batch 1: 812.3 (790.1-830.2) tokens/s (812.3 per sequence)"
    for label in [
        "prefill 200 tokens: ",
        "decode batch 1: ",
        "decode batch 2: ",
    ] {
        let line = stdout.lines().find(|line| line.starts_with(label));
        let line = line.unwrap_or_else(|| panic!("no {label:?} line in {stdout}"));
        assert!(line.contains(") tokens/s"), "{line}");
    }
    assert!(!stdout.contains("matmul"), "{stdout}");
}

#[test]
fn invalid_top_p_is_rejected() {
    let output = generate_with(&["--top-p", "1.5"]);
    assert_clean_failure(&output, "--top-p");
}

#[test]
fn bench_engine_checks_batch_first() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let output = laser_host(&[
        "bench",
        "engine",
        "--model",
        model.to_str().unwrap(),
        "--prefill-tokens",
        "16",
        "--decode-tokens",
        "2",
        "--batch",
        "10000000",
        "--skip-matmul",
    ]);
    assert_clean_failure(&output, "KV cache");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("prefill"), "{stdout}");
}

#[test]
fn empty_stop_string_is_rejected() {
    let output = generate_with(&["--stop", ""]);
    assert_clean_failure(&output, "--stop");
}

#[test]
fn best_of_n_help_omits_training_options() {
    let training = [
        "--pairs",
        "--pair-mode",
        "--beta",
        "--nll-weight",
        "--learning-rate",
    ];
    let best_of_n = laser_host(&["best-of-n", "--help"]);
    assert!(best_of_n.status.success());
    let best_of_n = String::from_utf8_lossy(&best_of_n.stdout);
    let train = laser_host(&["train", "--help"]);
    assert!(train.status.success());
    let train = String::from_utf8_lossy(&train.stdout);
    for option in training {
        let flag = format!("{option} <");
        assert!(!best_of_n.contains(&flag), "best-of-n lists {option}");
        assert!(train.contains(&flag), "train lacks {option}");
    }
    for shared in ["--n <", "--pooling <", "--eval-size <", "--resume <"] {
        assert!(best_of_n.contains(shared), "best-of-n lacks {shared}");
        assert!(train.contains(shared), "train lacks {shared}");
    }
}

#[test]
fn best_of_n_rejects_training_option() {
    let output = laser_host(&["best-of-n", "--learning-rate", "0.1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--learning-rate"), "{stderr}");
}

#[test]
fn negative_number_reaches_validation() {
    // `--temperature -1` is a value, not an unknown flag `-1`, so the
    // error explains the valid range.
    let output = generate_with(&["--temperature", "-1"]);
    assert_clean_failure(
        &output,
        "--temperature must be a finite number >= 0, got -1",
    );
}

#[test]
fn plugins_on_unrelated_command_warns() {
    let output = laser_host(&["--plugins", "no-such-folder", "models", "path"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("--plugins is ignored"), "stderr: {stderr}");
}

#[test]
fn merge_into_nonempty_folder_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("config.json"), "{}").unwrap();
    let output = laser_host(&[
        "merge",
        "--adapter",
        dir.path().join("adapter").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&output, "is not empty");
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert_eq!(config, "{}");
}

#[test]
fn batch_times_n_cannot_wrap() {
    // 2^63 times 2 is 0 in u64 arithmetic.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = laser_host(&[
        "--plugins",
        "no-such-folder",
        "best-of-n",
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "9223372036854775808",
        "--n",
        "2",
    ]);
    assert_clean_failure(&output, "makes 18446744073709551616 sequences");
    assert!(!out.exists());
}

#[test]
fn run_folder_as_adapter_names_policy() {
    let dir = tempfile::tempdir().unwrap();
    let state = r#"{"iteration": 1, "next_batch": 0, "selector_state": null,
        "metrics_lines": 2, "selection_lines": 4, "eval_before": null,
        "eval_per_iteration": [], "policy_dir": "policy-000002"}"#;
    std::fs::write(dir.path().join("state.json"), state).unwrap();
    let run_dir = dir.path().to_str().unwrap();
    let merged = dir.path().join("merged");

    let output = generate_with(&["--adapter", run_dir]);
    assert_clean_failure(&output, "is a run folder");
    let output = laser_host(&[
        "merge",
        "--adapter",
        run_dir,
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_clean_failure(&output, "policy-000002");
}

#[test]
fn full_dpo_rejects_lora_options() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = dir.path().join("full");
    let dpo = |extra: &[&str]| {
        let mut args = vec![
            "dpo",
            "--full",
            "--model",
            model.to_str().unwrap(),
            "--pairs",
            "pairs.jsonl",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        laser_host(&args)
    };
    let output = dpo(&["--rank", "4"]);
    assert_clean_failure(&output, "it would ignore --rank. Drop it");
    let output = dpo(&["--alpha", "8", "--targets", "q_proj"]);
    assert_clean_failure(&output, "it would ignore --alpha and --targets. Drop them");
    assert!(!out.exists());
}
