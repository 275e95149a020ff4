//! A model checkpoint, GGUF file or Hugging Face folder, behind one
//! interface: the validated config, tensors under their GGUF names, the
//! tokenizer and the chat template.
//!
//! Canonical tensor names and shapes (row-major, outermost first; C width,
//! F FFN size, H query heads, G key/value heads, D head size, V vocabulary):
//!
//! | name | shape |
//! | --- | --- |
//! | `token_embd.weight` | [V, C] |
//! | `blk.{i}.attn_norm.weight` | [C] |
//! | `blk.{i}.attn_q.weight` | [H*D, C] |
//! | `blk.{i}.attn_k.weight`, `blk.{i}.attn_v.weight` | [G*D, C] |
//! | `blk.{i}.attn_q.bias` (Qwen2) | [H*D] |
//! | `blk.{i}.attn_k.bias`, `blk.{i}.attn_v.bias` (Qwen2) | [G*D] |
//! | `blk.{i}.attn_output.weight` | [C, H*D] |
//! | `blk.{i}.ffn_norm.weight` | [C] |
//! | `blk.{i}.ffn_gate.weight`, `blk.{i}.ffn_up.weight` | [F, C] |
//! | `blk.{i}.ffn_down.weight` | [C, F] |
//! | `output_norm.weight` | [C] |
//! | `output.weight` (absent when tied) | [V, C] |

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::chat::ChatTemplate;
use crate::gguf::GgufFile;
use crate::hf::HfCheckpoint;
use crate::{ModelConfig, TensorView, Tokenizer};

/// A cheap identity of a checkpoint's weights: where they are and how many
/// bytes they occupy. It changes when a file is replaced by one of another
/// size, but not when bytes change in place.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WeightsId {
    /// The canonical path of the GGUF file or checkpoint folder.
    pub path: PathBuf,
    /// The total size of the weight files, in bytes.
    pub bytes: u64,
}

impl fmt::Display for WeightsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} bytes)", self.path.display(), self.bytes)
    }
}

enum Source {
    Gguf(GgufFile),
    Hf(HfCheckpoint),
}

/// An opened checkpoint with its config validated and its tensors checked
/// against the config.
pub struct Checkpoint {
    path: PathBuf,
    source: Source,
    config: ModelConfig,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Opens a GGUF file, or a Hugging Face checkpoint folder when `path` is
    /// a directory, and checks that every tensor the config calls for is
    /// present with the right shape.
    ///
    /// # Errors
    ///
    /// Fails when the file or folder cannot be read or is malformed, the
    /// config is invalid, or a tensor is missing or has the wrong shape.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Reading a named pipe or a device would block or never end.
        if let Ok(meta) = std::fs::metadata(path) {
            ensure!(
                meta.is_file() || meta.is_dir(),
                "{}: not a regular file or folder; a model is a .gguf file or a Hugging Face \
                 folder",
                path.display()
            );
        }
        let source = if path.is_dir() {
            ensure!(
                path.join("config.json").is_file(),
                "{}: the folder has no config.json. A model is a .gguf file or a Hugging \
                 Face folder with config.json, *.safetensors and tokenizer.json",
                path.display()
            );
            Source::Hf(HfCheckpoint::open(path)?)
        } else if path.file_name().is_some_and(|name| name == "config.json")
            || path.extension().is_some_and(|ext| ext == "safetensors")
        {
            let folder = path
                .parent()
                .filter(|folder| !folder.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            bail!(
                "{}: this file is part of a Hugging Face checkpoint. Give its folder {} \
                 as the model",
                path.display(),
                folder.display()
            );
        } else {
            Source::Gguf(GgufFile::open(path)?)
        };
        let config = match &source {
            Source::Gguf(file) => ModelConfig::from_gguf(file)?,
            Source::Hf(hf) => hf.config().clone(),
        };
        let checkpoint = Self {
            path: path.to_path_buf(),
            source,
            config,
        };
        checkpoint.check_tensors()?;
        Ok(checkpoint)
    }

    /// Returns the path the checkpoint was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the validated model config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Returns the GGUF file, when the checkpoint is one.
    pub fn gguf(&self) -> Option<&GgufFile> {
        match &self.source {
            Source::Gguf(file) => Some(file),
            Source::Hf(_) => None,
        }
    }

    /// Returns the Hugging Face folder, when the checkpoint is one.
    pub fn hf(&self) -> Option<&HfCheckpoint> {
        match &self.source {
            Source::Hf(hf) => Some(hf),
            Source::Gguf(_) => None,
        }
    }

    /// Returns a view of the tensor with GGUF name `name`.
    ///
    /// # Errors
    ///
    /// Fails when the checkpoint has no such tensor.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        match &self.source {
            Source::Gguf(file) => file.tensor(name),
            Source::Hf(hf) => hf.tensor(name),
        }
    }

    /// Returns whether the checkpoint has a tensor with GGUF name `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        match &self.source {
            Source::Gguf(file) => file.tensor_info(name).is_some(),
            Source::Hf(hf) => hf.hf_name(name).is_some(),
        }
    }

    /// Returns the GGUF names of all tensors, in file order for GGUF and sorted for
    /// Hugging Face folders.
    pub fn tensor_names(&self) -> Vec<&str> {
        match &self.source {
            Source::Gguf(file) => file
                .tensor_infos()
                .iter()
                .map(|t| t.name.as_str())
                .collect(),
            Source::Hf(hf) => hf.tensor_names(),
        }
    }

    /// Builds the tokenizer.
    ///
    /// # Errors
    ///
    /// Fails when the tokenizer metadata or `tokenizer.json` is missing or
    /// invalid.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        match &self.source {
            Source::Gguf(file) => Tokenizer::from_gguf(file),
            Source::Hf(hf) => hf.tokenizer(),
        }
    }

    /// Compiles the model's chat template, or ChatML when it has none.
    /// `bos_token` and `eos_token` are the texts of the configured BOS and
    /// first EOS token.
    ///
    /// # Errors
    ///
    /// Fails when the template does not compile or the special tokens
    /// cannot be read.
    pub fn chat_template(&self) -> Result<ChatTemplate> {
        match &self.source {
            Source::Gguf(file) => {
                let source = file.get_str("tokenizer.chat_template")?;
                let tokens = file
                    .get_str_array("tokenizer.ggml.tokens")?
                    .unwrap_or_default();
                let text_of = |id: Option<u32>| {
                    id.and_then(|id| tokens.get(id as usize).copied())
                        .unwrap_or("")
                };
                let bos = text_of(self.config.bos_token_id);
                let eos = text_of(self.config.eos_token_ids.first().copied());
                ChatTemplate::new(source, bos, eos)
                    .with_context(|| format!("{}: tokenizer.chat_template", self.path.display()))
            }
            Source::Hf(hf) => {
                let config = hf.tokenizer_config();
                let bos = config.bos_token.as_ref().map_or("", |t| t.as_str());
                let eos = config.eos_token.as_ref().map_or("", |t| t.as_str());
                ChatTemplate::new(hf.chat_template_source(), bos, eos)
                    .with_context(|| hf.chat_template_file().display().to_string())
            }
        }
    }

    /// Returns a cheap identity of the weights (canonical path and total size).
    ///
    /// # Errors
    ///
    /// Fails when the path cannot be canonicalized.
    pub fn weights_id(&self) -> Result<WeightsId> {
        let path = self
            .path
            .canonicalize()
            .with_context(|| format!("{}: failed to resolve path", self.path.display()))?;
        let bytes = match &self.source {
            Source::Gguf(file) => file.file_size(),
            Source::Hf(hf) => hf.weights_size(),
        };
        Ok(WeightsId { path, bytes })
    }

    fn check_tensors(&self) -> Result<()> {
        for (name, shape) in expected_tensors(&self.config) {
            let stored = self.stored_name(&name);
            ensure!(
                self.has_tensor(&name),
                "{}: tensor `{stored}` is missing, but the model's config requires it",
                self.path.display()
            );
            let tensor = self.tensor(&name)?;
            ensure!(
                tensor.shape == shape,
                "{}: tensor `{stored}` has shape {:?}: expected {shape:?}",
                self.path.display(),
                tensor.shape
            );
        }
        self.check_no_unused_tensors()
    }

    /// Fails when the checkpoint contains tensors the config does not use. A
    /// config that declares too few layers, or no attention biases where
    /// the weights have them, would otherwise run and give wrong output.
    fn check_no_unused_tensors(&self) -> Result<()> {
        let expected: std::collections::HashSet<String> = expected_tensors(&self.config)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        // A Hugging Face folder may store `lm_head.weight` even with tied
        // embeddings, as transformers does; `token_embd.weight` serves then.
        let mut unused: Vec<String> = self
            .tensor_names()
            .into_iter()
            .filter(|name| !expected.contains(*name))
            .filter(|name| !(self.config.tied_embeddings && *name == "output.weight"))
            .map(|name| self.stored_name(name))
            .collect();
        if let Source::Hf(hf) = &self.source {
            unused.extend(hf.unmapped_tensors().iter().cloned());
        }
        if unused.is_empty() {
            return Ok(());
        }
        unused.sort_unstable();
        let listed: Vec<String> = unused
            .iter()
            .take(4)
            .map(|name| format!("`{name}`"))
            .collect();
        let more = if unused.len() > listed.len() {
            format!(" and {} more", unused.len() - listed.len())
        } else {
            String::new()
        };
        let config = match &self.source {
            Source::Gguf(_) => "the GGUF metadata",
            Source::Hf(_) => "config.json",
        };
        bail!(
            "{}: the model's config does not use {} of its tensors ({}{more}); check that \
             the layer count ({}) and attention biases in {config} match the weights, and \
             that the checkpoint is of a supported architecture (llama or qwen2)",
            self.path.display(),
            unused.len(),
            listed.join(", "),
            self.config.n_layer
        )
    }

    /// Returns the name that the checkpoint's own files use for the tensor
    /// with GGUF name `name`, so that errors name what the user can find.
    fn stored_name(&self, name: &str) -> String {
        match &self.source {
            Source::Gguf(_) => name.to_owned(),
            Source::Hf(hf) => hf
                .hf_name(name)
                .map(str::to_owned)
                .or_else(|| crate::hf::hf_name_of(name))
                .unwrap_or_else(|| name.to_owned()),
        }
    }
}

/// Returns the GGUF names and shapes of every tensor `config` requires, in forward
/// order.
pub fn expected_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let ModelConfig {
        n_layer,
        n_embd: c,
        n_ff: f,
        vocab_size: v,
        ..
    } = *config;
    let (q, kv) = (config.q_dim(), config.kv_dim());

    let mut tensors = vec![("token_embd.weight".to_owned(), vec![v, c])];
    for i in 0..n_layer {
        let mut block = vec![
            ("attn_norm.weight", vec![c]),
            ("attn_q.weight", vec![q, c]),
            ("attn_k.weight", vec![kv, c]),
            ("attn_v.weight", vec![kv, c]),
        ];
        if config.attn_bias {
            block.push(("attn_q.bias", vec![q]));
            block.push(("attn_k.bias", vec![kv]));
            block.push(("attn_v.bias", vec![kv]));
        }
        block.extend([
            ("attn_output.weight", vec![c, q]),
            ("ffn_norm.weight", vec![c]),
            ("ffn_gate.weight", vec![f, c]),
            ("ffn_up.weight", vec![f, c]),
            ("ffn_down.weight", vec![c, f]),
        ]);
        tensors.extend(
            block
                .into_iter()
                .map(|(name, shape)| (format!("blk.{i}.{name}"), shape)),
        );
    }
    tensors.push(("output_norm.weight".to_owned(), vec![c]));
    if !config.tied_embeddings {
        tensors.push(("output.weight".to_owned(), vec![v, c]));
    }
    tensors
}

#[cfg(test)]
mod tests;
