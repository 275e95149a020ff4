//! Helpers shared by this crate's tests: the real model's path, its
//! reference outputs, and a tiny byte-level vocabulary.

use std::path::PathBuf;

use crate::GgufWriter;
use crate::synthetic::byte_level_chars;

/// Returns the SmolLM2-135M-Instruct Q4_1 GGUF: `$LASER_HOST_MODEL`, else the
/// `laser-host` model cache. Panics with the fix when it is missing.
pub fn smollm2_path() -> PathBuf {
    let path = match std::env::var_os("LASER_HOST_MODEL") {
        Some(path) => PathBuf::from(path),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home).join(".cache/laser-host/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        }
    };
    assert!(
        path.is_file(),
        "model file {} not found: run `laser-host models fetch` or set LASER_HOST_MODEL",
        path.display()
    );
    path
}

/// Returns the folder of reference outputs for SmolLM2, beside the checkout.
pub fn reference_dir() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/reference/smollm2");
    assert!(dir.is_dir(), "reference folder {} not found", dir.display());
    dir
}

/// Returns the JSON objects of one reference `.jsonl` file.
pub fn read_reference(name: &str) -> Vec<serde_json::Value> {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("reference line is JSON"))
        .collect()
}

/// Returns the tokens of the tiny vocabulary: three control tokens, the 256 byte
/// characters, then the merged tokens `ab`, `Ġab` and `Ġb`.
pub fn tiny_tokens() -> (Vec<String>, Vec<i32>, Vec<String>) {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .map(String::from)
        .to_vec();
    let mut types = vec![3, 3, 3];
    for c in byte_level_chars() {
        tokens.push(c.to_string());
        types.push(1);
    }
    for merged in ["ab", "Ġab", "Ġb"] {
        tokens.push(merged.to_owned());
        types.push(1);
    }
    let merges = ["a b", "Ġ ab", "Ġ b"].map(String::from).to_vec();
    (tokens, types, merges)
}

/// Adds the tiny vocabulary as GGUF `tokenizer.ggml.*` metadata with
/// pre-tokenizer type `pre`.
pub fn add_tiny_tokenizer(writer: &mut GgufWriter, pre: &str) {
    let (tokens, types, merges) = tiny_tokens();
    writer
        .add_metadata("tokenizer.ggml.model", "gpt2")
        .add_metadata("tokenizer.ggml.pre", pre)
        .add_str_array("tokenizer.ggml.tokens", &tokens)
        .add_i32_array("tokenizer.ggml.token_type", &types)
        .add_str_array("tokenizer.ggml.merges", &merges)
        .add_metadata("tokenizer.ggml.bos_token_id", 1u32)
        .add_metadata("tokenizer.ggml.eos_token_id", 2u32);
}

/// Returns the id of `text` in the tiny vocabulary.
pub fn tiny_id(text: &str) -> u32 {
    tiny_tokens().0.iter().position(|t| t == text).unwrap() as u32
}
