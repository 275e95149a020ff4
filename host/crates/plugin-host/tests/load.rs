//! Loading: rejected files and manifests, folder scans, hot-add, the
//! compile cache and the CLI reports.

mod support;

use std::sync::Arc;

use laser_plugins::{
    LoadError, LoadedPlugin, PluginDir, PluginErrorKind, PluginHost, StubModelService,
    check_plugin, list_plugins,
};
use support::{edit_manifest, host, install, set_config};
use tempfile::TempDir;

fn load_error(dir: &TempDir, name: &str) -> LoadError {
    let wasm = dir.path().join(format!("{name}.wasm"));
    match host().load(&wasm) {
        Ok(_) => panic!("{name} loaded but should be rejected"),
        Err(error) => error,
    }
}

#[test]
fn wrong_wit_version_rejected() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "wrong-version-rm");

    let error = load_error(&dir, "wrong-version-rm");

    let LoadError::ApiVersion {
        path,
        expected,
        found,
    } = &error
    else {
        panic!("expected a version error, got {error}");
    };
    assert_eq!(path.file_name().unwrap(), "wrong-version-rm.wasm");
    assert_eq!(expected, "laser:plugin@0.1.0");
    assert_eq!(found, "laser:plugin@9.0.0");
    let message = error.to_string();
    assert!(message.contains("wrong-version-rm.wasm"), "{message}");
    assert!(message.contains("laser:plugin@9.0.0"), "{message}");
    assert!(message.contains("laser:plugin@0.1.0"), "{message}");
}

#[test]
fn garbage_file_rejected() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "good-rm");
    std::fs::write(dir.path().join("good-rm.wasm"), b"#!/bin/sh\necho hi\n").unwrap();

    let error = load_error(&dir, "good-rm");

    assert!(matches!(error, LoadError::NotAComponent { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("good-rm.wasm"), "{message}");
    assert!(message.contains("wasm magic bytes"), "{message}");
}

#[test]
fn core_module_rejected() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "good-rm");
    // The smallest core module: magic and version 1, no sections.
    std::fs::write(dir.path().join("good-rm.wasm"), b"\0asm\x01\0\0\0").unwrap();

    let error = load_error(&dir, "good-rm");

    assert!(matches!(error, LoadError::NotAComponent { .. }), "{error}");
    assert!(error.to_string().contains("core wasm module"), "{error}");
}

#[test]
fn precompiled_file_never_loaded() {
    let dir = TempDir::new().unwrap();
    let wasm = install(dir.path(), "good-rm");
    let engine = wasmtime::Engine::default();
    let precompiled = engine
        .precompile_component(&std::fs::read(&wasm).unwrap())
        .unwrap();
    std::fs::write(&wasm, &precompiled).unwrap();

    let error = load_error(&dir, "good-rm");
    assert!(matches!(error, LoadError::Precompiled { .. }), "{error}");

    std::fs::write(dir.path().join("other.cwasm"), &precompiled).unwrap();
    let report = PluginDir::new(dir.path()).scan(&host()).unwrap();
    assert!(report.loaded.is_empty());
    assert_eq!(report.errors.len(), 2);
    assert!(
        report
            .errors
            .iter()
            .all(|e| matches!(e, LoadError::Precompiled { .. }))
    );
}

#[test]
fn manifest_unknown_field_rejected() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "good-rm");
    edit_manifest(dir.path(), "good-rm", |text| {
        text.replace("description", "colour = \"red\"\ndescription")
    });

    let error = load_error(&dir, "good-rm");

    assert!(matches!(error, LoadError::Manifest(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains("good-rm.toml"), "{message}");
    assert!(message.contains("unknown field `colour`"), "{message}");
    assert!(message.contains("line 5"), "{message}");
}

#[test]
fn manifest_missing_field_rejected() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "good-rm");
    edit_manifest(dir.path(), "good-rm", |text| {
        text.replace("api = \"laser:plugin@0.1.0\"\n", "")
    });

    let error = load_error(&dir, "good-rm");

    let message = error.to_string();
    assert!(message.contains("good-rm.toml"), "{message}");
    assert!(message.contains("missing field `api`"), "{message}");
}

#[test]
fn manifest_other_api_rejected() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "good-rm");
    edit_manifest(dir.path(), "good-rm", |text| {
        text.replace("laser:plugin@0.1.0", "laser:plugin@0.2.0")
    });

    let error = load_error(&dir, "good-rm");

    let message = error.to_string();
    assert!(message.contains("\"laser:plugin@0.2.0\""), "{message}");
    assert!(
        message.contains("serves \"laser:plugin@0.1.0\""),
        "{message}"
    );
}

#[test]
fn kind_mismatch_rejected() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "counting-selector");
    edit_manifest(dir.path(), "counting-selector", |text| {
        text.replace("kind = \"selector\"", "kind = \"reward-model\"")
    });

    let error = load_error(&dir, "counting-selector");

    assert!(matches!(error, LoadError::Mismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("kind is reward-model"), "{message}");
    assert!(message.contains("`choose`, not `score`"), "{message}");
}

#[test]
fn configure_error_rejected_at_load() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "good-rm");
    support::set_config(dir.path(), "good-rm", "source = \"vibes\"");

    let error = load_error(&dir, "good-rm");

    let LoadError::Call { error: call, .. } = &error else {
        panic!("expected a call error, got {error}");
    };
    assert!(!call.is_trap());
    assert!(error.to_string().contains("invalid config"), "{error}");
    // The message already includes the failed call, so an error chain
    // printed with `{:#}` must not repeat it.
    let chain = format!("{:#}", anyhow::Error::new(error));
    assert_eq!(chain.matches("invalid config").count(), 1, "{chain}");
}

#[test]
fn oversized_info_rejected_at_load() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "big-info-rm");

    let error = load_error(&dir, "big-info-rm");

    let LoadError::Call { error: call, .. } = &error else {
        panic!("expected a call error, got {error}");
    };
    assert!(
        matches!(call.kind, PluginErrorKind::InvalidOutput(_)),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("big-info-rm.wasm"), "{message}");
    assert!(message.contains("`info` returned"), "{message}");
    assert!(message.contains("shorten its tags"), "{message}");
}

#[test]
fn scan_loads_good_and_reports_bad() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "good-rm");
    install(dir.path(), "counting-selector");
    install(dir.path(), "wrong-version-rm");
    std::fs::write(dir.path().join("orphan.wasm"), b"\0asm").unwrap();
    std::fs::write(dir.path().join("lonely.toml"), "name = \"lonely\"").unwrap();
    std::fs::write(dir.path().join("README.md"), "notes").unwrap();

    let report = PluginDir::new(dir.path()).scan(&host()).unwrap();

    let names: Vec<String> = report.loaded.iter().map(|p| p.meta().label()).collect();
    assert_eq!(names, ["counting-selector@0.1.0", "good-rm@0.1.0"]);
    assert!(matches!(report.loaded[0], LoadedPlugin::Selector(_)));
    assert!(matches!(report.loaded[1], LoadedPlugin::RewardModel(_)));
    let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].contains("lonely.toml: missing component"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("orphan.wasm: missing manifest"),
        "{}",
        errors[1]
    );
    assert!(errors[2].contains("laser:plugin@9.0.0"), "{}", errors[2]);
}

#[test]
fn scan_follows_symlinks() {
    let store = TempDir::new().unwrap();
    let good = install(store.path(), "good-rm");
    let selector = install(store.path(), "counting-selector");
    let dir = TempDir::new().unwrap();
    // The good-rm component is a link, and both counting-selector files are.
    std::os::unix::fs::symlink(&good, dir.path().join("good-rm.wasm")).unwrap();
    std::fs::copy(good.with_extension("toml"), dir.path().join("good-rm.toml")).unwrap();
    std::os::unix::fs::symlink(&selector, dir.path().join("counting-selector.wasm")).unwrap();
    std::os::unix::fs::symlink(
        selector.with_extension("toml"),
        dir.path().join("counting-selector.toml"),
    )
    .unwrap();

    let report = PluginDir::new(dir.path()).scan(&host()).unwrap();
    let names: Vec<String> = report.loaded.iter().map(|p| p.meta().label()).collect();
    let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(names, ["counting-selector@0.1.0", "good-rm@0.1.0"]);
    assert!(errors.is_empty(), "{errors:#?}");

    let listed = list_plugins(dir.path()).unwrap();
    assert_eq!(listed.plugins.len(), 2, "{listed}");
    assert!(listed.errors.is_empty(), "{listed}");
}

#[test]
fn scan_reports_broken_symlink() {
    let dir = TempDir::new().unwrap();
    let wasm = install(dir.path(), "good-rm");
    std::fs::remove_file(&wasm).unwrap();
    let elsewhere = TempDir::new().unwrap();
    let target = elsewhere.path().join("gone.wasm");
    std::os::unix::fs::symlink(&target, &wasm).unwrap();
    let host = host();
    let mut plugins = PluginDir::new(dir.path());

    let first = plugins.scan(&host).unwrap();
    assert!(first.loaded.is_empty());
    assert_eq!(first.errors.len(), 1, "{:#?}", first.errors);
    let error = first.errors[0].to_string();
    assert!(error.contains("good-rm.wasm"), "{error}");
    assert!(error.contains("symbolic link to"), "{error}");
    assert!(error.contains("gone.wasm, which does not exist"), "{error}");
    let again = plugins.rescan(&host).unwrap();
    assert!(
        again.errors.is_empty(),
        "an unchanged link is not reported twice"
    );

    // The link works once its target appears.
    let built = support::built_plugins().join("good_rm.wasm");
    std::fs::copy(built, &target).unwrap();
    let fixed = plugins.rescan(&host).unwrap();
    let names: Vec<String> = fixed.loaded.iter().map(|p| p.meta().label()).collect();
    assert_eq!(names, ["good-rm@0.1.0"]);
    assert!(fixed.errors.is_empty(), "{:#?}", fixed.errors);
}

#[test]
fn rescan_loads_only_new_plugins() {
    let host = host();
    let dir = TempDir::new().unwrap();
    install(dir.path(), "good-rm");
    let mut plugins = PluginDir::new(dir.path());

    let first = plugins.scan(&host).unwrap();
    assert_eq!(first.loaded.len(), 1);

    let unchanged = plugins.rescan(&host).unwrap();
    assert!(unchanged.loaded.is_empty());
    assert!(unchanged.errors.is_empty());

    install(dir.path(), "panic-rm");
    let added = plugins.rescan(&host).unwrap();
    let names: Vec<String> = added.loaded.iter().map(|p| p.meta().label()).collect();
    assert_eq!(names, ["panic-rm@0.1.0"]);
    assert!(added.errors.is_empty());

    // A loaded plugin whose files change is not loaded a second time.
    edit_manifest(dir.path(), "good-rm", |text| {
        text.replace("length\"", "length\"\n")
    });
    let touched = plugins.rescan(&host).unwrap();
    assert!(touched.loaded.is_empty());
    assert_eq!(touched.changed, [dir.path().join("good-rm.toml")]);
    assert!(touched.errors.is_empty(), "{:#?}", touched.errors);

    // The change is reported once.
    let settled = plugins.rescan(&host).unwrap();
    assert!(settled.changed.is_empty());
}

#[test]
fn rescan_retries_fixed_plugin() {
    let host = host();
    let dir = TempDir::new().unwrap();
    let wasm = install(dir.path(), "good-rm");
    let manifest = std::fs::read_to_string(wasm.with_extension("toml")).unwrap();
    std::fs::remove_file(wasm.with_extension("toml")).unwrap();
    let mut plugins = PluginDir::new(dir.path());

    // The component arrived before its manifest.
    let first = plugins.scan(&host).unwrap();
    assert!(first.loaded.is_empty());
    assert!(matches!(first.errors[0], LoadError::MissingManifest { .. }));
    let again = plugins.rescan(&host).unwrap();
    assert!(again.errors.is_empty(), "unchanged files are not retried");

    std::fs::write(wasm.with_extension("toml"), manifest).unwrap();
    let fixed = plugins.rescan(&host).unwrap();
    assert_eq!(fixed.loaded.len(), 1);
    assert!(fixed.errors.is_empty());
}

#[test]
fn scan_rejects_names_differing_in_case() {
    let host = host();
    let dir = TempDir::new().unwrap();
    let wasm = install(dir.path(), "good-rm");
    let mut plugins = PluginDir::new(dir.path());
    let first = plugins.scan(&host).unwrap();
    assert_eq!(first.loaded.len(), 1, "{:#?}", first.errors);

    // "GOOD-RM" sorts first, but "good-rm" loaded first and keeps its name.
    let copy = |name: &str| {
        std::fs::copy(&wasm, dir.path().join(format!("{name}.wasm"))).unwrap();
        let manifest = std::fs::read_to_string(wasm.with_extension("toml")).unwrap();
        let manifest = manifest.replace("name = \"good-rm\"", &format!("name = {name:?}"));
        std::fs::write(dir.path().join(format!("{name}.toml")), manifest).unwrap();
    };
    copy("GOOD-RM");
    let added = plugins.rescan(&host).unwrap();
    assert!(added.loaded.is_empty());
    let errors: Vec<String> = added.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("GOOD-RM.wasm: plugin name \"GOOD-RM\""),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("differs only in case"), "{}", errors[0]);
    assert!(errors[0].contains("good-rm.wasm"), "{}", errors[0]);

    // A fresh listing keeps the first name in file-name order.
    let listed = list_plugins(dir.path()).unwrap();
    let names: Vec<&str> = listed.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["GOOD-RM"], "{listed}");
    assert_eq!(listed.errors.len(), 1, "{listed}");
    assert!(listed.errors[0].contains("good-rm.wasm"), "{listed}");
    assert!(listed.errors[0].contains("GOOD-RM.wasm"), "{listed}");
}

#[test]
fn compile_cache_reused() {
    let cache = TempDir::new().unwrap();
    let dir = TempDir::new().unwrap();
    let wasm = install(dir.path(), "good-rm");
    let new_host = || {
        PluginHost::with_cache_dir(Arc::new(StubModelService), Some(cache.path().to_path_buf()))
            .unwrap()
    };

    let cold = new_host().load_reward_model(&wasm).unwrap();
    let warm = new_host().load_reward_model(&wasm).unwrap();

    assert!(!cold.meta().from_cache);
    assert!(warm.meta().from_cache);
    assert_eq!(cold.digest(), warm.digest());
    assert_eq!(cold.digest().len(), 64);
    let entries: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    let entry = entries[0].as_ref().unwrap().file_name();
    assert!(entry.to_str().unwrap().starts_with(cold.digest()));
}

#[test]
fn corrupt_cache_entry_recompiled() {
    let cache = TempDir::new().unwrap();
    let dir = TempDir::new().unwrap();
    let wasm = install(dir.path(), "good-rm");
    let new_host = || {
        PluginHost::with_cache_dir(Arc::new(StubModelService), Some(cache.path().to_path_buf()))
            .unwrap()
    };
    new_host().load_reward_model(&wasm).unwrap();
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not machine code").unwrap();
    }

    let plugin = new_host().load_reward_model(&wasm).unwrap();
    assert!(!plugin.meta().from_cache);
}

#[test]
fn list_report_shows_plugins() {
    let dir = TempDir::new().unwrap();
    install(dir.path(), "good-rm");
    install(dir.path(), "wrong-version-rm");

    let report = list_plugins(dir.path()).unwrap();
    let text = report.to_string();

    assert_eq!(report.plugins.len(), 1);
    assert_eq!(report.errors.len(), 1);
    assert!(text.contains("1 plugins loaded, 1 rejected"), "{text}");
    assert!(text.contains("good-rm@0.1.0 (reward-model)"), "{text}");
    assert!(text.contains("api:         laser:plugin@0.1.0"), "{text}");
    assert!(text.contains("memory 512 MiB, deadline 30000 ms"), "{text}");
    assert!(text.contains(&report.plugins[0].digest), "{text}");
    assert!(text.contains("rejected: "), "{text}");
}

#[test]
fn check_report_names_problem() {
    let dir = TempDir::new().unwrap();
    let good = install(dir.path(), "good-rm");
    let wrong = install(dir.path(), "wrong-version-rm");

    let report = check_plugin(&good.with_extension("toml")).unwrap();
    assert_eq!(report.name, "good-rm");
    assert_eq!(report.tags, ["test"]);
    assert!(report.to_string().contains("sha256:"));

    let error = check_plugin(&wrong).unwrap_err().to_string();
    assert!(error.contains("wrong-version-rm.wasm"), "{error}");
    assert!(
        error.contains("built against laser:plugin@9.0.0"),
        "{error}"
    );
}

#[test]
fn check_makes_sample_calls() {
    let dir = TempDir::new().unwrap();
    let good = install(dir.path(), "good-rm");
    let report = check_plugin(&good).unwrap();
    assert_eq!(report.sample_calls.len(), 1, "{report}");
    assert!(
        report.sample_calls[0].starts_with("score of 2 prompts with 2 candidates each: ["),
        "{report}"
    );
    assert!(
        report.to_string().contains("  sample:      score"),
        "{report}"
    );

    // The selector's arms are the reward models beside it.
    let selector = install(dir.path(), "counting-selector");
    let report = check_plugin(&selector).unwrap();
    let text = report.to_string();
    assert_eq!(report.sample_calls.len(), 4, "{text}");
    assert_eq!(report.sample_calls[0], "arms good-rm", "{text}");
    assert!(
        text.contains("update of arm good-rm with reward 0.5"),
        "{text}"
    );
}

#[test]
fn check_rejects_plugin_whose_sample_call_fails() {
    let dir = TempDir::new().unwrap();
    let bad = install(dir.path(), "bad-scores-rm");
    set_config(dir.path(), "bad-scores-rm", "mode = \"short\"");
    let error = format!("{:#}", check_plugin(&bad).unwrap_err());
    assert!(
        error.contains("bad-scores-rm loaded, but a sample `score` call"),
        "{error}"
    );
    assert!(
        error.contains("expected 2 scores, one per candidate, got 1"),
        "{error}"
    );
}
