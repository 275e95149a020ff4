//! Selector plugins: arms that join during a run, disabled arms, and the
//! last good state kept across failed updates.

mod support;

use laser_plugins::{ArmInfo, ArmUpdate, PluginErrorKind};
use support::{host, load_selector};

fn arms(count: usize) -> Vec<ArmInfo> {
    (0..count)
        .map(|k| ArmInfo {
            name: format!("rm-{k}"),
            version: "0.1.0".to_string(),
            tags: Vec::new(),
            enabled: true,
        })
        .collect()
}

fn context() -> Vec<f32> {
    vec![0.5; 4]
}

/// Chooses for one context and returns the index of the picked arm.
fn pick(selector: &mut laser_plugins::SelectorPlugin, arms: &[ArmInfo]) -> usize {
    let weights = selector.choose(&[context()], arms).unwrap();
    assert_eq!(weights.len(), 1);
    assert_eq!(weights[0].len(), arms.len());
    weights[0].iter().position(|w| *w == 1.0).unwrap()
}

#[test]
fn new_arm_joins_during_run() {
    let host = host();
    let (_dir, mut selector) = load_selector(&host, "counting-selector", None);
    let two = arms(2);
    assert_eq!(pick(&mut selector, &two), 0);
    selector.update(0, &context(), 1.0).unwrap();
    assert_eq!(pick(&mut selector, &two), 1);
    selector.update(1, &context(), 0.5).unwrap();
    assert_eq!(pick(&mut selector, &two), 0);

    // A third reward model is dropped into the folder: it starts untried,
    // so the selector explores it first.
    let three = arms(3);
    assert_eq!(pick(&mut selector, &three), 2);
    selector.update(2, &context(), 2.0).unwrap();
    assert_eq!(pick(&mut selector, &three), 2);
    assert_eq!(selector.last_good_state().len(), 3 * 16);
}

#[test]
fn disabled_arm_gets_zero_weight() {
    let host = host();
    let (_dir, mut selector) = load_selector(&host, "counting-selector", None);
    let mut arms = arms(2);
    selector.choose(&[context()], &arms).unwrap();
    selector.update(0, &context(), 1.0).unwrap();
    selector.update(1, &context(), 0.0).unwrap();
    arms[0].enabled = false;

    let weights = selector.choose(&[context(), context()], &arms).unwrap();

    assert_eq!(weights, vec![vec![0.0, 1.0], vec![0.0, 1.0]]);
}

#[test]
fn no_enabled_arm_is_error() {
    let host = host();
    let (_dir, mut selector) = load_selector(&host, "counting-selector", None);
    let mut arms = arms(1);
    arms[0].enabled = false;

    let error = selector.choose(&[context()], &arms).unwrap_err();

    let PluginErrorKind::InvalidOutput(reason) = &error.kind else {
        panic!("expected invalid output, got {error}");
    };
    assert!(reason.contains("no enabled arm"), "{reason}");
}

#[test]
fn failed_update_keeps_last_good_state() {
    let host = host();
    let (_dir, mut selector) =
        load_selector(&host, "counting-selector", Some("fail_update_at = 3"));
    selector.choose(&[context()], &arms(2)).unwrap();
    selector.update(0, &context(), 1.0).unwrap();
    selector.update(1, &context(), 2.0).unwrap();
    let good = selector.last_good_state().to_vec();

    let error = selector.update(1, &context(), 5.0).unwrap_err();

    assert_eq!(
        error.kind,
        PluginErrorKind::Guest("update 3 fails on purpose".to_string())
    );
    assert_eq!(selector.last_good_state(), good.as_slice());
    let blocked = selector.choose(&[context()], &arms(2)).unwrap_err();
    assert!(
        matches!(blocked.kind, PluginErrorKind::Disabled(_)),
        "{blocked}"
    );

    selector.restore().unwrap();
    assert_eq!(selector.save_state().unwrap(), good);
    selector.update(0, &context(), 0.0).unwrap();
    assert_eq!(pick(&mut selector, &arms(2)), 1);
}

#[test]
fn trapped_update_keeps_last_good_state() {
    let host = host();
    let (_dir, mut selector) =
        load_selector(&host, "counting-selector", Some("trap_update_at = 2"));
    selector.choose(&[context()], &arms(2)).unwrap();
    selector.update(0, &context(), 1.0).unwrap();
    let good = selector.last_good_state().to_vec();

    let error = selector.update(1, &context(), 3.0).unwrap_err();

    assert!(error.is_trap(), "{error}");
    assert!(
        error.output.contains("update 2 traps on purpose"),
        "{}",
        error.output
    );
    assert_eq!(selector.last_good_state(), good.as_slice());
    selector.restore().unwrap();
    assert_eq!(selector.save_state().unwrap(), good);
}

#[test]
fn failed_batch_keeps_state_before_it() {
    let host = host();
    let (_dir, mut selector) =
        load_selector(&host, "counting-selector", Some("fail_update_at = 3"));
    selector.choose(&[context()], &arms(2)).unwrap();
    selector.update(0, &context(), 1.0).unwrap();
    let good = selector.last_good_state().to_vec();
    let updates: Vec<ArmUpdate> = (0..3)
        .map(|i| ArmUpdate {
            arm: i % 2,
            context: context(),
            reward: 1.0,
        })
        .collect();

    assert!(selector.update_batch(&updates).is_err());
    assert_eq!(selector.last_good_state(), good.as_slice());
}

#[test]
fn bad_update_arguments_rejected() {
    let host = host();
    let (_dir, mut selector) = load_selector(&host, "counting-selector", None);
    selector.choose(&[context()], &arms(2)).unwrap();

    let unknown = selector.update(2, &context(), 1.0).unwrap_err();
    assert!(
        matches!(unknown.kind, PluginErrorKind::InvalidInput(_)),
        "{unknown}"
    );
    let nan = selector.update(0, &context(), f64::NAN).unwrap_err();
    assert!(
        matches!(nan.kind, PluginErrorKind::InvalidInput(_)),
        "{nan}"
    );

    // The caller's mistakes do not stop the selector.
    selector.update(0, &context(), 1.0).unwrap();
}

#[test]
fn state_round_trips() {
    let host = host();
    let (_dir, mut first) = load_selector(&host, "counting-selector", None);
    first.choose(&[context()], &arms(2)).unwrap();
    first.update(1, &context(), 4.0).unwrap();
    let state = first.save_state().unwrap();

    let (_dir2, mut second) = load_selector(&host, "counting-selector", None);
    second.load_state(&state).unwrap();

    assert_eq!(second.save_state().unwrap(), state);
    assert_eq!(second.last_good_state(), state.as_slice());
    let error = second.load_state(&[1, 2, 3]).unwrap_err();
    assert!(matches!(error.kind, PluginErrorKind::Guest(_)), "{error}");
}

#[test]
fn reconfigure_overrides_survive_restore() {
    let host = host();
    let (_dir, mut selector) = load_selector(&host, "counting-selector", None);
    let overrides =
        std::collections::BTreeMap::from([("fail_update_at".to_string(), toml::Value::Integer(2))]);

    selector.reconfigure(&overrides).unwrap();

    selector.choose(&[context()], &arms(2)).unwrap();
    selector.update(0, &context(), 1.0).unwrap();
    let error = selector.update(1, &context(), 2.0).unwrap_err();
    assert_eq!(
        error.kind,
        PluginErrorKind::Guest("update 2 fails on purpose".to_string())
    );
    // The fresh instance counts updates from 1 again and still has the
    // override, so its second update fails too.
    selector.restore().unwrap();
    selector.update(0, &context(), 1.0).unwrap();
    let error = selector.update(1, &context(), 2.0).unwrap_err();
    assert_eq!(
        error.kind,
        PluginErrorKind::Guest("update 2 fails on purpose".to_string())
    );
}

#[test]
fn reconfigure_starts_fresh_state() {
    let host = host();
    let (_dir, mut selector) = load_selector(&host, "counting-selector", None);
    let initial = selector.last_good_state().to_vec();
    selector.choose(&[context()], &arms(2)).unwrap();
    selector.update(0, &context(), 1.0).unwrap();
    assert_ne!(selector.last_good_state(), initial.as_slice());

    selector
        .reconfigure(&std::collections::BTreeMap::new())
        .unwrap();

    assert_eq!(selector.last_good_state(), initial.as_slice());
}
