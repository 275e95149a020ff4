//! Hostile reward models against the sandbox: each attack fails with a
//! clear error, and a good reward model in the same host keeps working.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use laser_plugins::{
    MAX_GUEST_MESSAGE_CHARS, ModelService, PluginErrorKind, PluginHost, StubModelService,
};
use support::{assert_good_rm_works, batch, host, load_rm};

#[test]
fn infinite_loop_interrupted_at_deadline() {
    let host = host();
    let (_good_dir, mut good) = load_rm(&host, "good-rm", None);
    let (_dir, mut spin) = load_rm(&host, "spin-rm", None);
    let deadline = Duration::from_millis(spin.meta().limits().call_deadline_ms);

    let started = Instant::now();
    let error = spin.score(&batch(1)).unwrap_err();
    let elapsed = started.elapsed();

    assert_eq!(error.kind, PluginErrorKind::Timeout { deadline_ms: 500 });
    assert!(error.is_trap());
    assert!(elapsed >= deadline, "interrupted early, after {elapsed:?}");
    assert!(
        elapsed < deadline + Duration::from_secs(1),
        "interrupted {elapsed:?} after the call started, deadline {deadline:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("plugin spin-rm@0.1.0: timed out"),
        "{message}"
    );
    assert_good_rm_works(&mut good);
}

#[test]
fn sleep_interrupted_at_deadline() {
    let host = host();
    let (_dir, mut sleeper) = load_rm(&host, "sleep-rm", None);

    let started = Instant::now();
    let error = sleeper.score(&batch(1)).unwrap_err();
    let elapsed = started.elapsed();

    assert_eq!(error.kind, PluginErrorKind::Timeout { deadline_ms: 500 });
    assert!(elapsed >= Duration::from_millis(500), "after {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "after {elapsed:?}");
}

#[test]
fn failed_plugin_disabled_for_run() {
    let host = host();
    let (_dir, mut spin) = load_rm(&host, "spin-rm", None);
    spin.score(&batch(1)).unwrap_err();

    let started = Instant::now();
    let error = spin.score(&batch(1)).unwrap_err();
    assert!(
        matches!(error.kind, PluginErrorKind::Disabled(_)),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(spin.disabled_reason().unwrap().contains("timed out"));
}

#[test]
fn huge_allocation_rejected_at_memory_cap() {
    let host = host();
    let (_good_dir, mut good) = load_rm(&host, "good-rm", None);
    let (_dir, mut alloc) = load_rm(&host, "alloc-rm", None);

    let error = alloc.score(&batch(1)).unwrap_err();

    let PluginErrorKind::MemoryLimit {
        limit_mib,
        requested,
    } = error.kind
    else {
        panic!("expected a memory-limit error, got {error}");
    };
    assert_eq!(limit_mib, 64);
    assert!(requested > 64 << 20, "requested {requested} bytes");
    assert!(
        error.output.contains("memory allocation"),
        "{}",
        error.output
    );
    assert!(error.to_string().contains("alloc-rm@0.1.0"), "{error}");
    assert_good_rm_works(&mut good);
}

/// Loads escape-rm with `config` and asserts that its attempt failed.
fn assert_escape_fails(config: &str) {
    let host = host();
    let (_dir, mut escape) = load_rm(&host, "escape-rm", Some(config));
    let result = escape.score(&batch(1));
    assert!(result.is_ok(), "{config}: {}", result.unwrap_err());
    let output = escape.last_output();
    assert!(output.contains(" failed: "), "{config}: output {output:?}");
    eprintln!("{config}: {}", output.trim());
}

#[test]
fn file_read_fails() {
    assert_escape_fails(r#"attempt = "file""#);
}

#[test]
fn directory_listing_fails() {
    assert_escape_fails(r#"attempt = "dir""#);
}

#[test]
fn file_write_fails() {
    let _ = std::fs::remove_file("/tmp/escape-rm");
    assert_escape_fails(r#"attempt = "write""#);
    assert!(!std::path::Path::new("/tmp/escape-rm").exists());
}

#[test]
fn env_vars_hidden() {
    // The test process has variables (cargo sets `CARGO_*`), none of which
    // may reach the plugin.
    assert!(std::env::vars().next().is_some());
    assert_escape_fails(r#"attempt = "env""#);
}

#[test]
fn args_hidden() {
    assert_escape_fails(r#"attempt = "args""#);
}

#[test]
fn tcp_connect_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();

    assert_escape_fails(&format!("attempt = \"socket\"\naddress = \"{address}\""));
    assert!(
        listener.accept().is_err(),
        "the plugin reached the listener"
    );
}

#[test]
fn udp_send_fails() {
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = receiver.local_addr().unwrap();
    receiver.set_nonblocking(true).unwrap();

    assert_escape_fails(&format!("attempt = \"udp\"\naddress = \"{address}\""));
    let mut buffer = [0u8; 16];
    assert!(receiver.recv(&mut buffer).is_err(), "a datagram arrived");
}

#[test]
fn name_lookup_fails() {
    assert_escape_fails(r#"attempt = "dns""#);
}

#[test]
fn panic_message_reaches_user() {
    let host = host();
    let (_good_dir, mut good) = load_rm(&host, "good-rm", None);
    let (_dir, mut panicking) = load_rm(&host, "panic-rm", None);

    let error = panicking.score(&batch(2)).unwrap_err();

    assert!(matches!(error.kind, PluginErrorKind::Trap(_)), "{error}");
    assert!(error.is_trap());
    assert!(
        error.output.contains("panic-rm cannot score 2 instances"),
        "output: {}",
        error.output
    );
    let message = error.to_string();
    assert!(
        message.starts_with("plugin panic-rm@0.1.0: trapped"),
        "{message}"
    );
    assert!(
        message.contains("panic-rm cannot score 2 instances"),
        "{message}"
    );
    assert!(!message.contains("RUST_BACKTRACE"), "{message}");
    let reason = panicking.disabled_reason().unwrap();
    assert!(reason.starts_with("trapped"), "{reason}");
    assert!(
        reason.contains("panic-rm cannot score 2 instances"),
        "{reason}"
    );
    assert!(!reason.contains('\n'), "{reason}");
    assert_good_rm_works(&mut good);
}

/// Loads bad-scores-rm in `mode`, scores a batch of two and returns the
/// error.
fn bad_scores_error(mode: &str) -> laser_plugins::PluginError {
    let host = host();
    let config = format!("mode = \"{mode}\"");
    let (_dir, mut bad) = load_rm(&host, "bad-scores-rm", Some(&config));
    let error = bad.score(&batch(2)).unwrap_err();
    assert!(bad.disabled_reason().is_some(), "{mode}: not disabled");
    error
}

#[test]
fn nan_score_rejected() {
    let error = bad_scores_error("nan");
    let PluginErrorKind::InvalidOutput(reason) = &error.kind else {
        panic!("expected invalid output, got {error}");
    };
    assert!(
        reason.contains("score NaN is not a finite number"),
        "{reason}"
    );
}

#[test]
fn infinite_score_rejected() {
    let error = bad_scores_error("infinite");
    let PluginErrorKind::InvalidOutput(reason) = &error.kind else {
        panic!("expected invalid output, got {error}");
    };
    assert!(
        reason.contains("score inf is not a finite number"),
        "{reason}"
    );
}

#[test]
fn extreme_score_rejected() {
    // Finite, but its square overflows the ensemble's running statistics.
    let error = bad_scores_error("extreme");
    let PluginErrorKind::InvalidOutput(reason) = &error.kind else {
        panic!("expected invalid output, got {error}");
    };
    assert!(reason.contains("magnitude at most 1e30"), "{reason}");
}

#[test]
fn short_row_rejected() {
    let error = bad_scores_error("short");
    let PluginErrorKind::InvalidOutput(reason) = &error.kind else {
        panic!("expected invalid output, got {error}");
    };
    assert!(reason.contains("expected 2 scores"), "{reason}");
    assert!(reason.contains("got 1"), "{reason}");
}

#[test]
fn missing_row_rejected() {
    let error = bad_scores_error("rows");
    let PluginErrorKind::InvalidOutput(reason) = &error.kind else {
        panic!("expected invalid output, got {error}");
    };
    assert!(reason.contains("expected 2 rows"), "{reason}");
}

#[test]
fn huge_output_rejected() {
    let error = bad_scores_error("huge");
    assert!(
        matches!(
            error.kind,
            PluginErrorKind::OutputTooLarge { limit: 65536, .. }
        ),
        "{error}"
    );
}

#[test]
fn guest_error_kept_apart_from_trap() {
    let error = bad_scores_error("error");
    assert_eq!(
        error.kind,
        PluginErrorKind::Guest("bad-scores-rm refuses on purpose".to_string())
    );
    assert!(!error.is_trap());
    assert_eq!(
        error.to_string(),
        "plugin bad-scores-rm@0.1.0: returned an error: bad-scores-rm \
         refuses on purpose"
    );
}

#[test]
fn long_guest_error_cut_and_escaped() {
    let error = bad_scores_error("long-error");
    let PluginErrorKind::Guest(message) = &error.kind else {
        panic!("expected a guest error, got {error}");
    };
    let max_chars = MAX_GUEST_MESSAGE_CHARS + 100;
    assert!(
        message.chars().count() < max_chars,
        "{} chars",
        message.len()
    );
    assert!(message.starts_with("\\u{1b}[2J"), "{}", &message[..20]);
    assert!(!message.contains('\x1b'), "escape character kept");
    assert!(
        message.ends_with("more characters dropped]"),
        "{}",
        &message[message.len() - 60..]
    );
}

#[test]
fn exit_call_reported_as_trap() {
    let error = bad_scores_error("exit");
    assert!(error.is_trap(), "{error}");
    let message = error.to_string();
    assert!(message.contains("called exit with status 1"), "{message}");
    assert!(!message.contains("wasm backtrace"), "{message}");
}

#[test]
fn good_rm_survives_bad_neighbours() {
    let host = host();
    let (_good_dir, mut good) = load_rm(&host, "good-rm", None);
    let (_a, mut spin) = load_rm(&host, "spin-rm", None);
    let (_b, mut panicking) = load_rm(&host, "panic-rm", None);
    let (_c, mut bad) = load_rm(&host, "bad-scores-rm", None);

    for _ in 0..2 {
        assert!(spin.score(&batch(1)).is_err());
        assert!(panicking.score(&batch(1)).is_err());
        assert!(bad.score(&batch(2)).is_err());
        assert_good_rm_works(&mut good);
    }
}

#[test]
fn oversized_input_rejected_before_call() {
    let host = host();
    let dir = tempfile::TempDir::new().unwrap();
    let wasm = support::install(dir.path(), "good-rm");
    support::edit_manifest(dir.path(), "good-rm", |text| {
        text.replace("[config]", "[limits]\nmax_input_bytes = 100\n\n[config]")
    });
    let mut good = host.load_reward_model(&wasm).unwrap();

    let error = good.score(&batch(4)).unwrap_err();
    assert!(
        matches!(
            error.kind,
            PluginErrorKind::InputTooLarge { limit: 100, .. }
        ),
        "{error}"
    );
    assert!(good.disabled_reason().is_none());
    let scores = good.score(&batch(1)).unwrap();
    assert_eq!(scores, vec![vec![5.0, 3.0]]);
}

#[test]
fn models_import_serves_logprobs() {
    let host = host();
    let (_dir, mut good) = load_rm(&host, "good-rm", Some(r#"source = "logprobs""#));
    // The stub gives each word of a candidate log-probability -1.
    let scores = good.score(&batch(1)).unwrap();
    assert_eq!(scores, vec![vec![-3.0, -2.0]]);
}

#[test]
fn model_outside_manifest_rejected() {
    let host = host();
    let dir = tempfile::TempDir::new().unwrap();
    let wasm = support::install(dir.path(), "good-rm");
    support::edit_manifest(dir.path(), "good-rm", |text| {
        text.replace("models = [\"policy\"]", "models = [\"judge\"]")
            .replace("source = \"length\"", "source = \"logprobs\"")
    });
    let mut good = host.load_reward_model(&wasm).unwrap();

    let error = good.score(&batch(1)).unwrap_err();
    let PluginErrorKind::Guest(message) = &error.kind else {
        panic!("expected a guest error, got {error}");
    };
    assert!(message.contains("\"policy\" is not in"), "{message}");
}

/// Stub models whose `logprobs` takes 200 ms, like a slow engine.
struct SlowModels;

impl ModelService for SlowModels {
    fn logprobs(
        &self,
        model: &str,
        requests: &[laser_plugins::Continuation],
    ) -> anyhow::Result<Vec<Vec<f32>>> {
        std::thread::sleep(Duration::from_millis(200));
        StubModelService.logprobs(model, requests)
    }

    fn generate(
        &self,
        model: &str,
        prompts: &[String],
        max_tokens: u32,
        temperature: f32,
    ) -> anyhow::Result<Vec<String>> {
        StubModelService.generate(model, prompts, max_tokens, temperature)
    }

    fn hidden_states(&self, model: &str, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        StubModelService.hidden_states(model, texts)
    }

    fn apply_chat_template(&self, model: &str, user: &str) -> anyhow::Result<String> {
        StubModelService.apply_chat_template(model, user)
    }
}

#[test]
fn model_time_limit_fails_call() {
    let cache = tempfile::TempDir::new().unwrap();
    let host =
        PluginHost::with_cache_dir(Arc::new(SlowModels), Some(cache.path().to_path_buf())).unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let wasm = support::install(dir.path(), "good-rm");
    support::edit_manifest(dir.path(), "good-rm", |text| {
        text.replace("source = \"length\"", "source = \"logprobs\"")
            .replace("[config]", "[limits]\nmodel_time_ms = 100\n\n[config]")
    });
    let mut good = host.load_reward_model(&wasm).unwrap();

    let error = good.score(&batch(1)).unwrap_err();
    let PluginErrorKind::Guest(message) = &error.kind else {
        panic!("expected a guest error, got {error}");
    };
    assert!(message.contains("`limits.model_time_ms`"), "{message}");
    assert!(message.contains("100 ms"), "{message}");
}
