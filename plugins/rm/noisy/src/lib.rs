//! The `noisy` reward model: the score of a rule-based reward model
//! (`verifier`, `format`, `self-consistency` or `length`) plus Gaussian
//! noise N(0, sigma^2) from a seeded generator. Plugins cannot call each
//! other, so the wrapped model's logic comes from `laser-rm-scoring`.
//!
//! The noise stream depends on the seed and on the order of the scores, so
//! a run that scores the same batches in the same order repeats exactly.

use laser_bandits::Rng;
use laser_plugin_sdk::{PluginInfo, RewardModel, ScoredInstance, export_reward_model};
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
    /// Generator seed. Default 0.
    #[serde(default)]
    seed: u64,
}

fn default_sigma() -> f64 {
    0.25
}

/// The plugin: the wrapped rule, the noise scale and the generator.
struct Noisy {
    base: RuleBased,
    sigma: f64,
    rng: Rng,
}

impl RewardModel for Noisy {
    fn new() -> Self {
        Self {
            base: RuleBased::Verifier,
            sigma: default_sigma(),
            rng: Rng::seed_from_u64(0),
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
        self.rng = Rng::seed_from_u64(config.seed);
        Ok(())
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        let mut scores = laser_rm_glue::rule_scores(&batch, self.base);
        for score in scores.iter_mut().flatten() {
            // s' = s + sigma * N(0, 1)
            *score += self.sigma * self.rng.standard_normal();
        }
        Ok(scores)
    }
}

export_reward_model!(Noisy);
