//! Test reward model that behaves: the control arm in the host's tests.

use laser_plugin_sdk::models;
use laser_plugin_sdk::{
    Continuation, PluginInfo, RewardModel, ScoredInstance, export_reward_model,
};

/// Source of each candidate's score.
enum Source {
    /// Length of the candidate in characters.
    Length,
    /// Sum of the policy's token log-probabilities of the candidate.
    Logprobs,
}

struct GoodRm {
    source: Source,
}

impl RewardModel for GoodRm {
    fn new() -> Self {
        GoodRm {
            source: Source::Length,
        }
    }

    fn info(&self) -> PluginInfo {
        let mut info = laser_plugin_sdk::Package::current().plugin_info();
        info.models = vec!["policy".to_string()];
        info.tags = vec!["test".to_string()];
        info
    }

    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        // A real plugin would parse JSON with serde_json. The test plugin
        // matches the two settings it accepts to stay dependency-free.
        let compact: String = config_json.chars().filter(|c| !c.is_whitespace()).collect();
        self.source = match compact.as_str() {
            "{}" | r#"{"source":"length"}"# => Source::Length,
            r#"{"source":"logprobs"}"# => Source::Logprobs,
            _ => {
                return Err(format!(
                    "invalid config {config_json}: expected source = \
                     \"length\" or \"logprobs\""
                ));
            }
        };
        Ok(())
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        match self.source {
            Source::Length => Ok(batch
                .iter()
                .map(|item| {
                    item.candidates
                        .iter()
                        .map(|candidate| candidate.chars().count() as f64)
                        .collect()
                })
                .collect()),
            Source::Logprobs => score_by_logprobs(&batch),
        }
    }
}

fn score_by_logprobs(batch: &[ScoredInstance]) -> Result<Vec<Vec<f64>>, String> {
    let mut requests = Vec::new();
    for item in batch {
        for candidate in &item.candidates {
            requests.push(Continuation {
                prompt: item.instance.prompt.clone(),
                text: candidate.clone(),
            });
        }
    }
    let logprobs = models::logprobs("policy", &requests)?;
    let mut sums = logprobs
        .iter()
        .map(|tokens| tokens.iter().map(|&lp| f64::from(lp)).sum::<f64>());
    Ok(batch
        .iter()
        .map(|item| sums.by_ref().take(item.candidates.len()).collect())
        .collect())
}

export_reward_model!(GoodRm);
