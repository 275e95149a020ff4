//! The architecture config of a decoder-only transformer (Llama, Mistral and
//! Qwen2 families), read from GGUF metadata or a Hugging Face `config.json`
//! and validated.
//!
//! Dimension letters used across the engine: C = `n_embd` (width),
//! F = `n_ff` (FFN hidden size), H = `n_head` (query heads),
//! G = `n_head_kv` (key/value heads), D = `head_dim`, V = `vocab_size`.

use std::fmt;

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use crate::gguf::GgufFile;

/// The maximum number of transformer blocks accepted.
pub const MAX_LAYERS: usize = 1024;
/// The maximum width (C) and FFN hidden size (F) accepted.
pub const MAX_WIDTH: usize = 1 << 18;
/// The maximum number of attention heads accepted.
pub const MAX_HEADS: usize = 1024;
/// The maximum head size (D) accepted.
pub const MAX_HEAD_DIM: usize = 1024;
/// The maximum vocabulary size accepted.
pub const MAX_VOCAB: usize = 1 << 22;
/// The maximum context length accepted, in tokens.
pub const MAX_CONTEXT: usize = 1 << 24;

/// The model family, which fixes the block structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Llama and Mistral: RMSNorm, RoPE, grouped-query attention without
    /// biases, SwiGLU FFN.
    Llama,
    /// Qwen2: Llama's blocks plus biases on the Q, K and V projections.
    Qwen2,
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        })
    }
}

/// The pairing of a head's D values that RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeLayout {
    /// Pairs `(x[2i], x[2i + 1])`: GGUF `llama` files, whose Q and K weights
    /// llama.cpp's converter permutes into this order.
    Adjacent,
    /// Pairs `(x[i], x[i + D/2])`: GGUF `qwen2` files and every Hugging Face
    /// checkpoint.
    Halves,
}

/// A validated model config.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The model family.
    pub arch: Arch,
    /// The number of transformer blocks.
    pub n_layer: usize,
    /// The width C.
    pub n_embd: usize,
    /// The FFN hidden size F.
    pub n_ff: usize,
    /// The number of query heads H.
    pub n_head: usize,
    /// The number of key/value heads G; H is a multiple of G.
    pub n_head_kv: usize,
    /// The head size D.
    pub head_dim: usize,
    /// The vocabulary size V (rows of `token_embd.weight`).
    pub vocab_size: usize,
    /// The RoPE base frequency.
    pub rope_theta: f32,
    /// The pairing of values RoPE rotates together.
    pub rope_layout: RopeLayout,
    /// The RMSNorm epsilon.
    pub rms_eps: f32,
    /// The trained context length, in tokens.
    pub context_length: usize,
    /// Whether the output projection reuses `token_embd.weight` (no
    /// `output.weight` tensor).
    pub tied_embeddings: bool,
    /// Whether Q, K and V have biases (`blk.{i}.attn_{q,k,v}.bias`).
    pub attn_bias: bool,
    /// The beginning-of-sequence token, if the model has one.
    pub bos_token_id: Option<u32>,
    /// The tokens that end generation.
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Returns the width of the query projection output, H * D.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Returns the width of the key and value projection outputs, G * D.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Reads the config from a GGUF file's `{arch}.*` and `tokenizer.ggml.*`
    /// metadata and its tensor list.
    ///
    /// # Errors
    ///
    /// Fails when the architecture is not `llama` or `qwen2`, a required key
    /// is missing or mistyped, the file uses an unsupported RoPE variant, or
    /// the values fail [`ModelConfig::validate`].
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let path = file.path().display();
        let arch_name = file.get_str("general.architecture")?.with_context(|| {
            format!("gguf: {path}: missing metadata key `general.architecture`")
        })?;
        let (arch, rope_layout) = match arch_name {
            "llama" => (Arch::Llama, RopeLayout::Adjacent),
            "qwen2" => (Arch::Qwen2, RopeLayout::Halves),
            other => bail!(
                "gguf: {path}: unsupported architecture `{other}`: expected `llama` or `qwen2`"
            ),
        };

        let required = |key: &str| -> Result<usize> {
            let full = format!("{arch_name}.{key}");
            let value = file
                .get_u64(&full)?
                .with_context(|| format!("gguf: {path}: missing metadata key `{full}`"))?;
            usize::try_from(value)
                .with_context(|| format!("gguf: {path}: `{full}` = {value} is too large"))
        };
        let optional = |key: &str| -> Result<Option<usize>> {
            Ok(file
                .get_u64(&format!("{arch_name}.{key}"))?
                .map(|v| v as usize))
        };

        let n_embd = required("embedding_length")?;
        let n_head = required("attention.head_count")?;
        ensure!(
            n_head > 0,
            "gguf: {path}: `{arch_name}.attention.head_count` is 0; a model needs at least one attention head"
        );
        ensure!(
            n_embd > 0,
            "gguf: {path}: `{arch_name}.embedding_length` is 0; a model needs a nonzero width"
        );
        let head_dim = optional("attention.key_length")?;
        if let (Some(k), Some(v)) = (head_dim, optional("attention.value_length")?) {
            ensure!(
                k == v,
                "gguf: {path}: key length {k} differs from value length {v}, which is not supported"
            );
        }
        if let Some(rope_dim) = optional("rope.dimension_count")? {
            // Without a key length the head size is C / H, which must divide.
            // Checked here, because the message below would blame the RoPE size.
            ensure!(
                head_dim.is_some() || n_embd.is_multiple_of(n_head),
                "gguf: {path}: `{arch_name}.embedding_length` {n_embd} is not a multiple of \
                 `{arch_name}.attention.head_count` {n_head}, and no key length gives the \
                 head size"
            );
            let head = head_dim.unwrap_or(n_embd / n_head);
            ensure!(
                rope_dim == head,
                "gguf: {path}: rope.dimension_count {rope_dim} differs from the head size {head}: partial RoPE is not supported"
            );
        }
        if let Some(scaling) = file.get_str(&format!("{arch_name}.rope.scaling.type"))? {
            ensure!(
                scaling == "none",
                "gguf: {path}: RoPE scaling `{scaling}` is not supported"
            );
        }
        // Llama 3.1 and later store their RoPE frequency scaling as this
        // tensor instead of a metadata key, and it changes every position.
        ensure!(
            file.tensor_info("rope_freqs.weight").is_none(),
            "gguf: {path}: RoPE frequency factors (`rope_freqs.weight`) are not supported"
        );

        let vocab_size = match optional("vocab_size")? {
            Some(v) => v,
            None => file
                .get_array("tokenizer.ggml.tokens")?
                .map(|tokens| tokens.values.len())
                .or_else(|| file.tensor_info("token_embd.weight").map(|t| t.shape[0]))
                .with_context(|| format!("gguf: {path}: cannot tell the vocabulary size: no `{arch_name}.vocab_size`, tokens or `token_embd.weight`"))?,
        };

        let config = Self {
            arch,
            n_layer: required("block_count")?,
            n_embd,
            n_ff: required("feed_forward_length")?,
            n_head,
            n_head_kv: optional("attention.head_count_kv")?.unwrap_or(n_head),
            head_dim: head_dim.unwrap_or(0),
            vocab_size,
            rope_theta: file.get_f32(&format!("{arch_name}.rope.freq_base"))?.unwrap_or(10_000.0),
            rope_layout,
            rms_eps: file
                .get_f32(&format!("{arch_name}.attention.layer_norm_rms_epsilon"))?
                .with_context(|| {
                    format!("gguf: {path}: missing metadata key `{arch_name}.attention.layer_norm_rms_epsilon`")
                })?,
            context_length: required("context_length")?,
            tied_embeddings: file.tensor_info("output.weight").is_none(),
            attn_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
            bos_token_id: file.get_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_ids: gguf_eos_token_ids(file)?,
        };
        config
            .with_default_head_dim()
            .and_then(ModelConfig::validate)
            .with_context(|| format!("gguf: {path}: invalid model config"))
    }

    /// Reads the config from the text of a Hugging Face `config.json`.
    ///
    /// # Errors
    ///
    /// Fails when the JSON does not parse, names an architecture other than
    /// `LlamaForCausalLM`, `MistralForCausalLM` or `Qwen2ForCausalLM`, uses
    /// RoPE scaling or sliding-window attention, or fails
    /// [`ModelConfig::validate`].
    pub fn from_hf_json(json: &str) -> Result<Self> {
        let raw: HfConfig = serde_json::from_str(json)?;
        raw.into_config()
    }

    /// Checks that sizes are nonzero and under their caps, that heads divide
    /// evenly, and that token ids lie inside the vocabulary.
    ///
    /// # Errors
    ///
    /// Fails on the first inconsistent value, naming it.
    pub fn validate(self) -> Result<Self> {
        let check = |name: &str, value: usize, max: usize| -> Result<()> {
            ensure!(value > 0, "{name} is 0");
            ensure!(value <= max, "{name} {value} exceeds the maximum of {max}");
            Ok(())
        };
        check("n_layer", self.n_layer, MAX_LAYERS)?;
        check("n_embd", self.n_embd, MAX_WIDTH)?;
        check("n_ff", self.n_ff, MAX_WIDTH)?;
        check("n_head", self.n_head, MAX_HEADS)?;
        check("n_head_kv", self.n_head_kv, MAX_HEADS)?;
        check("head_dim", self.head_dim, MAX_HEAD_DIM)?;
        check("vocab_size", self.vocab_size, MAX_VOCAB)?;
        check("context_length", self.context_length, MAX_CONTEXT)?;

        ensure!(
            self.n_head.is_multiple_of(self.n_head_kv),
            "n_head {} is not a multiple of n_head_kv {}",
            self.n_head,
            self.n_head_kv
        );
        ensure!(
            self.head_dim.is_multiple_of(2),
            "head_dim {} is odd, but RoPE rotates pairs",
            self.head_dim
        );
        ensure!(
            self.rope_theta.is_finite() && self.rope_theta > 0.0,
            "rope_theta {} is not a positive number",
            self.rope_theta
        );
        ensure!(
            self.rms_eps.is_finite() && self.rms_eps > 0.0 && self.rms_eps < 1.0,
            "rms_eps {} is outside (0, 1)",
            self.rms_eps
        );
        if let Some(bos) = self.bos_token_id {
            ensure!(
                (bos as usize) < self.vocab_size,
                "bos_token_id {bos} is outside the vocabulary of {}",
                self.vocab_size
            );
        }
        for &eos in &self.eos_token_ids {
            ensure!(
                (eos as usize) < self.vocab_size,
                "eos_token_id {eos} is outside the vocabulary of {}",
                self.vocab_size
            );
        }
        Ok(self)
    }

    /// Fills a missing (zero) head size with C / H, which must divide.
    fn with_default_head_dim(mut self) -> Result<Self> {
        if self.head_dim == 0 {
            ensure!(
                self.n_head > 0 && self.n_embd.is_multiple_of(self.n_head),
                "n_embd {} is not a multiple of n_head {} and no head size is given",
                self.n_embd,
                self.n_head
            );
            self.head_dim = self.n_embd / self.n_head;
        }
        Ok(self)
    }
}

/// Reads the tokens that end generation from GGUF metadata: the EOS token
/// and, when present and different, the end-of-turn token.
///
/// # Errors
///
/// Fails when either id is not a u32.
pub fn gguf_eos_token_ids(file: &GgufFile) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some(id) = file.get_u32(key)?
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The fields of a Hugging Face `config.json` this crate reads, as stored.
#[derive(Clone, Debug, Deserialize)]
pub struct HfConfig {
    /// Class names such as `LlamaForCausalLM`.
    #[serde(default)]
    pub architectures: Vec<String>,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads` (no grouped-query attention).
    pub num_key_value_heads: Option<usize>,
    /// Defaults to `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    /// Defaults to 10000.
    pub rope_theta: Option<f64>,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    /// Defaults to false.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    /// One id or a list of ids.
    pub eos_token_id: Option<serde_json::Value>,
    /// Llama's switch for Q, K, V and output biases; Qwen2 always has Q, K
    /// and V biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Must be null: RoPE scaling is not supported.
    pub rope_scaling: Option<serde_json::Value>,
    /// Qwen2's switch for sliding-window attention; must be false.
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Llama's switch for FFN biases; must be false.
    #[serde(default)]
    pub mlp_bias: bool,
    /// The FFN activation; must be `silu` (SwiGLU). Defaults to `silu`.
    pub hidden_act: Option<String>,
}

impl HfConfig {
    /// Validates the stored config into a [`ModelConfig`].
    ///
    /// # Errors
    ///
    /// As for [`ModelConfig::from_hf_json`].
    pub fn into_config(self) -> Result<ModelConfig> {
        let arch = match self.architectures.first().map(String::as_str) {
            Some("LlamaForCausalLM" | "MistralForCausalLM") => Arch::Llama,
            Some("Qwen2ForCausalLM") => Arch::Qwen2,
            Some(other) => bail!(
                "config.json: unsupported architecture `{other}`: expected LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM"
            ),
            None => bail!("config.json: `architectures` is missing or empty"),
        };
        if let Some(scaling) = self.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            bail!("config.json: rope_scaling {scaling} is not supported");
        }
        ensure!(
            !self.use_sliding_window,
            "config.json: sliding-window attention is not supported"
        );
        ensure!(
            !self.mlp_bias,
            "config.json: mlp_bias = true is not supported"
        );
        if let Some(act) = self.hidden_act.as_deref() {
            ensure!(
                act == "silu",
                "config.json: hidden_act `{act}` is not supported: expected `silu`"
            );
        }
        // NOTE: Mistral configs may set `sliding_window`; it only matters
        // past that many tokens and is ignored here.
        ensure!(
            !(arch == Arch::Llama && self.attention_bias),
            "config.json: attention_bias = true is not supported for Llama"
        );

        let eos_token_ids = match &self.eos_token_id {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(value) => serde_json::from_value::<EosIds>(value.clone())
                .with_context(|| {
                    format!("config.json: eos_token_id {value} is not an id or a list of ids")
                })?
                .into_vec(),
        };

        let config = ModelConfig {
            arch,
            n_layer: self.num_hidden_layers,
            n_embd: self.hidden_size,
            n_ff: self.intermediate_size,
            n_head: self.num_attention_heads,
            n_head_kv: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self.head_dim.unwrap_or(0),
            vocab_size: self.vocab_size,
            rope_theta: self.rope_theta.unwrap_or(10_000.0) as f32,
            rope_layout: RopeLayout::Halves,
            rms_eps: self.rms_norm_eps as f32,
            context_length: self.max_position_embeddings,
            tied_embeddings: self.tie_word_embeddings,
            attn_bias: arch == Arch::Qwen2,
            bos_token_id: self.bos_token_id,
            eos_token_ids,
        };
        config
            .with_default_head_dim()
            .and_then(ModelConfig::validate)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EosIds {
    One(u32),
    Many(Vec<u32>),
}

impl EosIds {
    fn into_vec(self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![id],
            Self::Many(ids) => ids,
        }
    }
}

#[cfg(test)]
mod tests;
