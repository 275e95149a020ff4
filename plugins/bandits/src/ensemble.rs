//! The ensemble baseline: every reward model scores every candidate, and the
//! scores are combined instead of one model being chosen.
//!
//! How the scores are combined, for reward models k = 1..K with weights w_k
//! (uniform, 1/K, from [`Ensemble::weights`]):
//!
//! 1. The host z-normalises each model's raw scores s_ki:
//!    z_ki = (s_ki - mean_k) / std_k. Under `laser:plugin@0.1.0` the mean
//!    and standard deviation are the host's running statistics of model k's
//!    scores over the run so far.
//! 2. The z-scores of each candidate i are aggregated by the mode:
//!    - `mean`: m_i = sum_k w_k z_ki
//!    - `min`: min_k z_ki
//!    - `mean-minus-std`: m_i - lambda * sqrt(sum_k w_k (z_ki - m_i)^2)
//!
//! [`Ensemble::aggregate`] implements step 2 as the reference. The selector
//! interface of `laser:plugin@0.1.0` returns only per-arm weights, and
//! laser-host applies the three modes itself, as its `--ensemble` option
//! chooses, over the arms that scored with a positive weight, dividing by
//! the sum of their weights.

use serde::{Deserialize, Serialize};

use crate::{Arms, BanditError, Result, check_non_negative};

/// How the normalised per-model scores of one candidate are aggregated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    /// Weighted mean.
    #[default]
    Mean,
    /// Minimum over the models (the most pessimistic model decides).
    Min,
    /// Weighted mean minus lambda times the weighted standard deviation, so
    /// that candidates the models disagree on are penalised.
    MeanMinusStd,
}

/// Ensemble settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnsembleConfig {
    /// Aggregation mode. Default `mean`.
    pub mode: Aggregation,
    /// Penalty lambda >= 0 on the disagreement in `mean-minus-std` mode.
    /// Default 1.0.
    pub lambda: f64,
}

impl Default for EnsembleConfig {
    fn default() -> Self {
        Self {
            mode: Aggregation::Mean,
            lambda: 1.0,
        }
    }
}

/// The ensemble selector. It learns nothing: its state is the arm list and
/// the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    config: EnsembleConfig,
    arms: Arms,
}

impl Ensemble {
    /// Creates an ensemble over `arm_names`.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] for a negative or non-finite lambda,
    /// [`BanditError::DuplicateArm`] for a repeated name.
    pub fn new<S: AsRef<str>>(config: EnsembleConfig, arm_names: &[S]) -> Result<Self> {
        check_non_negative("lambda", config.lambda)?;
        Ok(Self {
            config,
            arms: Arms::new(arm_names)?,
        })
    }

    /// Returns the configuration.
    pub fn config(&self) -> &EnsembleConfig {
        &self.config
    }

    /// Returns the arm names.
    pub fn arms(&self) -> &Arms {
        &self.arms
    }

    /// Adds an arm and returns its index.
    ///
    /// # Errors
    ///
    /// [`BanditError::DuplicateArm`] if the name is taken.
    pub fn add_arm(&mut self, name: &str) -> Result<usize> {
        self.arms.push(name)
    }

    /// Returns the weight w_k of every arm: 1/K each.
    ///
    /// # Errors
    ///
    /// [`BanditError::NoArms`] without arms.
    pub fn weights(&self) -> Result<Vec<f64>> {
        if self.arms.is_empty() {
            return Err(BanditError::NoArms);
        }
        let k = self.arms.len();
        Ok(vec![1.0 / k as f64; k])
    }

    /// Aggregates `z[k][i]`, model k's z-normalised score for candidate i,
    /// into one score per candidate by the configured mode.
    ///
    /// # Errors
    ///
    /// [`BanditError::ScoreRows`] unless there is one row per arm,
    /// [`BanditError::DimensionMismatch`] if rows differ in length, and
    /// [`BanditError::NonFinite`] for a NaN or infinite score.
    pub fn aggregate(&self, z: &[Vec<f64>]) -> Result<Vec<f64>> {
        let weights = self.weights()?;
        if z.len() != weights.len() {
            return Err(BanditError::ScoreRows {
                expected: weights.len(),
                actual: z.len(),
            });
        }
        let candidates = z[0].len();
        for row in z {
            if row.len() != candidates {
                return Err(BanditError::DimensionMismatch {
                    expected: candidates,
                    actual: row.len(),
                });
            }
            if let Some(value) = row.iter().find(|s| !s.is_finite()) {
                return Err(BanditError::NonFinite {
                    what: "score",
                    value: *value,
                });
            }
        }

        let combined = (0..candidates)
            .map(|i| {
                let column: Vec<f64> = z.iter().map(|row| row[i]).collect();
                self.aggregate_candidate(&column, &weights)
            })
            .collect();
        Ok(combined)
    }

    /// Aggregates one candidate's z-scores z_k with weights w_k.
    fn aggregate_candidate(&self, z: &[f64], weights: &[f64]) -> f64 {
        // m = sum_k w_k z_k
        let mean: f64 = z.iter().zip(weights).map(|(z_k, w_k)| w_k * z_k).sum();
        match self.config.mode {
            Aggregation::Mean => mean,
            Aggregation::Min => z.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregation::MeanMinusStd => {
                // m - lambda * sqrt(sum_k w_k (z_k - m)^2)
                let variance: f64 = z
                    .iter()
                    .zip(weights)
                    .map(|(z_k, w_k)| w_k * (z_k - mean).powi(2))
                    .sum();
                mean - self.config.lambda * variance.sqrt()
            }
        }
    }

    /// Encodes the state as JSON bytes.
    ///
    /// # Errors
    ///
    /// [`BanditError::State`] if serialisation fails.
    pub fn save(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Restores a state written by [`Ensemble::save`].
    ///
    /// # Errors
    ///
    /// [`BanditError::State`] if the bytes are not a valid ensemble state.
    pub fn load(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ensemble(mode: Aggregation) -> Ensemble {
        Ensemble::new(EnsembleConfig { mode, lambda: 1.0 }, &["a", "b"]).unwrap()
    }

    #[test]
    fn weights_are_uniform() {
        assert_eq!(
            ensemble(Aggregation::Mean).weights().unwrap(),
            vec![0.5, 0.5]
        );
    }

    #[test]
    fn mean_averages() {
        let z = vec![vec![1.0, -1.0], vec![3.0, 0.0]];
        assert_eq!(
            ensemble(Aggregation::Mean).aggregate(&z).unwrap(),
            vec![2.0, -0.5]
        );
    }

    #[test]
    fn min_takes_pessimist() {
        let z = vec![vec![0.0, 1.0], vec![1.0, -2.0]];
        assert_eq!(
            ensemble(Aggregation::Min).aggregate(&z).unwrap(),
            vec![0.0, -2.0]
        );
    }

    #[test]
    fn disagreement_penalised() {
        // Candidate 0: the models agree. Candidate 1: same mean, split models.
        let z = vec![vec![1.0, 2.0], vec![1.0, 0.0]];
        let penalised = ensemble(Aggregation::MeanMinusStd).aggregate(&z).unwrap();
        assert_eq!(penalised[0], 1.0);
        // m = 1, std = sqrt(0.5 * 1 + 0.5 * 1) = 1, so 1 - 1 * 1 = 0.
        assert_eq!(penalised[1], 0.0);
    }

    #[test]
    fn nan_score_rejected() {
        let scores = vec![vec![f64::NAN], vec![0.0]];
        let error = ensemble(Aggregation::Mean).aggregate(&scores).unwrap_err();
        assert!(matches!(
            error,
            BanditError::NonFinite { what: "score", .. }
        ));
    }

    #[test]
    fn wrong_row_count_rejected() {
        let error = ensemble(Aggregation::Mean)
            .aggregate(&[vec![1.0]])
            .unwrap_err();
        assert!(matches!(
            error,
            BanditError::ScoreRows {
                expected: 2,
                actual: 1
            }
        ));
    }
}
