//! Tests of Hugging Face folders written by the test: config, safetensors
//! shards in F32, F16 and BF16, `tokenizer.json` and
//! `tokenizer_config.json`.

use std::collections::HashMap;

use safetensors::tensor::TensorView as SafeView;
use serde_json::json;

use super::*;
use crate::checkpoint::{Checkpoint, expected_tensors};
use crate::test_support::{add_tiny_tokenizer, tiny_id, tiny_tokens};
use crate::{ChatMessage, GgufFile, GgufWriter, quant};

fn config_json(architecture: &str) -> serde_json::Value {
    json!({
        "architectures": [architecture],
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": tiny_tokens().0.len(),
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 128,
        "tie_word_embeddings": false,
        "bos_token_id": 1,
        "eos_token_id": 2
    })
}

/// One stored tensor: its Hugging Face name, type, shape and bytes.
struct StoredTensor {
    hf_name: String,
    dtype: SafeDtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Deterministic values for the tensor at `index`, stored in a type that
/// cycles through F32, F16 and BF16.
fn stored_tensors(config: &serde_json::Value) -> Vec<StoredTensor> {
    let config = ModelConfig::from_hf_json(&config.to_string()).unwrap();
    let mut tensors: Vec<StoredTensor> = expected_tensors(&config)
        .into_iter()
        .enumerate()
        .map(|(index, (name, shape))| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|i| ((i + index) % 17) as f32 * 0.25 - 2.0)
                .collect();
            let (dtype, ours) = match index % 3 {
                0 => (SafeDtype::F32, DType::F32),
                1 => (SafeDtype::F16, DType::F16),
                _ => (SafeDtype::BF16, DType::BF16),
            };
            StoredTensor {
                hf_name: hf_name_of(&name).unwrap(),
                dtype,
                shape,
                bytes: quant::quantize(ours, &values).unwrap(),
            }
        })
        .collect();
    tensors.push(StoredTensor {
        hf_name: "model.layers.0.self_attn.rotary_emb.inv_freq".to_owned(),
        dtype: SafeDtype::F32,
        shape: vec![4],
        bytes: vec![0; 16],
    });
    tensors
}

fn write_shard(path: &Path, tensors: &[&StoredTensor]) {
    let views: Vec<(String, SafeView<'_>)> = tensors
        .iter()
        .map(|t| {
            let view = SafeView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap();
            (t.hf_name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn write_tokenizer_files(dir: &Path) {
    let mut writer = GgufWriter::new();
    add_tiny_tokenizer(&mut writer, "gpt2");
    let gguf_path = dir.join("tokenizer-source.gguf");
    writer.write(&gguf_path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&GgufFile::open(&gguf_path).unwrap()).unwrap();
    tokenizer.save_json(&dir.join("tokenizer.json")).unwrap();
    std::fs::remove_file(gguf_path).unwrap();

    let tokenizer_config = json!({
        "chat_template": [
            {"name": "tool_use", "template": "unused"},
            {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"}
        ],
        "bos_token": "<|im_start|>",
        "eos_token": {"content": "<|im_end|>", "lstrip": false}
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
}

/// Writes a complete single-shard folder and returns its stored tensors.
fn write_folder(dir: &Path, config: &serde_json::Value) -> Vec<StoredTensor> {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let tensors = stored_tensors(config);
    write_shard(
        &dir.join("model.safetensors"),
        &tensors.iter().collect::<Vec<_>>(),
    );
    write_tokenizer_files(dir);
    tensors
}

#[test]
fn gguf_names_map_from_hf() {
    assert_eq!(
        gguf_name("model.embed_tokens.weight").as_deref(),
        Some("token_embd.weight")
    );
    assert_eq!(
        gguf_name("lm_head.weight").as_deref(),
        Some("output.weight")
    );
    assert_eq!(
        gguf_name("model.layers.12.self_attn.k_proj.bias").as_deref(),
        Some("blk.12.attn_k.bias")
    );
    assert_eq!(
        gguf_name("model.layers.3.post_attention_layernorm.weight").as_deref(),
        Some("blk.3.ffn_norm.weight")
    );
    assert_eq!(
        gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
        None
    );
    assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
}

#[test]
fn hf_names_invert_gguf_names() {
    let names = [
        "model.embed_tokens.weight",
        "model.norm.weight",
        "lm_head.weight",
        "model.layers.12.self_attn.k_proj.bias",
        "model.layers.3.post_attention_layernorm.weight",
        "model.layers.0.mlp.down_proj.weight",
    ];
    for name in names {
        let gguf = gguf_name(name).unwrap();
        assert_eq!(hf_name_of(&gguf).as_deref(), Some(name), "{gguf}");
    }
    assert_eq!(hf_name_of("blk.0.unknown.weight"), None);
    assert_eq!(hf_name_of("rope_freqs.weight"), None);
}

#[test]
fn folder_loads_and_maps_names() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_folder(dir.path(), &config_json("LlamaForCausalLM"));
    let checkpoint = Checkpoint::open(dir.path()).unwrap();

    let config = checkpoint.config();
    assert_eq!(config.n_layer, 2);
    assert_eq!(config.head_dim, 8);
    assert_eq!(config.rope_layout, crate::RopeLayout::Halves);
    assert!(!config.tied_embeddings);

    let hf = checkpoint.hf().unwrap();
    assert_eq!(
        hf.hf_name("blk.1.ffn_down.weight"),
        Some("model.layers.1.mlp.down_proj.weight")
    );
    assert_eq!(
        checkpoint.tensor_names().len(),
        expected_tensors(config).len()
    );
    assert!(!checkpoint.has_tensor("blk.0.attn_q.bias"));

    for tensor in stored.iter().filter(|t| !t.hf_name.contains("inv_freq")) {
        let name = gguf_name(&tensor.hf_name).unwrap();
        let view = checkpoint.tensor(&name).unwrap();
        assert_eq!(view.name, name);
        assert_eq!(view.shape, tensor.shape, "{name}");
        assert_eq!(view.data, &tensor.bytes[..], "{name}");
    }
    let down = checkpoint.tensor("blk.1.ffn_down.weight").unwrap();
    assert_eq!(down.shape, vec![32, 64]);
    let values = down.to_f32().unwrap();
    assert_eq!(values.len(), 32 * 64);

    let weights = checkpoint.weights_id().unwrap();
    assert_eq!(
        weights.bytes,
        std::fs::metadata(dir.path().join("model.safetensors"))
            .unwrap()
            .len()
    );
}

#[test]
fn folder_tokenizer_and_template_load() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), &config_json("LlamaForCausalLM"));
    let checkpoint = Checkpoint::open(dir.path()).unwrap();

    let tokenizer = checkpoint.tokenizer().unwrap();
    assert_eq!(
        tokenizer.encode("ab ab", false).unwrap(),
        vec![tiny_id("ab"), tiny_id("Ġab")]
    );
    assert_eq!(tokenizer.encode("<|im_end|>", true).unwrap(), vec![2]);
    assert_eq!(tokenizer.eos_ids(), &[2]);
    assert_eq!(tokenizer.bos_id(), Some(1));

    let template = checkpoint.chat_template().unwrap();
    let prompt = template
        .render(&[ChatMessage::new("user", "hi")], true)
        .unwrap();
    assert_eq!(prompt, "<|im_start|>hi<|im_end|>");
}

#[test]
fn template_file_is_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), &config_json("LlamaForCausalLM"));
    std::fs::write(dir.path().join("tokenizer_config.json"), "{}").unwrap();
    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    let prompt = checkpoint
        .chat_template()
        .unwrap()
        .render(&[ChatMessage::new("user", "hi")], false)
        .unwrap();
    assert_eq!(
        prompt, "<|im_start|>user\nhi<|im_end|>\n",
        "ChatML without any template"
    );

    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "[{{ messages[0].content }}]",
    )
    .unwrap();
    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    let prompt = checkpoint
        .chat_template()
        .unwrap()
        .render(&[ChatMessage::new("user", "hi")], false)
        .unwrap();
    assert_eq!(prompt, "[hi]");
}

#[test]
fn eos_falls_back_to_tokenizer_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_json("LlamaForCausalLM");
    config.as_object_mut().unwrap().remove("eos_token_id");
    write_folder(dir.path(), &config);
    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    assert!(checkpoint.config().eos_token_ids.is_empty());
    assert_eq!(checkpoint.tokenizer().unwrap().eos_ids(), &[2]);
}

#[test]
fn sharded_folder_loads_through_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_json("Qwen2ForCausalLM");
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    write_tokenizer_files(dir.path());
    let tensors = stored_tensors(&config);
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    write_shard(
        &dir.path().join(names[0]),
        &first.iter().collect::<Vec<_>>(),
    );
    write_shard(
        &dir.path().join(names[1]),
        &second.iter().collect::<Vec<_>>(),
    );
    let mut weight_map: HashMap<&str, &str> = HashMap::new();
    for t in first {
        weight_map.insert(&t.hf_name, names[0]);
    }
    for t in second {
        weight_map.insert(&t.hf_name, names[1]);
    }
    let index = json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.path().join(INDEX_FILE), index.to_string()).unwrap();

    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    assert!(checkpoint.config().attn_bias);
    assert_eq!(
        checkpoint.tensor("blk.1.attn_v.bias").unwrap().shape,
        vec![16]
    );

    // An index that names the wrong shard is rejected.
    let moved = &first[1].hf_name;
    weight_map.insert(moved, names[1]);
    let index = json!({"weight_map": weight_map});
    std::fs::write(dir.path().join(INDEX_FILE), index.to_string()).unwrap();
    let message = format!("{:#}", Checkpoint::open(dir.path()).unwrap_err());
    assert!(
        message.contains(&format!("tensor `{moved}` is not in shard `{}`", names[1])),
        "{message}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_json("LlamaForCausalLM");
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let tensors = stored_tensors(&config);
    let remaining: Vec<&StoredTensor> = tensors
        .iter()
        .filter(|t| t.hf_name != "model.layers.1.mlp.up_proj.weight")
        .collect();
    write_shard(&dir.path().join("model.safetensors"), &remaining);
    let message = format!("{:#}", Checkpoint::open(dir.path()).unwrap_err());
    assert!(
        message.contains("tensor `model.layers.1.mlp.up_proj.weight` is missing"),
        "{message}"
    );
    assert_eq!(
        message.matches(&dir.path().display().to_string()).count(),
        1,
        "{message}"
    );
}

#[test]
fn unsupported_dtype_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        config_json("LlamaForCausalLM").to_string(),
    )
    .unwrap();
    let tensor = StoredTensor {
        hf_name: "model.norm.weight".to_owned(),
        dtype: SafeDtype::I32,
        shape: vec![32],
        bytes: vec![0; 128],
    };
    write_shard(&dir.path().join("model.safetensors"), &[&tensor]);
    let message = format!("{:#}", Checkpoint::open(dir.path()).unwrap_err());
    assert!(
        message.contains("tensor `model.norm.weight` has type I32"),
        "{message}"
    );
}

#[test]
fn folder_without_shards_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        config_json("LlamaForCausalLM").to_string(),
    )
    .unwrap();
    let message = format!("{:#}", Checkpoint::open(dir.path()).unwrap_err());
    assert!(
        message.contains("no *.safetensors files found"),
        "{message}"
    );
}

#[test]
fn unused_layer_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_json("LlamaForCausalLM");
    write_folder(dir.path(), &config);
    let mut fewer = config.clone();
    fewer["num_hidden_layers"] = json!(1);
    std::fs::write(dir.path().join("config.json"), fewer.to_string()).unwrap();
    let message = format!("{:#}", Checkpoint::open(dir.path()).unwrap_err());
    assert!(
        message.contains("does not use 9 of its tensors"),
        "{message}"
    );
    assert!(
        message.contains("`model.layers.1.input_layernorm.weight`"),
        "{message}"
    );
    assert!(message.contains("and 5 more"), "{message}");
    assert!(message.contains("layer count (1)"), "{message}");
}

#[test]
fn stray_tensor_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_json("LlamaForCausalLM");
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    write_tokenizer_files(dir.path());
    let mut tensors = stored_tensors(&config);
    tensors.push(StoredTensor {
        hf_name: "vision_tower.patch_embed.weight".to_owned(),
        dtype: SafeDtype::F32,
        shape: vec![2],
        bytes: vec![0; 8],
    });
    write_shard(
        &dir.path().join("model.safetensors"),
        &tensors.iter().collect::<Vec<_>>(),
    );
    let message = format!("{:#}", Checkpoint::open(dir.path()).unwrap_err());
    assert!(
        message.contains("does not use 1 of its tensors (`vision_tower.patch_embed.weight`)"),
        "{message}"
    );
}

#[test]
fn tensor_in_two_shards_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_json("LlamaForCausalLM");
    let tensors = write_folder(dir.path(), &config);
    let copy: Vec<&StoredTensor> = tensors
        .iter()
        .filter(|t| t.hf_name == "model.norm.weight")
        .collect();
    write_shard(&dir.path().join("model-extra.safetensors"), &copy);
    let message = format!("{:#}", Checkpoint::open(dir.path()).unwrap_err());
    assert!(
        message.contains("tensor `model.norm.weight` is also stored in"),
        "{message}"
    );
    assert!(message.contains("model-extra.safetensors"), "{message}");
    assert!(message.contains("model.safetensors"), "{message}");
}

/// Returns a safetensors file with `header` (JSON) and `data` bytes.
fn raw_safetensors(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let header = header.to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn bad_layouts_are_explained() {
    let good = json!({
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]},
    });
    assert_eq!(explain_bad_layout(&raw_safetensors(&good, &[0; 12])), None);

    let truncated = raw_safetensors(&good, &[0; 10]);
    let reason = explain_bad_layout(&truncated).unwrap();
    assert!(reason.contains("tensor `b` ends at byte 12"), "{reason}");
    assert!(reason.contains("truncated"), "{reason}");

    let short_header = &raw_safetensors(&good, &[])[..20];
    let reason = explain_bad_layout(short_header).unwrap();
    assert!(reason.contains("truncated"), "{reason}");

    let extra = raw_safetensors(&good, &[0; 16]);
    let reason = explain_bad_layout(&extra).unwrap();
    assert!(reason.contains("fill 12 data bytes"), "{reason}");

    let wrong_shape = json!({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}});
    let reason = explain_bad_layout(&raw_safetensors(&wrong_shape, &[0; 8])).unwrap();
    assert!(
        reason.contains("tensor `a` of shape [3] in F32 takes 12 bytes"),
        "{reason}"
    );

    let overlap = json!({
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
    });
    let reason = explain_bad_layout(&raw_safetensors(&overlap, &[0; 8])).unwrap();
    assert!(reason.contains("tensor `b` starts at byte 4"), "{reason}");
}

#[test]
fn truncated_shard_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), &config_json("LlamaForCausalLM"));
    let shard = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 1]).unwrap();
    let message = format!("{:#}", Checkpoint::open(dir.path()).unwrap_err());
    assert!(message.contains("the file is truncated"), "{message}");
    assert!(message.contains("model.safetensors"), "{message}");
}
