//! Linear Thompson sampling (Agrawal and Goyal, "Thompson Sampling for
//! Contextual Bandits with Linear Payoffs", ICML 2013) with a disjoint
//! model per arm.
//!
//! Each arm keeps the same ridge statistics as LinUCB (A_k = I + sum x x^T,
//! b_k = sum r x). The posterior is theta_k ~ N(A_k^-1 b_k, v^2 A_k^-1), and
//! the chosen arm maximises x^T theta_k over one posterior draw per arm.
//! Only the scalar x^T theta_k is ever needed, and for a fixed x it is
//! distributed as N(x^T A_k^-1 b_k, v^2 x^T A_k^-1 x), so each choice draws
//! one normal per arm in O(d^2) instead of factorising A_k^-1 in O(d^3).

use serde::{Deserialize, Serialize};

use crate::linalg::dot;
use crate::ridge::RidgeArms;
use crate::{Arms, Bandit, Result, Rng, argmax_enabled, check_non_negative, check_reward};

/// Linear Thompson sampling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinTsConfig {
    /// Posterior scale v: the draw's standard deviation at x is
    /// v * sqrt(x^T A_k^-1 x). Default 0.5.
    pub v: f64,
    /// Context dimension d. Default: unset, taken from the first context.
    pub dimension: Option<usize>,
    /// Generator seed. Default 0.
    pub seed: u64,
}

impl Default for LinTsConfig {
    fn default() -> Self {
        Self {
            v: 0.5,
            dimension: None,
            seed: 0,
        }
    }
}

/// The linear Thompson sampling bandit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinTs {
    config: LinTsConfig,
    arms: Arms,
    stats: RidgeArms,
    rng: Rng,
}

impl LinTs {
    /// Creates a bandit with arms `arm_names`, each at A = I, b = 0.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] for a negative or non-finite v or a
    /// zero dimension, [`BanditError::DuplicateArm`] for a repeated name.
    pub fn new<S: AsRef<str>>(config: LinTsConfig, arm_names: &[S]) -> Result<Self> {
        check_non_negative("v", config.v)?;
        let mut bandit = Self {
            stats: RidgeArms::new(config.dimension)?,
            rng: Rng::seed_from_u64(config.seed),
            config,
            arms: Arms::default(),
        };
        for name in arm_names {
            bandit.add_arm(name.as_ref())?;
        }
        Ok(bandit)
    }

    /// Returns the configuration.
    pub fn config(&self) -> &LinTsConfig {
        &self.config
    }
}

impl Bandit for LinTs {
    fn arms(&self) -> &Arms {
        &self.arms
    }

    fn add_arm(&mut self, name: &str) -> Result<usize> {
        let index = self.arms.push(name)?;
        self.stats.add_arm();
        Ok(index)
    }

    fn choose_among(&mut self, context: &[f64], enabled: &[bool]) -> Result<usize> {
        self.arms.check_mask(enabled)?;
        self.stats.prepare(context)?;
        let v = self.config.v;
        let mut draws = Vec::with_capacity(self.stats.arms.len());
        for arm in &self.stats.arms {
            // Posterior mean of x^T theta_k: x^T A_k^-1 b_k.
            let mean = dot(context, &arm.theta());

            // Posterior standard deviation: v * sqrt(x^T A_k^-1 x).
            let deviation = v * arm.variance(context).sqrt();
            draws.push(mean + deviation * self.rng.standard_normal());
        }
        Ok(argmax_enabled(&draws, enabled))
    }

    fn update(&mut self, arm: usize, context: &[f64], reward: f64) -> Result<()> {
        self.arms.check_index(arm)?;
        check_reward(reward)?;
        self.stats.prepare(context)?;
        self.stats.update(arm, context, reward);
        Ok(())
    }
}
