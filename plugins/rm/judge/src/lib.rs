//! The `judge` reward model: asks a host language model whether a response
//! is correct and helpful, and scores the probability of "Yes" against
//! "No":
//!   p = exp(lp_yes) / (exp(lp_yes) + exp(lp_no)) = 1 / (1 + exp(lp_no - lp_yes))
//! where lp_yes and lp_no are the summed token log-probabilities of the
//! two continuations after the judge prompt. The score lies in [0, 1].

use laser_plugin_sdk::models::{apply_chat_template, logprobs};
use laser_plugin_sdk::{
    Continuation, PluginInfo, RewardModel, ScoredInstance, export_reward_model,
};
use serde::Deserialize;

/// The default judge question; `{prompt}` and `{response}` are replaced.
const DEFAULT_TEMPLATE: &str = "Question:\n{prompt}\n\nResponse:\n{response}\n\n\
    Is the response correct and helpful? Answer Yes or No.";

/// The `[config]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Host model that judges; the manifest's `models` must list it.
    /// Default `"policy"`.
    model: String,
    /// Judge question with `{prompt}` and `{response}` placeholders, and
    /// optionally `{reference}` (empty when the instance has none).
    template: String,
    /// Wrap the question in the model's chat template. Default true.
    chat_template: bool,
    /// Continuation for yes. Default `" Yes"`.
    yes: String,
    /// Continuation for no. Default `" No"`.
    no: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model: "policy".to_owned(),
            template: DEFAULT_TEMPLATE.to_owned(),
            chat_template: true,
            yes: " Yes".to_owned(),
            no: " No".to_owned(),
        }
    }
}

/// The plugin.
struct Judge {
    config: Config,
}

impl RewardModel for Judge {
    fn new() -> Self {
        Self {
            config: Config::default(),
        }
    }

    fn info(&self) -> PluginInfo {
        laser_rm_glue::plugin_info(&[&self.config.model], &["judge", "model-based"])
    }

    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let config: Config = laser_rm_glue::parse_config(config_json)?;
        laser_rm_glue::check_model(&config.model)?;
        if !config.template.contains("{response}") {
            return Err(format!(
                "invalid `template` {:?}: it must contain {{response}}",
                config.template
            ));
        }
        if config.yes.is_empty() || config.no.is_empty() || config.yes == config.no {
            return Err(format!(
                "invalid `yes` {:?} / `no` {:?}: expected two different non-empty texts",
                config.yes, config.no
            ));
        }
        self.config = config;
        Ok(())
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        let model = self.config.model.as_str();

        // Two continuations per candidate (yes, then no), in one host call.
        let mut requests = Vec::new();
        for item in &batch {
            for candidate in &item.candidates {
                let question = fill_template(
                    &self.config.template,
                    &item.instance.prompt,
                    candidate,
                    item.instance.reference.as_deref(),
                );
                let prompt = if self.config.chat_template {
                    apply_chat_template(model, &question)?
                } else {
                    question
                };
                requests.push(Continuation {
                    prompt: prompt.clone(),
                    text: self.config.yes.clone(),
                });
                requests.push(Continuation {
                    prompt,
                    text: self.config.no.clone(),
                });
            }
        }
        let results = logprobs(model, &requests)?;
        laser_rm_glue::check_count(model, requests.len(), results.len())?;

        let mut pairs = results.chunks_exact(2);
        let mut scores = Vec::with_capacity(batch.len());
        for item in &batch {
            let id = &item.instance.id;
            let mut row = Vec::with_capacity(item.candidates.len());
            for pair in pairs.by_ref().take(item.candidates.len()) {
                let yes = laser_rm_glue::sum_logprobs(&pair[0], model, id)?;
                let no = laser_rm_glue::sum_logprobs(&pair[1], model, id)?;
                row.push(yes_probability(yes, no));
            }
            scores.push(row);
        }
        Ok(scores)
    }
}

/// Replaces `{prompt}`, `{response}` and `{reference}` in `template`.
fn fill_template(template: &str, prompt: &str, response: &str, reference: Option<&str>) -> String {
    template
        .replace("{prompt}", prompt)
        .replace("{reference}", reference.unwrap_or(""))
        .replace("{response}", response)
}

/// Returns p(yes) = 1 / (1 + exp(lp_no - lp_yes)), which stays in [0, 1]
/// for any finite log-probabilities.
fn yes_probability(lp_yes: f64, lp_no: f64) -> f64 {
    1.0 / (1.0 + (lp_no - lp_yes).exp())
}

export_reward_model!(Judge);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_logprobs_give_half() {
        assert_eq!(yes_probability(-2.0, -2.0), 0.5);
    }

    #[test]
    fn probability_matches_softmax() {
        let (yes, no) = (-0.1_f64, -2.5_f64);
        let expected = yes.exp() / (yes.exp() + no.exp());
        assert!((yes_probability(yes, no) - expected).abs() < 1e-12);
    }

    #[test]
    fn extreme_gap_stays_finite() {
        assert_eq!(yes_probability(-1000.0, 0.0), 0.0);
        assert_eq!(yes_probability(0.0, -1000.0), 1.0);
    }

    #[test]
    fn template_filled() {
        let filled = fill_template(
            "Q: {prompt} R: {response} Ref: {reference}",
            "2+2?",
            "4",
            None,
        );
        assert_eq!(filled, "Q: 2+2? R: 4 Ref: ");
    }
}
