//! LoRA adapters on disk in Hugging Face PEFT's format:
//! `adapter_model.safetensors` with tensors named
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`
//! [r, in] and `....lora_B.weight` [out, r] (f32), and an
//! `adapter_config.json`, as `peft.PeftModel.from_pretrained` reads them.
//!
//! GGUF llama files store the Q and K weights with the rows of each head
//! permuted, because llama.cpp's `convert_hf_to_gguf.py` reorders them for
//! the adjacent-pair RoPE. The adapters of a model with
//! [`RopeLayout::Adjacent`] therefore have B's rows for `q_proj` and
//! `k_proj` in that order too. They are put back in Hugging Face order on save and permuted
//! again on load.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use laser_model::config::{ModelConfig, RopeLayout};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use super::lora::{LoraConfig, LoraLayout, LoraTensor, Target};

/// The adapter's tensors.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The adapter's PEFT config.
pub const CONFIG_FILE: &str = "adapter_config.json";

/// The fields of PEFT's `LoraConfig` that this crate writes and reads.
#[derive(Debug, Serialize, Deserialize)]
struct PeftConfig {
    peft_type: String,
    task_type: String,
    r: u32,
    lora_alpha: f32,
    lora_dropout: f32,
    target_modules: Vec<String>,
    bias: String,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    inference_mode: bool,
    #[serde(default)]
    use_rslora: bool,
}

/// Returns the PEFT tensor name of `tensor`'s A (`"A"`) or B (`"B"`).
pub fn tensor_name(tensor: &LoraTensor, matrix: &str) -> String {
    format!(
        "base_model.model.model.layers.{}.{}.{}.lora_{matrix}.weight",
        tensor.layer,
        tensor.target.hf_parent(),
        tensor.target.hf_name()
    )
}

/// Returns the number of heads whose rows GGUF permutes in `target`'s
/// output, or `None` when the rows are in Hugging Face order.
pub fn permuted_heads(target: Target, model: &ModelConfig) -> Option<usize> {
    if model.rope_layout != RopeLayout::Adjacent {
        return None;
    }
    match target {
        Target::Q => Some(model.n_head),
        Target::K => Some(model.n_head_kv),
        _ => None,
    }
}

/// Returns the rows of `matrix` [heads * D, cols] in Hugging Face order,
/// given them in GGUF order: Hugging Face row `half * D/2 + i` of a head is
/// GGUF row `2i + half`.
pub fn gguf_rows_to_hf(matrix: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    permute_rows(matrix, heads, cols, true)
}

/// Puts rows back in GGUF order: the inverse of [`gguf_rows_to_hf`].
pub fn hf_rows_to_gguf(matrix: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    permute_rows(matrix, heads, cols, false)
}

fn permute_rows(matrix: &[f32], heads: usize, cols: usize, to_hf: bool) -> Vec<f32> {
    let rows = matrix.len() / cols;
    let d = rows / heads;
    let mut out = vec![0.0; matrix.len()];
    for head in 0..heads {
        for half in 0..2 {
            for i in 0..d / 2 {
                let gguf = head * d + 2 * i + half;
                let hf = head * d + half * (d / 2) + i;
                let (from, to) = if to_hf { (gguf, hf) } else { (hf, gguf) };
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&matrix[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// Writes `params` (laid out by `layout`) as a PEFT adapter into `dir`,
/// each file atomically.
///
/// # Errors
///
/// Fails when a file cannot be written.
pub fn save(
    dir: &Path,
    layout: &LoraLayout,
    model: &ModelConfig,
    params: &[f32],
    base_model: &str,
) -> Result<()> {
    let r = layout.config.rank as usize;
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for tensor in &layout.tensors {
        let a = &params[tensor.a_offset..tensor.a_offset + r * tensor.in_features];
        let b = &params[tensor.b_offset..tensor.b_offset + tensor.out_features * r];
        let b = match permuted_heads(tensor.target, model) {
            Some(heads) => gguf_rows_to_hf(b, heads, r),
            None => b.to_vec(),
        };
        named.push((
            tensor_name(tensor, "A"),
            vec![r, tensor.in_features],
            bytemuck::cast_slice(a).to_vec(),
        ));
        named.push((
            tensor_name(tensor, "B"),
            vec![tensor.out_features, r],
            bytemuck::cast_slice(&b).to_vec(),
        ));
    }
    let views = named
        .iter()
        .map(|(name, shape, bytes)| {
            Ok((
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .context("failed to serialize the LoRA adapter")?;
    crate::atomic::write(&dir.join(WEIGHTS_FILE), &bytes)?;

    let config = PeftConfig {
        peft_type: "LORA".into(),
        task_type: "CAUSAL_LM".into(),
        r: layout.config.rank,
        lora_alpha: layout.config.alpha,
        lora_dropout: layout.config.dropout,
        target_modules: layout
            .config
            .targets
            .iter()
            .map(|t| t.hf_name().to_string())
            .collect(),
        bias: "none".into(),
        base_model_name_or_path: Some(base_model.to_string()),
        fan_in_fan_out: false,
        inference_mode: true,
        use_rslora: false,
    };
    let json = serde_json::to_vec_pretty(&config)?;
    crate::atomic::write(&dir.join(CONFIG_FILE), &json)
}

/// Reads the PEFT adapter in `dir` for `model`; returns its layout and
/// flat parameters.
///
/// # Errors
///
/// Fails when a file is missing or malformed, the config uses a PEFT
/// feature this crate does not run (biases, rsLoRA, fan-in-fan-out), or a
/// tensor is missing or has the wrong shape.
pub fn load(dir: &Path, model: &ModelConfig) -> Result<(LoraLayout, Vec<f32>)> {
    let config_path = dir.join(CONFIG_FILE);
    let json = std::fs::read(&config_path)
        .with_context(|| format!("failed to read {}", config_path.display()))?;
    let peft: PeftConfig = serde_json::from_slice(&json)
        .with_context(|| format!("invalid PEFT config {}", config_path.display()))?;
    ensure!(
        peft.peft_type == "LORA",
        "{}: peft_type is {:?}, expected \"LORA\"",
        config_path.display(),
        peft.peft_type
    );
    ensure!(
        peft.bias == "none",
        "{}: LoRA bias {:?} is not supported; expected \"none\"",
        config_path.display(),
        peft.bias
    );
    ensure!(
        !peft.use_rslora && !peft.fan_in_fan_out,
        "{}: rsLoRA and fan_in_fan_out are not supported",
        config_path.display()
    );
    let mut targets = Vec::new();
    for name in &peft.target_modules {
        match Target::ALL.iter().find(|t| t.hf_name() == name) {
            Some(&target) => targets.push(target),
            None => bail!("{}: unknown target module {name:?}", config_path.display()),
        }
    }
    let config = LoraConfig {
        rank: peft.r,
        alpha: peft.lora_alpha,
        dropout: peft.lora_dropout,
        targets,
    };
    let layout = LoraLayout::new(config, model)?;

    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights_path)
        .with_context(|| format!("failed to read {}", weights_path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("invalid safetensors file {}", weights_path.display()))?;
    let r = layout.config.rank as usize;
    let mut params = vec![0.0f32; layout.len];
    for tensor in &layout.tensors {
        for (matrix, offset, shape) in [
            ("A", tensor.a_offset, [r, tensor.in_features]),
            ("B", tensor.b_offset, [tensor.out_features, r]),
        ] {
            let name = tensor_name(tensor, matrix);
            let view = file
                .tensor(&name)
                .with_context(|| format!("{}: missing tensor {name}", weights_path.display()))?;
            ensure!(
                view.dtype() == Dtype::F32,
                "{}: tensor {name} is {:?}, expected F32",
                weights_path.display(),
                view.dtype()
            );
            ensure!(
                view.shape() == shape,
                "{}: tensor {name} has shape {:?}, expected {shape:?}",
                weights_path.display(),
                view.shape()
            );
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
            let values = match (matrix, permuted_heads(tensor.target, model)) {
                ("B", Some(heads)) => hf_rows_to_gguf(&values, heads, r),
                _ => values,
            };
            params[offset..offset + values.len()].copy_from_slice(&values);
        }
    }
    Ok((layout, params))
}
