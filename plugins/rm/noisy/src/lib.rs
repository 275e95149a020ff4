//! The `noisy` reward model: the score of a rule-based reward model
//! (`verifier`, `format`, `self-consistency` or `length`) plus Gaussian
//! noise N(0, sigma^2). Plugins cannot call each other, so the wrapped
//! model's logic comes from `laser-rm-scoring`.
//!
//! The noise of a candidate is a function of the seed, the instance's id
//! and prompt and the candidate's text alone, not of what was scored
//! before. Reward models keep no saved state, so a run resumed from a
//! checkpoint gets the same noise as one that never stopped, whatever the
//! batch order.

use laser_bandits::Rng;
use laser_plugin_sdk::{Instance, PluginInfo, RewardModel, ScoredInstance, export_reward_model};
use laser_rm_scoring::RuleBased;
use serde::Deserialize;

/// The `[config]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Name of the wrapped reward model. Required.
    base: String,
    /// Standard deviation of the noise, >= 0. Default 0.25.
    #[serde(default = "default_sigma")]
    sigma: f64,
    /// Noise seed. Default 0.
    #[serde(default)]
    seed: u64,
}

fn default_sigma() -> f64 {
    0.25
}

/// The plugin: the wrapped rule, the noise scale and the noise seed.
struct Noisy {
    base: RuleBased,
    sigma: f64,
    seed: u64,
}

impl RewardModel for Noisy {
    fn new() -> Self {
        Self {
            base: RuleBased::Verifier,
            sigma: default_sigma(),
            seed: 0,
        }
    }

    fn info(&self) -> PluginInfo {
        laser_rm_glue::plugin_info(&[], &["noisy", "rule-based", "synthetic"])
    }

    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let config: Config = laser_rm_glue::parse_config(config_json)?;
        self.base = RuleBased::from_name(&config.base).ok_or_else(|| {
            format!(
                "invalid `base` {:?}: expected \"verifier\", \"format\", \"self-consistency\" \
                 or \"length\"",
                config.base
            )
        })?;
        if !(config.sigma.is_finite() && config.sigma >= 0.0) {
            return Err(format!(
                "invalid `sigma` {}: expected a finite number >= 0",
                config.sigma
            ));
        }
        self.sigma = config.sigma;
        self.seed = config.seed;
        Ok(())
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        let mut scores = laser_rm_glue::rule_scores(&batch, self.base);
        for (item, row) in batch.iter().zip(&mut scores) {
            for (candidate, score) in item.candidates.iter().zip(row.iter_mut()) {
                // s' = s + sigma * N(0, 1)
                *score += self.sigma * standard_normal_for(self.seed, &item.instance, candidate);
            }
        }
        Ok(scores)
    }
}

/// Returns the standard normal noise of `candidate` for `instance`: a
/// Box-Muller sample from a generator seeded with a hash of `seed`, the
/// instance's id and prompt, and the candidate's text. Two equal candidates
/// of one instance therefore get equal noise.
fn standard_normal_for(seed: u64, instance: &Instance, candidate: &str) -> f64 {
    let mut hash = Fnv1a::new();
    hash.write(&seed.to_le_bytes());
    for field in [instance.id.as_str(), instance.prompt.as_str(), candidate] {
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        hash.write(&(field.len() as u64).to_le_bytes());
        hash.write(field.as_bytes());
    }
    // The generator's SplitMix64 seeding mixes the hash's bits, so hashes
    // that differ in a few bits still give unrelated samples.
    Rng::seed_from_u64(hash.finish()).standard_normal()
}

/// The 64-bit FNV-1a hash (Fowler, Noll and Vo), written out here because
/// the noise must not change with the Rust version, as `std`'s
/// `DefaultHasher` may.
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

export_reward_model!(Noisy);

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns a `noisy` configured with `config_json`.
    fn noisy(config_json: &str) -> Noisy {
        let mut plugin = Noisy::new();
        plugin.configure(config_json).unwrap();
        plugin
    }

    /// Builds instance `i` with a reference answer and candidates that the
    /// verifier scores 1 and 0.
    fn item(i: usize) -> ScoredInstance {
        ScoredInstance {
            instance: Instance {
                id: format!("gsm8k-{i}"),
                prompt: format!("What is {i} + 1?"),
                reference: Some((i + 1).to_string()),
                category: Some("math".to_owned()),
            },
            candidates: vec![format!("The answer is {}.", i + 1), "No idea.".to_owned()],
        }
    }

    fn batch(range: std::ops::Range<usize>) -> Vec<ScoredInstance> {
        range.map(item).collect()
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Widely checked FNV-1a 64 values. The empty input gives the offset
        // basis.
        let hash = |text: &str| {
            let mut hash = Fnv1a::new();
            hash.write(text.as_bytes());
            hash.finish()
        };
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn resumed_run_gets_same_noise() {
        let config = r#"{"base": "verifier", "sigma": 0.5, "seed": 7}"#;
        let mut uninterrupted = noisy(config);
        uninterrupted.score(batch(0..4)).unwrap();
        let second = uninterrupted.score(batch(4..8)).unwrap();

        // A resumed run starts a fresh plugin at the second batch.
        let mut resumed = noisy(config);
        assert_eq!(resumed.score(batch(4..8)).unwrap(), second);
    }

    #[test]
    fn noise_ignores_batch_order() {
        let mut plugin = noisy(r#"{"base": "verifier", "seed": 3}"#);
        let forward = plugin.score(batch(0..6)).unwrap();
        let mut reversed_batch = batch(0..6);
        reversed_batch.reverse();
        let mut reversed = plugin.score(reversed_batch).unwrap();
        reversed.reverse();
        assert_eq!(reversed, forward);
    }

    #[test]
    fn zero_sigma_gives_base_scores() {
        let mut plugin = noisy(r#"{"base": "verifier", "sigma": 0.0}"#);
        let scores = plugin.score(batch(0..3)).unwrap();
        assert_eq!(scores, vec![vec![1.0, 0.0]; 3]);
    }

    #[test]
    fn noise_depends_on_seed() {
        let mut seed_0 = noisy(r#"{"base": "verifier", "seed": 0}"#);
        let mut seed_1 = noisy(r#"{"base": "verifier", "seed": 1}"#);
        assert_ne!(
            seed_0.score(batch(0..4)).unwrap(),
            seed_1.score(batch(0..4)).unwrap()
        );
    }

    #[test]
    fn noise_depends_on_candidate_and_instance() {
        let instance = item(0).instance;
        let a = standard_normal_for(0, &instance, "The answer is 1.");
        let b = standard_normal_for(0, &instance, "The answer is 1!");
        assert_ne!(a, b);
        let other = Instance {
            id: "gsm8k-other".to_owned(),
            ..instance.clone()
        };
        assert_ne!(a, standard_normal_for(0, &other, "The answer is 1."));
        assert_eq!(a, standard_normal_for(0, &instance, "The answer is 1."));
    }

    #[test]
    fn noise_is_standard_normal() {
        // 20,000 samples: the standard error of the mean is about 0.007
        // and that of the variance about 0.01, so these bounds hold with a
        // wide margin for a true N(0, 1).
        let instance = item(0).instance;
        let samples: Vec<f64> = (0..20_000)
            .map(|k| standard_normal_for(0, &instance, &format!("candidate {k}")))
            .collect();
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let variance = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let within_one = samples.iter().filter(|x| x.abs() < 1.0).count() as f64 / n;
        assert!(mean.abs() < 0.04, "mean {mean}");
        assert!((variance - 1.0).abs() < 0.05, "variance {variance}");
        // P(|Z| < 1) = 0.6827 for a standard normal Z.
        assert!(
            (within_one - 0.6827).abs() < 0.02,
            "share within 1: {within_one}"
        );
    }

    #[test]
    fn invalid_config_rejected() {
        let mut plugin = Noisy::new();
        let message = plugin.configure(r#"{"base": "judge"}"#).unwrap_err();
        assert!(message.contains("invalid `base` \"judge\""), "{message}");
        let message = plugin
            .configure(r#"{"base": "verifier", "sigma": -1.0}"#)
            .unwrap_err();
        assert!(message.contains("invalid `sigma` -1"), "{message}");
    }
}
