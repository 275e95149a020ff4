//! Chat templates: the Jinja template stored with a model (GGUF
//! `tokenizer.chat_template` or `tokenizer_config.json`), rendered with
//! minijinja the way Hugging Face transformers renders it, or ChatML when
//! the model has none.

use anyhow::{Result, anyhow};
use minijinja::{Environment, Error, ErrorKind, context};
use serde::{Deserialize, Serialize};

/// ChatML, used for models that ship no template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The name the template is registered under in its environment.
const TEMPLATE_NAME: &str = "chat";

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// Creates a message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template with the special token texts it may print.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    /// The model shipped no template, so this is ChatML.
    is_fallback: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`, or ChatML when `source` is `None`. `bos_token` and
    /// `eos_token` are the texts the template sees under those names.
    ///
    /// The environment matches transformers' (`trim_blocks` and
    /// `lstrip_blocks` on), adds Python's string and dict methods
    /// (`minijinja-contrib` pycompat) and a `raise_exception(message)`
    /// function that fails the rendering.
    ///
    /// # Errors
    ///
    /// Fails when the template does not compile.
    pub fn new(source: Option<&str>, bos_token: &str, eos_token: &str) -> Result<Self> {
        let is_fallback = source.is_none();
        let source = source.unwrap_or(CHATML_TEMPLATE).to_owned();
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| anyhow!("chat template: failed to compile: {e}"))?;
        Ok(Self {
            env,
            source,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            is_fallback,
        })
    }

    /// Returns whether the model shipped no template, so that ChatML is
    /// used in its place.
    pub fn is_fallback(&self) -> bool {
        self.is_fallback
    }

    /// Returns the template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` into a prompt, ending with the opening of an
    /// assistant turn when `add_generation_prompt` is set.
    ///
    /// # Errors
    ///
    /// Fails when rendering fails, including a template's own
    /// `raise_exception`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| anyhow!("chat template: {e}"))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| {
                anyhow!(
                    "chat template: failed to render {} messages: {e}",
                    messages.len()
                )
            })
    }
}

#[cfg(test)]
mod tests;
