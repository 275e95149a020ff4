//! Simulates a linear contextual bandit and compares the cumulative regret
//! of LinUCB (and linear Thompson sampling) with that of random choice.
//!
//! Setup: d = 16, 4 arms, each with a true parameter theta_k drawn uniformly
//! on the unit sphere; contexts are uniform on the unit sphere; the reward
//! of arm k at x is x^T theta_k + N(0, 0.1^2). Regret per round is
//! max_j x^T theta_j - x^T theta_chosen, summed over 5,000 rounds.

use laser_bandits::{Bandit, LinTs, LinTsConfig, LinUcb, LinUcbConfig, Random, RandomConfig, Rng};

const D: usize = 16;
const ARMS: usize = 4;
const ROUNDS: usize = 5_000;
const NOISE: f64 = 0.1;

fn unit_vector(rng: &mut Rng) -> Vec<f64> {
    let v: Vec<f64> = (0..D).map(|_| rng.standard_normal()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Runs `bandit` for [`ROUNDS`] rounds on the environment of `seed` and
/// returns its cumulative regret.
fn cumulative_regret(bandit: &mut impl Bandit, seed: u64) -> f64 {
    let mut environment = Rng::seed_from_u64(seed);
    let thetas: Vec<Vec<f64>> = (0..ARMS).map(|_| unit_vector(&mut environment)).collect();
    let mut regret = 0.0;
    for _ in 0..ROUNDS {
        let x = unit_vector(&mut environment);
        let expected: Vec<f64> = thetas.iter().map(|theta| dot(&x, theta)).collect();
        let best = expected.iter().copied().fold(f64::NEG_INFINITY, f64::max);

        let arm = bandit.choose(&x).unwrap();
        let reward = expected[arm] + NOISE * environment.standard_normal();
        bandit.update(arm, &x, reward).unwrap();
        regret += best - expected[arm];
    }
    regret
}

fn arm_names() -> Vec<String> {
    (0..ARMS).map(|k| format!("rm{k}")).collect()
}

#[test]
fn linucb_regret_quarter_of_random() {
    for seed in [1, 2, 3] {
        let config = LinUcbConfig {
            alpha: 0.5,
            dimension: None,
            ..LinUcbConfig::default()
        };
        let mut linucb = LinUcb::new(config, &arm_names()).unwrap();
        let mut random = Random::new(RandomConfig { seed }, &arm_names()).unwrap();
        let linucb_regret = cumulative_regret(&mut linucb, seed);
        let random_regret = cumulative_regret(&mut random, seed);
        let ratio = linucb_regret / random_regret;
        println!(
            "seed {seed}: LinUCB regret {linucb_regret:.1}, random {random_regret:.1}, ratio {ratio:.3}"
        );
        assert!(
            ratio <= 0.25,
            "seed {seed}: LinUCB regret ratio {ratio:.3} above 0.25"
        );
    }
}

#[test]
fn lints_regret_quarter_of_random() {
    for seed in [1, 2, 3] {
        let config = LinTsConfig {
            v: 0.2,
            dimension: None,
            seed,
        };
        let mut lints = LinTs::new(config, &arm_names()).unwrap();
        let mut random = Random::new(RandomConfig { seed }, &arm_names()).unwrap();
        let lints_regret = cumulative_regret(&mut lints, seed);
        let random_regret = cumulative_regret(&mut random, seed);
        let ratio = lints_regret / random_regret;
        println!(
            "seed {seed}: LinTS regret {lints_regret:.1}, random {random_regret:.1}, ratio {ratio:.3}"
        );
        assert!(
            ratio <= 0.25,
            "seed {seed}: LinTS regret ratio {ratio:.3} above 0.25"
        );
    }
}
