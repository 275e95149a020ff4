//! LinUCB with disjoint linear models (Li et al., "A Contextual-Bandit
//! Approach to Personalized News Article Recommendation", WWW 2010,
//! Algorithm 1), the selector LASeR uses.
//!
//! Per arm k: A_k = I + sum x x^T and b_k = sum r x over the rounds where k
//! was chosen. The score at context x is
//!   p_k(x) = x^T A_k^-1 b_k + alpha * sqrt(x^T A_k^-1 x)
//! and the arm with the largest score is chosen (lowest index on ties).
//! A_k^-1 is updated by Sherman-Morrison in O(d^2); it is never re-inverted.
//!
//! Prompts of one batch are chosen before any of their rewards is known.
//! With `pending_updates` on (the default), each choice in a batch is
//! followed by a provisional update of the chosen arm with the reward it
//! predicts, x^T theta_k. The arm's estimate stays as it was, but its
//! confidence width at that context shrinks. The next prompts of the batch
//! then spread over arms as sequential choices would: the batch
//! upper-confidence rule of Desautels et al. (JMLR 2014), for linear
//! models. The provisional updates are dropped once the batch is chosen,
//! and only real rewards enter the saved state.

use serde::{Deserialize, Serialize};

use crate::linalg::dot;
use crate::ridge::RidgeArms;
use crate::{Arms, Bandit, Result, argmax_enabled, check_non_negative, check_reward};

/// LinUCB settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinUcbConfig {
    /// Exploration weight alpha on the confidence width. Default 1.0.
    pub alpha: f64,
    /// Context dimension d. Default: unset, taken from the first context.
    pub dimension: Option<usize>,
    /// Within one batch, shrink a chosen arm's width before choosing for
    /// the next prompt. Default true.
    pub pending_updates: bool,
}

impl Default for LinUcbConfig {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            dimension: None,
            pending_updates: true,
        }
    }
}

/// The LinUCB bandit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinUcb {
    config: LinUcbConfig,
    arms: Arms,
    stats: RidgeArms,
}

impl LinUcb {
    /// Creates a bandit with arms `arm_names`, each at A = I, b = 0.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] for a negative or non-finite alpha
    /// or a zero dimension, [`BanditError::DuplicateArm`] for a repeated name.
    pub fn new<S: AsRef<str>>(config: LinUcbConfig, arm_names: &[S]) -> Result<Self> {
        check_non_negative("alpha", config.alpha)?;
        let mut bandit = Self {
            stats: RidgeArms::new(config.dimension)?,
            config,
            arms: Arms::default(),
        };
        for name in arm_names {
            bandit.add_arm(name.as_ref())?;
        }
        Ok(bandit)
    }

    /// Returns the configuration.
    pub fn config(&self) -> &LinUcbConfig {
        &self.config
    }

    /// Returns the context dimension, once fixed.
    pub fn dimension(&self) -> Option<usize> {
        self.stats.dimension()
    }

    /// Returns every arm's score p_k(x) = x^T A_k^-1 b_k + alpha sqrt(x^T A_k^-1 x).
    ///
    /// # Errors
    ///
    /// Context errors: empty, non-finite, or of the wrong dimension.
    pub fn scores(&mut self, context: &[f64]) -> Result<Vec<f64>> {
        self.stats.prepare(context)?;
        Ok(upper_bounds(&self.stats, self.config.alpha, context))
    }

    /// Returns A_k^-1 of arm `arm` (d x d, row-major), once the dimension
    /// is known.
    pub fn inverse(&self, arm: usize) -> Option<&[f64]> {
        self.stats.arms.get(arm).map(|a| a.inverse.as_slice())
    }

    /// Returns b_k of arm `arm`, once the dimension is known.
    pub fn b(&self, arm: usize) -> Option<&[f64]> {
        self.stats.arms.get(arm).map(|a| a.b.as_slice())
    }
}

impl Bandit for LinUcb {
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
        let scores = self.scores(context)?;
        Ok(argmax_enabled(&scores, enabled))
    }

    fn choose_batch_among(
        &mut self,
        contexts: &[Vec<f64>],
        enabled: &[bool],
    ) -> Result<Vec<usize>> {
        if !self.config.pending_updates {
            return contexts
                .iter()
                .map(|x| self.choose_among(x, enabled))
                .collect();
        }
        self.arms.check_mask(enabled)?;
        for x in contexts {
            self.stats.prepare(x)?;
        }
        let mut provisional = self.stats.clone();
        let mut chosen = Vec::with_capacity(contexts.len());
        for x in contexts {
            let arm = argmax_enabled(&upper_bounds(&provisional, self.config.alpha, x), enabled);
            // Observing the predicted reward leaves theta_k unchanged:
            // (A + x x^T)^-1 (b + x x^T theta) = theta when A theta = b.
            let predicted = dot(x, &provisional.arms[arm].theta());
            provisional.update(arm, x, predicted);
            chosen.push(arm);
        }
        Ok(chosen)
    }

    fn update(&mut self, arm: usize, context: &[f64], reward: f64) -> Result<()> {
        self.arms.check_index(arm)?;
        check_reward(reward)?;
        self.stats.prepare(context)?;
        self.stats.update(arm, context, reward);
        Ok(())
    }
}

/// Returns p_k(x) = x^T theta_k + alpha sqrt(x^T A_k^-1 x) for every arm.
fn upper_bounds(stats: &RidgeArms, alpha: f64, x: &[f64]) -> Vec<f64> {
    stats
        .arms
        .iter()
        .map(|arm| {
            // Exploitation: x^T theta_k with theta_k = A_k^-1 b_k.
            let mean = dot(x, &arm.theta());

            // Exploration: alpha * sqrt(x^T A_k^-1 x).
            let width = arm.variance(x).sqrt();
            mean + alpha * width
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BanditError;

    #[test]
    fn untrained_arms_tie_at_alpha_norm() {
        let mut bandit = LinUcb::new(LinUcbConfig::default(), &["a", "b"]).unwrap();
        let scores = bandit.scores(&[3.0, 4.0]).unwrap();
        assert_eq!(scores, vec![5.0, 5.0]);
    }

    #[test]
    fn rewarded_arm_wins() {
        let config = LinUcbConfig {
            alpha: 0.1,
            dimension: Some(2),
            ..LinUcbConfig::default()
        };
        let mut bandit = LinUcb::new(config, &["a", "b"]).unwrap();
        for _ in 0..10 {
            bandit.update(0, &[1.0, 0.0], 0.0).unwrap();
            bandit.update(1, &[1.0, 0.0], 1.0).unwrap();
        }
        assert_eq!(bandit.choose(&[1.0, 0.0]).unwrap(), 1);
    }

    #[test]
    fn batch_spreads_over_untried_arms() {
        let mut bandit = LinUcb::new(LinUcbConfig::default(), &["a", "b", "c"]).unwrap();
        let contexts = vec![vec![0.6, 0.8]; 4];
        let chosen = bandit.choose_batch_among(&contexts, &[true; 3]).unwrap();
        assert_eq!(chosen, vec![0, 1, 2, 0]);
        // The provisional updates leave the saved statistics alone.
        assert_eq!(bandit.inverse(0).unwrap(), &[1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn batch_without_pending_updates_repeats_choice() {
        let config = LinUcbConfig {
            pending_updates: false,
            ..LinUcbConfig::default()
        };
        let mut bandit = LinUcb::new(config, &["a", "b", "c"]).unwrap();
        let contexts = vec![vec![0.6, 0.8]; 4];
        let chosen = bandit.choose_batch_among(&contexts, &[true; 3]).unwrap();
        assert_eq!(chosen, vec![0; 4]);
    }

    #[test]
    fn pending_updates_keep_estimate() {
        let config = LinUcbConfig {
            alpha: 0.0,
            ..LinUcbConfig::default()
        };
        let mut bandit = LinUcb::new(config, &["a", "b"]).unwrap();
        for _ in 0..5 {
            bandit.update(0, &[1.0, 0.0], 1.0).unwrap();
            bandit.update(1, &[1.0, 0.0], 0.2).unwrap();
        }
        // Without exploration the better arm keeps winning inside a batch.
        let contexts = vec![vec![1.0, 0.0]; 3];
        let chosen = bandit.choose_batch_among(&contexts, &[true; 2]).unwrap();
        assert_eq!(chosen, vec![0; 3]);
    }

    #[test]
    fn disabled_arm_skipped() {
        let config = LinUcbConfig {
            alpha: 0.1,
            dimension: Some(1),
            ..LinUcbConfig::default()
        };
        let mut bandit = LinUcb::new(config, &["a", "b"]).unwrap();
        bandit.update(0, &[1.0], 1.0).unwrap();
        assert_eq!(bandit.choose_among(&[1.0], &[false, true]).unwrap(), 1);
    }

    #[test]
    fn wrong_dimension_rejected() {
        let mut bandit = LinUcb::new(LinUcbConfig::default(), &["a"]).unwrap();
        bandit.choose(&[1.0, 2.0]).unwrap();
        let error = bandit.choose(&[1.0]).unwrap_err();
        assert!(matches!(
            error,
            BanditError::DimensionMismatch {
                expected: 2,
                actual: 1
            }
        ));
    }

    #[test]
    fn nan_reward_rejected() {
        let mut bandit = LinUcb::new(LinUcbConfig::default(), &["a"]).unwrap();
        let error = bandit.update(0, &[1.0], f64::NAN).unwrap_err();
        assert!(matches!(
            error,
            BanditError::NonFinite { what: "reward", .. }
        ));
    }

    #[test]
    fn negative_alpha_rejected() {
        let config = LinUcbConfig {
            alpha: -1.0,
            ..LinUcbConfig::default()
        };
        let error = LinUcb::new(config, &["a"]).unwrap_err();
        assert!(matches!(
            error,
            BanditError::InvalidParameter { name: "alpha", .. }
        ));
    }
}
