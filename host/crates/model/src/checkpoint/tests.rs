//! Tests of opening GGUF checkpoints: the real SmolLM2 file and synthetic
//! models.

use super::*;
use crate::synthetic::{synthetic_gguf, tiny_llama_config};
use crate::test_support::smollm2_path;
use crate::{Arch, ChatMessage, DType, RopeLayout};

#[test]
fn smollm2_config_matches_model_card() {
    let checkpoint = Checkpoint::open(smollm2_path()).unwrap();
    let config = checkpoint.config();
    assert_eq!(config.arch, Arch::Llama);
    assert_eq!(config.n_layer, 30);
    assert_eq!(config.n_embd, 576);
    assert_eq!(config.n_ff, 1536);
    assert_eq!(config.n_head, 9);
    assert_eq!(config.n_head_kv, 3);
    assert_eq!(config.head_dim, 64);
    assert_eq!(config.rope_theta, 100_000.0);
    assert_eq!(config.rope_layout, RopeLayout::Adjacent);
    assert_eq!(config.rms_eps, 1e-5);
    assert!(config.tied_embeddings);
    assert!(!config.attn_bias);
    assert_eq!(config.vocab_size, 49152);
    assert_eq!(config.context_length, 8192);
    assert_eq!(config.bos_token_id, Some(1));
    assert_eq!(config.eos_token_ids, vec![2]);
}

#[test]
fn smollm2_tensors_have_expected_types() {
    let checkpoint = Checkpoint::open(smollm2_path()).unwrap();
    assert_eq!(checkpoint.tensor_names().len(), 272);
    assert!(!checkpoint.has_tensor("output.weight"));

    let embd = checkpoint.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dtype, DType::Q8_0);
    assert_eq!(embd.shape, vec![49152, 576]);
    assert_eq!(embd.data.len(), 49152 * 576 / 32 * 34);

    let down = checkpoint.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!(down.dtype, DType::Q4_1);
    assert_eq!(down.shape, vec![576, 1536]);
    let norm = checkpoint.tensor("output_norm.weight").unwrap();
    assert_eq!(norm.dtype, DType::F32);

    // Dequantized weights are finite and of ordinary magnitude.
    for name in [
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.29.ffn_down.weight",
    ] {
        let values = checkpoint.tensor(name).unwrap().to_f32().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{name}");
        let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.0, "{name}: all values are zero");
        assert!(max < 100.0, "{name}: max |x| = {max}");
    }
}

/// FNV-1a (64-bit) over the little-endian bytes of the values' f32 bits.
fn fnv1a_bits(values: &[f32]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in values.iter().flat_map(|v| v.to_bits().to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[test]
fn smollm2_dequantizes_like_gguf_py() {
    // Hashes of gguf-py 0.19.0's `quants.dequantize` output for the same
    // tensors (the embedding's first 64 rows only).
    let checkpoint = Checkpoint::open(smollm2_path()).unwrap();
    let cases = [
        ("blk.0.attn_q.weight", 0x6aaf_dca3_db38_d64c_u64),
        ("blk.29.ffn_down.weight", 0x0256_b756_d935_3eba),
        ("output_norm.weight", 0xea81_4bed_6299_e304),
    ];
    for (name, expected) in cases {
        let values = checkpoint.tensor(name).unwrap().to_f32().unwrap();
        assert_eq!(fnv1a_bits(&values), expected, "{name}");
    }

    let embd = checkpoint.tensor("token_embd.weight").unwrap();
    let rows = &embd.data[..64 * 576 / 32 * 34];
    let values = crate::quant::dequantize(DType::Q8_0, rows, 64 * 576).unwrap();
    assert_eq!(fnv1a_bits(&values), 0xfbaf_407e_bbeb_e9f4);
}

#[test]
fn smollm2_template_and_tokenizer_load() {
    let checkpoint = Checkpoint::open(smollm2_path()).unwrap();
    let template = checkpoint.chat_template().unwrap();
    let prompt = template
        .render(&[ChatMessage::new("user", "Hi")], true)
        .unwrap();
    assert!(
        prompt.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{prompt}"
    );
    assert!(
        prompt.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        "{prompt}"
    );
    let tokenizer = checkpoint.tokenizer().unwrap();
    assert_eq!(tokenizer.encode(&prompt, true).unwrap()[0], 1);

    let weights = checkpoint.weights_id().unwrap();
    assert_eq!(
        weights.bytes,
        std::fs::metadata(smollm2_path()).unwrap().len()
    );
}

#[test]
fn synthetic_model_round_trips() {
    let config = tiny_llama_config();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    synthetic_gguf(&config, DType::Q4_1, 7)
        .unwrap()
        .write(&path)
        .unwrap();

    let checkpoint = Checkpoint::open(&path).unwrap();
    assert_eq!(checkpoint.config(), &config);
    assert_eq!(
        checkpoint.tensor("blk.1.ffn_up.weight").unwrap().dtype,
        DType::Q4_1
    );
    assert_eq!(
        checkpoint.tensor("blk.1.ffn_norm.weight").unwrap().dtype,
        DType::F32
    );

    let tokenizer = checkpoint.tokenizer().unwrap();
    assert_eq!(tokenizer.vocab_size(), config.vocab_size);
    let ids = tokenizer.encode("<|im_start|>hi", true).unwrap();
    assert_eq!(ids, vec![1, 3 + u32::from(b'h'), 3 + u32::from(b'i')]);
    let prompt = checkpoint
        .chat_template()
        .unwrap()
        .render(&[ChatMessage::new("user", "x")], true)
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn synthetic_qwen2_has_biases() {
    let mut config = tiny_llama_config();
    config.arch = Arch::Qwen2;
    config.rope_layout = RopeLayout::Halves;
    config.attn_bias = true;
    config.tied_embeddings = false;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qwen.gguf");
    synthetic_gguf(&config, DType::Q8_0, 1)
        .unwrap()
        .write(&path)
        .unwrap();
    let checkpoint = Checkpoint::open(&path).unwrap();
    assert_eq!(checkpoint.config(), &config);
    assert_eq!(
        checkpoint.tensor("blk.0.attn_k.bias").unwrap().shape,
        vec![32]
    );
    assert_eq!(
        checkpoint.tensor("output.weight").unwrap().shape,
        vec![320, 64]
    );
}

#[test]
fn synthetic_rejects_mismatched_layout() {
    let mut config = tiny_llama_config();
    config.rope_layout = RopeLayout::Halves;
    let message = synthetic_gguf(&config, DType::F32, 0)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("always use the Adjacent RoPE layout"),
        "{message}"
    );
}

#[test]
fn wrong_tensor_shape_is_rejected() {
    let config = tiny_llama_config();
    let mut writer = synthetic_gguf(&config, DType::F32, 3).unwrap();
    writer.add_metadata("llama.feed_forward_length", 96u32);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    writer.write(&path).unwrap();
    let message = format!("{:#}", Checkpoint::open(&path).unwrap_err());
    assert!(
        message.contains("tensor `blk.0.ffn_gate.weight` has shape [128, 64]: expected [96, 64]"),
        "{message}"
    );
}

#[test]
fn unused_gguf_layer_is_rejected() {
    let config = tiny_llama_config();
    let mut writer = synthetic_gguf(&config, DType::F32, 3).unwrap();
    writer.add_metadata("llama.block_count", (config.n_layer - 1) as u32);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fewer.gguf");
    writer.write(&path).unwrap();
    let message = format!("{:#}", Checkpoint::open(&path).unwrap_err());
    let last = config.n_layer - 1;
    assert!(
        message.contains(&format!("`blk.{last}.attn_k.weight`")),
        "{message}"
    );
    assert!(message.contains("in the GGUF metadata"), "{message}");
}

#[cfg(unix)]
#[test]
fn named_pipe_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("model.gguf");
    let status = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(status.success());
    let message = format!("{:#}", Checkpoint::open(&pipe).unwrap_err());
    assert!(message.contains("not a regular file"), "{message}");
}

#[test]
fn missing_gguf_names_path() {
    let message = format!("{:#}", Checkpoint::open("/nonexistent/x.gguf").unwrap_err());
    assert!(
        message.starts_with("gguf: /nonexistent/x.gguf: failed to open"),
        "{message}"
    );
}

#[test]
fn loaded_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Checkpoint>();
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<ChatTemplate>();
    assert_send_sync::<TensorView<'static>>();
}

#[test]
fn folder_without_config_names_expected_files() {
    let dir = tempfile::tempdir().unwrap();
    let error = Checkpoint::open(dir.path()).err().unwrap();
    let message = format!("{error:#}");
    assert!(message.contains("has no config.json"), "{message}");
    assert!(message.contains(".gguf file"), "{message}");
}

#[test]
fn checkpoint_file_points_to_folder() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "model-00001-of-00002.safetensors"] {
        let file = dir.path().join(name);
        std::fs::write(&file, "{}").unwrap();
        let error = Checkpoint::open(&file).err().unwrap();
        let message = format!("{error:#}");
        assert!(message.contains("Give its folder"), "{name}: {message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{name}: {message}"
        );
    }
}
