//! Test reward model that panics in `score`: the host must show the panic
//! message to the user.

use laser_plugin_sdk::{RewardModel, ScoredInstance, export_reward_model};

struct PanicRm;

impl RewardModel for PanicRm {
    fn new() -> Self {
        PanicRm
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        panic!("panic-rm cannot score {} instances", batch.len());
    }
}

export_reward_model!(PanicRm);
