//! Test selector: picks, one-hot, the enabled arm with the best mean
//! reward, trying untried arms first and the lowest index on ties. It
//! grows its state when `choose` shows new arms.
//!
//! `[config] fail_update_at = N` makes the N-th update (1-based) change the
//! state and then return an error; `trap_update_at = N` makes it change the
//! state and then panic. The host must keep the state from before.

use laser_plugin_sdk::{ArmInfo, Selector, export_selector};

#[derive(Default)]
struct CountingSelector {
    /// Per arm: number of updates and sum of rewards.
    arms: Vec<(u64, f64)>,
    updates: u64,
    fail_update_at: Option<u64>,
    trap_update_at: Option<u64>,
}

impl Selector for CountingSelector {
    fn new() -> Self {
        CountingSelector::default()
    }

    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let config: serde_json::Value =
            serde_json::from_str(config_json).map_err(|e| e.to_string())?;
        self.fail_update_at = config["fail_update_at"].as_u64();
        self.trap_update_at = config["trap_update_at"].as_u64();
        Ok(())
    }

    fn choose(
        &mut self,
        contexts: Vec<Vec<f32>>,
        arms: Vec<ArmInfo>,
    ) -> Result<Vec<Vec<f32>>, String> {
        if self.arms.len() < arms.len() {
            self.arms.resize(arms.len(), (0, 0.0));
        }
        let mean = |(count, sum): (u64, f64)| {
            if count == 0 {
                f64::INFINITY
            } else {
                sum / count as f64
            }
        };
        // `min_by` with the order reversed keeps the lowest index on ties.
        let best = (0..arms.len())
            .filter(|&k| arms[k].enabled)
            .min_by(|&a, &b| mean(self.arms[b]).total_cmp(&mean(self.arms[a])));
        let mut row = vec![0.0; arms.len()];
        if let Some(best) = best {
            row[best] = 1.0;
        }
        Ok(vec![row; contexts.len()])
    }

    fn update(&mut self, arm: u32, _context: Vec<f32>, reward: f64) -> Result<(), String> {
        let arm = arm as usize;
        let Some(stats) = self.arms.get_mut(arm) else {
            return Err(format!("unknown arm {arm}"));
        };
        stats.0 += 1;
        stats.1 += reward;
        self.updates += 1;
        if self.fail_update_at == Some(self.updates) {
            return Err(format!("update {} fails on purpose", self.updates));
        }
        if self.trap_update_at == Some(self.updates) {
            panic!("update {} traps on purpose", self.updates);
        }
        Ok(())
    }

    fn save_state(&self) -> Vec<u8> {
        let mut state = Vec::with_capacity(16 * self.arms.len());
        for (count, sum) in &self.arms {
            state.extend_from_slice(&count.to_le_bytes());
            state.extend_from_slice(&sum.to_le_bytes());
        }
        state
    }

    fn load_state(&mut self, state: Vec<u8>) -> Result<(), String> {
        if !state.len().is_multiple_of(16) {
            return Err(format!(
                "state of {} bytes is not a whole number of 16-byte arms",
                state.len()
            ));
        }
        self.arms = state
            .chunks_exact(16)
            .map(|arm| {
                let count = u64::from_le_bytes(arm[..8].try_into().unwrap());
                let sum = f64::from_le_bytes(arm[8..].try_into().unwrap());
                (count, sum)
            })
            .collect();
        Ok(())
    }
}

export_selector!(CountingSelector);
