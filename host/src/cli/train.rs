//! Arguments of the preference-training commands: `dpo`, `merge` and
//! `bench train`.

use std::path::PathBuf;

use clap::Args;

use super::ModelArgs;
use crate::train::lora::Target;
use crate::train::loss::LossKind;
use crate::train::schedule::ScheduleKind;

/// LoRA adapter and optimizer settings shared by `dpo` and `bench train`.
#[derive(Debug, Args, Clone)]
pub struct TrainOptions {
    /// LoRA rank r.
    #[arg(long, default_value_t = 16)]
    pub rank: u32,

    /// LoRA alpha; the adapter's output is scaled by alpha / rank.
    #[arg(long, allow_negative_numbers = true, default_value_t = 32.0)]
    pub alpha: f32,

    /// LoRA dropout: the probability of zeroing each input element of an
    /// adapter in training passes (not in reference or evaluation passes).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub dropout: f32,

    /// Projections that get adapters, separated by commas or spaces:
    /// `--targets q_proj,k_proj,v_proj` or `--targets q_proj k_proj v_proj`.
    #[arg(
        long,
        value_enum,
        num_args = 1..,
        value_delimiter = ',',
        default_value = "q_proj,v_proj"
    )]
    pub targets: Vec<Target>,

    /// Preference pairs per optimizer step.
    #[arg(long, default_value_t = 8)]
    pub pairs_per_step: usize,

    /// Pairs per forward and backward pass; a step sums the gradients of
    /// its micro-batches.
    #[arg(long, default_value_t = 2)]
    pub micro_batch: usize,

    /// Maximum tokens per sequence (prompt + response). A longer pair
    /// loses the first tokens of its prompt, down to a quarter of this
    /// limit, then the last tokens of its responses.
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,

    /// Seeds the adapter init and the pair order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct DpoArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// A JSONL file of preference pairs: `{"prompt", "chosen", "rejected"}`
    /// per line. Prompts are rendered with the chat template.
    #[arg(long, value_name = "FILE")]
    pub pairs: PathBuf,

    /// Folder for the adapter (PEFT format), the training state and
    /// `metrics.jsonl`; with `--full`, for the model (Hugging Face format)
    /// in place of the adapter.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Continue the run saved in `--out` with the same options.
    #[arg(long)]
    pub resume: bool,

    /// Full fine-tuning: train every weight matrix, the token embedding
    /// and the LM head in f32 instead of LoRA adapters. Needs an f32, f16
    /// or bf16 model, and rejects the LoRA options and --dropout.
    #[arg(long)]
    pub full: bool,

    /// With `--full`, train the RMSNorm weights too.
    #[arg(long, requires = "full")]
    pub train_norms: bool,

    #[command(flatten)]
    pub train: TrainOptions,

    /// Optimizer steps.
    #[arg(long, default_value_t = 100)]
    pub steps: u32,

    /// Peak learning rate.
    #[arg(long, allow_negative_numbers = true, default_value_t = 2e-4)]
    pub lr: f32,

    /// Learning-rate schedule after warm-up.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Constant)]
    pub schedule: ScheduleKind,

    /// Steps of linear warm-up from 0.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: u32,

    /// AdamW decoupled weight decay.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub weight_decay: f32,

    /// Clip gradients to this global L2 norm; 0 turns clipping off.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    pub max_grad_norm: f32,

    /// Preference loss.
    #[arg(long, value_enum, default_value_t = LossKind::Dpo)]
    pub loss: LossKind,

    /// DPO / IPO beta.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1)]
    pub beta: f64,

    /// Weight of the chosen response's mean per-token NLL.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    pub nll_weight: f64,

    /// Save the adapter and the training state every this many steps.
    #[arg(long, default_value_t = 10)]
    pub save_every: u32,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// A PEFT LoRA adapter folder (`adapter_config.json`,
    /// `adapter_model.safetensors`).
    #[arg(long, value_name = "DIR")]
    pub adapter: PathBuf,

    /// New or empty folder for the merged model: `model.safetensors` (f32,
    /// Hugging Face names), `config.json` and `tokenizer.json`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub train: TrainOptions,

    /// Tokens of each measured sequence (prompt + response halves).
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,

    /// Optimizer steps to time, after one warm-up step.
    #[arg(long, default_value_t = 3)]
    pub steps: u32,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Command};
    use crate::train::lora::Target;

    /// Returns the `--targets` of `dpo` with `targets` after the option.
    fn dpo_targets(targets: &[&str]) -> Vec<Target> {
        let mut args = vec!["laser-host", "dpo", "--pairs", "p.jsonl", "--out", "o"];
        if !targets.is_empty() {
            args.push("--targets");
            args.extend(targets);
        }
        match Cli::try_parse_from(args).unwrap().command {
            Command::Dpo(args) => args.train.targets,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn targets_take_commas_or_spaces() {
        let expected = vec![Target::Q, Target::K, Target::V];
        assert_eq!(dpo_targets(&["q_proj,k_proj,v_proj"]), expected);
        assert_eq!(dpo_targets(&["q_proj", "k_proj", "v_proj"]), expected);
        assert_eq!(dpo_targets(&[]), vec![Target::Q, Target::V]);
    }

    #[test]
    fn targets_help_shows_parsable_default() {
        let help = Cli::command()
            .find_subcommand_mut("dpo")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("[default: q_proj,v_proj]"), "{help}");
    }
}
