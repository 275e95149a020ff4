//! Checks, for every selector, that a save/load round trip changes none of
//! the later choices, and that an arm added mid-run is chosen afterwards
//! while the other arms keep their statistics.

use laser_bandits::{
    Bandit, ContextConfig, ContextMap, Ensemble, EnsembleConfig, EpsilonGreedy,
    EpsilonGreedyConfig, Exp3, Exp3Config, Fixed, FixedConfig, LinTs, LinTsConfig, LinUcb,
    LinUcbConfig, NormalizerConfig, Random, RandomConfig, RewardNormalizer, Rng, RoundRobin, Ucb1,
    Ucb1Config,
};

const D: usize = 5;
const NAMES: [&str; 3] = ["verifier", "judge", "length"];

/// A stream of (context, reward-per-arm) pairs shared by both copies.
struct Environment {
    rng: Rng,
}

impl Environment {
    fn new(seed: u64) -> Self {
        Self {
            rng: Rng::seed_from_u64(seed),
        }
    }

    fn context(&mut self) -> Vec<f64> {
        (0..D).map(|_| self.rng.standard_normal()).collect()
    }

    /// Returns a noisy reward in [0, 1] that depends on the arm and the context.
    fn reward(&mut self, arm: usize, context: &[f64]) -> f64 {
        let signal = context[arm % D] * 0.3 + 0.5;
        (signal + 0.1 * self.rng.standard_normal()).clamp(0.0, 1.0)
    }
}

/// Runs `steps` choose/update rounds and returns the choices.
fn run<B: Bandit>(bandit: &mut B, environment: &mut Environment, steps: usize) -> Vec<usize> {
    (0..steps)
        .map(|_| {
            let context = environment.context();
            let arm = bandit.choose(&context).unwrap();
            let reward = environment.reward(arm, &context);
            bandit.update(arm, &context, reward).unwrap();
            arm
        })
        .collect()
}

/// Trains `bandit` for a while, saves and reloads it, then checks that the
/// original and the copy make the same next 200 choices.
fn assert_round_trip<B: Bandit>(mut bandit: B, label: &str) {
    let mut environment = Environment::new(5);
    run(&mut bandit, &mut environment, 300);

    let bytes = bandit.save().unwrap();
    let mut restored = B::load(&bytes).unwrap();
    assert_eq!(
        restored.arms(),
        bandit.arms(),
        "{label}: arms differ after reload"
    );

    let mut environment_a = Environment::new(6);
    let mut environment_b = Environment::new(6);
    let original = run(&mut bandit, &mut environment_a, 200);
    let copy = run(&mut restored, &mut environment_b, 200);
    assert_eq!(original, copy, "{label}: choices differ after reload");
}

#[test]
fn linucb_round_trip() {
    assert_round_trip(
        LinUcb::new(LinUcbConfig::default(), &NAMES).unwrap(),
        "linucb",
    );
}

#[test]
fn lints_round_trip() {
    assert_round_trip(LinTs::new(LinTsConfig::default(), &NAMES).unwrap(), "lints");
}

#[test]
fn exp3_round_trip() {
    assert_round_trip(Exp3::new(Exp3Config::default(), &NAMES).unwrap(), "exp3");
}

#[test]
fn epsilon_greedy_round_trip() {
    let config = EpsilonGreedyConfig {
        epsilon: 0.3,
        seed: 9,
    };
    assert_round_trip(
        EpsilonGreedy::new(config, &NAMES).unwrap(),
        "epsilon-greedy",
    );
}

#[test]
fn ucb1_round_trip() {
    assert_round_trip(Ucb1::new(Ucb1Config::default(), &NAMES).unwrap(), "ucb1");
}

#[test]
fn random_round_trip() {
    assert_round_trip(
        Random::new(RandomConfig { seed: 4 }, &NAMES).unwrap(),
        "random",
    );
}

#[test]
fn round_robin_round_trip() {
    assert_round_trip(RoundRobin::new(&NAMES).unwrap(), "round-robin");
}

#[test]
fn fixed_round_trip() {
    let config = FixedConfig {
        arm: "judge".to_owned(),
    };
    assert_round_trip(Fixed::new(config, &NAMES).unwrap(), "fixed");
}

#[test]
fn ensemble_round_trip() {
    let ensemble = Ensemble::new(EnsembleConfig::default(), &NAMES).unwrap();
    let restored = Ensemble::load(&ensemble.save().unwrap()).unwrap();
    assert_eq!(restored.weights().unwrap(), ensemble.weights().unwrap());
    assert_eq!(restored.config(), ensemble.config());
}

#[test]
fn normalizer_round_trip() {
    let mut normalizer = RewardNormalizer::new(NormalizerConfig::default()).unwrap();
    for i in 0..50 {
        normalizer.normalize(f64::from(i % 7) - 3.0).unwrap();
    }
    let bytes = serde_json::to_vec(&normalizer).unwrap();
    let mut restored: RewardNormalizer = serde_json::from_slice(&bytes).unwrap();
    for reward in [-5.0, -1.0, 0.0, 2.5, 9.0] {
        assert_eq!(
            restored.normalize(reward).unwrap(),
            normalizer.normalize(reward).unwrap()
        );
    }
}

#[test]
fn context_map_round_trip() {
    let config = ContextConfig {
        projection_dim: Some(3),
        ..ContextConfig::default()
    };
    let mut map = ContextMap::new(config).unwrap();
    let embedding = [0.5, -1.0, 2.0, 0.0, 4.0, -3.0];
    let before = map.apply(&embedding).unwrap();
    let mut restored: ContextMap =
        serde_json::from_slice(&serde_json::to_vec(&map).unwrap()).unwrap();
    assert_eq!(restored.apply(&embedding).unwrap(), before);
}

/// Trains on two arms, adds a third, and checks that the new arm is chosen
/// within the next `within` rounds and that the run goes on without error.
fn assert_new_arm_joins<B: Bandit>(mut bandit: B, within: usize, label: &str) {
    let mut environment = Environment::new(8);
    run(&mut bandit, &mut environment, 200);

    let index = bandit.add_arm("late").unwrap();
    assert_eq!(index, 2, "{label}: new arm index");
    assert_eq!(
        bandit.arms().names(),
        ["a", "b", "late"],
        "{label}: arm names"
    );

    let choices = run(&mut bandit, &mut environment, within);
    assert!(
        choices.contains(&2),
        "{label}: new arm not chosen in {within} rounds"
    );
}

#[test]
fn new_arm_joins_mid_run() {
    let names = ["a", "b"];
    assert_new_arm_joins(
        LinUcb::new(LinUcbConfig::default(), &names).unwrap(),
        50,
        "linucb",
    );
    assert_new_arm_joins(
        LinTs::new(LinTsConfig::default(), &names).unwrap(),
        200,
        "lints",
    );
    assert_new_arm_joins(
        Exp3::new(Exp3Config::default(), &names).unwrap(),
        50,
        "exp3",
    );
    let epsilon = EpsilonGreedyConfig::default();
    assert_new_arm_joins(
        EpsilonGreedy::new(epsilon, &names).unwrap(),
        1,
        "epsilon-greedy",
    );
    assert_new_arm_joins(Ucb1::new(Ucb1Config::default(), &names).unwrap(), 1, "ucb1");
    assert_new_arm_joins(
        Random::new(RandomConfig::default(), &names).unwrap(),
        50,
        "random",
    );
    assert_new_arm_joins(RoundRobin::new(&names).unwrap(), 3, "round-robin");
}

#[test]
fn new_arm_keeps_linucb_statistics() {
    let config = LinUcbConfig {
        alpha: 1.0,
        dimension: Some(D),
        ..LinUcbConfig::default()
    };
    let mut bandit = LinUcb::new(config, &["a", "b"]).unwrap();
    let mut environment = Environment::new(10);
    run(&mut bandit, &mut environment, 100);
    let inverse_before = bandit.inverse(0).unwrap().to_vec();

    bandit.add_arm("late").unwrap();
    assert_eq!(bandit.inverse(0).unwrap(), inverse_before.as_slice());

    // The new arm starts at A = I, b = 0.
    let identity: Vec<f64> = (0..D * D)
        .map(|i| if i % (D + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    assert_eq!(bandit.inverse(2).unwrap(), identity.as_slice());
    assert_eq!(bandit.b(2).unwrap(), vec![0.0; D].as_slice());
}

#[test]
fn fixed_arm_added_later() {
    let config = FixedConfig {
        arm: "late".to_owned(),
    };
    let mut bandit = Fixed::new(config, &["a"]).unwrap();
    assert!(
        bandit.choose(&[1.0]).is_err(),
        "fixed arm chosen before it exists"
    );
    bandit.add_arm("late").unwrap();
    assert_eq!(bandit.choose(&[1.0]).unwrap(), 1);
}

#[test]
fn wide_context_rejected() {
    let mut bandit = LinUcb::new(LinUcbConfig::default(), &["a"]).unwrap();
    let wide = vec![0.1; 4096];
    let error = bandit.choose(&wide).unwrap_err();
    assert!(
        error.to_string().contains("projection_dim"),
        "message {error} does not point to the projection"
    );
}
