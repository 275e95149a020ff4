//! The LASeR bandit-reward normaliser: clip a raw reward (the negative
//! training loss) to the 20th-80th percentiles of the rewards seen so far,
//! then scale that range to [0, 1].

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{BanditError, Result, check_reward};

/// Normaliser settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizerConfig {
    /// Lower clipping percentile, in [0, 100). Default 20.
    pub lower_percentile: f64,
    /// Upper clipping percentile, in (lower, 100]. Default 80.
    pub upper_percentile: f64,
    /// How many of the most recent rewards the percentiles are taken over.
    /// Default 4096.
    pub window: usize,
}

impl Default for NormalizerConfig {
    fn default() -> Self {
        Self {
            lower_percentile: 20.0,
            upper_percentile: 80.0,
            window: 4096,
        }
    }
}

/// Maps raw rewards to [0, 1] by their rank among recent rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardNormalizer {
    config: NormalizerConfig,
    history: VecDeque<f64>,
}

impl RewardNormalizer {
    /// Creates a normaliser with no history.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] unless
    /// 0 <= lower < upper <= 100 and the window is at least 1.
    pub fn new(config: NormalizerConfig) -> Result<Self> {
        let NormalizerConfig {
            lower_percentile: lower,
            upper_percentile: upper,
            window,
        } = config;
        if !(0.0 <= lower && lower < upper && upper <= 100.0) {
            return Err(BanditError::InvalidParameter {
                name: "lower_percentile",
                value: format!("{lower} (upper_percentile {upper})"),
                reason: "expected 0 <= lower_percentile < upper_percentile <= 100",
            });
        }
        if window == 0 {
            return Err(BanditError::InvalidParameter {
                name: "window",
                value: "0".to_owned(),
                reason: "expected at least 1",
            });
        }
        Ok(Self {
            config,
            history: VecDeque::new(),
        })
    }

    /// Records `reward` and returns it normalised to [0, 1].
    ///
    /// The percentiles are taken over the window including this reward.
    /// While the window's rewards are all equal (as for the first reward),
    /// the result is 0.5.
    ///
    /// # Errors
    ///
    /// [`BanditError::NonFinite`] for a NaN or infinite reward.
    pub fn normalize(&mut self, reward: f64) -> Result<f64> {
        check_reward(reward)?;
        if self.history.len() == self.config.window {
            self.history.pop_front();
        }
        self.history.push_back(reward);

        let mut sorted: Vec<f64> = self.history.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let low = percentile(&sorted, self.config.lower_percentile);
        let high = percentile(&sorted, self.config.upper_percentile);
        if high - low <= f64::EPSILON * high.abs().max(low.abs()).max(1.0) {
            return Ok(0.5);
        }

        // r' = (clip(r, low, high) - low) / (high - low)
        Ok((reward.clamp(low, high) - low) / (high - low))
    }

    /// Returns the number of rewards in the window.
    pub fn len(&self) -> usize {
        self.history.len()
    }

    /// Returns true before the first reward.
    pub fn is_empty(&self) -> bool {
        self.history.is_empty()
    }
}

/// Returns the p-th percentile of ascending `sorted` by linear interpolation
/// between closest ranks (NumPy's default `linear` method).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    let fraction = rank - below as f64;
    sorted[below] + fraction * (sorted[above] - sorted[below])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        // numpy.percentile([1, 2, 3, 4, 5], [20, 80]) == [1.8, 4.2]
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((percentile(&sorted, 20.0) - 1.8).abs() < 1e-12);
        assert!((percentile(&sorted, 80.0) - 4.2).abs() < 1e-12);
    }

    #[test]
    fn first_reward_is_half() {
        let mut normalizer = RewardNormalizer::new(NormalizerConfig::default()).unwrap();
        assert_eq!(normalizer.normalize(-3.0).unwrap(), 0.5);
    }

    #[test]
    fn clips_and_scales() {
        let mut normalizer = RewardNormalizer::new(NormalizerConfig::default()).unwrap();
        for reward in [1.0, 2.0, 3.0, 4.0] {
            normalizer.normalize(reward).unwrap();
        }
        // Window [1, 2, 3, 4, 5]: p20 = 1.8, p80 = 4.2, and 5 clips to 4.2.
        assert_eq!(normalizer.normalize(5.0).unwrap(), 1.0);
        // Window [1, 2, 3, 4, 5, 3]: p20 = 2, p80 = 4.
        assert!((normalizer.normalize(3.0).unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn window_forgets_old_rewards() {
        let config = NormalizerConfig {
            window: 2,
            ..NormalizerConfig::default()
        };
        let mut normalizer = RewardNormalizer::new(config).unwrap();
        normalizer.normalize(-100.0).unwrap();
        normalizer.normalize(1.0).unwrap();
        normalizer.normalize(2.0).unwrap();
        assert_eq!(normalizer.len(), 2);
        assert_eq!(normalizer.normalize(2.0).unwrap(), 0.5);
    }

    #[test]
    fn output_in_unit_interval() {
        let mut normalizer = RewardNormalizer::new(NormalizerConfig::default()).unwrap();
        for i in 0..1000 {
            let reward = ((i * 7919) % 1000) as f64 - 500.0;
            let value = normalizer.normalize(reward).unwrap();
            assert!(
                (0.0..=1.0).contains(&value),
                "normalised {reward} to {value}"
            );
        }
    }

    #[test]
    fn inverted_percentiles_rejected() {
        let config = NormalizerConfig {
            lower_percentile: 80.0,
            upper_percentile: 20.0,
            window: 10,
        };
        assert!(RewardNormalizer::new(config).is_err());
    }
}
