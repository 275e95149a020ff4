//! Serves the plugins' `models` import from the engine: reward models that
//! ask for log-probabilities, generations or hidden states get them from
//! the policy's base model on the GPU, one batched engine call per plugin
//! call.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use laser_plugins::{Continuation, ModelService};

use crate::engine::{Engine, Pooling, SamplingConfig};

/// The model name plugins use for the policy's base model.
pub const POLICY: &str = "policy";

/// A [`ModelService`] backed by one loaded engine.
pub struct EngineService {
    engine: Arc<Mutex<Engine>>,
}

impl EngineService {
    /// Serves `engine` under the name [`POLICY`].
    pub fn new(engine: Arc<Mutex<Engine>>) -> Self {
        Self { engine }
    }

    fn lock(&self, model: &str) -> Result<std::sync::MutexGuard<'_, Engine>> {
        if model != POLICY {
            bail!("unknown model {model:?}: this host serves only {POLICY:?}");
        }
        super::lock_engine(&self.engine)
    }
}

impl ModelService for EngineService {
    fn logprobs(&self, model: &str, requests: &[Continuation]) -> Result<Vec<Vec<f32>>> {
        let mut engine = self.lock(model)?;
        let mut pairs = Vec::with_capacity(requests.len());
        for request in requests {
            let prompt = engine.tokenizer.encode(&request.prompt, true)?;
            let text = engine.tokenizer.encode(&request.text, false)?;
            pairs.push((prompt, text));
        }
        // A request with an empty prompt is scored after a lone BOS-free
        // newline, since the first token needs something to condition on.
        let newline = engine.tokenizer.encode("\n", false)?;
        for (prompt, _) in &mut pairs {
            if prompt.is_empty() {
                prompt.clone_from(&newline);
            }
        }
        engine
            .continuation_logprobs(&pairs)
            .context("failed to score continuations")
    }

    fn generate(
        &self,
        model: &str,
        prompts: &[String],
        max_tokens: u32,
        temperature: f32,
    ) -> Result<Vec<String>> {
        check_temperature(temperature)?;
        let mut engine = self.lock(model)?;
        let mut tokens = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let ids = engine.tokenizer.encode(prompt, true)?;
            if ids.is_empty() {
                bail!("cannot generate from an empty prompt");
            }
            tokens.push(ids);
        }
        let sampling = SamplingConfig {
            temperature,
            max_new_tokens: max_tokens,
            ..SamplingConfig::default()
        };
        let generations = engine.generate(&tokens, &sampling)?;
        Ok(generations.into_iter().map(|g| g.text).collect())
    }

    fn hidden_states(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut engine = self.lock(model)?;
        let mut tokens = Vec::with_capacity(texts.len());
        for text in texts {
            let ids = engine.tokenizer.encode(text, true)?;
            if ids.is_empty() {
                bail!("cannot embed an empty text");
            }
            tokens.push(ids);
        }
        engine.hidden_states(&tokens, Pooling::Mean)
    }

    fn apply_chat_template(&self, model: &str, user: &str) -> Result<String> {
        let engine = self.lock(model)?;
        engine.chat_text(user)
    }
}

/// Checks a temperature a plugin passed to `generate`. A NaN, negative or
/// infinite temperature would otherwise sample empty or random text
/// without an error.
fn check_temperature(temperature: f32) -> Result<()> {
    if temperature.is_finite() && temperature >= 0.0 {
        Ok(())
    } else {
        bail!(
            "temperature {temperature} is invalid: give 0 to decode greedily or a finite positive value"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_check_rejects_invalid() {
        for temperature in [f32::NAN, -1.0, f32::INFINITY, f32::NEG_INFINITY] {
            let error = check_temperature(temperature).unwrap_err().to_string();
            assert!(error.contains("is invalid"), "{temperature}: {error}");
        }
        for temperature in [0.0, 0.7, 2.0] {
            assert!(check_temperature(temperature).is_ok(), "{temperature}");
        }
    }
}
