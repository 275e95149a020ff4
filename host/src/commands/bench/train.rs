//! `laser-host bench train`: training tokens/s (forward + backward +
//! AdamW) of LoRA preference training on synthetic pairs, and the GPU
//! memory it holds.

use std::time::Instant;

use anyhow::{Result, ensure};
use laser_model::checkpoint::Checkpoint;

use crate::cli::BenchTrainArgs;
use crate::train::batch::TokenizedPair;
use crate::train::lora::LoraLayout;
use crate::train::model::TrainModel;
use crate::train::{ReferenceLogprobs, Trainer};

pub(crate) fn train(args: &BenchTrainArgs, verbose: bool) -> Result<()> {
    ensure!(
        args.seq_len >= 4,
        "--seq-len must be at least 4, got {}",
        args.seq_len
    );
    ensure!(args.steps >= 1, "--steps must be at least 1");
    let mut config = super::super::dpo::train_config(&args.train)?;
    config.max_len = args.seq_len;
    config.steps = args.steps + 1;

    let path = super::super::model_path(&args.model)?;
    let gpu = super::super::open_gpu(verbose)?;
    println!("adapter: {}", gpu.describe());
    println!("kernels: {}", gpu.describe_kernels());
    let checkpoint = Checkpoint::open(&path)?;
    let layout = LoraLayout::new(config.lora.clone(), checkpoint.config())?;
    let model = TrainModel::new(gpu, &checkpoint, layout)?;

    // Synthetic pairs of exactly seq_len tokens: half prompt, half response.
    let vocab = checkpoint.config().vocab_size as u32;
    let half = args.seq_len / 2;
    let tokens = |offset: usize, n: usize| -> Vec<u32> {
        (0..n)
            .map(|i| ((offset + i * 7919) as u32) % vocab)
            .collect()
    };
    let pairs: Vec<TokenizedPair> = (0..config.pairs_per_step)
        .map(|i| TokenizedPair {
            prompt: tokens(i * 1000, half),
            chosen: tokens(i * 1000 + 1, args.seq_len - half),
            rejected: tokens(i * 1000 + 2, args.seq_len - half),
        })
        .collect();
    let indices: Vec<usize> = (0..pairs.len()).collect();
    let references = vec![
        ReferenceLogprobs {
            chosen: 0.0,
            rejected: 0.0
        };
        pairs.len()
    ];
    let mut trainer = Trainer::new(model, config.clone(), None)?;
    println!(
        "model: {}; LoRA rank {} on {:?} ({} parameters); {} pairs a step in micro-batches of {} \
         pairs ({} sequences of {} tokens)",
        path.display(),
        config.lora.rank,
        config.lora.targets,
        trainer.model.layout.len,
        config.pairs_per_step,
        config.micro_batch,
        2 * config.micro_batch,
        args.seq_len
    );

    trainer.train_step(&pairs, &indices, &references)?;
    let started = Instant::now();
    let mut tokens_run = 0;
    for _ in 0..args.steps {
        tokens_run += trainer.train_step(&pairs, &indices, &references)?.tokens;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "training: {:.1} tokens/s forward + backward ({tokens_run} tokens in {seconds:.2} s, {:.2} s a step)",
        tokens_run as f64 / seconds,
        seconds / f64::from(args.steps)
    );
    println!(
        "GPU memory held by training (weights, activations, adapter state): {} MiB",
        (trainer.model.gpu_bytes() + 5 * trainer.model.layout.len as u64 * 4) >> 20
    );
    Ok(())
}
