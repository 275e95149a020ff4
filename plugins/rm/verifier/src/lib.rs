//! The `verifier` reward model. Matches each candidate's final answer against the prompt's reference: 1 on a match, 0 otherwise, 0.5 without a reference.
//!
//! The scoring rule is `laser_rm_scoring::RuleBased::Verifier`; this crate only
//! exports it as a component. It takes no config and calls no model.

use laser_plugin_sdk::{PluginInfo, RewardModel, ScoredInstance, export_reward_model};
use laser_rm_scoring::RuleBased;

/// The plugin; it keeps no state.
struct Verifier;

impl RewardModel for Verifier {
    fn new() -> Self {
        Verifier
    }

    fn info(&self) -> PluginInfo {
        laser_rm_glue::plugin_info(&[], &["verifier", "rule-based"])
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        Ok(laser_rm_glue::rule_scores(&batch, RuleBased::Verifier))
    }
}

export_reward_model!(Verifier);
