//! Builds tiny random llama-family models as real GGUF files, with a
//! byte-level tokenizer, for tests that need a whole model.

use std::path::Path;

use laser_model::DType;
use laser_model::gguf::GgufWriter;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The shape and storage of a tiny test model.
#[derive(Clone, Debug)]
pub struct TinySpec {
    pub arch: &'static str,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub dtype: DType,
    pub tied: bool,
    pub seed: u64,
    /// `tokenizer.chat_template`, when set.
    pub chat_template: Option<&'static str>,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            arch: "llama",
            n_layer: 2,
            n_embd: 64,
            n_ff: 96,
            n_head: 4,
            n_head_kv: 2,
            dtype: DType::F32,
            tied: false,
            seed: 7,
            chat_template: None,
        }
    }
}

/// GPT-2's byte-to-character table: printable bytes map to themselves,
/// the rest to code points from 256 up.
fn byte_chars() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            }
        })
        .collect()
}

/// The vocabulary: 256 byte tokens, then `<|im_start|>`, `<|im_end|>`.
pub const VOCAB: usize = 258;
pub const IM_END: u32 = 257;

/// Writes a random model shaped by `spec` to `path`.
pub fn write_tiny_model(path: &Path, spec: &TinySpec) {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut gguf = GgufWriter::new();
    let arch = spec.arch;
    let head_dim = spec.n_embd / spec.n_head;
    gguf.add_metadata("general.architecture", arch.to_string());
    gguf.add_metadata(&format!("{arch}.block_count"), spec.n_layer as u32);
    gguf.add_metadata(&format!("{arch}.embedding_length"), spec.n_embd as u32);
    gguf.add_metadata(&format!("{arch}.feed_forward_length"), spec.n_ff as u32);
    gguf.add_metadata(&format!("{arch}.attention.head_count"), spec.n_head as u32);
    gguf.add_metadata(
        &format!("{arch}.attention.head_count_kv"),
        spec.n_head_kv as u32,
    );
    gguf.add_metadata(&format!("{arch}.context_length"), 256u32);
    gguf.add_metadata(&format!("{arch}.rope.freq_base"), 10000.0f32);
    gguf.add_metadata(&format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-5f32);
    let mut tokens: Vec<String> = byte_chars().into_iter().map(String::from).collect();
    tokens.push("<|im_start|>".into());
    tokens.push("<|im_end|>".into());
    let mut types = vec![1i32; 256];
    types.extend([3, 3]);
    gguf.add_metadata("tokenizer.ggml.model", "gpt2".to_string());
    gguf.add_metadata("tokenizer.ggml.pre", "gpt2".to_string());
    gguf.add_str_array("tokenizer.ggml.tokens", &tokens);
    gguf.add_i32_array("tokenizer.ggml.token_type", &types);
    gguf.add_str_array::<&str>("tokenizer.ggml.merges", &[]);
    gguf.add_metadata("tokenizer.ggml.bos_token_id", 256u32);
    gguf.add_metadata("tokenizer.ggml.eos_token_id", IM_END);
    if let Some(template) = spec.chat_template {
        gguf.add_metadata("tokenizer.chat_template", template.to_string());
    }

    let mut random = |n: usize, scale: f32| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-scale..scale)).collect()
    };
    let c = spec.n_embd;
    let q = spec.n_head * head_dim;
    let kv = spec.n_head_kv * head_dim;
    let f = spec.n_ff;
    let dtype = spec.dtype;
    let add =
        |gguf: &mut GgufWriter, name: &str, dtype: DType, shape: &[usize], values: Vec<f32>| {
            gguf.add_f32_tensor(name, dtype, shape, &values).unwrap();
        };
    add(
        &mut gguf,
        "token_embd.weight",
        dtype,
        &[VOCAB, c],
        random(VOCAB * c, 1.0),
    );
    for i in 0..spec.n_layer {
        let norm: Vec<f32> = random(c, 0.2).iter().map(|x| 1.0 + x).collect();
        add(
            &mut gguf,
            &format!("blk.{i}.attn_norm.weight"),
            DType::F32,
            &[c],
            norm.clone(),
        );
        add(
            &mut gguf,
            &format!("blk.{i}.attn_q.weight"),
            dtype,
            &[q, c],
            random(q * c, 0.3),
        );
        add(
            &mut gguf,
            &format!("blk.{i}.attn_k.weight"),
            dtype,
            &[kv, c],
            random(kv * c, 0.3),
        );
        add(
            &mut gguf,
            &format!("blk.{i}.attn_v.weight"),
            dtype,
            &[kv, c],
            random(kv * c, 0.3),
        );
        if arch == "qwen2" {
            add(
                &mut gguf,
                &format!("blk.{i}.attn_q.bias"),
                DType::F32,
                &[q],
                random(q, 0.1),
            );
            add(
                &mut gguf,
                &format!("blk.{i}.attn_k.bias"),
                DType::F32,
                &[kv],
                random(kv, 0.1),
            );
            add(
                &mut gguf,
                &format!("blk.{i}.attn_v.bias"),
                DType::F32,
                &[kv],
                random(kv, 0.1),
            );
        }
        add(
            &mut gguf,
            &format!("blk.{i}.attn_output.weight"),
            dtype,
            &[c, q],
            random(c * q, 0.2),
        );
        add(
            &mut gguf,
            &format!("blk.{i}.ffn_norm.weight"),
            DType::F32,
            &[c],
            norm,
        );
        add(
            &mut gguf,
            &format!("blk.{i}.ffn_gate.weight"),
            dtype,
            &[f, c],
            random(f * c, 0.3),
        );
        add(
            &mut gguf,
            &format!("blk.{i}.ffn_up.weight"),
            dtype,
            &[f, c],
            random(f * c, 0.3),
        );
        add(
            &mut gguf,
            &format!("blk.{i}.ffn_down.weight"),
            dtype,
            &[c, f],
            random(c * f, 0.2),
        );
    }
    add(
        &mut gguf,
        "output_norm.weight",
        DType::F32,
        &[c],
        vec![1.0; c],
    );
    if !spec.tied {
        add(
            &mut gguf,
            "output.weight",
            dtype,
            &[VOCAB, c],
            random(VOCAB * c, 0.5),
        );
    }
    gguf.write(path).unwrap();
}
