//! Synthetic checkpoints: tiny models with random weights written as real
//! GGUF files, for tests in this crate and in the engine.

use anyhow::{Result, ensure};

use crate::checkpoint::expected_tensors;
use crate::{Arch, DType, GgufWriter, ModelConfig, RopeLayout};

/// The number of tokens in the synthetic vocabulary before the fillers:
/// three control tokens (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`)
/// and the 256 byte-level characters.
pub const SYNTHETIC_BASE_VOCAB: usize = 3 + 256;

/// Returns a small Llama config for tests: 2 blocks, C = 64, F = 128, H = 4,
/// G = 2, D = 16, V = 320, RoPE base 10000 on adjacent pairs, eps 1e-5,
/// context 256, tied embeddings, BOS 1, EOS 2.
pub fn tiny_llama_config() -> ModelConfig {
    ModelConfig {
        arch: Arch::Llama,
        n_layer: 2,
        n_embd: 64,
        n_ff: 128,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 16,
        vocab_size: 320,
        rope_theta: 10_000.0,
        rope_layout: RopeLayout::Adjacent,
        rms_eps: 1e-5,
        context_length: 256,
        tied_embeddings: true,
        attn_bias: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    }
}

/// Builds a GGUF file for `config` with random weights from `seed`:
/// matrices stored as `dtype`, norm weights near 1 and biases in F32, and a
/// byte-level tokenizer whose vocabulary is padded with unreachable filler
/// tokens up to `vocab_size`. No chat template is stored, so ChatML applies.
///
/// Matrix values are uniform in ±1/sqrt(row length).
///
/// # Errors
///
/// Fails when the config is invalid, `vocab_size` is under
/// [`SYNTHETIC_BASE_VOCAB`], the RoPE layout does not match the
/// architecture's GGUF convention (adjacent for Llama, halves for Qwen2),
/// or a row length is not a multiple of `dtype`'s block size.
pub fn synthetic_gguf(config: &ModelConfig, dtype: DType, seed: u64) -> Result<GgufWriter> {
    let config = config.clone().validate()?;
    ensure!(
        config.vocab_size >= SYNTHETIC_BASE_VOCAB,
        "synthetic model: vocab_size {} is under the {SYNTHETIC_BASE_VOCAB} base tokens",
        config.vocab_size
    );
    let (arch, layout) = match config.arch {
        Arch::Llama => ("llama", RopeLayout::Adjacent),
        Arch::Qwen2 => ("qwen2", RopeLayout::Halves),
    };
    ensure!(
        config.rope_layout == layout,
        "synthetic model: GGUF {arch} files always use the {layout:?} RoPE layout"
    );

    let mut writer = GgufWriter::new();
    let key = |name: &str| format!("{arch}.{name}");
    writer
        .add_metadata("general.architecture", arch)
        .add_metadata(&key("block_count"), config.n_layer as u32)
        .add_metadata(&key("context_length"), config.context_length as u32)
        .add_metadata(&key("embedding_length"), config.n_embd as u32)
        .add_metadata(&key("feed_forward_length"), config.n_ff as u32)
        .add_metadata(&key("attention.head_count"), config.n_head as u32)
        .add_metadata(&key("attention.head_count_kv"), config.n_head_kv as u32)
        .add_metadata(&key("attention.key_length"), config.head_dim as u32)
        .add_metadata(&key("attention.value_length"), config.head_dim as u32)
        .add_metadata(&key("rope.freq_base"), config.rope_theta)
        .add_metadata(&key("attention.layer_norm_rms_epsilon"), config.rms_eps)
        .add_metadata(&key("vocab_size"), config.vocab_size as u32);
    add_tokenizer(&mut writer, &config);

    let mut rng = SplitMix64(seed);
    for (name, shape) in expected_tensors(&config) {
        let n: usize = shape.iter().product();
        let row = shape[shape.len() - 1];
        if shape.len() == 1 {
            let center = if name.ends_with("norm.weight") {
                1.0
            } else {
                0.0
            };
            let values: Vec<f32> = (0..n).map(|_| center + 0.1 * rng.next_signed()).collect();
            writer.add_f32_tensor(&name, DType::F32, &shape, &values)?;
        } else {
            let scale = 1.0 / (row as f32).sqrt();
            let values: Vec<f32> = (0..n).map(|_| scale * rng.next_signed()).collect();
            writer.add_f32_tensor(&name, dtype, &shape, &values)?;
        }
    }
    Ok(writer)
}

/// Adds a byte-level BPE vocabulary without merges: the base tokens, then
/// fillers `<|filler_{i}|>` up to the vocabulary size.
fn add_tokenizer(writer: &mut GgufWriter, config: &ModelConfig) {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .map(String::from)
        .to_vec();
    let mut types = vec![3, 3, 3];
    tokens.extend(byte_level_chars().into_iter().map(String::from));
    types.resize(tokens.len(), 1);
    for i in tokens.len()..config.vocab_size {
        tokens.push(format!("<|filler_{i}|>"));
        types.push(4);
    }
    writer
        .add_metadata("tokenizer.ggml.model", "gpt2")
        .add_metadata("tokenizer.ggml.pre", "gpt2")
        .add_str_array("tokenizer.ggml.tokens", &tokens)
        .add_i32_array("tokenizer.ggml.token_type", &types)
        .add_str_array::<&str>("tokenizer.ggml.merges", &[]);
    if let Some(bos) = config.bos_token_id {
        writer.add_metadata("tokenizer.ggml.bos_token_id", bos);
    }
    if let Some(&eos) = config.eos_token_ids.first() {
        writer.add_metadata("tokenizer.ggml.eos_token_id", eos);
    }
}

/// GPT-2's map from each byte to a printable character
/// (`bytes_to_unicode`): printable Latin-1 bytes map to themselves, the
/// rest to U+0100 onward in byte order.
pub fn byte_level_chars() -> Vec<char> {
    let is_printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut next_extra = 0x100;
    (0u32..256)
        .map(|byte| {
            let code = if is_printable(byte) {
                byte
            } else {
                next_extra += 1;
                next_extra - 1
            };
            char::from_u32(code).expect("code points below U+0200 are valid")
        })
        .collect()
}

/// SplitMix64, a small seeded generator, so synthetic weights are the same
/// on every platform without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a uniform value in [-1, 1).
    fn next_signed(&mut self) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * unit - 1.0
    }
}
