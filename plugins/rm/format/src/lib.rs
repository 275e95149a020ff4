//! The `format` reward model. Rewards a well-formed final answer and punishes runaway repetition, in [0, 1].
//!
//! The scoring rule is `laser_rm_scoring::RuleBased::Format`; this crate only
//! exports it as a component. It takes no config and calls no model.

use laser_plugin_sdk::{PluginInfo, RewardModel, ScoredInstance, export_reward_model};
use laser_rm_scoring::RuleBased;

/// The plugin; it keeps no state.
struct Format;

impl RewardModel for Format {
    fn new() -> Self {
        Format
    }

    fn info(&self) -> PluginInfo {
        laser_rm_glue::plugin_info(&[], &["format", "rule-based"])
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        Ok(laser_rm_glue::rule_scores(&batch, RuleBased::Format))
    }
}

export_reward_model!(Format);
