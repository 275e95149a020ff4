//! Helpers shared by the bundled reward-model plugins: typed `[config]`
//! parsing, batch scoring with a rule-based scorer, plugin info, and the
//! finiteness checks that keep NaN from a model out of the scores.

use laser_plugin_sdk::{Package, PluginInfo, ScoredInstance};
use laser_rm_scoring::RuleBased;
use serde::de::DeserializeOwned;

/// Parses the manifest's `[config]` table, passed as a JSON object.
///
/// # Errors
///
/// Returns a message naming the plugin's config and the unknown, missing
/// or mistyped key.
pub fn parse_config<T: DeserializeOwned>(config_json: &str) -> Result<T, String> {
    serde_json::from_str(config_json).map_err(|e| format!("invalid config {config_json}: {e}"))
}

/// Returns the default plugin info with `models` and `tags` filled in.
pub fn plugin_info(models: &[&str], tags: &[&str]) -> PluginInfo {
    let mut info = Package::current().plugin_info();
    info.models = models.iter().map(|m| (*m).to_owned()).collect();
    info.tags = tags.iter().map(|t| (*t).to_owned()).collect();
    info
}

/// Scores every instance of `batch` with the rule-based scorer `rule`.
pub fn rule_scores(batch: &[ScoredInstance], rule: RuleBased) -> Vec<Vec<f64>> {
    batch
        .iter()
        .map(|item| {
            rule.scores(
                item.instance.reference.as_deref(),
                item.instance.category.as_deref(),
                &item.candidates,
            )
        })
        .collect()
}

/// Returns the sum of token log-probabilities from `model`.
///
/// # Errors
///
/// Returns a message naming the model and the instance when a value is NaN
/// or infinite, so that a broken model output becomes an error, never a
/// score.
pub fn sum_logprobs(tokens: &[f32], model: &str, instance_id: &str) -> Result<f64, String> {
    if let Some(value) = tokens.iter().find(|lp| !lp.is_finite()) {
        return Err(format!(
            "model `{model}` returned the non-finite log-probability {value} for instance \
             `{instance_id}`"
        ));
    }
    Ok(tokens.iter().map(|lp| f64::from(*lp)).sum())
}

/// Checks that the host returned one result per request.
///
/// # Errors
///
/// Returns a message naming the model and both counts.
pub fn check_count(model: &str, expected: usize, actual: usize) -> Result<(), String> {
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "model `{model}` returned {actual} results for {expected} requests"
        ))
    }
}

/// Checks a configured host model name.
///
/// # Errors
///
/// Returns a message when the name is empty.
pub fn check_model(model: &str) -> Result<(), String> {
    if model.is_empty() {
        Err("invalid `model`: expected a host model name such as \"policy\"".to_owned())
    } else {
        Ok(())
    }
}
