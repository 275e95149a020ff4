//! Test reward model whose `info` returns 1024 tags of 1 KiB each. The
//! host passes a reward model's tags to the selector in every `choose`
//! call, so it must reject such an `info` at load.

use laser_plugin_sdk::{Package, PluginInfo, RewardModel, ScoredInstance, export_reward_model};

struct BigInfoRm;

impl RewardModel for BigInfoRm {
    fn new() -> Self {
        BigInfoRm
    }

    fn info(&self) -> PluginInfo {
        let mut info = Package::current().plugin_info();
        info.tags = vec!["t".repeat(1024); 1024];
        info
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        Ok(batch
            .iter()
            .map(|item| vec![0.0; item.candidates.len()])
            .collect())
    }
}

export_reward_model!(BigInfoRm);
