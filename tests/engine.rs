//! The GPU engine against the CPU reference forward pass, on tiny random
//! models built by the tests.

#[path = "support/tiny_model.rs"]
mod tiny_model;

use laser_gpu::Gpu;
use laser_host::engine::reference::ReferenceModel;
use laser_host::engine::{Engine, FinishReason, Pooling, SamplingConfig};
use laser_model::DType;
use laser_model::checkpoint::Checkpoint;
use tiny_model::{IM_END, TinySpec, write_tiny_model};

/// Loads `spec` into the GPU engine and the CPU reference.
fn load(spec: &TinySpec) -> (Engine, ReferenceModel, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_model(&path, spec);
    let checkpoint = Checkpoint::open(&path).unwrap();
    let reference = ReferenceModel::from_checkpoint(&checkpoint).unwrap();
    let engine = Engine::from_checkpoint(Gpu::new().unwrap(), &checkpoint).unwrap();
    (engine, reference, dir)
}

/// The largest |a - b| / max(|b|, 1) over two logit tables.
fn max_relative_error(gpu: &[Vec<f32>], cpu: &[Vec<f32>]) -> f32 {
    assert_eq!(gpu.len(), cpu.len());
    gpu.iter()
        .flatten()
        .zip(cpu.iter().flatten())
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f32::max)
}

const TOKENS: [u32; 13] = [72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100, 33, 10];

#[test]
fn llama_f32_logits_match_reference() {
    let (mut engine, reference, _dir) = load(&TinySpec::default());
    let gpu = engine.logits(&TOKENS).unwrap();
    let cpu = reference.logits(&TOKENS);
    let error = max_relative_error(&gpu, &cpu);
    assert!(error < 1e-4, "max relative error {error}");
}

#[test]
fn qwen2_with_biases_matches_reference() {
    let spec = TinySpec {
        arch: "qwen2",
        n_head: 4,
        n_head_kv: 1,
        ..TinySpec::default()
    };
    let (mut engine, reference, _dir) = load(&spec);
    let gpu = engine.logits(&TOKENS).unwrap();
    let cpu = reference.logits(&TOKENS);
    let error = max_relative_error(&gpu, &cpu);
    assert!(error < 1e-4, "max relative error {error}");
}

#[test]
fn quantized_models_match_reference() {
    for dtype in [DType::Q4_1, DType::Q8_0, DType::Q4_0, DType::F16] {
        let spec = TinySpec {
            dtype,
            tied: true,
            ..TinySpec::default()
        };
        let (mut engine, reference, _dir) = load(&spec);
        let gpu = engine.logits(&TOKENS).unwrap();
        let cpu = reference.logits(&TOKENS);
        let error = max_relative_error(&gpu, &cpu);
        assert!(error < 1e-4, "{dtype}: max relative error {error}");
    }
}

#[test]
fn long_sequence_spans_prefill_chunks() {
    let (mut engine, reference, _dir) = load(&TinySpec::default());
    let tokens: Vec<u32> = (0..200u32).map(|i| (i * 37 + 11) % 256).collect();
    let gpu = engine.logits(&tokens).unwrap();
    let cpu = reference.logits(&tokens);
    let error = max_relative_error(&gpu, &cpu);
    assert!(error < 1e-4, "max relative error {error}");
}

#[test]
fn greedy_generation_follows_reference_argmax() {
    let (mut engine, reference, _dir) = load(&TinySpec::default());
    let sampling = SamplingConfig {
        max_new_tokens: 8,
        ignore_eos: true,
        ..SamplingConfig::default()
    };
    let generated = engine.generate(&[TOKENS.to_vec()], &sampling).unwrap();
    let mut sequence = TOKENS.to_vec();
    for &token in &generated[0].tokens {
        let logits = reference.logits(&sequence);
        let last = logits.last().unwrap();
        let argmax = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap();
        assert_eq!(token as usize, argmax);
        sequence.push(token);
    }
    assert_eq!(generated[0].tokens.len(), 8);
}

#[test]
fn generation_fills_the_context() {
    // The last new token is never fed back, so prompt + new tokens may
    // exceed the context by one.
    let (mut engine, _reference, _dir) = load(&TinySpec::default());
    let context = engine.config.context_length;
    let prompt: Vec<u32> = (0..context as u32 - 4).map(|i| 40 + i % 50).collect();
    let fits = SamplingConfig {
        max_new_tokens: 5,
        ignore_eos: true,
        ..SamplingConfig::default()
    };
    let generated = engine
        .generate(std::slice::from_ref(&prompt), &fits)
        .unwrap();
    assert_eq!(generated[0].tokens.len(), 5);

    let too_long = SamplingConfig {
        max_new_tokens: 6,
        ..fits
    };
    let error = engine.generate(&[prompt], &too_long).unwrap_err();
    assert!(error.to_string().contains("context length"), "{error:#}");
}

#[test]
fn batched_generation_equals_single() {
    let (mut engine, _reference, _dir) = load(&TinySpec::default());
    let sampling = SamplingConfig {
        temperature: 0.8,
        seed: 3,
        max_new_tokens: 6,
        ignore_eos: true,
        ..SamplingConfig::default()
    };
    let short = TOKENS[..4].to_vec();
    let long = TOKENS.to_vec();
    let batch = engine
        .generate(&[short.clone(), long.clone()], &sampling)
        .unwrap();
    let alone = engine.generate(&[short], &sampling).unwrap();
    assert_eq!(batch[0].tokens, alone[0].tokens);
    let again = engine
        .generate(&[TOKENS[..4].to_vec(), long], &sampling)
        .unwrap();
    assert_eq!(batch[1].tokens, again[1].tokens);
}

#[test]
fn repeated_prompts_share_prefill_without_changing_samples() {
    // Slots 0 and 2 have the same prompt, so slot 2 copies slot 0's KV
    // cache instead of running the prompt itself. It must still sample
    // exactly what it samples when its prompt is not repeated.
    let (mut engine, _reference, _dir) = load(&TinySpec::default());
    let sampling = SamplingConfig {
        temperature: 0.8,
        seed: 5,
        max_new_tokens: 6,
        ignore_eos: true,
        ..SamplingConfig::default()
    };
    let first = TOKENS[..5].to_vec();
    let other = TOKENS[2..].to_vec();
    let repeated = engine
        .generate(&[first.clone(), other.clone(), first.clone()], &sampling)
        .unwrap();
    let distinct = engine
        .generate(&[other.clone(), TOKENS[..3].to_vec(), first], &sampling)
        .unwrap();
    assert_eq!(repeated[2].tokens, distinct[2].tokens);
    assert_eq!(repeated[2].logprobs, distinct[2].logprobs);
    assert_ne!(
        repeated[0].tokens, repeated[2].tokens,
        "each slot samples with its own seed"
    );
}

#[test]
fn continuation_logprobs_match_log_softmax() {
    let (mut engine, reference, _dir) = load(&TinySpec::default());
    let (prompt, continuation) = (TOKENS[..5].to_vec(), TOKENS[5..].to_vec());
    let scored = engine
        .continuation_logprobs(&[(prompt.clone(), continuation.clone())])
        .unwrap();
    assert_eq!(scored[0].len(), continuation.len());
    let logits = reference.logits(&TOKENS);
    for (j, &token) in continuation.iter().enumerate() {
        let row = &logits[prompt.len() - 1 + j];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = row.iter().map(|x| (x - max).exp()).sum::<f32>().ln() + max;
        let expected = row[token as usize] - log_sum;
        assert!(
            (scored[0][j] - expected).abs() < 1e-3,
            "position {j}: {} vs {expected}",
            scored[0][j]
        );
    }
}

#[test]
fn eos_logprob_matches_scoring() {
    // Flat sampling over the tiny model's 258 tokens draws its
    // end-of-sequence token in some of these sequences.
    let (mut engine, _reference, _dir) = load(&TinySpec::default());
    let sampling = SamplingConfig {
        temperature: 3.0,
        seed: 11,
        max_new_tokens: 24,
        ..SamplingConfig::default()
    };
    let prompt = TOKENS[..4].to_vec();
    let generations = engine
        .generate(&vec![prompt.clone(); 32], &sampling)
        .unwrap();
    let ended: Vec<_> = generations
        .iter()
        .filter(|g| g.finish == FinishReason::Eos)
        .collect();
    assert!(
        !ended.is_empty(),
        "no sequence drew the end-of-sequence token"
    );
    for generation in &generations {
        assert_eq!(
            generation.eos_token.is_some() && generation.eos_logprob.is_some(),
            generation.finish == FinishReason::Eos
        );
    }
    for generation in ended {
        assert_eq!(generation.eos_token, Some(IM_END));
        let mut continuation = generation.tokens.clone();
        continuation.push(IM_END);
        let scored = engine
            .continuation_logprobs(&[(prompt.clone(), continuation)])
            .unwrap();
        let eos_logprob = generation.eos_logprob.unwrap();
        let expected = *scored[0].last().unwrap();
        assert!(
            (eos_logprob - expected).abs() < 1e-3,
            "{eos_logprob} vs {expected}"
        );
    }
}

#[test]
fn hidden_states_pool_reference_states() {
    let (mut engine, reference, _dir) = load(&TinySpec::default());
    let states = reference.final_hidden(&TOKENS);
    let c = states.len() / TOKENS.len();
    let mean: Vec<f32> = (0..c)
        .map(|i| states.chunks(c).map(|row| row[i]).sum::<f32>() / TOKENS.len() as f32)
        .collect();
    let pooled = engine
        .hidden_states(&[TOKENS.to_vec()], Pooling::Mean)
        .unwrap();
    for (a, b) in pooled[0].iter().zip(&mean) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
    let last = engine
        .hidden_states(&[TOKENS.to_vec()], Pooling::Last)
        .unwrap();
    for (a, b) in last[0].iter().zip(&states[states.len() - c..]) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

#[test]
fn generation_contexts_equal_hidden_states() {
    // Three prompts of different lengths, one repeated, so one prompt's
    // contexts come from another slot's prefill.
    let (mut engine, _reference, _dir) = load(&TinySpec::default());
    let sampling = SamplingConfig {
        temperature: 0.8,
        seed: 3,
        max_new_tokens: 4,
        ..SamplingConfig::default()
    };
    let prompts = vec![
        TOKENS[..5].to_vec(),
        TOKENS.to_vec(),
        TOKENS[..5].to_vec(),
        TOKENS[4..9].to_vec(),
    ];
    for pooling in [Pooling::Mean, Pooling::Last, Pooling::Embedding] {
        let (generations, contexts) = engine
            .generate_with_contexts(&prompts, &sampling, pooling)
            .unwrap();
        let plain = engine.generate(&prompts, &sampling).unwrap();
        let expected = engine.hidden_states(&prompts, pooling).unwrap();
        assert_eq!(contexts.len(), prompts.len(), "{pooling:?}");
        for (i, (got, want)) in contexts.iter().zip(&expected).enumerate() {
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() < 1e-4, "{pooling:?} prompt {i}: {a} vs {b}");
            }
        }
        for (with, without) in generations.iter().zip(&plain) {
            assert_eq!(with.tokens, without.tokens, "{pooling:?}");
        }
    }
}

#[test]
fn embedding_pooling_means_table_rows() {
    let spec = TinySpec {
        dtype: DType::Q8_0,
        ..TinySpec::default()
    };
    let (mut engine, _reference, dir) = load(&spec);
    let checkpoint = Checkpoint::open(dir.path().join("tiny.gguf")).unwrap();
    let c = engine.config.n_embd;
    let tensor = checkpoint.tensor("token_embd.weight").unwrap();
    let table =
        laser_model::quant::dequantize(tensor.dtype, tensor.data, engine.config.vocab_size * c)
            .unwrap();
    // The long sequence spans two chunks of the embedding pass.
    let long: Vec<u32> = (0..600u32).map(|i| (i * 37 + 11) % 256).collect();
    let sequences = [TOKENS.to_vec(), long];

    let pooled = engine
        .hidden_states(&sequences, Pooling::Embedding)
        .unwrap();

    assert_eq!(pooled.len(), sequences.len());
    for (tokens, vector) in sequences.iter().zip(&pooled) {
        assert_eq!(vector.len(), c);
        for (i, &value) in vector.iter().enumerate() {
            let expected = tokens
                .iter()
                .map(|&t| table[t as usize * c + i])
                .sum::<f32>()
                / tokens.len() as f32;
            assert!(
                (value - expected).abs() < 1e-4,
                "{} tokens, channel {i}: {value} vs {expected}",
                tokens.len()
            );
        }
    }
}

#[test]
fn embedding_pooling_rejects_unknown_token() {
    let (mut engine, _reference, _dir) = load(&TinySpec::default());
    let vocab_size = engine.config.vocab_size as u32;
    let error = engine
        .hidden_states(&[vec![1, vocab_size]], Pooling::Embedding)
        .unwrap_err();
    assert!(
        error.to_string().contains("outside the vocabulary"),
        "{error}"
    );
}

#[test]
fn broken_chat_template_fails_only_chat() {
    let spec = TinySpec {
        chat_template: Some("{% for message in messages %}{{ message.content"),
        ..TinySpec::default()
    };
    let (mut engine, _reference, _dir) = load(&spec);
    let sampling = SamplingConfig {
        max_new_tokens: 2,
        ignore_eos: true,
        ..SamplingConfig::default()
    };
    let generation = engine.generate(&[TOKENS.to_vec()], &sampling).unwrap();
    assert_eq!(generation[0].tokens.len(), 2);
    let error = engine.chat_prompt("Hi").unwrap_err();
    assert!(error.to_string().contains("chat template"), "{error}");
}

#[test]
fn stop_string_cuts_generation() {
    let (mut engine, _reference, _dir) = load(&TinySpec::default());
    let free = SamplingConfig {
        max_new_tokens: 12,
        ignore_eos: true,
        ..SamplingConfig::default()
    };
    let full = engine.generate(&[TOKENS.to_vec()], &free).unwrap();
    let text = &full[0].text;
    // Stop at a piece of the greedy text that starts after its first char.
    let start = text.char_indices().nth(3).map_or(0, |(i, _)| i);
    let stop: String = text[start..].chars().take(2).collect();
    let cut = text.find(&stop).unwrap();
    let stopped = SamplingConfig {
        stop: vec![stop.clone()],
        ..free
    };
    let generation = engine.generate(&[TOKENS.to_vec()], &stopped).unwrap();
    assert_eq!(generation[0].text, text[..cut]);
    assert_eq!(generation[0].finish, laser_host::engine::FinishReason::Stop);

    // The tokens and log-probabilities end with the token in which the
    // text ends, not with the stop string's last token.
    let kept_count = generation[0].tokens.len();
    assert_eq!(generation[0].logprobs.len(), kept_count);
    assert_eq!(generation[0].tokens[..], full[0].tokens[..kept_count]);
    let kept_text = engine
        .tokenizer
        .decode(&generation[0].tokens, true)
        .unwrap();
    assert!(kept_text.starts_with(&text[..cut]), "{kept_text:?}");
    let shorter = engine
        .tokenizer
        .decode(&generation[0].tokens[..kept_count.saturating_sub(1)], true)
        .unwrap();
    assert!(shorter.len() < cut || kept_count == 0, "{shorter:?}");
}
