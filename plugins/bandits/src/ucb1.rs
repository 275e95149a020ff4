//! UCB1 (Auer, Cesa-Bianchi and Fischer, "Finite-time Analysis of the
//! Multiarmed Bandit Problem", Machine Learning 2002). It ignores the
//! context.
//!
//! Each arm is pulled once (in index order), then the chosen arm maximises
//!   mu_k + c * sqrt(2 ln t / n_k)
//! with t the total number of updates and n_k the arm's updates. The
//! original algorithm has c = 1 and rewards in [0, 1].

use serde::{Deserialize, Serialize};

use crate::means::SampleMeans;
use crate::{Arms, Bandit, Result, argmax_enabled, check_non_negative, check_reward};

/// UCB1 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ucb1Config {
    /// Exploration weight c >= 0 on the confidence bonus. Default 1.0.
    pub c: f64,
}

impl Default for Ucb1Config {
    fn default() -> Self {
        Self { c: 1.0 }
    }
}

/// The UCB1 bandit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ucb1 {
    config: Ucb1Config,
    arms: Arms,
    stats: SampleMeans,
}

impl Ucb1 {
    /// Creates a bandit with arms `arm_names`, none pulled.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] for a negative or non-finite c,
    /// [`BanditError::DuplicateArm`] for a repeated name.
    pub fn new<S: AsRef<str>>(config: Ucb1Config, arm_names: &[S]) -> Result<Self> {
        check_non_negative("c", config.c)?;
        let mut bandit = Self {
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

impl Bandit for Ucb1 {
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
        if let Some(arm) = self.stats.first_unpulled(enabled) {
            return Ok(arm);
        }

        // t = total pulls; every enabled n_k >= 1 here, and a disabled arm
        // with n_k = 0 gets an infinite score that the mask ignores.
        let t: u64 = self.stats.pulls.iter().sum();
        let log_t = (t as f64).ln();
        let scores: Vec<f64> = self
            .stats
            .means
            .iter()
            .zip(&self.stats.pulls)
            .map(|(mean, n)| mean + self.config.c * (2.0 * log_t / *n as f64).sqrt())
            .collect();
        Ok(argmax_enabled(&scores, enabled))
    }

    fn update(&mut self, arm: usize, _context: &[f64], reward: f64) -> Result<()> {
        self.arms.check_index(arm)?;
        check_reward(reward)?;
        self.stats.update(arm, reward);
        Ok(())
    }
}
