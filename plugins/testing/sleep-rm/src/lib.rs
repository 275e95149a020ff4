//! Test reward model that sleeps for an hour in `score`, blocked in the
//! host's WASI `poll` rather than in its own code: the host must still stop
//! it at its deadline.

use std::time::Duration;

use laser_plugin_sdk::{RewardModel, ScoredInstance, export_reward_model};

struct SleepRm;

impl RewardModel for SleepRm {
    fn new() -> Self {
        SleepRm
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        std::thread::sleep(Duration::from_secs(3600));
        Ok(batch
            .iter()
            .map(|item| vec![0.0; item.candidates.len()])
            .collect())
    }
}

export_reward_model!(SleepRm);
