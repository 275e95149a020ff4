//! The `models` host import: language models that the engine runs on the
//! GPU and serves to reward-model plugins.

use crate::Continuation;

/// Serves the `laser:plugin/models` import. The training engine implements
/// it; [`StubModelService`] replaces it in tests and listings.
///
/// Every method takes a whole batch and returns one result per item, in
/// order. The host checks the model name against the plugin's manifest
/// and the result lengths against the batch before the plugin sees them.
pub trait ModelService: Send + Sync {
    /// Returns the per-token log-probabilities (natural log) of each
    /// `request.text` after `request.prompt`.
    ///
    /// # Errors
    ///
    /// Returns an error for an unknown model or a failed forward pass.
    fn logprobs(&self, model: &str, requests: &[Continuation]) -> anyhow::Result<Vec<Vec<f32>>>;

    /// Samples one completion per prompt, at most `max_tokens` tokens long;
    /// temperature 0 decodes greedily.
    ///
    /// # Errors
    ///
    /// Returns an error for an unknown model or a failed generation.
    fn generate(
        &self,
        model: &str,
        prompts: &[String],
        max_tokens: u32,
        temperature: f32,
    ) -> anyhow::Result<Vec<String>>;

    /// Returns the final hidden state of each text, mean-pooled over its
    /// tokens.
    ///
    /// # Errors
    ///
    /// Returns an error for an unknown model or a failed forward pass.
    fn hidden_states(&self, model: &str, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>>;

    /// Wraps one user message in the model's chat template.
    ///
    /// # Errors
    ///
    /// Returns an error for an unknown model or one without a template.
    fn apply_chat_template(&self, model: &str, user: &str) -> anyhow::Result<String>;
}

/// A [`ModelService`] without models, for tests and plugin checks.
///
/// It is deterministic: every whitespace-separated word of a continuation
/// gets log-probability -1, `generate` echoes the prompt's first
/// `max_tokens` words, hidden states have [`StubModelService::HIDDEN_SIZE`]
/// dimensions derived from the text's bytes, and the chat template is
/// `<|user|>\n{user}\n<|assistant|>\n`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StubModelService;

impl StubModelService {
    /// Dimension of the stub's hidden states.
    pub const HIDDEN_SIZE: usize = 8;
}

impl ModelService for StubModelService {
    fn logprobs(&self, _model: &str, requests: &[Continuation]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(requests
            .iter()
            .map(|request| vec![-1.0; request.text.split_whitespace().count()])
            .collect())
    }

    fn generate(
        &self,
        _model: &str,
        prompts: &[String],
        max_tokens: u32,
        _temperature: f32,
    ) -> anyhow::Result<Vec<String>> {
        Ok(prompts
            .iter()
            .map(|prompt| {
                let words = prompt.split_whitespace();
                let words: Vec<&str> = words.take(max_tokens as usize).collect();
                words.join(" ")
            })
            .collect())
    }

    fn hidden_states(&self, _model: &str, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|text| {
                let mut state = vec![0.0f32; Self::HIDDEN_SIZE];
                for (i, byte) in text.bytes().enumerate() {
                    state[i % Self::HIDDEN_SIZE] += f32::from(byte) / 255.0;
                }
                state
            })
            .collect())
    }

    fn apply_chat_template(&self, _model: &str, user: &str) -> anyhow::Result<String> {
        Ok(format!("<|user|>\n{user}\n<|assistant|>\n"))
    }
}
