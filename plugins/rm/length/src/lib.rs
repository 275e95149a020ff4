//! The `length` reward model: longer candidates score higher. It is
//! deliberately weak (length is a known reward-hacking direction), so that
//! a selector has an arm to learn to avoid.

use laser_plugin_sdk::{PluginInfo, RewardModel, ScoredInstance, export_reward_model};
use laser_rm_scoring::{LengthUnit, length_score};
use serde::Deserialize;

/// The `[config]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// `"chars"` (default) or `"words"`.
    unit: LengthUnit,
}

/// The plugin.
struct Length {
    unit: LengthUnit,
}

impl RewardModel for Length {
    fn new() -> Self {
        Self {
            unit: LengthUnit::Chars,
        }
    }

    fn info(&self) -> PluginInfo {
        laser_rm_glue::plugin_info(&[], &["length", "rule-based", "weak"])
    }

    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let config: Config = laser_rm_glue::parse_config(config_json)?;
        self.unit = config.unit;
        Ok(())
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        Ok(batch
            .iter()
            .map(|item| {
                item.candidates
                    .iter()
                    .map(|c| length_score(c, self.unit))
                    .collect()
            })
            .collect())
    }
}

export_reward_model!(Length);
