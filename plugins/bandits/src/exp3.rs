//! Exp3 for adversarial bandits (Auer et al., "The Nonstochastic Multiarmed
//! Bandit Problem", SIAM J. Computing 2002). It ignores the context.
//!
//! With K arms and log-weights l_k, the choice probabilities are
//!   p_k = (1 - gamma) * exp(l_k) / sum_j exp(l_j) + gamma / K
//! and after reward r in [0, 1] for the chosen arm k,
//!   l_k += gamma * (r / p_k) / K.
//! Rewards outside [0, 1] are clamped into it, so pass normalised rewards.

use serde::{Deserialize, Serialize};

use crate::{Arms, Bandit, BanditError, Result, Rng, check_reward};

/// Exp3 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Exp3Config {
    /// Exploration rate gamma in (0, 1]. Default 0.1.
    pub gamma: f64,
    /// Generator seed. Default 0.
    pub seed: u64,
}

impl Default for Exp3Config {
    fn default() -> Self {
        Self {
            gamma: 0.1,
            seed: 0,
        }
    }
}

/// The Exp3 bandit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exp3 {
    config: Exp3Config,
    arms: Arms,
    /// Log-weights l_k, kept in log space so that they cannot overflow.
    log_weights: Vec<f64>,
    rng: Rng,
}

impl Exp3 {
    /// Creates a bandit with arms `arm_names`, all at equal weight.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] unless 0 < gamma <= 1,
    /// [`BanditError::DuplicateArm`] for a repeated name.
    pub fn new<S: AsRef<str>>(config: Exp3Config, arm_names: &[S]) -> Result<Self> {
        if !(config.gamma > 0.0 && config.gamma <= 1.0) {
            return Err(BanditError::InvalidParameter {
                name: "gamma",
                value: config.gamma.to_string(),
                reason: "expected 0 < gamma <= 1",
            });
        }
        let mut bandit = Self {
            rng: Rng::seed_from_u64(config.seed),
            config,
            arms: Arms::default(),
            log_weights: Vec::new(),
        };
        for name in arm_names {
            bandit.add_arm(name.as_ref())?;
        }
        Ok(bandit)
    }

    /// Returns the choice probabilities p_k.
    pub fn probabilities(&self) -> Vec<f64> {
        let k = self.log_weights.len() as f64;
        let gamma = self.config.gamma;

        // Softmax of the log-weights, shifted by the maximum for stability.
        let max = self
            .log_weights
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = self.log_weights.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = weights.iter().sum();

        // p_k = (1 - gamma) w_k / sum w + gamma / K
        weights
            .iter()
            .map(|w| (1.0 - gamma) * w / total + gamma / k)
            .collect()
    }
}

impl Bandit for Exp3 {
    fn arms(&self) -> &Arms {
        &self.arms
    }

    /// Adds an arm at the largest current log-weight, so that a new reward
    /// model is tried at least as often as the current favourite.
    fn add_arm(&mut self, name: &str) -> Result<usize> {
        let index = self.arms.push(name)?;
        let max = self.log_weights.iter().copied().fold(0.0, f64::max);
        self.log_weights.push(max);
        Ok(index)
    }

    /// Samples from p_k restricted to the enabled arms and renormalised.
    fn choose_among(&mut self, _context: &[f64], enabled: &[bool]) -> Result<usize> {
        self.arms.check_mask(enabled)?;
        let probabilities = self.probabilities();
        let total: f64 = probabilities
            .iter()
            .zip(enabled)
            .filter(|(_, on)| **on)
            .map(|(p, _)| p)
            .sum();

        // Inverse-CDF sampling; the last enabled arm absorbs rounding.
        let u = self.rng.uniform() * total;
        let mut cumulative = 0.0;
        let mut last_enabled = 0;
        for (index, p) in probabilities.iter().enumerate() {
            if !enabled[index] {
                continue;
            }
            last_enabled = index;
            cumulative += p;
            if u < cumulative {
                return Ok(index);
            }
        }
        Ok(last_enabled)
    }

    /// Applies the importance-weighted update with the current p_k over all
    /// arms.
    // NOTE: the choice probability may differ from this p_k when several
    // choices precede their updates or when arms were disabled at the
    // choice, which biases the estimate r / p_k slightly.
    fn update(&mut self, arm: usize, _context: &[f64], reward: f64) -> Result<()> {
        self.arms.check_index(arm)?;
        check_reward(reward)?;
        let k = self.log_weights.len() as f64;
        let p = self.probabilities()[arm];

        // Importance-weighted reward estimate r / p_k.
        let estimate = reward.clamp(0.0, 1.0) / p;

        // l_k += gamma * estimate / K
        self.log_weights[arm] += self.config.gamma * estimate / k;
        Ok(())
    }
}
