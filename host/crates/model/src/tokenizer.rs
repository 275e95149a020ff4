//! The tokenizer: a byte-level BPE built from GGUF `tokenizer.ggml.*`
//! metadata the way llama.cpp builds it, or loaded from a Hugging Face
//! `tokenizer.json`, both run by the `tokenizers` crate.
//!
//! From GGUF, `tokenizer.ggml.pre` picks the pre-tokenizer: the list of
//! split regexes llama.cpp uses for that type (`llama-vocab.cpp`,
//! `llm_tokenizer_bpe`), each splitting the pieces left by the one before
//! and keeping both matches and the text between them. Control tokens
//! (token type 3) become special tokens, parsed as one id only when
//! requested. User-defined tokens (type 4) are always parsed as one id, as
//! in llama.cpp.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::config::gguf_eos_token_ids;
use crate::gguf::GgufFile;

/// GGUF token type of a control token such as `<|im_start|>`.
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF token type of a user-defined token, always matched whole.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// GPT-2's split: contractions, letters, digits, other symbols, each with
/// an optional leading space, and runs of whitespace.
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's split, with the case-insensitive contractions spelled out as
/// llama.cpp does.
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: Llama 3's with single digits.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Returns the split regexes for a GGUF `tokenizer.ggml.pre` value, and whether
/// whole pieces found in the vocabulary skip the merges (llama.cpp's
/// `ignore_merges`, set for Llama 3).
fn pre_tokenizer_regexes(pre: &str) -> Option<(Vec<&'static str>, bool)> {
    Some(match pre {
        "default" => (
            vec![
                r"[\p{P}\$\+<=>\^~\|]+",
                GPT2_SPLIT,
                r"\p{N}+",
                "[0-9][0-9][0-9]",
            ],
            false,
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => (vec![LLAMA3_SPLIT], true),
        "dbrx" | "smaug-bpe" => (vec![LLAMA3_SPLIT], false),
        "qwen2" | "stablelm2" | "deepseek-r1-qwen" | "hunyuan" => (vec![QWEN2_SPLIT], false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            (vec![r"\p{N}", GPT2_SPLIT], false)
        }
        "gpt-2" | "gpt2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" => {
            (vec![GPT2_SPLIT], false)
        }
        _ => return None,
    })
}

/// A tokenizer with its special token ids.
#[derive(Clone)]
pub struct Tokenizer {
    /// Splits special tokens out of the text.
    parsing: tokenizers::Tokenizer,
    /// Encodes special tokens' text as plain text.
    literal: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    eos_ids: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    ///
    /// # Errors
    ///
    /// Fails when the model type is not `gpt2` (byte-level BPE), the
    /// pre-tokenizer type is unknown, the tokens or merges are missing or
    /// malformed, or a special token id lies outside the vocabulary.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let path = file.path().display();
        let model = file.get_str("tokenizer.ggml.model")?.with_context(|| {
            format!("gguf: {path}: missing metadata key `tokenizer.ggml.model`")
        })?;
        ensure!(
            model == "gpt2",
            "gguf: {path}: tokenizer model `{model}` is not supported: expected `gpt2` (byte-level BPE)"
        );
        // llama.cpp falls back to its default split when the key is absent.
        let pre = file.get_str("tokenizer.ggml.pre")?.unwrap_or("default");
        let (regexes, ignore_merges) = pre_tokenizer_regexes(pre).with_context(|| {
            format!("gguf: {path}: unknown pre-tokenizer type `{pre}` in `tokenizer.ggml.pre`")
        })?;

        let tokens = file
            .get_str_array("tokenizer.ggml.tokens")?
            .with_context(|| {
                format!("gguf: {path}: missing metadata key `tokenizer.ggml.tokens`")
            })?;
        let merges = file
            .get_str_array("tokenizer.ggml.merges")?
            .with_context(|| {
                format!("gguf: {path}: missing metadata key `tokenizer.ggml.merges`")
            })?;
        let token_types = file
            .get_i64_array("tokenizer.ggml.token_type")?
            .unwrap_or_default();
        ensure!(
            token_types.is_empty() || token_types.len() == tokens.len(),
            "gguf: {path}: {} token types for {} tokens",
            token_types.len(),
            tokens.len()
        );

        // NOTE: a token string that occurs twice keeps only its last id in
        // the vocabulary, so the earlier id never comes out of `encode`.
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| ((*token).to_owned(), id as u32))
            .collect();
        let mut merge_pairs = Vec::with_capacity(merges.len());
        for (i, merge) in merges.iter().enumerate() {
            let pair = split_merge(merge).with_context(|| {
                format!(
                    "gguf: {path}: merge {i} {merge:?} in `tokenizer.ggml.merges` lacks a space"
                )
            })?;
            merge_pairs.push(pair);
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merge_pairs)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| anyhow!("gguf: {path}: invalid BPE vocabulary or merges: {e}"))?;

        let mut pre_tokenizers = Vec::with_capacity(regexes.len() + 1);
        for regex in regexes {
            let split = Split::new(
                SplitPattern::Regex(regex.to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| anyhow!("invalid pre-tokenizer regex {regex:?}: {e}"))?;
            pre_tokenizers.push(PreTokenizerWrapper::Split(split));
        }
        // The splits above replace ByteLevel's own regex, and llama.cpp adds
        // no prefix space for these vocabularies.
        let byte_level = ByteLevel::default()
            .add_prefix_space(false)
            .trim_offsets(false)
            .use_regex(false);
        pre_tokenizers.push(PreTokenizerWrapper::ByteLevel(byte_level));

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner
            .with_pre_tokenizer(Some(Sequence::new(pre_tokenizers)))
            .with_decoder(Some(ByteLevelDecoder::default()));
        let special: Vec<AddedToken> =
            special_tokens(&tokens, &token_types, TOKEN_TYPE_CONTROL, true);
        let user_defined = special_tokens(&tokens, &token_types, TOKEN_TYPE_USER_DEFINED, false);
        inner.add_special_tokens(&special);
        inner.add_tokens(&user_defined);

        let bos_id = file.get_u32("tokenizer.ggml.bos_token_id")?;
        let eos_ids = gguf_eos_token_ids(file)?;
        Self::new(inner, bos_id, eos_ids)
            .with_context(|| format!("gguf: {path}: invalid tokenizer"))
    }

    /// Loads a Hugging Face `tokenizer.json`, with the special token ids
    /// taken from the model config.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be read or parsed, or a special token id
    /// lies outside the vocabulary.
    pub fn from_hf_file(path: &Path, bos_id: Option<u32>, eos_ids: Vec<u32>) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: invalid tokenizer: {e}", path.display()))?;
        Self::new(inner, bos_id, eos_ids)
            .with_context(|| format!("{}: invalid tokenizer", path.display()))
    }

    fn new(parsing: tokenizers::Tokenizer, bos_id: Option<u32>, eos_ids: Vec<u32>) -> Result<Self> {
        let vocab_size = parsing.get_vocab_size(true);
        for id in bos_id.iter().chain(&eos_ids) {
            ensure!(
                (*id as usize) < vocab_size,
                "special token id {id} is outside the vocabulary of {vocab_size}"
            );
        }
        let mut literal = parsing.clone();
        literal.set_encode_special_tokens(true);
        Ok(Self {
            parsing,
            literal,
            bos_id,
            eos_ids,
        })
    }

    /// Replaces the end-of-sequence ids.
    ///
    /// # Errors
    ///
    /// Fails when an id lies outside the vocabulary.
    pub fn with_eos_ids(self, eos_ids: Vec<u32>) -> Result<Self> {
        Self::new(self.parsing, self.bos_id, eos_ids)
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json`, so a
    /// tokenizer built from GGUF metadata can be reused as one.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be written.
    pub fn save_json(&self, path: &Path) -> Result<()> {
        self.parsing
            .save(path, false)
            .map_err(|e| anyhow!("tokenizer: failed to write {}: {e}", path.display()))
    }

    /// Encodes `text` into token ids, without adding BOS. With
    /// `parse_special`, the text of special tokens such as `<|im_start|>`
    /// becomes their single id; without it, that text is tokenized like any
    /// other.
    ///
    /// # Errors
    ///
    /// Fails when the underlying tokenizer fails.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let tokenizer = if parse_special {
            &self.parsing
        } else {
            &self.literal
        };
        let encoding = tokenizer.encode(text, false).map_err(|e| {
            anyhow!(
                "tokenizer: failed to encode {} bytes of text: {e}",
                text.len()
            )
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes token ids into text, leaving out special tokens when
    /// `skip_special` is set.
    ///
    /// # Errors
    ///
    /// Fails when an id lies outside the vocabulary.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let vocab_size = self.vocab_size();
        if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            bail!("tokenizer: token id {id} is outside the vocabulary of {vocab_size}");
        }
        self.parsing
            .decode(ids, skip_special)
            .map_err(|e| anyhow!("tokenizer: failed to decode {} ids: {e}", ids.len()))
    }

    /// Returns the vocabulary entry of token `id`, in the tokenizer's own encoding
    /// (byte-level BPE writes a leading space as `Ġ`), or `None` when the id
    /// is outside the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.parsing.id_to_token(id)
    }

    /// Returns the id of the token whose vocabulary entry is `text`, if any.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.parsing.token_to_id(text)
    }

    /// Returns the tokens that end generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Returns the beginning-of-sequence token, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Returns the number of token ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.parsing.get_vocab_size(true)
    }
}

/// Splits a GGUF merge `"left right"` at the first space after its first
/// character, as llama.cpp does.
fn split_merge(merge: &str) -> Option<(String, String)> {
    let first = merge.chars().next()?.len_utf8();
    let space = merge[first..].find(' ')? + first;
    Some((merge[..space].to_owned(), merge[space + 1..].to_owned()))
}

fn special_tokens(
    tokens: &[&str],
    token_types: &[i64],
    wanted: i64,
    special: bool,
) -> Vec<AddedToken> {
    tokens
        .iter()
        .zip(token_types)
        .filter(|&(token, &token_type)| token_type == wanted && !token.is_empty())
        .map(|(&token, _)| AddedToken::from(token.to_owned(), special))
        .collect()
}

#[cfg(test)]
mod tests;
