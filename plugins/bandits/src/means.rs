//! Per-arm pull counts and sample-mean rewards, shared by epsilon-greedy
//! and UCB1.

use serde::{Deserialize, Serialize};

/// Pull count n_k and mean reward mu_k of every arm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SampleMeans {
    pub(crate) pulls: Vec<u64>,
    pub(crate) means: Vec<f64>,
}

impl SampleMeans {
    /// Adds an arm with no pulls.
    pub(crate) fn add_arm(&mut self) {
        self.pulls.push(0);
        self.means.push(0.0);
    }

    /// Returns the first enabled arm never pulled, if any.
    pub(crate) fn first_unpulled(&self, enabled: &[bool]) -> Option<usize> {
        (0..self.pulls.len()).find(|k| enabled[*k] && self.pulls[*k] == 0)
    }

    /// Adds reward r to arm k: n_k += 1, mu_k += (r - mu_k) / n_k.
    pub(crate) fn update(&mut self, arm: usize, reward: f64) {
        self.pulls[arm] += 1;
        self.means[arm] += (reward - self.means[arm]) / self.pulls[arm] as f64;
    }
}
