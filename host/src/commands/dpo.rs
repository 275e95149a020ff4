//! `laser-host dpo`: trains a LoRA adapter (or, with `--full`, every
//! weight) on a file of preference pairs, with a progress bar and per-step
//! metrics.

mod folder;

use anyhow::{Context, Result, ensure};
use laser_model::checkpoint::Checkpoint;

use crate::cli::{DpoArgs, TrainOptions};
use crate::laser::checkpoint::{LOCK_FILE, lock_run_folder};
use crate::train::TrainConfig;
use crate::train::batch::TokenizedPair;
use crate::train::dpo::{self, RunOptions};
use crate::train::full::FullConfig;
use crate::train::lora::{LoraConfig, LoraLayout};
use crate::train::loss::LossConfig;
use crate::train::merge;
use crate::train::model::TrainModel;
use folder::Inputs;

/// Returns the training config of `options` with everything else at its
/// default.
pub(crate) fn train_config(options: &TrainOptions) -> Result<TrainConfig> {
    ensure!(options.micro_batch >= 1, "--micro-batch must be at least 1");
    ensure!(
        options.pairs_per_step >= 1,
        "--pairs-per-step must be at least 1"
    );
    ensure!(
        options.max_len >= 2,
        "--max-len must be at least 2, got {}",
        options.max_len
    );
    let lora = LoraConfig {
        rank: options.rank,
        alpha: options.alpha,
        dropout: options.dropout,
        targets: options.targets.clone(),
    }
    .validated()?;
    Ok(TrainConfig {
        lora,
        pairs_per_step: options.pairs_per_step,
        micro_batch: options.micro_batch,
        max_len: options.max_len,
        seed: options.seed,
        ..TrainConfig::default()
    })
}

/// Rejects the LoRA options among `given`, which full fine-tuning would
/// otherwise ignore.
fn check_no_lora_options(given: &[String]) -> Result<()> {
    let lora: Vec<String> = ["rank", "alpha", "targets"]
        .into_iter()
        .filter(|id| given.iter().any(|given| given == id))
        .map(|id| format!("--{id}"))
        .collect();
    ensure!(
        lora.is_empty(),
        "full fine-tuning (--full) trains no LoRA adapter, so it would ignore {}. Drop {}, or \
         drop --full to train an adapter",
        lora.join(" and "),
        if lora.len() == 1 { "it" } else { "them" }
    );
    Ok(())
}

/// Runs `dpo`. `given` names the options typed on the command line.
pub(crate) fn run(args: &DpoArgs, given: &[String], verbose: bool) -> Result<()> {
    ensure!(args.steps >= 1, "--steps must be at least 1");
    if args.full {
        check_no_lora_options(given)?;
    }
    ensure!(
        !args.full || args.train.dropout == 0.0,
        "--dropout applies to LoRA adapters; full fine-tuning (--full) has no dropout"
    );

    use super::{ensure_non_negative, ensure_positive};
    ensure_positive("--lr", args.lr)?;
    ensure_positive("--beta", args.beta)?;
    ensure_non_negative("--nll-weight", args.nll_weight)?;
    ensure_non_negative("--weight-decay", args.weight_decay)?;
    ensure_non_negative("--max-grad-norm", args.max_grad_norm)?;
    ensure_positive("--alpha", args.train.alpha)?;
    ensure!(
        args.warmup_steps < args.steps,
        "--warmup-steps {} must be less than --steps {}, or the learning rate never reaches \
         --lr {}",
        args.warmup_steps,
        args.steps,
        args.lr
    );
    // A folder that a run has locked before is locked again first, so that
    // a run still in progress there is reported as such. A new run locks a
    // new folder once the inputs have loaded, so that bad input leaves no
    // folder behind.
    let path = super::model_path(&args.model)?;
    let inputs = Inputs::of(&path, &args.pairs)?;
    let mut lock = None;
    if args.out.join(LOCK_FILE).is_file() {
        lock = Some(lock_run_folder(&args.out)?);
    }
    if args.resume {
        folder::check_resumable(&args.out)?;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("failed to create {}", args.out.display()))?;
        if lock.is_none() {
            lock = Some(lock_run_folder(&args.out)?);
        }
        inputs.check_recorded(&args.out)?;
    } else {
        folder::check_new(&args.out)?;
    }
    let full = args.full.then_some(FullConfig {
        train_norms: args.train_norms,
    });
    let config = TrainConfig {
        full,
        loss: LossConfig {
            kind: args.loss,
            beta: args.beta,
            nll_weight: args.nll_weight,
        },
        lr: args.lr,
        weight_decay: args.weight_decay,
        max_grad_norm: args.max_grad_norm,
        schedule: args.schedule,
        warmup_steps: args.warmup_steps,
        steps: args.steps,
        ..train_config(&args.train)?
    };

    let gpu = super::open_gpu(verbose)?;
    let checkpoint = Checkpoint::open(&path)?;
    let tokenizer = checkpoint.tokenizer()?;
    let template = checkpoint.chat_template()?;
    let pairs = dpo::load_pairs(&args.pairs, &tokenizer, &template)?;
    warn_cut_pairs(&pairs, config.max_len);
    let model = match full {
        Some(full) => TrainModel::new_full(gpu, &checkpoint, full)?,
        None => {
            let layout = LoraLayout::new(config.lora.clone(), checkpoint.config())?;
            TrainModel::new(gpu, &checkpoint, layout)?
        }
    };
    let _lock = match lock {
        Some(lock) => lock,
        None => {
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("failed to create {}", args.out.display()))?;
            lock_run_folder(&args.out)?
        }
    };
    inputs.record(&args.out)?;
    if full.is_some() {
        merge::write_tokenizer_files(&checkpoint, &args.out)?;
    }
    let trained = match &model.full {
        Some(full) => format!("{} weights (full fine-tuning)", full.layout.trainable_len()),
        None => format!("{} adapter parameters", model.layout.len),
    };
    eprintln!(
        "{} preference pairs, {trained}, {} of {}",
        pairs.len(),
        count(config.steps as usize, "step"),
        count(config.pairs_per_step, "pair")
    );

    let options = RunOptions {
        out: args.out.clone(),
        base_model: path.display().to_string(),
        save_every: args.save_every,
        resume: args.resume,
        stop_after: None,
    };
    let bar = indicatif::ProgressBar::new(u64::from(config.steps));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} steps ({elapsed}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let trainer = dpo::run(model, config, &pairs, &options, |m| {
        bar.set_position(u64::from(m.step));
        bar.set_message(format!(
            "loss {:.4} margin {:.3} acc {:.2} nll {:.3}",
            m.loss, m.margin, m.accuracy, m.chosen_nll
        ));
    })?;
    bar.finish();
    let written = if args.full { "model" } else { "adapter" };
    eprintln!(
        "{written} written to {} after {}; metrics in {}",
        args.out.display(),
        count(trainer.step as usize, "step"),
        args.out.join(dpo::METRICS_FILE).display()
    );
    Ok(())
}

/// Returns `n` with `noun`, plural unless `n` is 1: `1 pair`, `2 pairs`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Warns once, with their count, about the pairs longer than `max_len`
/// tokens, which training cuts as [`TokenizedPair::sequence`] does.
fn warn_cut_pairs(pairs: &[TokenizedPair], max_len: usize) {
    let cut = pairs.iter().filter(|pair| pair.len() > max_len).count();
    if cut > 0 {
        eprintln!(
            "warning: {cut} of {} are longer than --max-len {max_len} tokens \
             (prompt + response) and are cut: the prompt loses its first tokens, down to a \
             quarter of --max-len, then the responses lose their last tokens",
            count(pairs.len(), "pair")
        );
    }
}
