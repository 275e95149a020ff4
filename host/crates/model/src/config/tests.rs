//! Tests of config parsing and validation from GGUF metadata and
//! `config.json`.

use serde_json::json;

use super::*;
use crate::{DType, GgufWriter};

fn llama_json() -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 300,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": true,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "rope_scaling": null
    })
}

fn parse(value: &serde_json::Value) -> Result<ModelConfig> {
    ModelConfig::from_hf_json(&value.to_string())
}

fn error_of(value: &serde_json::Value) -> String {
    format!("{:#}", parse(value).unwrap_err())
}

#[test]
fn hf_llama_config_parses() {
    let config = parse(&llama_json()).unwrap();
    assert_eq!(config.arch, Arch::Llama);
    assert_eq!(config.n_layer, 2);
    assert_eq!(config.n_embd, 64);
    assert_eq!(config.n_ff, 128);
    assert_eq!(config.n_head, 4);
    assert_eq!(config.n_head_kv, 2);
    assert_eq!(config.head_dim, 16);
    assert_eq!(config.q_dim(), 64);
    assert_eq!(config.kv_dim(), 32);
    assert_eq!(config.rope_theta, 100000.0);
    assert_eq!(config.rope_layout, RopeLayout::Halves);
    assert!(config.tied_embeddings);
    assert!(!config.attn_bias);
    assert_eq!(config.bos_token_id, Some(1));
    assert_eq!(config.eos_token_ids, vec![2]);
}

#[test]
fn hf_qwen2_config_has_biases() {
    let mut value = llama_json();
    value["architectures"] = json!(["Qwen2ForCausalLM"]);
    value["eos_token_id"] = json!([2, 3]);
    value["use_sliding_window"] = json!(false);
    let config = parse(&value).unwrap();
    assert_eq!(config.arch, Arch::Qwen2);
    assert!(config.attn_bias);
    assert_eq!(config.eos_token_ids, vec![2, 3]);
}

#[test]
fn hf_mistral_maps_to_llama() {
    let mut value = llama_json();
    value["architectures"] = json!(["MistralForCausalLM"]);
    value["head_dim"] = json!(32);
    value.as_object_mut().unwrap().remove("rope_theta");
    let config = parse(&value).unwrap();
    assert_eq!(config.arch, Arch::Llama);
    assert_eq!(config.head_dim, 32);
    assert_eq!(config.q_dim(), 128);
    assert_eq!(config.rope_theta, 10000.0);
}

#[test]
fn inconsistent_configs_are_rejected() {
    let cases: [(&str, serde_json::Value, &str); 11] = [
        (
            "hidden_act",
            json!("gelu"),
            "hidden_act `gelu` is not supported",
        ),
        ("mlp_bias", json!(true), "mlp_bias = true is not supported"),
        (
            "num_key_value_heads",
            json!(3),
            "n_head 4 is not a multiple of n_head_kv 3",
        ),
        (
            "num_attention_heads",
            json!(5),
            "n_embd 64 is not a multiple of n_head 5",
        ),
        ("hidden_size", json!(0), "n_embd is 0"),
        ("num_hidden_layers", json!(0), "n_layer is 0"),
        (
            "vocab_size",
            json!(1u64 << 40),
            "vocab_size 1099511627776 exceeds the maximum",
        ),
        (
            "intermediate_size",
            json!(1 << 30),
            "n_ff 1073741824 exceeds the maximum",
        ),
        ("rms_norm_eps", json!(-1.0), "rms_eps -1 is outside (0, 1)"),
        (
            "eos_token_id",
            json!(300),
            "eos_token_id 300 is outside the vocabulary of 300",
        ),
        (
            "rope_scaling",
            json!({"type": "linear", "factor": 2.0}),
            "rope_scaling",
        ),
    ];
    for (key, bad, expected) in cases {
        let mut value = llama_json();
        value[key] = bad;
        let message = error_of(&value);
        assert!(message.contains(expected), "{key}: {message}");
    }
}

#[test]
fn unknown_architecture_is_rejected() {
    let mut value = llama_json();
    value["architectures"] = json!(["GPT2LMHeadModel"]);
    let message = error_of(&value);
    assert!(
        message.contains("unsupported architecture `GPT2LMHeadModel`"),
        "{message}"
    );
}

fn llama_gguf() -> GgufWriter {
    let mut writer = GgufWriter::new();
    writer
        .add_metadata("general.architecture", "llama")
        .add_metadata("llama.block_count", 2u32)
        .add_metadata("llama.context_length", 512u32)
        .add_metadata("llama.embedding_length", 64u32)
        .add_metadata("llama.feed_forward_length", 128u32)
        .add_metadata("llama.attention.head_count", 4u32)
        .add_metadata("llama.attention.head_count_kv", 2u32)
        .add_metadata("llama.rope.freq_base", 10000f32)
        .add_metadata("llama.attention.layer_norm_rms_epsilon", 1e-6f32)
        .add_metadata("tokenizer.ggml.bos_token_id", 1u32)
        .add_metadata("tokenizer.ggml.eos_token_id", 2u32)
        .add_str_array(
            "tokenizer.ggml.tokens",
            &(0..300).map(|i| format!("t{i}")).collect::<Vec<_>>(),
        );
    writer
        .add_f32_tensor(
            "token_embd.weight",
            DType::F32,
            &[300, 64],
            &vec![0.0; 300 * 64],
        )
        .unwrap();
    writer
}

fn open_gguf(writer: &GgufWriter) -> Result<ModelConfig> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    writer.write(&path).unwrap();
    ModelConfig::from_gguf(&GgufFile::open(&path)?)
}

#[test]
fn gguf_llama_config_parses() {
    let config = open_gguf(&llama_gguf()).unwrap();
    assert_eq!(config.arch, Arch::Llama);
    assert_eq!(config.rope_layout, RopeLayout::Adjacent);
    assert_eq!(config.vocab_size, 300);
    assert_eq!(config.head_dim, 16);
    assert_eq!(config.context_length, 512);
    assert!(config.tied_embeddings);
    assert!(!config.attn_bias);
    assert_eq!(config.eos_token_ids, vec![2]);
}

#[test]
fn gguf_qwen2_uses_halves() {
    let mut writer = GgufWriter::new();
    writer
        .add_metadata("general.architecture", "qwen2")
        .add_metadata("qwen2.block_count", 1u32)
        .add_metadata("qwen2.context_length", 512u32)
        .add_metadata("qwen2.embedding_length", 64u32)
        .add_metadata("qwen2.feed_forward_length", 128u32)
        .add_metadata("qwen2.attention.head_count", 4u32)
        .add_metadata("qwen2.attention.head_count_kv", 1u32)
        .add_metadata("qwen2.attention.layer_norm_rms_epsilon", 1e-6f32)
        .add_metadata("qwen2.vocab_size", 100u32);
    writer
        .add_f32_tensor("blk.0.attn_q.bias", DType::F32, &[64], &[0.0; 64])
        .unwrap();
    writer
        .add_f32_tensor("output.weight", DType::F32, &[100, 64], &vec![0.0; 6400])
        .unwrap();
    let config = open_gguf(&writer).unwrap();
    assert_eq!(config.arch, Arch::Qwen2);
    assert_eq!(config.rope_layout, RopeLayout::Halves);
    assert!(config.attn_bias);
    assert!(!config.tied_embeddings);
    assert_eq!(config.vocab_size, 100);
}

#[test]
fn gguf_missing_key_is_named() {
    let mut writer = llama_gguf();
    writer.add_metadata("general.architecture", "qwen2");
    let message = format!("{:#}", open_gguf(&writer).unwrap_err());
    assert!(
        message.contains("missing metadata key `qwen2.embedding_length`"),
        "{message}"
    );
}

#[test]
fn gguf_partial_rope_is_rejected() {
    let mut writer = llama_gguf();
    writer.add_metadata("llama.rope.dimension_count", 8u32);
    let message = format!("{:#}", open_gguf(&writer).unwrap_err());
    assert!(
        message.contains("rope.dimension_count 8 differs from the head size 16"),
        "{message}"
    );
}

#[test]
fn gguf_width_errors_name_the_width() {
    for (width, expected) in [
        (0u32, "`llama.embedding_length` is 0"),
        (30, "`llama.embedding_length` 30 is not a multiple of"),
    ] {
        let mut writer = llama_gguf();
        writer.add_metadata("llama.embedding_length", width);
        writer.add_metadata("llama.rope.dimension_count", 16u32);
        let message = format!("{:#}", open_gguf(&writer).unwrap_err());
        assert!(message.contains(expected), "{width}: {message}");
    }
}

#[test]
fn gguf_bad_heads_are_rejected() {
    let mut writer = llama_gguf();
    writer.add_metadata("llama.attention.head_count_kv", 3u32);
    let message = format!("{:#}", open_gguf(&writer).unwrap_err());
    assert!(message.contains("invalid model config"), "{message}");
    assert!(
        message.contains("n_head 4 is not a multiple of n_head_kv 3"),
        "{message}"
    );
}

#[test]
fn gguf_rope_freqs_are_rejected() {
    let mut writer = llama_gguf();
    writer
        .add_f32_tensor("rope_freqs.weight", DType::F32, &[8], &[1.0; 8])
        .unwrap();
    let message = format!("{:#}", open_gguf(&writer).unwrap_err());
    assert!(
        message.contains("`rope_freqs.weight`) are not supported"),
        "{message}"
    );
}
