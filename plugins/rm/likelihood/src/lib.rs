//! The `likelihood` reward model: the mean token log-probability (natural
//! log) of each candidate after its prompt, under a host language model.
//! A rubric from the config, when set, is put before the prompt, so the
//! score becomes the candidate's likelihood under "a response that follows
//! this rubric".

use laser_plugin_sdk::models::{apply_chat_template, logprobs};
use laser_plugin_sdk::{
    Continuation, PluginInfo, RewardModel, ScoredInstance, export_reward_model,
};
use serde::Deserialize;

/// The `[config]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Host model to score with; the manifest's `models` must list it.
    /// Default `"policy"`.
    model: String,
    /// Text put before each prompt, separated by a blank line. Default none.
    rubric: Option<String>,
    /// Wrap the (rubric and) prompt in the model's chat template. Default
    /// true.
    chat_template: bool,
    /// Score of a candidate with no tokens, where the mean is undefined.
    /// Default -30.0 (about ln 1e-13, far below any real mean).
    empty_score: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model: "policy".to_owned(),
            rubric: None,
            chat_template: true,
            empty_score: -30.0,
        }
    }
}

/// The plugin.
struct Likelihood {
    config: Config,
}

impl RewardModel for Likelihood {
    fn new() -> Self {
        Self {
            config: Config::default(),
        }
    }

    fn info(&self) -> PluginInfo {
        laser_rm_glue::plugin_info(&[&self.config.model], &["likelihood", "model-based"])
    }

    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let config: Config = laser_rm_glue::parse_config(config_json)?;
        laser_rm_glue::check_model(&config.model)?;
        if !config.empty_score.is_finite() {
            return Err(format!(
                "invalid `empty_score` {}: expected a finite number",
                config.empty_score
            ));
        }
        self.config = config;
        Ok(())
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        let model = self.config.model.as_str();

        // One continuation per candidate, all sent in one host call.
        let mut requests = Vec::new();
        for item in &batch {
            let prompt = self.conditioned_prompt(&item.instance.prompt)?;
            for candidate in &item.candidates {
                requests.push(Continuation {
                    prompt: prompt.clone(),
                    text: candidate.clone(),
                });
            }
        }
        let results = logprobs(model, &requests)?;
        laser_rm_glue::check_count(model, requests.len(), results.len())?;

        let mut results = results.into_iter();
        let mut scores = Vec::with_capacity(batch.len());
        for item in &batch {
            let mut row = Vec::with_capacity(item.candidates.len());
            for tokens in results.by_ref().take(item.candidates.len()) {
                let total = laser_rm_glue::sum_logprobs(&tokens, model, &item.instance.id)?;
                row.push(mean_or(total, tokens.len(), self.config.empty_score));
            }
            scores.push(row);
        }
        Ok(scores)
    }
}

impl Likelihood {
    /// Returns the prompt the candidate is scored after: the rubric and
    /// the prompt, in the chat template when configured.
    fn conditioned_prompt(&self, prompt: &str) -> Result<String, String> {
        let user = match &self.config.rubric {
            Some(rubric) => format!("{rubric}\n\n{prompt}"),
            None => prompt.to_owned(),
        };
        if self.config.chat_template {
            apply_chat_template(&self.config.model, &user)
        } else {
            Ok(user)
        }
    }
}

/// Returns total / count, or `empty` when there are no tokens.
fn mean_or(total: f64, count: usize, empty: f64) -> f64 {
    if count == 0 {
        empty
    } else {
        total / count as f64
    }
}

export_reward_model!(Likelihood);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_tokens() {
        assert_eq!(mean_or(-3.0, 2, -30.0), -1.5);
    }

    #[test]
    fn empty_candidate_gets_floor() {
        assert_eq!(mean_or(0.0, 0, -30.0), -30.0);
    }
}
