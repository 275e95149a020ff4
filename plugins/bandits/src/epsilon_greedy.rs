//! Epsilon-greedy: with probability epsilon a uniformly random arm,
//! otherwise the arm with the best mean reward so far. It ignores the
//! context. Arms never pulled are tried first, in index order.

use serde::{Deserialize, Serialize};

use crate::means::SampleMeans;
use crate::{Arms, Bandit, BanditError, Result, Rng, argmax_enabled, check_reward};

/// Epsilon-greedy settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EpsilonGreedyConfig {
    /// Probability epsilon in [0, 1] of a uniformly random arm. Default 0.1.
    pub epsilon: f64,
    /// Generator seed. Default 0.
    pub seed: u64,
}

impl Default for EpsilonGreedyConfig {
    fn default() -> Self {
        Self {
            epsilon: 0.1,
            seed: 0,
        }
    }
}

/// The epsilon-greedy bandit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpsilonGreedy {
    config: EpsilonGreedyConfig,
    arms: Arms,
    stats: SampleMeans,
    rng: Rng,
}

impl EpsilonGreedy {
    /// Creates a bandit with arms `arm_names`, none pulled.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] unless 0 <= epsilon <= 1,
    /// [`BanditError::DuplicateArm`] for a repeated name.
    pub fn new<S: AsRef<str>>(config: EpsilonGreedyConfig, arm_names: &[S]) -> Result<Self> {
        if !(0.0..=1.0).contains(&config.epsilon) {
            return Err(BanditError::InvalidParameter {
                name: "epsilon",
                value: config.epsilon.to_string(),
                reason: "expected 0 <= epsilon <= 1",
            });
        }
        let mut bandit = Self {
            rng: Rng::seed_from_u64(config.seed),
            config,
            arms: Arms::default(),
            stats: SampleMeans::default(),
        };
        for name in arm_names {
            bandit.add_arm(name.as_ref())?;
        }
        Ok(bandit)
    }
}

impl Bandit for EpsilonGreedy {
    fn arms(&self) -> &Arms {
        &self.arms
    }

    fn add_arm(&mut self, name: &str) -> Result<usize> {
        let index = self.arms.push(name)?;
        self.stats.add_arm();
        Ok(index)
    }

    fn choose_among(&mut self, _context: &[f64], enabled: &[bool]) -> Result<usize> {
        self.arms.check_mask(enabled)?;

        // Both draws happen on every call, so the generator's stream does
        // not depend on which branch is taken.
        let explore = self.rng.uniform() < self.config.epsilon;
        let candidates: Vec<usize> = (0..enabled.len()).filter(|k| enabled[*k]).collect();
        let random_arm = candidates[self.rng.below(candidates.len())];

        if let Some(arm) = self.stats.first_unpulled(enabled) {
            return Ok(arm);
        }
        if explore {
            Ok(random_arm)
        } else {
            Ok(argmax_enabled(&self.stats.means, enabled))
        }
    }

    fn update(&mut self, arm: usize, _context: &[f64], reward: f64) -> Result<()> {
        self.arms.check_index(arm)?;
        check_reward(reward)?;
        self.stats.update(arm, reward);
        Ok(())
    }
}
