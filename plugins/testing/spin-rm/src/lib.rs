//! Test reward model whose `score` never returns: the host must interrupt
//! it at its deadline.

use laser_plugin_sdk::{RewardModel, ScoredInstance, export_reward_model};

struct SpinRm;

impl RewardModel for SpinRm {
    fn new() -> Self {
        SpinRm
    }

    fn score(&mut self, _batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        let mut counter = 0u64;
        loop {
            // black_box keeps the loop from being optimized into a trap.
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

export_reward_model!(SpinRm);
