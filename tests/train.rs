//! Preference training on tiny random models: GPU LoRA gradients (with
//! and without dropout) against finite differences of the CPU reference
//! and against the projected full gradient, full fine-tuning gradients,
//! PEFT adapter files, merged models, the engine with an adapter, the
//! LASeR policy trainer, DPO runs whose loss falls, bit-identical
//! resumption, and the `dpo`, `dpo --full`, `generate --adapter` and
//! `merge` commands.

#[path = "support/tiny_model.rs"]
mod tiny_model;

use laser_gpu::Gpu;
use laser_host::train::batch::TokenizedPair;
use laser_host::train::dpo::{self, RunOptions};
use laser_host::train::full::FullConfig;
use laser_host::train::lora::{DropoutPass, LoraConfig, LoraLayout, Target};
use laser_host::train::model::{SequenceBatch, TrainModel};
use laser_host::train::reference::ReferenceTrainModel;
use laser_host::train::{TrainConfig, peft};
use laser_model::DType;
use laser_model::checkpoint::Checkpoint;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tiny_model::{TinySpec, VOCAB, write_tiny_model};

/// Writes `spec` and opens it.
fn open(spec: &TinySpec) -> (Checkpoint, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_model(&path, spec);
    (Checkpoint::open(&path).unwrap(), dir)
}

fn all_targets(rank: u32) -> LoraConfig {
    LoraConfig {
        rank,
        alpha: 2.0 * rank as f32,
        dropout: 0.0,
        targets: Target::ALL.to_vec(),
    }
}

/// Random adapters with nonzero B, so every A gets a gradient.
fn random_params(layout: &LoraLayout, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..layout.len)
        .map(|_| rng.random_range(-0.2..0.2))
        .collect()
}

/// The GPU gradient of `L = sum_r w_r * logprob_r` over a padded batch of
/// two sequences, at every adapter tensor of both blocks, against central
/// differences (step 1e-3) of the f64 CPU reference. The GPU runs in f32,
/// so the bound is 2e-3 + 2% of the gradient's size.
#[test]
fn lora_gradients_match_finite_differences() {
    check_lora_gradients(&[(11, 3), (6, 2)]);
}

/// Sequences whose counted rows span three output-head chunks, one run
/// split between two of them.
#[test]
fn lora_gradients_match_across_head_chunks() {
    check_lora_gradients(&[(90, 10), (70, 5), (30, 29)]);
}

/// Checks the GPU forward pass against the CPU reference and the adapter
/// gradients against finite differences, on random sequences of the given
/// `(length, first counted token)` shapes.
fn check_lora_gradients(shapes: &[(usize, usize)]) {
    let spec = TinySpec::default();
    let (checkpoint, _dir) = open(&spec);
    let layout = LoraLayout::new(all_targets(4), checkpoint.config()).unwrap();
    let params = random_params(&layout, 1);
    let gpu = Gpu::new().unwrap();
    let mut model = TrainModel::new(gpu.clone(), &checkpoint, layout.clone()).unwrap();
    let reference = ReferenceTrainModel::new(&checkpoint, layout.clone()).unwrap();

    let mut rng = StdRng::seed_from_u64(2);
    let tokens: Vec<Vec<u32>> = shapes
        .iter()
        .map(|&(len, _)| {
            (0..len)
                .map(|_| rng.random_range(0..VOCAB as u32))
                .collect()
        })
        .collect();
    let sequences: Vec<(&[u32], usize)> = tokens
        .iter()
        .zip(shapes)
        .map(|(tokens, &(_, first))| (tokens.as_slice(), first))
        .collect();
    let batch = SequenceBatch::new(&sequences).unwrap();
    let weights: Vec<f32> = (0..batch.rows())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();

    let params_buf = gpu.buffer_from("params", &params);
    let grads_buf = gpu.buffer_zeroed("grads", layout.len as u64 * 4);
    let logprobs = model.forward(&params_buf, &batch).unwrap();
    model
        .backward(&params_buf, &grads_buf, &batch, &weights)
        .unwrap();
    let grads: Vec<f32> = gpu.read(&grads_buf, layout.len as u64 * 4).unwrap();

    let t = batch.seq_len as usize;
    let loss = |p: &[f64]| -> f64 {
        let mut total = 0.0;
        for (b, &(tokens, first)) in sequences.iter().enumerate() {
            let lp = reference.token_logprobs(p, tokens);
            for pos in first - 1..tokens.len() - 1 {
                total += f64::from(weights[b * t + pos]) * lp[pos];
            }
        }
        total
    };

    // The forward pass itself matches the reference.
    let base: Vec<f64> = params.iter().map(|&p| f64::from(p)).collect();
    for (b, &(tokens, first)) in sequences.iter().enumerate() {
        let expected = reference.token_logprobs(&base, tokens);
        for pos in first - 1..tokens.len() - 1 {
            let got = f64::from(logprobs[b * t + pos]);
            assert!(
                (got - expected[pos]).abs() < 1e-3,
                "logprob of sequence {b} at {pos}: GPU {got}, CPU {}",
                expected[pos]
            );
        }
    }

    let checked = assert_adapter_gradients(&layout, &grads, &base, loss);
    assert_eq!(checked, layout.tensors.len() * 6);
}

/// Compares `grads` with central differences (step 1e-3) of `loss` around
/// `base` at the first, a middle and the last element of every A and B,
/// within 2e-3 + 2% of the difference; returns the number checked.
fn assert_adapter_gradients(
    layout: &LoraLayout,
    grads: &[f32],
    base: &[f64],
    loss: impl Fn(&[f64]) -> f64,
) -> usize {
    let r = layout.config.rank as usize;
    let step = 1e-3;
    let mut checked = 0;
    for tensor in &layout.tensors {
        for (offset, count) in [
            (tensor.a_offset, r * tensor.in_features),
            (tensor.b_offset, tensor.out_features * r),
        ] {
            for index in [offset, offset + count / 2 + 1, offset + count - 1] {
                let mut plus = base.to_vec();
                plus[index] += step;
                let mut minus = base.to_vec();
                minus[index] -= step;
                let numeric = (loss(&plus) - loss(&minus)) / (2.0 * step);
                let analytic = f64::from(grads[index]);
                let bound = 2e-3 + 0.02 * numeric.abs();
                assert!(
                    (analytic - numeric).abs() <= bound,
                    "block {} {:?} parameter {index}: GPU gradient {analytic}, finite difference {numeric}",
                    tensor.layer,
                    tensor.target
                );
                checked += 1;
            }
        }
    }
    checked
}

/// With LoRA dropout 0.3 and one fixed training pass, the GPU forward pass
/// and gradients match the f64 CPU reference under the same masks (central
/// differences, step 1e-3, bound 2e-3 + 2%), and the masks do change the
/// log-probabilities.
#[test]
fn lora_dropout_gradients_match_finite_differences() {
    let spec = TinySpec::default();
    let (checkpoint, _dir) = open(&spec);
    let lora = LoraConfig {
        dropout: 0.3,
        ..all_targets(4)
    };
    let layout = LoraLayout::new(lora, checkpoint.config()).unwrap();
    let params = random_params(&layout, 31);
    let gpu = Gpu::new().unwrap();
    let mut model = TrainModel::new(gpu.clone(), &checkpoint, layout.clone()).unwrap();
    let reference = ReferenceTrainModel::new(&checkpoint, layout.clone()).unwrap();

    let mut rng = StdRng::seed_from_u64(32);
    let long: Vec<u32> = (0..9).map(|_| rng.random_range(0..VOCAB as u32)).collect();
    let short: Vec<u32> = (0..5).map(|_| rng.random_range(0..VOCAB as u32)).collect();
    let batch = SequenceBatch::new(&[(&long, 3), (&short, 2)]).unwrap();
    let weights: Vec<f32> = (0..batch.rows())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let pass = DropoutPass {
        seed: 5,
        step: 3,
        micro_batch: 1,
    };

    let params_buf = gpu.buffer_from("params", &params);
    let grads_buf = gpu.buffer_zeroed("grads", layout.len as u64 * 4);
    let plain = model.forward(&params_buf, &batch).unwrap();
    let logprobs = model.forward_train(&params_buf, &batch, pass).unwrap();
    model
        .backward(&params_buf, &grads_buf, &batch, &weights)
        .unwrap();
    let grads: Vec<f32> = gpu.read(&grads_buf, layout.len as u64 * 4).unwrap();

    let t = batch.seq_len as usize;
    let sequences = [(&long, 3usize, 0usize), (&short, 2, 1)];
    let loss = |p: &[f64]| -> f64 {
        let mut total = 0.0;
        for &(tokens, first, b) in &sequences {
            let lp = reference.token_logprobs_dropout(p, tokens, Some((pass, b * t)));
            for pos in first - 1..tokens.len() - 1 {
                total += f64::from(weights[b * t + pos]) * lp[pos];
            }
        }
        total
    };

    let base: Vec<f64> = params.iter().map(|&p| f64::from(p)).collect();
    let mut largest_change = 0.0f32;
    for &(tokens, first, b) in &sequences {
        let expected = reference.token_logprobs_dropout(&base, tokens, Some((pass, b * t)));
        for pos in first - 1..tokens.len() - 1 {
            let got = f64::from(logprobs[b * t + pos]);
            assert!(
                (got - expected[pos]).abs() < 1e-3,
                "logprob of sequence {b} at {pos}: GPU {got}, CPU {}",
                expected[pos]
            );
            largest_change = largest_change.max((logprobs[b * t + pos] - plain[b * t + pos]).abs());
        }
    }
    assert!(
        largest_change > 1e-3,
        "dropout changed no log-probability by more than {largest_change}"
    );

    let checked = assert_adapter_gradients(&layout, &grads, &base, loss);
    assert_eq!(checked, layout.tensors.len() * 6);
}

/// With dropout 0 a training pass runs exactly the kernels of a plain
/// forward pass: the same log-probability and gradient bits.
#[test]
fn dropout_zero_matches_plain_pass() {
    let spec = TinySpec::default();
    let (checkpoint, _dir) = open(&spec);
    let layout = LoraLayout::new(all_targets(4), checkpoint.config()).unwrap();
    let params = random_params(&layout, 41);
    let gpu = Gpu::new().unwrap();
    let mut model = TrainModel::new(gpu.clone(), &checkpoint, layout.clone()).unwrap();
    let tokens: Vec<u32> = (0..10).map(|i| (i * 29 + 3) % VOCAB as u32).collect();
    let batch = SequenceBatch::new(&[(&tokens, 3)]).unwrap();
    let weights: Vec<f32> = (0..batch.rows()).map(|r| 0.3 - 0.05 * r as f32).collect();
    let params_buf = gpu.buffer_from("params", &params);
    let bytes = layout.len as u64 * 4;

    let mut run = |pass: Option<DropoutPass>| {
        let grads_buf = gpu.buffer_zeroed("grads", bytes);
        let logprobs = match pass {
            Some(pass) => model.forward_train(&params_buf, &batch, pass).unwrap(),
            None => model.forward(&params_buf, &batch).unwrap(),
        };
        model
            .backward(&params_buf, &grads_buf, &batch, &weights)
            .unwrap();
        let grads: Vec<f32> = gpu.read(&grads_buf, bytes).unwrap();
        (logprobs, grads)
    };
    let (plain_logprobs, plain_grads) = run(None);
    let pass = DropoutPass {
        seed: 1,
        step: 2,
        micro_batch: 0,
    };
    let (train_logprobs, train_grads) = run(Some(pass));
    assert_eq!(
        train_logprobs, plain_logprobs,
        "log-probabilities differ with dropout 0"
    );
    assert_eq!(train_grads, plain_grads, "gradients differ with dropout 0");
}

/// PEFT files read back to the same parameters, and q_proj's B is stored
/// in Hugging Face row order.
#[test]
fn adapter_round_trips_through_peft_files() {
    let spec = TinySpec::default();
    let (checkpoint, dir) = open(&spec);
    let config = checkpoint.config();
    let lora = LoraConfig {
        dropout: 0.05,
        ..all_targets(3)
    };
    let layout = LoraLayout::new(lora, config).unwrap();
    let params = random_params(&layout, 5);
    let out = dir.path().join("adapter");
    peft::save(&out, &layout, config, &params, "tiny").unwrap();
    let (loaded_layout, loaded) = peft::load(&out, config).unwrap();
    assert_eq!(loaded_layout, layout);
    assert_eq!(loaded, params);

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(peft::CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(json["peft_type"], "LORA");
    assert_eq!(json["task_type"], "CAUSAL_LM");
    assert_eq!(json["r"], 3);
    assert_eq!(json["lora_alpha"], 6.0);
    assert_eq!(json["lora_dropout"], 0.05);
    assert_eq!(json["bias"], "none");
    assert_eq!(json["target_modules"][0], "q_proj");

    // GGUF row 2i + half of a head is Hugging Face row half * D/2 + i.
    let bytes = std::fs::read(out.join(peft::WEIGHTS_FILE)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let q = layout.find(0, Target::Q).unwrap();
    let stored: Vec<f32> = bytemuck::pod_collect_to_vec(
        file.tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")
            .unwrap()
            .data(),
    );
    let d = config.head_dim;
    // Pair i = 1, second half: GGUF row 2i + 1, Hugging Face row D/2 + i.
    let (gguf_row, hf_row) = (3, d / 2 + 1);
    assert_eq!(
        &stored[hf_row * 3..hf_row * 3 + 3],
        &params[q.b_offset + gguf_row * 3..q.b_offset + gguf_row * 3 + 3]
    );
    let v = layout.find(0, Target::V).unwrap();
    let stored_v: Vec<f32> = bytemuck::pod_collect_to_vec(
        file.tensor("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight")
            .unwrap()
            .data(),
    );
    assert_eq!(
        &stored_v[..],
        &params[v.b_offset..v.b_offset + v.out_features * 3]
    );
}

/// Pairs of random prompts whose chosen response repeats one byte pattern
/// and whose rejected response repeats another.
fn toy_pairs(count: usize) -> Vec<TokenizedPair> {
    let mut rng = StdRng::seed_from_u64(9);
    (0..count)
        .map(|_| TokenizedPair {
            prompt: (0..rng.random_range(3..7))
                .map(|_| rng.random_range(0..256))
                .collect(),
            chosen: b"abcabcab"[..rng.random_range(4..8)]
                .iter()
                .map(|&b| u32::from(b))
                .collect(),
            rejected: b"zyxzyxzy"[..rng.random_range(4..8)]
                .iter()
                .map(|&b| u32::from(b))
                .collect(),
        })
        .collect()
}

fn toy_config(steps: u32) -> TrainConfig {
    TrainConfig {
        lora: LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: vec![Target::Q, Target::V, Target::Down],
        },
        lr: 1e-2,
        steps,
        pairs_per_step: 4,
        micro_batch: 2,
        max_len: 32,
        seed: 3,
        ..TrainConfig::default()
    }
}

fn run_options(out: &std::path::Path, resume: bool, stop_after: Option<u32>) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        base_model: "tiny".into(),
        save_every: 1,
        resume,
        stop_after,
    }
}

#[test]
fn dpo_loss_falls_on_tiny_model() {
    let spec = TinySpec {
        dtype: DType::Q8_0,
        ..TinySpec::default()
    };
    let (checkpoint, dir) = open(&spec);
    let config = toy_config(25);
    let layout = LoraLayout::new(config.lora.clone(), checkpoint.config()).unwrap();
    let model = TrainModel::new(Gpu::new().unwrap(), &checkpoint, layout).unwrap();
    let pairs = toy_pairs(6);
    let mut history = Vec::new();
    let out = dir.path().join("run");
    dpo::run(
        model,
        config,
        &pairs,
        &run_options(&out, false, None),
        |m| history.push(m.clone()),
    )
    .unwrap();

    let first = &history[0];
    let last = history.last().unwrap();
    assert_eq!(history.len(), 25);
    assert!(
        (first.margin).abs() < 1e-4,
        "first margin {} is not 0 (policy = reference)",
        first.margin
    );
    assert!(
        last.loss < 0.5 * first.loss,
        "loss went from {} to {}",
        first.loss,
        last.loss
    );
    assert!(last.margin > 0.5, "final reward margin {}", last.margin);
    assert_eq!(last.accuracy, 1.0);
    assert!(
        last.chosen_nll < first.chosen_nll,
        "chosen NLL went from {} to {}",
        first.chosen_nll,
        last.chosen_nll
    );
    assert!(out.join(peft::WEIGHTS_FILE).exists());
    let lines = std::fs::read_to_string(out.join(dpo::METRICS_FILE))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 25);
}

/// IPO, on mean per-token log-ratios, also lowers its loss.
#[test]
fn ipo_loss_falls_on_tiny_model() {
    let spec = TinySpec::default();
    let (checkpoint, dir) = open(&spec);
    let mut config = toy_config(12);
    config.loss.kind = laser_host::train::loss::LossKind::Ipo;
    let layout = LoraLayout::new(config.lora.clone(), checkpoint.config()).unwrap();
    let model = TrainModel::new(Gpu::new().unwrap(), &checkpoint, layout).unwrap();
    let pairs = toy_pairs(4);
    let mut history = Vec::new();
    let out = dir.path().join("run");
    let options = run_options(&out, false, None);
    dpo::run(model, config, &pairs, &options, |m| history.push(m.clone())).unwrap();

    let first = &history[0];
    let last = history.last().unwrap();
    assert!(
        last.loss < 0.5 * first.loss,
        "loss went from {} to {}",
        first.loss,
        last.loss
    );
    assert!(last.margin > 0.0, "final reward margin {}", last.margin);
}

/// An absurd learning rate makes the loss NaN: the run stops with an
/// error naming the step and the learning rate, before the update, and the
/// adapter saved before it stays finite.
#[test]
fn diverged_run_stops_before_saving_nan() {
    let spec = TinySpec::default();
    let (checkpoint, dir) = open(&spec);
    let config = TrainConfig {
        lr: 1e30,
        ..toy_config(4)
    };
    let layout = LoraLayout::new(config.lora.clone(), checkpoint.config()).unwrap();
    let model = TrainModel::new(Gpu::new().unwrap(), &checkpoint, layout).unwrap();
    let out = dir.path().join("run");
    let mut history = Vec::new();
    let result = dpo::run(
        model,
        config,
        &toy_pairs(4),
        &run_options(&out, false, None),
        |m| history.push(m.clone()),
    );

    let message = format!("{:#}", result.err().expect("a NaN run succeeded"));
    assert!(message.contains("training diverged at step"), "{message}");
    assert!(
        message.contains("lower the learning rate (now 1e30)"),
        "{message}"
    );
    assert!(history.len() < 4, "all {} steps ran", history.len());
    assert!(
        history.iter().all(|m| m.loss.is_finite()),
        "a step with a non-finite loss was reported"
    );
    let metrics = std::fs::read_to_string(out.join(dpo::METRICS_FILE)).unwrap();
    assert!(!metrics.contains("null"), "metrics contain null: {metrics}");
    let saved = std::fs::read(out.join(peft::WEIGHTS_FILE)).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&saved).unwrap();
    for (name, view) in tensors.tensors() {
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
        assert!(
            values.iter().all(|v| v.is_finite()),
            "saved tensor {name} is not finite"
        );
    }
}

/// A run stopped after 3 of 6 steps and resumed ends with the same
/// adapter bytes as an uninterrupted run.
#[test]
fn resume_matches_uninterrupted_run() {
    check_resume(toy_config(6));
}

/// Resumption stays bit-identical with LoRA dropout, whose masks depend on
/// the seed and the step only; and dropout changes what is learned.
#[test]
fn resume_with_dropout_matches_uninterrupted_run() {
    let mut config = toy_config(6);
    config.lora.dropout = 0.2;
    let with_dropout = check_resume(config);
    let without_dropout = check_resume(toy_config(6));
    assert_ne!(
        with_dropout, without_dropout,
        "dropout 0.2 trained the same adapter as dropout 0"
    );
}

/// Trains `config` for 6 steps whole and split at step 3, asserts that both
/// runs write the same files, and returns the adapter file's bytes.
fn check_resume(config: TrainConfig) -> Vec<u8> {
    let spec = TinySpec::default();
    let (checkpoint, dir) = open(&spec);
    let pairs = toy_pairs(5);
    let layout = LoraLayout::new(config.lora.clone(), checkpoint.config()).unwrap();
    let gpu = Gpu::new().unwrap();
    let train = |out: &std::path::Path, resume: bool, stop_after: Option<u32>| {
        let model = TrainModel::new(gpu.clone(), &checkpoint, layout.clone()).unwrap();
        dpo::run(
            model,
            config.clone(),
            &pairs,
            &run_options(out, resume, stop_after),
            |_| {},
        )
        .unwrap()
        .step
    };

    let whole = dir.path().join("whole");
    assert_eq!(train(&whole, false, None), 6);
    let split = dir.path().join("split");
    assert_eq!(train(&split, false, Some(3)), 3);
    assert_eq!(train(&split, true, None), 6);

    for file in [
        peft::WEIGHTS_FILE,
        laser_host::train::checkpoint::STATE_FILE,
    ] {
        let a = std::fs::read(whole.join(file)).unwrap();
        let b = std::fs::read(split.join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the whole and the resumed run"
        );
    }
    let metrics = std::fs::read_to_string(split.join(dpo::METRICS_FILE)).unwrap();
    assert_eq!(metrics.lines().count(), 6);
    std::fs::read(whole.join(peft::WEIGHTS_FILE)).unwrap()
}

/// A merged Hugging Face folder gives the same log-probabilities as the
/// GGUF base with the adapter, which also checks that Q and K rows are put
/// back in Hugging Face order.
#[test]
fn merged_model_matches_adapter() {
    let spec = TinySpec::default();
    let (checkpoint, dir) = open(&spec);
    let layout = LoraLayout::new(all_targets(2), checkpoint.config()).unwrap();
    let params = random_params(&layout, 11);
    let out = dir.path().join("merged");
    laser_host::train::merge::merge(&checkpoint, &layout, &params, &out).unwrap();

    let merged = Checkpoint::open(&out).unwrap();
    assert_eq!(
        merged.config().rope_layout,
        laser_model::config::RopeLayout::Halves
    );
    let merged_layout = LoraLayout::new(all_targets(1), merged.config()).unwrap();
    let merged_reference = ReferenceTrainModel::new(&merged, merged_layout.clone()).unwrap();
    let adapted_reference = ReferenceTrainModel::new(&checkpoint, layout).unwrap();

    let tokens: Vec<u32> = (0..9).map(|i| (i * 37 + 5) % VOCAB as u32).collect();
    let adapted_params: Vec<f64> = params.iter().map(|&p| f64::from(p)).collect();
    let expected = adapted_reference.token_logprobs(&adapted_params, &tokens);
    let actual = merged_reference.token_logprobs(&vec![0.0; merged_layout.len], &tokens);
    for (pos, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!(
            (a - e).abs() < 1e-4,
            "position {pos}: merged {a}, base with adapter {e}"
        );
    }
}

/// The engine's forward pass with an adapter agrees with the training
/// forward pass.
#[test]
fn engine_adapter_matches_training_forward() {
    let spec = TinySpec::default();
    let (checkpoint, _dir) = open(&spec);
    let layout = LoraLayout::new(all_targets(4), checkpoint.config()).unwrap();
    let params = random_params(&layout, 12);
    let gpu = Gpu::new().unwrap();
    let mut model = TrainModel::new(gpu.clone(), &checkpoint, layout.clone()).unwrap();
    let params_buf = gpu.buffer_from("params", &params);
    let tokens: Vec<u32> = (0..12).map(|i| (i * 53 + 1) % VOCAB as u32).collect();
    let batch = SequenceBatch::new(&[(&tokens, 4)]).unwrap();
    let train_logprobs = model.forward(&params_buf, &batch).unwrap();

    let mut engine = laser_host::engine::Engine::from_checkpoint(gpu.clone(), &checkpoint).unwrap();
    let adapter =
        laser_host::engine::adapter::Adapter::new(&gpu, layout, params_buf.clone(), 512).unwrap();
    engine.set_adapter(Some(adapter));
    let engine_logprobs = engine
        .continuation_logprobs(&[(tokens[..4].to_vec(), tokens[4..].to_vec())])
        .unwrap();
    for (j, &lp) in engine_logprobs[0].iter().enumerate() {
        let expected = train_logprobs[3 + j];
        assert!(
            (lp - expected).abs() < 1e-3,
            "token {j}: engine {lp}, training forward {expected}"
        );
    }
}

#[test]
fn nan_adapter_is_named_in_error() {
    let spec = TinySpec::default();
    let (checkpoint, _dir) = open(&spec);
    let layout = LoraLayout::new(all_targets(4), checkpoint.config()).unwrap();
    let gpu = Gpu::new().unwrap();
    let params = vec![f32::NAN; layout.len];
    let params_buf = gpu.buffer_from("params", &params);
    let mut engine = laser_host::engine::Engine::from_checkpoint(gpu.clone(), &checkpoint).unwrap();
    let adapter = laser_host::engine::adapter::Adapter::new(&gpu, layout, params_buf, 512).unwrap();
    engine.set_adapter(Some(adapter));
    let tokens: Vec<u32> = (0..8).map(|i| (i * 53 + 1) % VOCAB as u32).collect();
    let error = engine
        .continuation_logprobs(&[(tokens[..4].to_vec(), tokens[4..].to_vec())])
        .unwrap_err()
        .to_string();
    assert!(error.contains("with a LoRA adapter applied"), "{error}");
    assert!(!error.contains("fetch it again"), "{error}");
}

/// A LASeR training step through the policy trainer updates the adapter
/// the engine applies, so the engine's log-probabilities move.
#[test]
fn policy_step_changes_engine_outputs() {
    use laser_host::engine::{Engine, FinishReason, Generation};
    use laser_host::laser::PreferencePair;
    use laser_host::train::policy::PolicyTrainer;

    let spec = TinySpec::default();
    let (checkpoint, dir) = open(&spec);
    let mut engine = Engine::from_checkpoint(Gpu::new().unwrap(), &checkpoint).unwrap();
    let config = TrainConfig {
        lr: 1e-2,
        seed: 4,
        ..TrainConfig::default()
    };
    let model_path = dir.path().join("tiny.gguf");
    let mut policy =
        PolicyTrainer::open(&mut engine, &model_path, config, &dir.path().join("policy")).unwrap();

    let prompt: Vec<u32> = vec![256, 72, 105];
    let generation = |text: &[u8], finish| Generation {
        tokens: text.iter().map(|&b| u32::from(b)).collect(),
        text: String::new(),
        logprobs: vec![0.0; text.len()],
        eos_token: None,
        eos_logprob: (finish == FinishReason::Eos).then_some(0.0),
        finish,
    };
    let generations = vec![
        generation(b"yes", FinishReason::Eos),
        generation(b"no!", FinishReason::Length),
        generation(b"", FinishReason::Eos),
    ];
    let request = [(
        prompt.clone(),
        b"yes".iter().map(|&b| u32::from(b)).collect::<Vec<_>>(),
    )];
    let before = engine.continuation_logprobs(&request).unwrap();

    let pairs = [
        PreferencePair {
            instance: 0,
            chosen: 0,
            rejected: 1,
        },
        // An empty response cannot be trained on and is skipped.
        PreferencePair {
            instance: 0,
            chosen: 0,
            rejected: 2,
        },
    ];
    let prompts = vec![prompt.clone()];
    let outcome = policy.train(&prompts, &generations, &pairs).unwrap();
    assert_eq!(outcome.losses.len(), 1);
    assert_eq!(outcome.losses[0].0, 0);
    assert!(outcome.loss.unwrap().is_finite());
    assert!(
        outcome.margin.unwrap().abs() < 1e-4,
        "the first step starts at the reference"
    );

    let after = engine.continuation_logprobs(&request).unwrap();
    assert_ne!(before, after, "the engine did not see the updated adapter");
    policy.save(&dir.path().join("policy"), "tiny").unwrap();
    assert!(dir.path().join("policy").join(peft::WEIGHTS_FILE).exists());
}

/// LoRA gradients are the full weight gradient projected onto the
/// adapter: with `W' = W + s B A`, `dB = s dW Aᵀ` and `dA = s Bᵀ dW`. The
/// full gradient dW of block 1's `down_proj` comes from central
/// differences of the f64 CPU reference; the GPU's dA and dB must match
/// its projections within 2e-3 + 2%.
#[test]
fn lora_gradients_match_projected_full_gradient() {
    let spec = TinySpec::default();
    let (checkpoint, _dir) = open(&spec);
    let lora = LoraConfig {
        rank: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec![Target::Down],
    };
    let layout = LoraLayout::new(lora, checkpoint.config()).unwrap();
    let params = random_params(&layout, 21);
    let gpu = Gpu::new().unwrap();
    let mut model = TrainModel::new(gpu.clone(), &checkpoint, layout.clone()).unwrap();
    let mut reference = ReferenceTrainModel::new(&checkpoint, layout.clone()).unwrap();

    let tokens: Vec<u32> = (0..8).map(|i| (i * 91 + 17) % VOCAB as u32).collect();
    let batch = SequenceBatch::new(&[(&tokens, 2)]).unwrap();
    let weights: Vec<f32> = (0..batch.rows()).map(|r| 0.5 - 0.1 * r as f32).collect();
    let params_buf = gpu.buffer_from("params", &params);
    let grads_buf = gpu.buffer_zeroed("grads", layout.len as u64 * 4);
    model.forward(&params_buf, &batch).unwrap();
    model
        .backward(&params_buf, &grads_buf, &batch, &weights)
        .unwrap();
    let grads: Vec<f32> = gpu.read(&grads_buf, layout.len as u64 * 4).unwrap();

    let base: Vec<f64> = params.iter().map(|&p| f64::from(p)).collect();
    let tensor = *layout.find(1, Target::Down).unwrap();
    let (n, k, r) = (tensor.out_features, tensor.in_features, 2);
    let step = 1e-3;
    let mut d_weight = vec![0.0f64; n * k];
    for (index, slot) in d_weight.iter_mut().enumerate() {
        let mut loss_at = |delta: f64| {
            reference.weight_mut(1, Target::Down)[index] += delta;
            let lp = reference.token_logprobs(&base, &tokens);
            reference.weight_mut(1, Target::Down)[index] -= delta;
            // Rows 1.. predict the counted tokens 2.. of the batch.
            (1..tokens.len() - 1)
                .map(|row| f64::from(weights[row]) * lp[row])
                .sum::<f64>()
        };
        *slot = (loss_at(step) - loss_at(-step)) / (2.0 * step);
    }

    let scale = 2.0;
    let a = &base[tensor.a_offset..tensor.a_offset + r * k];
    let b = &base[tensor.b_offset..tensor.b_offset + n * r];
    let close =
        |gpu: f32, expected: f64| (f64::from(gpu) - expected).abs() <= 2e-3 + 0.02 * expected.abs();
    for i in 0..n {
        for l in 0..r {
            let expected: f64 = scale
                * (0..k)
                    .map(|j| d_weight[i * k + j] * a[l * k + j])
                    .sum::<f64>();
            let got = grads[tensor.b_offset + i * r + l];
            assert!(
                close(got, expected),
                "dB[{i}, {l}]: GPU {got}, projected {expected}"
            );
        }
    }
    for l in 0..r {
        for j in 0..k {
            let expected: f64 = scale
                * (0..n)
                    .map(|i| b[i * r + l] * d_weight[i * k + j])
                    .sum::<f64>();
            let got = grads[tensor.a_offset + l * k + j];
            assert!(
                close(got, expected),
                "dA[{l}, {j}]: GPU {got}, projected {expected}"
            );
        }
    }
}

/// `dpo` rejects settings that would write a NaN adapter, and an --out
/// folder that contains other files, before it trains.
#[test]
fn dpo_rejects_bad_settings_and_busy_out() {
    use std::process::Command;

    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_tiny_model(&model, &TinySpec::default());
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"prompt\": \"2+2?\", \"chosen\": \"4\", \"rejected\": \"5\"}\n",
    )
    .unwrap();
    let fails = |extra: &[&str], out: &std::path::Path, expected: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_laser-host"))
            .args(["dpo", "--steps", "1"])
            .arg("--model")
            .arg(&model)
            .arg("--pairs")
            .arg(&pairs)
            .arg("--out")
            .arg(out)
            .args(extra)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} succeeded");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    };
    let out = dir.path().join("adapter");
    for option in [
        "--nll-weight",
        "--alpha",
        "--weight-decay",
        "--max-grad-norm",
    ] {
        fails(&[option, "NaN"], &out, option);
    }
    assert!(!out.exists());
    // The folder with the model and the pairs is not empty, and contains
    // no dpo run that --resume could continue.
    fails(&[], dir.path(), "not empty");
    fails(&["--resume"], dir.path(), "contains no dpo training state");

    // A resume with another learning rate names it.
    let output = Command::new(env!("CARGO_BIN_EXE_laser-host"))
        .args(["dpo", "--steps", "1", "--lr", "0.001"])
        .arg("--model")
        .arg(&model)
        .arg("--pairs")
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    fails(
        &["--lr", "0.01", "--resume"],
        &out,
        "lr: 0.001 saved, 0.01 given",
    );
}

/// Returns a `dpo` command on `model` and `pairs` into `out`, one pair a
/// step in one micro-batch, with `extra` options after them.
fn dpo_command(
    model: &std::path::Path,
    pairs: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_laser-host"));
    command
        .args(["dpo", "--pairs-per-step", "1", "--micro-batch", "1"])
        .arg("--model")
        .arg(model)
        .arg("--pairs")
        .arg(pairs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir());
    command
}

/// Runs `command` and returns its exit status and stderr.
fn run_command(command: &mut std::process::Command) -> (bool, String) {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.success(), stderr)
}

/// Writes a tiny model and a pairs file of two pairs into `dir`.
fn tiny_dpo_inputs(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let model = dir.join("tiny.gguf");
    write_tiny_model(&model, &TinySpec::default());
    let pairs = dir.join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"prompt\": \"2+2?\", \"chosen\": \"4\", \"rejected\": \"5\"}\n\
         {\"prompt\": \"3+3?\", \"chosen\": \"6\", \"rejected\": \"7\"}\n",
    )
    .unwrap();
    (model, pairs)
}

/// `dpo --resume` rejects a changed pairs file or model, naming it, and a
/// run saved without recorded inputs resumes unchecked.
#[test]
fn dpo_resume_rejects_changed_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (model, pairs) = tiny_dpo_inputs(dir.path());
    let out = dir.path().join("run");
    let (ok, stderr) = run_command(&mut dpo_command(&model, &pairs, &out, &["--steps", "1"]));
    assert!(ok, "first run failed: {stderr}");
    assert!(out.join("inputs.json").is_file());

    let (ok, stderr) = run_command(&mut dpo_command(
        &model,
        &pairs,
        &out,
        &["--steps", "1", "--resume"],
    ));
    assert!(ok, "resume with the same inputs failed: {stderr}");

    let other_pairs = dir.path().join("other.jsonl");
    std::fs::write(
        &other_pairs,
        "{\"prompt\": \"1+1?\", \"chosen\": \"2\", \"rejected\": \"3\"}\n",
    )
    .unwrap();
    let (ok, stderr) = run_command(&mut dpo_command(
        &model,
        &other_pairs,
        &out,
        &["--steps", "1", "--resume"],
    ));
    assert!(!ok, "resume with other pairs succeeded");
    assert!(
        stderr.contains("other.jsonl differs from the one the run started with"),
        "{stderr}"
    );
    assert!(stderr.contains("--pairs "), "{stderr}");
    assert!(!stderr.contains("--model"), "{stderr}");

    let other_model = dir.path().join("other.gguf");
    write_tiny_model(
        &other_model,
        &TinySpec {
            dtype: DType::Q8_0,
            ..TinySpec::default()
        },
    );
    let (ok, stderr) = run_command(&mut dpo_command(
        &other_model,
        &pairs,
        &out,
        &["--steps", "1", "--resume"],
    ));
    assert!(!ok, "resume with another model succeeded");
    assert!(
        stderr.contains("other.gguf differs from the one the run started with"),
        "{stderr}"
    );
    assert!(stderr.contains("--model "), "{stderr}");
    assert!(!stderr.contains("--pairs"), "{stderr}");

    // A state from before inputs were recorded resumes without the check.
    std::fs::remove_file(out.join("inputs.json")).unwrap();
    let (ok, stderr) = run_command(&mut dpo_command(
        &model,
        &other_pairs,
        &out,
        &["--steps", "1", "--resume"],
    ));
    assert!(ok, "resume without recorded inputs failed: {stderr}");
}

/// `dpo` rejects an --out folder that another process has locked, whether
/// it starts or resumes a run there.
#[test]
fn dpo_rejects_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let (model, pairs) = tiny_dpo_inputs(dir.path());
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    let _lock = laser_host::laser::checkpoint::lock_run_folder(&out).unwrap();
    for extra in [&["--steps", "1"][..], &["--steps", "1", "--resume"]] {
        let (ok, stderr) = run_command(&mut dpo_command(&model, &pairs, &out, extra));
        assert!(!ok, "{extra:?} succeeded in a locked folder");
        assert!(
            stderr.contains("is in use by another laser-host process"),
            "{extra:?}: {stderr}"
        );
    }
    assert!(!out.join(dpo::METRICS_FILE).exists());
}

/// A folder that contains only an empty `metrics.jsonl`, as a run stopped
/// before its first checkpoint leaves it, resumes from step 0, and a new
/// run there is pointed to --resume.
#[test]
fn dpo_resumes_folder_without_state() {
    let dir = tempfile::tempdir().unwrap();
    let (model, pairs) = tiny_dpo_inputs(dir.path());
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join(dpo::METRICS_FILE), "").unwrap();

    let (ok, stderr) = run_command(&mut dpo_command(&model, &pairs, &out, &["--steps", "2"]));
    assert!(!ok, "a new run overwrote the stopped one");
    assert!(stderr.contains("pass --resume"), "{stderr}");

    let (ok, stderr) = run_command(&mut dpo_command(
        &model,
        &pairs,
        &out,
        &["--steps", "2", "--resume"],
    ));
    assert!(ok, "resume failed: {stderr}");
    assert!(stderr.contains("starting from step 0"), "{stderr}");
    let metrics = std::fs::read_to_string(out.join(dpo::METRICS_FILE)).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    assert!(out.join(peft::WEIGHTS_FILE).is_file());
}

/// The first Ctrl-C stops `dpo` after the step in progress, saves it and
/// prints how to resume; the resumed run continues from that step.
#[cfg(unix)]
#[test]
fn dpo_interrupt_saves_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (model, pairs) = tiny_dpo_inputs(dir.path());
    let out = dir.path().join("run");
    // More steps than run before the interrupt, and no checkpoint of its
    // own before it.
    let options = ["--steps", "1000000", "--save-every", "1000000"];
    let log = dir.path().join("stderr.txt");
    let interrupt = |extra: &[&str], min_lines: usize| -> (String, usize) {
        use std::os::unix::process::CommandExt;

        let mut command = dpo_command(&model, &pairs, &out, extra);
        command.stderr(std::fs::File::create(&log).unwrap());
        // A test started from a script's background job inherits SIGINT
        // ignored, which the child would keep.
        // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let started = std::time::Instant::now();
        let metrics = out.join(dpo::METRICS_FILE);
        loop {
            let lines = std::fs::read_to_string(&metrics)
                .map(|text| text.lines().count())
                .unwrap_or(0);
            if lines >= min_lines {
                break;
            }
            assert!(
                started.elapsed().as_secs() < 120,
                "no {min_lines} metrics lines after 120 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SAFETY: kill(2) with the child's process id, which is still
        // running or a zombie until `try_wait` reaps it.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed().as_secs() > 240 {
                child.kill().unwrap();
                panic!("dpo did not stop within 240 s of Ctrl-C");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(1), "exit status; stderr: {stderr}");
        let lines = std::fs::read_to_string(&metrics).unwrap().lines().count();
        (stderr, lines)
    };

    let (stderr, lines) = interrupt(&options, 2);
    assert!(
        stderr.contains(&format!("stopped after step {lines} of 1000000")),
        "{stderr}"
    );
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(out.join(peft::WEIGHTS_FILE).is_file());
    let state = laser_host::train::checkpoint::load(&out).unwrap().unwrap();
    assert_eq!(state.step as usize, lines);

    let resumed: Vec<&str> = options.iter().copied().chain(["--resume"]).collect();
    let (stderr, resumed_lines) = interrupt(&resumed, lines + 1);
    assert!(
        stderr.contains(&format!("stopped after step {resumed_lines} of 1000000")),
        "{stderr}"
    );
    let state = laser_host::train::checkpoint::load(&out).unwrap().unwrap();
    assert_eq!(state.step as usize, resumed_lines);
}

/// `dpo`, `generate --adapter` and `merge` as a user runs them on a tiny
/// model: the adapter files appear, generation with the adapter runs, and
/// the merged folder loads as a model.
#[test]
fn dpo_generate_and_merge_commands_run() {
    use std::process::Command;

    let spec = TinySpec::default();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_tiny_model(&model, &spec);
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"prompt\": \"2+2?\", \"chosen\": \"4\", \"rejected\": \"5\"}\n\
         {\"prompt\": \"3+3?\", \"chosen\": \"6\", \"rejected\": \"7\"}\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_laser-host"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{args:?} failed: {stderr}");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let model = model.to_str().unwrap();
    let out = dir.path().join("adapter");
    let out = out.to_str().unwrap();
    run(&[
        "dpo",
        "--model",
        model,
        "--pairs",
        pairs.to_str().unwrap(),
        "--out",
        out,
        "--steps",
        "3",
        "--pairs-per-step",
        "2",
        "--rank",
        "2",
        "--alpha",
        "4",
        "--targets",
        "q_proj,v_proj,down_proj",
        "--dropout",
        "0.1",
    ]);
    let metrics =
        std::fs::read_to_string(dir.path().join("adapter").join(dpo::METRICS_FILE)).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("adapter").join(peft::CONFIG_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
    assert_eq!(config["lora_dropout"], 0.1);

    let text = run(&[
        "generate",
        "--model",
        model,
        "--adapter",
        out,
        "--prompt",
        "ab",
        "--temperature",
        "0",
        "--max-new-tokens",
        "4",
    ]);
    assert!(!text.is_empty());

    let merged = dir.path().join("merged");
    run(&[
        "merge",
        "--model",
        model,
        "--adapter",
        out,
        "--out",
        merged.to_str().unwrap(),
    ]);
    for file in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(merged.join(file).exists(), "merge wrote no {file}");
    }
    Checkpoint::open(&merged).unwrap();
}

/// Returns per-tensor zeroed gradient buffers for a full model.
fn full_grads(gpu: &Gpu, model: &TrainModel) -> Vec<wgpu::Buffer> {
    let full = model.full.as_ref().unwrap();
    full.layout
        .tensors
        .iter()
        .map(|t| gpu.buffer_zeroed(&t.name, t.len() as u64 * 4))
        .collect()
}

/// Full fine-tuning gradients of every tensor (norms included, tied and
/// untied LM heads) against central differences (step 1e-3) of the f64 CPU
/// reference, within 2e-3 + 2%. The embedding is checked in rows of tokens
/// the batch reads.
#[test]
fn full_gradients_match_finite_differences() {
    for tied in [true, false] {
        let spec = TinySpec {
            tied,
            ..TinySpec::default()
        };
        let (checkpoint, _dir) = open(&spec);
        let gpu = Gpu::new().unwrap();
        let config = FullConfig { train_norms: true };
        let mut model = TrainModel::new_full(gpu.clone(), &checkpoint, config).unwrap();
        let mut reference = ReferenceTrainModel::new(&checkpoint, LoraLayout::empty()).unwrap();

        let mut rng = StdRng::seed_from_u64(51);
        let long: Vec<u32> = (0..9).map(|_| rng.random_range(0..VOCAB as u32)).collect();
        let short: Vec<u32> = (0..5).map(|_| rng.random_range(0..VOCAB as u32)).collect();
        let batch = SequenceBatch::new(&[(&long, 3), (&short, 2)]).unwrap();
        let weights: Vec<f32> = (0..batch.rows())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let grads_bufs = full_grads(&gpu, &model);
        let logprobs = model.forward_full(&batch).unwrap();
        model.backward_full(&grads_bufs, &batch, &weights).unwrap();

        let t = batch.seq_len as usize;
        let sequences = [(&long, 3usize, 0usize), (&short, 2, 1)];
        let loss = |reference: &ReferenceTrainModel| -> f64 {
            let mut total = 0.0;
            for &(tokens, first, b) in &sequences {
                let lp = reference.token_logprobs(&[], tokens);
                for pos in first - 1..tokens.len() - 1 {
                    total += f64::from(weights[b * t + pos]) * lp[pos];
                }
            }
            total
        };
        for &(tokens, first, b) in &sequences {
            let expected = reference.token_logprobs(&[], tokens);
            for pos in first - 1..tokens.len() - 1 {
                let got = f64::from(logprobs[b * t + pos]);
                assert!(
                    (got - expected[pos]).abs() < 1e-3,
                    "tied {tied}: logprob of sequence {b} at {pos}: GPU {got}, CPU {}",
                    expected[pos]
                );
            }
        }

        let layout = model.full.as_ref().unwrap().layout.clone();
        let c = spec.n_embd;
        let step = 1e-3;
        let mut checked = 0;
        for (tensor, buffer) in layout.tensors.iter().zip(&grads_bufs) {
            let grads: Vec<f32> = gpu.read(buffer, tensor.len() as u64 * 4).unwrap();
            let n = tensor.len();
            let mut indices = vec![0, n / 2 + 1, n - 1];
            if tensor.name == "token_embd.weight" {
                indices = vec![
                    long[0] as usize * c,
                    long[4] as usize * c + 7,
                    short[3] as usize * c + c - 1,
                ];
            }
            for index in indices {
                let mut at = |delta: f64| {
                    reference.tensor_mut(&tensor.name)[index] += delta;
                    let value = loss(&reference);
                    reference.tensor_mut(&tensor.name)[index] -= delta;
                    value
                };
                let numeric = (at(step) - at(-step)) / (2.0 * step);
                let analytic = f64::from(grads[index]);
                assert!(
                    (analytic - numeric).abs() <= 2e-3 + 0.02 * numeric.abs(),
                    "tied {tied}: {} element {index}: GPU gradient {analytic}, finite difference {numeric}",
                    tensor.name
                );
                checked += 1;
            }
        }
        let tensor_count = 1 + 9 * spec.n_layer + 1 + usize::from(!tied);
        assert_eq!(checked, tensor_count * 3, "tied {tied}");
    }
}

/// LoRA gradients are the full fine-tuning gradient projected onto the
/// adapter: with `W_eff = W + s B A`, `dB = s dW Aᵀ` and `dA = s Bᵀ dW`,
/// where dW comes from the GPU full pass at `W_eff`. Checked at a nonzero
/// B for every element of every adapter of both blocks.
#[test]
fn lora_gradients_equal_projected_full_gradient() {
    let spec = TinySpec::default();
    let (checkpoint, _dir) = open(&spec);
    let layout = LoraLayout::new(all_targets(2), checkpoint.config()).unwrap();
    let params = random_params(&layout, 61);
    let gpu = Gpu::new().unwrap();
    let mut lora_model = TrainModel::new(gpu.clone(), &checkpoint, layout.clone()).unwrap();
    let mut full_model =
        TrainModel::new_full(gpu.clone(), &checkpoint, FullConfig::default()).unwrap();

    let tokens: Vec<u32> = (0..10).map(|i| (i * 83 + 11) % VOCAB as u32).collect();
    let batch = SequenceBatch::new(&[(&tokens, 3)]).unwrap();
    let weights: Vec<f32> = (0..batch.rows()).map(|r| 0.4 - 0.07 * r as f32).collect();

    let params_buf = gpu.buffer_from("params", &params);
    let lora_grads_buf = gpu.buffer_zeroed("grads", layout.len as u64 * 4);
    let lora_logprobs = lora_model.forward(&params_buf, &batch).unwrap();
    lora_model
        .backward(&params_buf, &lora_grads_buf, &batch, &weights)
        .unwrap();
    let lora_grads: Vec<f32> = gpu.read(&lora_grads_buf, layout.len as u64 * 4).unwrap();

    // W_eff = W + s B A in every adapted matrix of the full model.
    let r = 2;
    let scale = f64::from(layout.config.scale());
    let full = full_model.full.as_ref().unwrap();
    let full_layout = full.layout.clone();
    for tensor in &layout.tensors {
        let buffer = &full.params[full_layout.matrix(tensor.layer, tensor.target)];
        let (n, k) = (tensor.out_features, tensor.in_features);
        let mut w: Vec<f32> = gpu.read(buffer, (n * k) as u64 * 4).unwrap();
        let a = &params[tensor.a_offset..tensor.a_offset + r * k];
        let b = &params[tensor.b_offset..tensor.b_offset + n * r];
        for i in 0..n {
            for j in 0..k {
                let delta: f64 = (0..r)
                    .map(|l| f64::from(b[i * r + l]) * f64::from(a[l * k + j]))
                    .sum();
                w[i * k + j] = (f64::from(w[i * k + j]) + scale * delta) as f32;
            }
        }
        gpu.queue.write_buffer(buffer, 0, bytemuck::cast_slice(&w));
    }
    let full_grads_bufs = full_grads(&gpu, &full_model);
    let full_logprobs = full_model.forward_full(&batch).unwrap();
    full_model
        .backward_full(&full_grads_bufs, &batch, &weights)
        .unwrap();
    for (row, (l, f)) in lora_logprobs.iter().zip(&full_logprobs).enumerate() {
        assert!(
            (l - f).abs() < 1e-4,
            "row {row}: LoRA log-probability {l}, merged full model {f}"
        );
    }

    let mut largest_error = 0.0f64;
    for tensor in &layout.tensors {
        let position = full_layout.matrix(tensor.layer, tensor.target);
        let (n, k) = (tensor.out_features, tensor.in_features);
        let d_weight: Vec<f32> = gpu
            .read(&full_grads_bufs[position], (n * k) as u64 * 4)
            .unwrap();
        let dw = |i: usize, j: usize| f64::from(d_weight[i * k + j]);
        let a = &params[tensor.a_offset..tensor.a_offset + r * k];
        let b = &params[tensor.b_offset..tensor.b_offset + n * r];
        let label = format!("block {} {:?}", tensor.layer, tensor.target);
        let mut check = |name: &str, got: f32, expected: f64| {
            let error = (f64::from(got) - expected).abs();
            largest_error = largest_error.max(error);
            assert!(
                error <= 1e-4 + 1e-3 * expected.abs(),
                "{label} {name}: LoRA {got}, projected full gradient {expected}"
            );
        };
        for i in 0..n {
            for l in 0..r {
                let expected = scale
                    * (0..k)
                        .map(|j| dw(i, j) * f64::from(a[l * k + j]))
                        .sum::<f64>();
                check(
                    &format!("dB[{i}, {l}]"),
                    lora_grads[tensor.b_offset + i * r + l],
                    expected,
                );
            }
        }
        for l in 0..r {
            for j in 0..k {
                let expected = scale
                    * (0..n)
                        .map(|i| f64::from(b[i * r + l]) * dw(i, j))
                        .sum::<f64>();
                check(
                    &format!("dA[{l}, {j}]"),
                    lora_grads[tensor.a_offset + l * k + j],
                    expected,
                );
            }
        }
    }
    eprintln!("largest |LoRA - projected full| gradient difference: {largest_error:e}");
}

fn full_toy_config(steps: u32) -> TrainConfig {
    TrainConfig {
        full: Some(FullConfig { train_norms: true }),
        lr: 1e-3,
        ..toy_config(steps)
    }
}

/// A full fine-tuning run lowers its loss, resumes bit for bit after a
/// stop at step 3 of 6, and saves a Hugging Face model that computes the
/// same log-probabilities as the trained weights on the GPU.
#[test]
fn full_run_resumes_and_saves_model() {
    let spec = TinySpec::default();
    let (checkpoint, dir) = open(&spec);
    let config = full_toy_config(6);
    let pairs = toy_pairs(5);
    let gpu = Gpu::new().unwrap();
    let train = |out: &std::path::Path, resume: bool, stop_after: Option<u32>| {
        let full = config.full.unwrap();
        let model = TrainModel::new_full(gpu.clone(), &checkpoint, full).unwrap();
        let mut history = Vec::new();
        let options = run_options(out, resume, stop_after);
        let trainer = dpo::run(model, config.clone(), &pairs, &options, |m| {
            history.push(m.clone())
        })
        .unwrap();
        (trainer, history)
    };

    let whole = dir.path().join("whole");
    let (mut trainer, history) = train(&whole, false, None);
    assert_eq!(trainer.step, 6);
    let (first, last) = (&history[0], &history[5]);
    assert!(
        first.margin.abs() < 1e-3,
        "first margin {} is not about 0 (policy = base)",
        first.margin
    );
    assert!(
        last.loss < first.loss,
        "loss went from {} to {}",
        first.loss,
        last.loss
    );
    let split = dir.path().join("split");
    assert_eq!(train(&split, false, Some(3)).0.step, 3);
    assert_eq!(train(&split, true, None).0.step, 6);
    for file in [
        "model.safetensors",
        laser_host::train::checkpoint::STATE_FILE,
    ] {
        let a = std::fs::read(whole.join(file)).unwrap();
        let b = std::fs::read(split.join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the whole and the resumed run"
        );
    }
    assert!(!whole.join(peft::CONFIG_FILE).exists());

    // The saved folder, with Q and K rows back in Hugging Face order,
    // computes what the trained GPU weights compute.
    laser_host::train::merge::write_tokenizer_files(&checkpoint, &whole).unwrap();
    let saved = Checkpoint::open(&whole).unwrap();
    let saved_reference = ReferenceTrainModel::new(&saved, LoraLayout::empty()).unwrap();
    let tokens: Vec<u32> = (0..9).map(|i| (i * 37 + 5) % VOCAB as u32).collect();
    let batch = SequenceBatch::new(&[(&tokens, 1)]).unwrap();
    let trained = trainer.model.forward_full(&batch).unwrap();
    let expected = saved_reference.token_logprobs(&[], &tokens);
    for (pos, (got, want)) in trained.iter().zip(&expected).enumerate() {
        assert!(
            (f64::from(*got) - want).abs() < 1e-3,
            "position {pos}: trained weights {got}, saved model {want}"
        );
    }
    let base = trainer.model.forward_base(&batch).unwrap();
    assert_ne!(base, trained, "training did not change the weights");
}

/// Full fine-tuning rejects quantized models and says to use LoRA.
#[test]
fn full_rejects_quantized_model() {
    let spec = TinySpec {
        dtype: DType::Q8_0,
        ..TinySpec::default()
    };
    let (checkpoint, _dir) = open(&spec);
    let error = TrainModel::new_full(Gpu::new().unwrap(), &checkpoint, FullConfig::default())
        .err()
        .expect("a Q8_0 model must be rejected");
    let message = error.to_string();
    assert!(message.contains("quantized"), "message: {message}");
    assert!(message.contains("LoRA"), "message: {message}");
}

/// `dpo --full` writes a Hugging Face folder that loads as a model, and
/// rejects a quantized model.
#[test]
fn dpo_full_command_writes_model() {
    use std::process::Command;

    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"prompt\": \"2+2?\", \"chosen\": \"4\", \"rejected\": \"5\"}\n",
    )
    .unwrap();
    let run = |model: &std::path::Path, out: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_laser-host"))
            .args(["dpo", "--full", "--train-norms", "--steps", "2"])
            .args(["--pairs-per-step", "1", "--lr", "1e-3"])
            .arg("--model")
            .arg(model)
            .arg("--pairs")
            .arg(&pairs)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };

    let model = dir.path().join("tiny.gguf");
    write_tiny_model(&model, &TinySpec::default());
    let out = dir.path().join("full");
    let output = run(&model, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dpo --full failed: {stderr}");
    for file in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        dpo::METRICS_FILE,
    ] {
        assert!(out.join(file).exists(), "dpo --full wrote no {file}");
    }
    Checkpoint::open(&out).unwrap();

    let quantized = dir.path().join("tiny-q8.gguf");
    let spec = TinySpec {
        dtype: DType::Q8_0,
        ..TinySpec::default()
    };
    write_tiny_model(&quantized, &spec);
    let output = run(&quantized, &dir.path().join("rejected"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "dpo --full trained a Q8_0 model");
    assert!(stderr.contains("quantized"), "stderr: {stderr}");
}
