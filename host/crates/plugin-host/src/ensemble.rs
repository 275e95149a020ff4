//! Ensemble scoring: per-arm score normalization for the combined scores
//! that a selector's spread weights ask for.
//!
//! Reward models score on unrelated scales (a log-probability, a 0/1
//! verifier, a length), so their raw scores cannot be combined as they are.
//! Each arm's scores are standardized with that arm's running mean and
//! standard deviation over every score it has returned this run (Welford's
//! algorithm). The run then combines the standardized scores of the arms
//! that scored with a positive weight, by the weighted mean, the minimum
//! or the weighted mean minus lambda times the weighted standard deviation
//! (`laser-host`'s `--ensemble`). One-hot weights reduce to the chosen
//! arm's standardized scores.

use serde::{Deserialize, Serialize};

/// Running mean and variance of each arm's scores. It serializes, so that
/// a run's checkpoint keeps it and a resumed run standardizes as one that
/// never stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreNormalizer {
    arms: Vec<RunningStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct RunningStats {
    count: u64,
    mean: f64,
    /// Sum of squared deviations from the mean.
    m2: f64,
}

impl RunningStats {
    fn push(&mut self, value: f64) {
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
    }

    /// Standard deviation, or 1 while there are fewer than two scores or
    /// they are all equal, so that standardizing never divides by zero.
    fn std_dev(&self) -> f64 {
        if self.count < 2 {
            return 1.0;
        }
        let std_dev = (self.m2 / (self.count - 1) as f64).sqrt();
        if std_dev > f64::EPSILON { std_dev } else { 1.0 }
    }
}

impl ScoreNormalizer {
    /// Creates a normalizer with no arms; arms are added as they score.
    pub fn new() -> ScoreNormalizer {
        ScoreNormalizer::default()
    }

    /// Adds `scores` to `arm`'s statistics, then returns them standardized
    /// with the updated mean and standard deviation.
    pub fn normalize(&mut self, arm: usize, scores: &[Vec<f64>]) -> Vec<Vec<f64>> {
        if self.arms.len() <= arm {
            self.arms.resize(arm + 1, RunningStats::default());
        }
        let stats = &mut self.arms[arm];
        for value in scores.iter().flatten() {
            stats.push(*value);
        }
        let (mean, std_dev) = (stats.mean, stats.std_dev());
        scores
            .iter()
            .map(|row| row.iter().map(|v| (v - mean) / std_dev).collect())
            .collect()
    }

    /// Returns `arm`'s running mean and standard deviation, or `None`
    /// before it has scored.
    pub fn stats(&self, arm: usize) -> Option<(f64, f64)> {
        let stats = self.arms.get(arm).filter(|s| s.count > 0)?;
        Some((stats.mean, stats.std_dev()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizer_standardizes_scores() {
        let mut normalizer = ScoreNormalizer::new();
        let z = normalizer.normalize(0, &[vec![1.0, 2.0, 3.0]]);
        assert_eq!(z, vec![vec![-1.0, 0.0, 1.0]]);
        assert_eq!(normalizer.stats(0), Some((2.0, 1.0)));
        assert_eq!(normalizer.stats(1), None);
    }

    #[test]
    fn normalizer_survives_json_round_trip() {
        let mut normalizer = ScoreNormalizer::new();
        normalizer.normalize(1, &[vec![0.5, 4.0], vec![-2.0, 7.25]]);
        let json = serde_json::to_string(&normalizer).unwrap();
        let mut restored: ScoreNormalizer = serde_json::from_str(&json).unwrap();

        assert_eq!(restored, normalizer);
        let scores = [vec![3.0, 1.0]];
        assert_eq!(
            restored.normalize(1, &scores),
            normalizer.normalize(1, &scores)
        );
    }

    #[test]
    fn normalizer_handles_constant_scores() {
        let mut normalizer = ScoreNormalizer::new();
        let z = normalizer.normalize(2, &[vec![5.0, 5.0]]);
        assert_eq!(z, vec![vec![0.0, 0.0]]);
    }
}
