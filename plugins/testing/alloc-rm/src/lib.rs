//! Test reward model that allocates 4 GiB in `score`, 256 MiB at a time,
//! writing to every page: the host's memory cap must stop it.

use laser_plugin_sdk::{RewardModel, ScoredInstance, export_reward_model};

const CHUNK: usize = 256 << 20;
const CHUNKS: usize = 16;

struct AllocRm;

impl RewardModel for AllocRm {
    fn new() -> Self {
        AllocRm
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        let mut chunks = Vec::new();
        for _ in 0..CHUNKS {
            // `vec!` aborts on allocation failure, which traps the plugin.
            chunks.push(vec![1u8; CHUNK]);
        }
        let total: usize = chunks.iter().map(|chunk| chunk.len()).sum();
        Ok(batch
            .iter()
            .map(|item| vec![total as f64; item.candidates.len()])
            .collect())
    }
}

export_reward_model!(AllocRm);
