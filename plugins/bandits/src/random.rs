//! The random baseline: a uniformly random arm on every call, from a seeded
//! generator. It ignores the context and the rewards.

use serde::{Deserialize, Serialize};

use crate::{Arms, Bandit, Result, Rng, check_reward};

/// Random-selector settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomConfig {
    /// Generator seed. Default 0.
    pub seed: u64,
}

/// The uniformly random selector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Random {
    arms: Arms,
    rng: Rng,
}

impl Random {
    /// Creates a selector over `arm_names`.
    ///
    /// # Errors
    ///
    /// [`crate::BanditError::DuplicateArm`] for a repeated name.
    pub fn new<S: AsRef<str>>(config: RandomConfig, arm_names: &[S]) -> Result<Self> {
        Ok(Self {
            arms: Arms::new(arm_names)?,
            rng: Rng::seed_from_u64(config.seed),
        })
    }
}

impl Bandit for Random {
    fn arms(&self) -> &Arms {
        &self.arms
    }

    fn add_arm(&mut self, name: &str) -> Result<usize> {
        self.arms.push(name)
    }

    fn choose_among(&mut self, _context: &[f64], enabled: &[bool]) -> Result<usize> {
        self.arms.check_mask(enabled)?;
        let candidates: Vec<usize> = (0..enabled.len()).filter(|k| enabled[*k]).collect();
        Ok(candidates[self.rng.below(candidates.len())])
    }

    fn update(&mut self, arm: usize, _context: &[f64], reward: f64) -> Result<()> {
        self.arms.check_index(arm)?;
        check_reward(reward)
    }
}
