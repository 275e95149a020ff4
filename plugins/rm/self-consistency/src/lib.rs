//! The `self-consistency` reward model. Scores each candidate by the share of the other candidates that reach the same final answer.
//!
//! The scoring rule is `laser_rm_scoring::RuleBased::SelfConsistency`; this crate only
//! exports it as a component. It takes no config and calls no model.

use laser_plugin_sdk::{PluginInfo, RewardModel, ScoredInstance, export_reward_model};
use laser_rm_scoring::RuleBased;

/// The plugin; it keeps no state.
struct SelfConsistency;

impl RewardModel for SelfConsistency {
    fn new() -> Self {
        SelfConsistency
    }

    fn info(&self) -> PluginInfo {
        laser_rm_glue::plugin_info(&[], &["self-consistency", "rule-based", "unsupervised"])
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        Ok(laser_rm_glue::rule_scores(
            &batch,
            RuleBased::SelfConsistency,
        ))
    }
}

export_reward_model!(SelfConsistency);
