//! Merging a LoRA adapter into its base model: `W' = W + (alpha / r) B A`
//! for every adapted projection, written as a Hugging Face folder
//! (`model.safetensors` in f32 with Hugging Face tensor names,
//! `config.json`, `tokenizer.json`, `tokenizer_config.json`). Full
//! fine-tuning writes its weights with the same [`write_model`].
//!
//! GGUF llama files store the rows of the Q and K weights permuted for the
//! adjacent-pair RoPE. The merged Q and K are put back in Hugging Face
//! order, so the folder runs with the half-split RoPE like any Hugging Face
//! llama.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use laser_model::checkpoint::Checkpoint;
use laser_model::config::{Arch, ModelConfig};
use safetensors::{Dtype, tensor::TensorView};

use super::lora::{LoraLayout, Target};
use super::peft::{gguf_rows_to_hf, permuted_heads};
use crate::engine::weights::load_f32;

/// Returns the Hugging Face name of a GGUF tensor name this crate loads.
fn hf_name(gguf: &str) -> String {
    match gguf {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        _ => {}
    }
    let rest = gguf
        .strip_prefix("blk.")
        .expect("block tensor names start with `blk.`");
    let (layer, rest) = rest
        .split_once('.')
        .expect("block tensor names have a layer");
    let (module, kind) = rest
        .rsplit_once('.')
        .expect("tensor names end in weight or bias");
    let hf_module = match module {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => unreachable!("unexpected block tensor `{other}`"),
    };
    format!("model.layers.{layer}.{hf_module}.{kind}")
}

/// Returns the adapter target of a block matrix's GGUF module name.
fn target_of(module: &str) -> Option<Target> {
    Target::ALL
        .into_iter()
        .find(|target| target.gguf_module() == module)
}

/// Writes `checkpoint` with the adapters `params` (laid out by `layout`)
/// merged in, as a Hugging Face folder `out`.
///
/// # Errors
///
/// Fails when a tensor cannot be read or a file cannot be written.
pub fn merge(
    checkpoint: &Checkpoint,
    layout: &LoraLayout,
    params: &[f32],
    out: &Path,
) -> Result<()> {
    let config = checkpoint.config();
    let r = layout.config.rank as usize;
    let scale = layout.config.scale();
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for (name, shape) in laser_model::checkpoint::expected_tensors(config) {
        let len = shape.iter().product();
        let mut values = load_f32(checkpoint, &name, len)?;
        if let Some((layer, target)) = block_matrix(&name)
            && let Some(tensor) = layout.find(layer, target)
        {
            // W [out, in] += scale * B [out, r] A [r, in]
            let (n, k) = (tensor.out_features, tensor.in_features);
            let a = &params[tensor.a_offset..tensor.a_offset + r * k];
            let b = &params[tensor.b_offset..tensor.b_offset + n * r];
            for i in 0..n {
                for j in 0..k {
                    let delta: f64 = (0..r)
                        .map(|l| f64::from(b[i * r + l]) * f64::from(a[l * k + j]))
                        .sum();
                    values[i * k + j] += (f64::from(scale) * delta) as f32;
                }
            }
        }
        tensors.insert(name, (shape, values));
    }
    write_model(config, tensors, out)?;
    write_tokenizer_files(checkpoint, out)
}

/// Returns `(layer, target)` of a block weight matrix's GGUF name, or
/// `None` for any other tensor.
fn block_matrix(name: &str) -> Option<(usize, Target)> {
    let (layer, rest) = name.strip_prefix("blk.")?.split_once('.')?;
    let module = rest.strip_suffix(".weight")?;
    Some((layer.parse().ok()?, target_of(module)?))
}

/// Writes `model.safetensors` (f32, Hugging Face names) and `config.json`
/// into `out` from `tensors`, every tensor of a model with `config` keyed
/// by its GGUF name, in GGUF row order. Q and K rows (and biases) are put
/// back in Hugging Face order where GGUF permutes them.
///
/// # Errors
///
/// Fails when a file cannot be written.
pub fn write_model(
    config: &ModelConfig,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    out: &Path,
) -> Result<()> {
    let mut hf_tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for (name, (shape, mut values)) in tensors {
        if let Some((_, target)) = block_matrix(&name)
            && let Some(heads) = permuted_heads(target, config)
        {
            values = gguf_rows_to_hf(&values, heads, shape[1]);
        }
        if let Some(rest) = name.strip_suffix(".bias")
            && let Some(target) = target_of(rest.rsplit_once('.').map_or(rest, |(_, m)| m))
            && let Some(heads) = permuted_heads(target, config)
        {
            values = gguf_rows_to_hf(&values, heads, 1);
        }
        hf_tensors.insert(hf_name(&name), (shape, values));
    }
    let views = hf_tensors
        .iter()
        .map(|(name, (shape, values))| {
            Ok((
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(values))?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes =
        safetensors::serialize(views, Some(metadata)).context("failed to serialize the model")?;
    crate::atomic::write(&out.join("model.safetensors"), &bytes)?;

    let (architecture, model_type) = match config.arch {
        Arch::Llama => ("LlamaForCausalLM", "llama"),
        Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
    };
    let hf_config = serde_json::json!({
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_size": config.n_embd,
        "intermediate_size": config.n_ff,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_head_kv,
        "head_dim": config.head_dim,
        "vocab_size": config.vocab_size,
        "rope_theta": config.rope_theta,
        "rms_norm_eps": config.rms_eps,
        "max_position_embeddings": config.context_length,
        "tie_word_embeddings": config.tied_embeddings,
        "attention_bias": config.attn_bias,
        "hidden_act": "silu",
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_ids,
        "torch_dtype": "float32",
    });
    crate::atomic::write(
        &out.join("config.json"),
        &serde_json::to_vec_pretty(&hf_config)?,
    )
}

/// Writes the tokenizer of `checkpoint` into `out` as `tokenizer.json`
/// and `tokenizer_config.json` (chat template, BOS and EOS tokens).
///
/// # Errors
///
/// Fails when the tokenizer cannot be read or a file cannot be written.
pub fn write_tokenizer_files(checkpoint: &Checkpoint, out: &Path) -> Result<()> {
    let tokenizer = checkpoint.tokenizer()?;
    tokenizer.save_json(&out.join("tokenizer.json"))?;
    let template = checkpoint.chat_template()?;
    let token_text = |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id));
    let tokenizer_config = serde_json::json!({
        "chat_template": template.source(),
        "bos_token": token_text(tokenizer.bos_id()),
        "eos_token": token_text(tokenizer.eos_ids().first().copied()),
    });
    crate::atomic::write(
        &out.join("tokenizer_config.json"),
        &serde_json::to_vec_pretty(&tokenizer_config)?,
    )
}
