//! Hugging Face checkpoint folders: `config.json`, one or more memory-mapped
//! `*.safetensors` shards (listed by `model.safetensors.index.json` when
//! sharded), `tokenizer.json`, and optionally `tokenizer_config.json` for
//! the chat template and special token texts.
//!
//! Tensors are exposed under their GGUF names (see [`gguf_name`]); their
//! shapes already follow this crate's row-major `[N, K]` convention. Q and K
//! weights keep Hugging Face's order, so RoPE uses [`RopeLayout::Halves`].
//!
//! [`RopeLayout::Halves`]: crate::RopeLayout::Halves

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use memmap2::Mmap;
use safetensors::{Dtype as SafeDtype, SafeTensors};
use serde::Deserialize;

use crate::{DType, ModelConfig, TensorView, Tokenizer};

/// The index file of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// A Hugging Face checkpoint folder with its shards mapped.
pub struct HfCheckpoint {
    dir: PathBuf,
    config: ModelConfig,
    shards: Vec<Shard>,
    tensors: HashMap<String, HfTensor>,
    /// Names of stored tensors that map to no GGUF name, other than
    /// rotary frequency buffers.
    unmapped: Vec<String>,
    tokenizer_config: TokenizerConfig,
    /// The contents of `chat_template.jinja`, where newer transformers
    /// versions save the template.
    template_file: Option<String>,
}

struct Shard {
    path: PathBuf,
    mmap: Mmap,
}

/// The location of one tensor: its shard, its name there, type, shape and
/// byte range inside the shard file.
struct HfTensor {
    shard: usize,
    hf_name: String,
    dtype: DType,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// The fields of `tokenizer_config.json` this crate reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TokenizerConfig {
    /// One template, or a list of named templates.
    pub chat_template: Option<ChatTemplateField>,
    pub bos_token: Option<TokenText>,
    pub eos_token: Option<TokenText>,
}

/// `chat_template` as stored: one string or a list of named templates.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ChatTemplateField {
    One(String),
    Named(Vec<NamedTemplate>),
}

/// One entry of a list of named chat templates.
#[derive(Clone, Debug, Deserialize)]
pub struct NamedTemplate {
    pub name: String,
    pub template: String,
}

/// A special token as stored: its text, or an object with its `content`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum TokenText {
    Text(String),
    Object { content: String },
}

impl TokenText {
    /// Returns the token's text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Text(text) | Self::Object { content: text } => text,
        }
    }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

impl HfCheckpoint {
    /// Opens the checkpoint folder `dir`, reading its config and mapping
    /// every shard.
    ///
    /// # Errors
    ///
    /// Fails when `config.json` is missing or invalid, or no shard is found.
    /// Also fails when a shard or the index is malformed or disagrees with
    /// the shards, when a tensor has a type other than F32, F16 or BF16, or
    /// when two tensors map to the same GGUF name.
    pub fn open(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("{}: failed to read", config_path.display()))?;
        let config = ModelConfig::from_hf_json(&config_text)
            .with_context(|| format!("{}: invalid config", config_path.display()))?;

        let index = read_index(dir)?;
        let shard_names: BTreeSet<String> = match &index {
            Some(index) => index.weight_map.values().cloned().collect(),
            None => list_safetensors(dir)?,
        };
        ensure!(
            !shard_names.is_empty(),
            "{}: no *.safetensors files found",
            dir.display()
        );

        let mut shards = Vec::with_capacity(shard_names.len());
        let mut tensors = HashMap::new();
        let mut unmapped = Vec::new();
        for name in &shard_names {
            ensure!(
                !name.contains('/') && !name.contains('\\'),
                "{}: shard name `{name}` is not a plain file name",
                dir.join(INDEX_FILE).display()
            );
            let shard = map_shard(&dir.join(name))?;
            index_shard(&shard, &shards, &mut tensors, &mut unmapped)?;
            shards.push(shard);
        }

        if let Some(index) = &index {
            check_index(dir, index, &shards, &tensors)?;
        }

        let tokenizer_config = read_tokenizer_config(dir)?;
        let template_path = dir.join("chat_template.jinja");
        let template_file = if template_path.is_file() {
            let text = std::fs::read_to_string(&template_path)
                .with_context(|| format!("{}: failed to read", template_path.display()))?;
            Some(text)
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            shards,
            tensors,
            unmapped,
            tokenizer_config,
            template_file,
        })
    }

    /// Returns the checkpoint folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the validated model config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Returns the parsed `tokenizer_config.json`, empty when the file is absent.
    pub fn tokenizer_config(&self) -> &TokenizerConfig {
        &self.tokenizer_config
    }

    /// Returns the total size of the shard files, in bytes.
    pub fn weights_size(&self) -> u64 {
        self.shards.iter().map(|s| s.mmap.len() as u64).sum()
    }

    /// Returns the GGUF names of all mapped tensors, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Returns the stored names of the tensors that the engine has no use
    /// for, such as those of another architecture's modules. Rotary
    /// frequency buffers (`rotary_emb.inv_freq`) are left out: the engine
    /// computes those from the config.
    pub fn unmapped_tensors(&self) -> &[String] {
        &self.unmapped
    }

    /// Returns the Hugging Face name of the tensor with GGUF name `name`, if present.
    pub fn hf_name(&self, name: &str) -> Option<&str> {
        self.tensors.get(name).map(|t| t.hf_name.as_str())
    }

    /// Returns a view of the tensor with GGUF name `name`.
    ///
    /// # Errors
    ///
    /// Fails when no tensor maps to that name.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let (key, tensor) = self
            .tensors
            .get_key_value(name)
            .ok_or_else(|| anyhow!("{}: tensor `{name}` not found", self.dir.display()))?;
        Ok(TensorView {
            name: key,
            dtype: tensor.dtype,
            shape: tensor.shape.clone(),
            data: &self.shards[tensor.shard].mmap[tensor.start..tensor.end],
        })
    }

    /// Loads `tokenizer.json`. End-of-sequence ids come from `config.json`,
    /// else from `tokenizer_config.json`'s `eos_token`.
    ///
    /// # Errors
    ///
    /// Fails when `tokenizer.json` is missing or invalid.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let path = self.dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_hf_file(
            &path,
            self.config.bos_token_id,
            self.config.eos_token_ids.clone(),
        )?;
        if !tokenizer.eos_ids().is_empty() {
            return Ok(tokenizer);
        }
        let eos_id = self
            .tokenizer_config
            .eos_token
            .as_ref()
            .and_then(|text| tokenizer.token_id(text.as_str()));
        tokenizer.with_eos_ids(eos_id.into_iter().collect())
    }

    /// Returns the chat template source: from `tokenizer_config.json` (the
    /// one named `default` when there is a list), else from
    /// `chat_template.jinja`, if either exists.
    pub fn chat_template_source(&self) -> Option<&str> {
        match self.tokenizer_config.chat_template.as_ref() {
            Some(ChatTemplateField::One(source)) => Some(source),
            Some(ChatTemplateField::Named(list)) => list
                .iter()
                .find(|t| t.name == "default")
                .map(|t| t.template.as_str()),
            None => self.template_file.as_deref(),
        }
    }

    /// Returns the file that [`HfCheckpoint::chat_template_source`] comes
    /// from, for errors.
    pub fn chat_template_file(&self) -> PathBuf {
        let name = if self.tokenizer_config.chat_template.is_some() {
            "tokenizer_config.json"
        } else {
            "chat_template.jinja"
        };
        self.dir.join(name)
    }
}

/// The Hugging Face names of the per-layer modules of Llama, Mistral and
/// Qwen2, with their GGUF names.
const LAYER_MODULES: [(&str, &str); 9] = [
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

/// The Hugging Face names of the tensors outside the layers, with their
/// GGUF names.
const MODEL_TENSORS: [(&str, &str); 3] = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// Returns the GGUF name of a Hugging Face Llama, Mistral or Qwen2 tensor name, or
/// `None` for tensors the engine does not use (such as
/// `rotary_emb.inv_freq`).
pub fn gguf_name(hf_name: &str) -> Option<String> {
    if let Some(&(_, gguf)) = MODEL_TENSORS.iter().find(|(hf, _)| *hf == hf_name) {
        return Some(gguf.to_owned());
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let &(_, gguf_module) = LAYER_MODULES.iter().find(|(hf, _)| *hf == module)?;
    Some(format!("blk.{layer}.{gguf_module}.{kind}"))
}

/// Returns the Hugging Face name of a GGUF tensor name, the inverse of
/// [`gguf_name`], or `None` for names it does not produce.
pub fn hf_name_of(gguf_name: &str) -> Option<String> {
    if let Some(&(hf, _)) = MODEL_TENSORS.iter().find(|(_, gguf)| *gguf == gguf_name) {
        return Some(hf.to_owned());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    let &(hf_module, _) = LAYER_MODULES.iter().find(|(_, gguf)| *gguf == module)?;
    Some(format!("model.layers.{layer}.{hf_module}.{kind}"))
}

fn read_index(dir: &Path) -> Result<Option<ShardIndex>> {
    let path = dir.join(INDEX_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: failed to read", path.display()))?;
    let index = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid index", path.display()))?;
    Ok(Some(index))
}

/// Safetensors files that may sit in a model folder without holding its
/// weights: laser-host's training state (parameters and AdamW moments) and
/// a PEFT LoRA adapter.
pub const NOT_SHARDS: [&str; 2] = ["training_state.safetensors", "adapter_model.safetensors"];

/// Returns the names of the folder's weight shards: its `*.safetensors`
/// files except [`NOT_SHARDS`].
fn list_safetensors(dir: &Path) -> Result<BTreeSet<String>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: failed to list", dir.display()))?;
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: failed to list", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".safetensors") && !NOT_SHARDS.contains(&name.as_str()) {
            names.insert(name);
        }
    }
    Ok(names)
}

fn map_shard(path: &Path) -> Result<Shard> {
    let file = File::open(path).with_context(|| format!("{}: failed to open", path.display()))?;
    // SAFETY: the map is read-only; shard files are not modified in place
    // while loaded.
    let mmap = unsafe { Mmap::map(&file) }
        .with_context(|| format!("{}: failed to memory-map", path.display()))?;
    Ok(Shard {
        path: path.to_path_buf(),
        mmap,
    })
}

/// Explains why the safetensors crate rejected `bytes`, since its message
/// may name no tensor or the wrong one. It finds a shape that does not fit
/// its byte range, a range past the end of a truncated file, and ranges
/// that overlap or leave gaps, and returns `None` for anything else.
fn explain_bad_layout(bytes: &[u8]) -> Option<String> {
    let header_len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header_end = usize::try_from(header_len).ok()?.checked_add(8)?;
    if header_end > bytes.len() {
        return Some(format!(
            "its header claims {header_len} bytes, but the file has {} after the length: \
             the file is truncated",
            bytes.len() - 8
        ));
    }
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..header_end]).ok()?;
    let data_len = (bytes.len() - header_end) as u64;
    let mut ranges = Vec::new();
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info.get("dtype")?.as_str()?;
        let size: u64 = match dtype {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
            _ => return None,
        };
        let shape: Vec<u64> = info
            .get("shape")?
            .as_array()?
            .iter()
            .map(serde_json::Value::as_u64)
            .collect::<Option<_>>()?;
        let offsets = info.get("data_offsets")?.as_array()?;
        let (begin, end) = (offsets.first()?.as_u64()?, offsets.get(1)?.as_u64()?);
        let bytes_needed = shape
            .iter()
            .try_fold(size, |total, &dim| total.checked_mul(dim))?;
        if end < begin || end - begin != bytes_needed {
            return Some(format!(
                "tensor `{name}` of shape {shape:?} in {dtype} takes {bytes_needed} bytes, but \
                 its offsets {begin}..{end} give it {}",
                end.saturating_sub(begin)
            ));
        }
        if end > data_len {
            return Some(format!(
                "tensor `{name}` ends at byte {end} of the data, but the file holds {data_len} \
                 data bytes: the file is truncated"
            ));
        }
        ranges.push((begin, end, name));
    }
    ranges.sort_unstable();
    let mut covered = 0;
    for (begin, end, name) in ranges {
        if begin != covered {
            return Some(format!(
                "tensor `{name}` starts at byte {begin} of the data, where the tensors before \
                 it end at {covered}: its range overlaps another or leaves a gap"
            ));
        }
        covered = end;
    }
    (covered != data_len).then(|| {
        format!(
            "the tensors fill {covered} data bytes, but the file holds {data_len}: a tensor is \
             missing from the header or the file has extra bytes"
        )
    })
}

/// Adds the tensors of `shard` to `tensors` under their GGUF names, and
/// the names of those with no GGUF name to `unmapped`. `earlier` contains
/// the shards indexed before this one.
fn index_shard(
    shard: &Shard,
    earlier: &[Shard],
    tensors: &mut HashMap<String, HfTensor>,
    unmapped: &mut Vec<String>,
) -> Result<()> {
    let shard_index = earlier.len();
    let path = shard.path.display();
    let (header_len, metadata) = SafeTensors::read_metadata(&shard.mmap).map_err(|e| {
        let reason = explain_bad_layout(&shard.mmap).unwrap_or_else(|| e.to_string());
        anyhow!("{path}: invalid safetensors file: {reason}")
    })?;
    // The data section follows the 8-byte header length and the header.
    let data_start = header_len
        .checked_add(8)
        .ok_or_else(|| anyhow!("{path}: header length {header_len} overflows"))?;

    for (hf_name, info) in metadata.tensors() {
        let Some(name) = gguf_name(&hf_name) else {
            if !hf_name.ends_with("rotary_emb.inv_freq") {
                unmapped.push(hf_name.clone());
            }
            continue;
        };
        let dtype = match info.dtype {
            SafeDtype::F32 => DType::F32,
            SafeDtype::F16 => DType::F16,
            SafeDtype::BF16 => DType::BF16,
            other => {
                bail!("{path}: tensor `{hf_name}` has type {other:?}: expected F32, F16 or BF16")
            }
        };
        let (begin, end) = info.data_offsets;
        let start = data_start.checked_add(begin);
        let stop = data_start.checked_add(end);
        let (Some(start), Some(end)) = (start, stop) else {
            bail!("{path}: tensor `{hf_name}` offsets overflow");
        };
        ensure!(
            start <= end && end <= shard.mmap.len(),
            "{path}: tensor `{hf_name}` bytes {start}..{end} lie outside the file ({} bytes)",
            shard.mmap.len()
        );
        let n: usize = info.shape.iter().product();
        ensure!(
            dtype.bytes_for(n) == Some(end - start),
            "{path}: tensor `{hf_name}` has {} bytes: expected {n} {dtype} values",
            end - start
        );
        let tensor = HfTensor {
            shard: shard_index,
            hf_name: hf_name.clone(),
            dtype,
            shape: info.shape.clone(),
            start,
            end,
        };
        if let Some(previous) = tensors.insert(name.clone(), tensor) {
            ensure!(
                previous.shard == shard_index,
                "{path}: tensor `{hf_name}` is also stored in {}: remove the extra shard \
                 or the duplicate tensor",
                earlier[previous.shard].path.display()
            );
            bail!(
                "{path}: tensor `{hf_name}` and `{}` both map to `{name}`",
                previous.hf_name
            );
        }
    }
    Ok(())
}

/// Checks that every tensor the index lists lies in the shard it names.
fn check_index(
    dir: &Path,
    index: &ShardIndex,
    shards: &[Shard],
    tensors: &HashMap<String, HfTensor>,
) -> Result<()> {
    for (hf_name, shard_name) in &index.weight_map {
        let Some(name) = gguf_name(hf_name) else {
            continue;
        };
        let found = tensors
            .get(&name)
            .map(|t| shards[t.shard].path.file_name() == Some(shard_name.as_ref()));
        ensure!(
            found == Some(true),
            "{}: tensor `{hf_name}` is not in shard `{shard_name}`",
            dir.join(INDEX_FILE).display()
        );
    }
    Ok(())
}

fn read_tokenizer_config(dir: &Path) -> Result<TokenizerConfig> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(TokenizerConfig::default());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: failed to read", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid tokenizer config", path.display()))
}

#[cfg(test)]
mod tests;
