//! The LASeR loop (Learning to Adaptively Select Rewards, Nguyen et al.,
//! arXiv 2410.01735): per batch of prompts, embed each prompt with the
//! policy, let the selector pick a reward model per prompt, sample n
//! responses, score them with the picked reward model only, and feed the
//! outcome back to the selector as its reward.
//!
//! Two modes:
//! - `train`: preference pairs (best against worst) train the policy with
//!   DPO plus an NLL term; the bandit reward is the negative training loss.
//! - `best-of-n`: no training; the picked reward model chooses the best of
//!   n, and the bandit reward is the negative mean NLL of that response
//!   under the policy, its end-of-sequence token included.
//!
//! Bandit rewards go to the selector raw; the bundled selectors normalise
//! them by clipping to the 20th-80th percentiles of the rewards so far and
//! scaling to [0, 1] (their `normalize_reward` setting).

pub mod checkpoint;
pub mod eval;
pub mod report;
pub mod service;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use laser_data::Instance;
use laser_plugins::{
    ArmInfo, ArmUpdate, LoadedPlugin, PluginDir, PluginErrorKind, PluginHost, RewardModelPlugin,
    ScoredInstance, SelectorPlugin,
};
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::engine::{Engine, Generation, Pooling, SamplingConfig};
use crate::train::TrainConfig;
use crate::train::loss::{LossConfig, LossKind, PairLogprobs, pair_loss};
use crate::train::policy::PolicyTrainer;
use checkpoint::RunState;
use service::EngineService;

/// The use a batch makes of its scored samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Train the policy on preference pairs (DPO + NLL).
    Train,
    /// Pick the best of n; no training.
    BestOfN,
}

impl Mode {
    /// Returns the subcommand that runs this mode.
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::BestOfN => "best-of-n",
        }
    }
}

/// How the scores of several reward models combine when the selector
/// spreads its weight (an ensemble).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EnsembleMode {
    /// The weighted mean of normalised scores.
    Mean,
    /// The minimum normalised score.
    Min,
    /// The weighted mean minus lambda times the weighted standard deviation.
    MeanMinusStd,
}

/// The rule that pairs a prompt's samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PairMode {
    /// The best sample against the worst.
    BestWorst,
    /// The best sample against a random other one.
    BestRandom,
    /// The i-th best against the i-th worst, for i below P.
    TopP,
}

/// Everything that determines a run; saved as `config.json` in the run
/// folder and read back on `--resume`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    pub mode: Mode,
    /// The data files, mixed in this order; empty for the built-in task set.
    #[serde(default, deserialize_with = "one_or_many")]
    pub data: Vec<PathBuf>,
    /// The data files' formats (gsm8k, strategyqa, jsonl). An empty list
    /// detects each file's format, one format applies to every file, and
    /// otherwise there is one per file.
    #[serde(default, deserialize_with = "one_or_many")]
    pub data_format: Vec<String>,
    /// The number of built-in instances when `data` is empty.
    pub builtin_count: usize,
    pub model: PathBuf,
    pub plugins: PathBuf,
    /// The selector plugin's name.
    pub selector: String,
    /// Settings laid over the `[config]` of the selector's manifest, such as
    /// the arm `compare` gives each run of the `fixed` selector.
    #[serde(default)]
    pub selector_config: BTreeMap<String, toml::Value>,
    /// The reward models' names, as arms in this order; empty for all.
    pub rms: Vec<String>,
    pub iterations: u32,
    pub batch_size: usize,
    /// Samples per prompt.
    pub n: u32,
    /// The maximum number of preference pairs per prompt.
    pub pairs: u32,
    pub pair_mode: PairMode,
    pub seed: u64,
    pub temperature: f32,
    pub max_new_tokens: u32,
    pub pooling: Pooling,
    pub ensemble: EnsembleMode,
    pub ensemble_lambda: f64,
    /// Training instances per iteration (0 for all).
    pub train_size: usize,
    /// Held-out instances for accuracy (0 turns evaluation off).
    pub eval_size: usize,
    /// DPO beta.
    pub beta: f32,
    /// Weight of the NLL term on the chosen response.
    pub nll_weight: f32,
    pub learning_rate: f32,
}

/// Reads a list field that older `config.json` files store as one value or
/// null, so that runs started before mixed data sets still resume.
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match Option::<OneOrMany<T>>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(value)) => vec![value],
        Some(OneOrMany::Many(values)) => values,
    })
}

/// One batch's outcome, a line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchMetrics {
    pub iteration: u32,
    pub batch: usize,
    pub instances: usize,
    /// How many prompts each arm (by name) was picked for.
    pub arm_counts: BTreeMap<String, usize>,
    /// Mean raw bandit reward over updated instances.
    pub bandit_reward: Option<f64>,
    pub loss: Option<f64>,
    pub margin: Option<f64>,
    /// Fraction of picked responses whose answer is correct, over
    /// instances with a reference.
    pub pick_accuracy: Option<f64>,
    /// The instances `pick_accuracy` counts: those picked from scores and
    /// with a reference. 0 in run folders of earlier versions.
    #[serde(default)]
    pub picks_checked: usize,
    /// Prompts left without scores, because their reward model failed or
    /// the combined scores were not finite: they get no pick and no reward.
    #[serde(default)]
    pub unscored: usize,
    pub rm_calls: usize,
    pub rm_candidates: usize,
    /// Tokens of the candidates the reward models scored.
    pub rm_tokens: usize,
    pub generated_tokens: usize,
    /// Seconds per phase: generate (the contexts included), choose, score,
    /// train, update. Run folders of earlier versions also have `context`,
    /// a separate pass over the prompts.
    pub seconds: BTreeMap<String, f64>,
}

impl BatchMetrics {
    /// Returns the weight of this batch's `pick_accuracy` in a mean over
    /// batches: the picks it checked, or all its instances in records of
    /// earlier versions, which did not count them.
    pub fn pick_weight(&self) -> usize {
        if self.picks_checked > 0 {
            self.picks_checked
        } else {
            self.instances
        }
    }
}

/// One instance's outcome, a line of `selections.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Selection {
    pub iteration: u32,
    pub batch: usize,
    pub id: String,
    pub category: Option<String>,
    /// The arm used, or `ensemble` when weights were spread.
    pub arm: String,
    pub weights: Vec<f32>,
    pub scores: Vec<f64>,
    pub picked: usize,
    pub reward: Option<f64>,
    pub correct: Option<bool>,
    pub response: String,
}

/// One arm: a reward model and how much it was used.
struct Arm {
    plugin: RewardModelPlugin,
    name: String,
}

/// Held-out accuracy before training, overall and per category.
pub type EvalBefore = (f64, Option<checkpoint::CategoryCounts>);

/// A run in progress.
pub struct Run {
    config: RunConfig,
    out: PathBuf,
    engine: Arc<Mutex<Engine>>,
    host: PluginHost,
    plugin_dir: PluginDir,
    selector: SelectorPlugin,
    arms: Vec<Arm>,
    /// Reward models found when a run resumed in the middle of an
    /// iteration, which join as arms at the next iteration start.
    pending_arms: Vec<Arm>,
    train: Vec<Instance>,
    eval: Vec<Instance>,
    state: RunState,
    progress: indicatif::MultiProgress,
    /// The policy's LoRA trainer, in `train` mode.
    policy: Option<PolicyTrainer>,
    /// The run folder's lock, held while the run is open.
    _lock: std::fs::File,
}

impl RunConfig {
    /// Rejects settings that would poison or reverse training: NaN or
    /// infinite values, a non-positive learning rate or beta, and negative
    /// weights or temperatures.
    ///
    /// # Errors
    ///
    /// Names the first invalid option and its value.
    pub fn validate(&self) -> Result<()> {
        use crate::commands::{ensure_non_negative, ensure_positive};
        ensure_positive("--learning-rate", self.learning_rate)?;
        ensure_positive("--beta", self.beta)?;
        ensure_non_negative("--nll-weight", self.nll_weight)?;
        ensure_non_negative("--temperature", self.temperature)?;
        ensure_non_negative("--ensemble-lambda", self.ensemble_lambda)?;
        // Greedy samples of one prompt are all the same, so no response can
        // win and the reward models have nothing to choose between.
        ensure!(
            self.temperature > 0.0 || self.n < 2,
            "--temperature 0 samples greedily, so the {} samples of a prompt would all be the \
             same and no reward model could tell them apart; use a temperature above 0, such \
             as the default 0.8",
            self.n
        );
        Ok(())
    }
}

impl Run {
    /// Starts a new run in `out`, or resumes the one there when `resume`.
    ///
    /// # Errors
    ///
    /// Fails when the data, model or plugins cannot be loaded, the folder
    /// contains another run (without `resume`), or a named plugin is missing.
    pub fn open(config: RunConfig, engine: Engine, out: &Path, resume: bool) -> Result<Self> {
        // Everything that can fail on bad input is checked before a new run
        // folder is created, so a failed start leaves no folder behind.
        config.validate()?;
        // A resumed run's folder is locked before its files are cut back to
        // the last saved batch; a new one once it exists.
        let mut lock = None;
        let mut state = if resume {
            lock = Some(checkpoint::lock_run_folder(out)?);
            RunState::load(out)?
        } else {
            ensure!(
                !out.join(checkpoint::STATE_FILE).exists(),
                "{} already holds a run; pass --resume {} to continue it, or choose another --out",
                out.display(),
                out.display()
            );
            crate::commands::ensure_empty_out(out)?;
            RunState::default()
        };

        let inputs = checkpoint::Inputs::of(&config.data, &config.model)?;
        if let Some(saved) = &state.inputs {
            saved.check_unchanged(&inputs, &config.data, &config.model)?;
        }
        state.inputs = Some(inputs);
        let context_width = engine.config.n_embd;
        let engine = Arc::new(Mutex::new(engine));
        let host = PluginHost::new(Arc::new(EngineService::new(Arc::clone(&engine))))?;
        let mut plugin_dir = PluginDir::new(&config.plugins);
        let report = plugin_dir.scan(&host).with_context(|| {
            format!("failed to read plugin folder {}", config.plugins.display())
        })?;
        for error in &report.errors {
            eprintln!("warning: skipped plugin: {error}");
        }
        // The plugins that failed to load, by file stem, with the reason,
        // to tell a broken plugin from a missing one.
        let skipped: BTreeMap<String, String> = report
            .errors
            .iter()
            .filter_map(|error| {
                let stem = error.path().file_stem()?.to_string_lossy().into_owned();
                Some((stem, format!("{error:#}")))
            })
            .collect();
        let (mut selector, mut rms) = (None, Vec::new());
        let mut other_selectors = Vec::new();
        for plugin in report.loaded {
            match plugin {
                LoadedPlugin::Selector(s) if s.meta().manifest.name == config.selector => {
                    selector = Some(s);
                }
                LoadedPlugin::Selector(s) => other_selectors.push(s.meta().manifest.name.clone()),
                LoadedPlugin::RewardModel(rm) => rms.push(rm),
            }
        }
        let is_rm = rms
            .iter()
            .any(|rm| rm.meta().manifest.name == config.selector);
        let available = if other_selectors.is_empty() {
            "none".to_owned()
        } else {
            other_selectors.join(", ")
        };
        ensure!(
            selector.is_some() || !is_rm,
            "--selector {:?} is a reward model, not a selector; the selectors in {} are: \
             {available}",
            config.selector,
            config.plugins.display(),
        );
        if let (None, Some(reason)) = (&selector, skipped.get(&config.selector)) {
            bail!(
                "selector {:?} in {} failed to load: {reason}",
                config.selector,
                config.plugins.display(),
            );
        }
        let mut selector = selector.with_context(|| {
            format!(
                "selector {:?} not found in {}; the selectors there are: {available}",
                config.selector,
                config.plugins.display(),
            )
        })?;
        other_selectors.push(config.selector.clone());
        let mut arms = pick_arms(&config, rms, &other_selectors, &skipped)?;
        let recorded = resume
            .then(|| recorded_reward_models(&out.join("plugins.json")))
            .flatten();
        if let Some(recorded) = &recorded {
            // Arm indices are stable for a run, and the selector's state and
            // the score statistics are kept by index: resumed arms take the
            // order of plugins.json, where an arm that joined during the run
            // comes after those it started with.
            arms.sort_by_key(|arm| {
                let label = arm.plugin.meta().label();
                recorded
                    .iter()
                    .position(|name| *name == label)
                    .unwrap_or(usize::MAX)
            });
        }
        // A run resumed in the middle of an iteration keeps the arms it had:
        // a reward model added to the folder meanwhile joins at the next
        // iteration start, as one dropped in while the run goes on does.
        let (arms, pending_arms): (Vec<Arm>, Vec<Arm>) = match &recorded {
            Some(recorded) if state.next_batch > 0 && config.rms.is_empty() => arms
                .into_iter()
                .partition(|arm| recorded.contains(&arm.plugin.meta().label())),
            _ => (arms, Vec::new()),
        };
        // The data is read after the plugins, whose names are quick to
        // check, since preparing a large data set takes a while.
        let (train, eval, longest_prompt) = {
            let engine = lock_engine(&engine)?;
            let (train, eval) = load_data(&config)?;
            let (train, longest_prompt) =
                drop_long_prompts(&engine, train, config.max_new_tokens, "training")?;
            ensure!(
                !train.is_empty(),
                "no training instances fit the model's context of {} tokens with \
                 --max-new-tokens {}",
                engine.config.context_length,
                config.max_new_tokens
            );
            let held_out = eval.len();
            let (eval, _) = drop_long_prompts(&engine, eval, config.max_new_tokens, "held-out")?;
            if held_out > 0 && eval.is_empty() {
                eprintln!(
                    "warning: held-out accuracy cannot be measured: none of the {held_out} \
                     held-out instances fits the model's context of {} tokens with \
                     --max-new-tokens {}",
                    engine.config.context_length, config.max_new_tokens
                );
            }
            let eval = eval::keep_referenced(eval);
            (train, eval, longest_prompt)
        };
        if !config.selector_config.is_empty() {
            selector
                .reconfigure(&config.selector_config)
                .map_err(|err| {
                    anyhow::anyhow!("failed to apply the run's selector_config: {err}")
                })?;
        }
        check_selector_fits(&selector, &arms, context_width)?;
        if let Some(saved) = &state.selector_state {
            selector
                .load_state(saved)
                .map_err(|err| anyhow::anyhow!("failed to restore the selector's state: {err}"))?;
        }
        if !resume {
            std::fs::create_dir_all(out)
                .with_context(|| format!("failed to create run folder {}", out.display()))?;
            lock = Some(checkpoint::lock_run_folder(out)?);
            atomic::write_json(&out.join("config.json"), &config)?;
            // A run killed before its first batch can then be resumed.
            state.save(out)?;
        }
        let policy = match config.mode {
            Mode::Train => {
                let policy_dir = out.join(
                    state
                        .policy_dir
                        .as_deref()
                        .unwrap_or(checkpoint::LEGACY_POLICY_DIR),
                );
                // Without the training state, PolicyTrainer::open would
                // silently start over from the initial adapter.
                ensure!(
                    state.policy_dir.is_none()
                        || policy_dir
                            .join(crate::train::checkpoint::STATE_FILE)
                            .is_file(),
                    "{} names the policy checkpoint {}, but it has no {}",
                    out.join(checkpoint::STATE_FILE).display(),
                    policy_dir.display(),
                    crate::train::checkpoint::STATE_FILE
                );
                let mut engine = lock_engine(&engine)?;
                Some(PolicyTrainer::open(
                    &mut engine,
                    &config.model,
                    policy_config(&config, longest_prompt),
                    &policy_dir,
                )?)
            }
            Mode::BestOfN => None,
        };
        let run = Self {
            config,
            out: out.to_path_buf(),
            engine,
            host,
            plugin_dir,
            selector,
            arms,
            pending_arms,
            train,
            eval,
            state,
            progress: indicatif::MultiProgress::new(),
            policy,
            _lock: lock.map_or_else(|| checkpoint::lock_run_folder(out), Ok)?,
        };
        run.write_plugins(resume)?;
        Ok(run)
    }

    /// Records each plugin's name, version and digest in `plugins.json`.
    /// A resumed run first checks that each plugin recorded there is still
    /// the same file, because the records so far came from those plugins.
    fn write_plugins(&self, resume: bool) -> Result<()> {
        let mut plugins = vec![serde_json::json!({
            "role": "selector",
            "name": self.selector.meta().label(),
            "digest": self.selector.digest(),
            "settings": plugin_settings(&self.selector.meta().manifest),
        })];
        for arm in &self.arms {
            plugins.push(serde_json::json!({
                "role": "reward-model",
                "name": arm.plugin.meta().label(),
                "digest": arm.plugin.digest(),
                "settings": plugin_settings(&arm.plugin.meta().manifest),
            }));
        }
        let path = self.out.join("plugins.json");
        if resume && path.exists() {
            check_plugins_unchanged(&path, &plugins, &self.config.plugins)?;
        }
        atomic::write_json(&path, &plugins)
    }

    /// Ends the run with an error that gives the `--resume` command when
    /// Ctrl-C was pressed, leaving `bar` where it stopped. `done` names the
    /// work saved last.
    fn stop_if_requested(&self, bar: Option<&indicatif::ProgressBar>, done: &str) -> Result<()> {
        if crate::interrupt::requested() {
            if let Some(bar) = bar {
                bar.abandon();
            }
            bail!(
                "stopped after {done} on request; pass --resume {} to continue",
                self.out.display()
            );
        }
        Ok(())
    }

    /// Records `before`, from [`Run::eval_before`] of another run, as the
    /// held-out accuracy before training, so that [`Run::run`] does not
    /// measure it again. It must come from a run with the same starting
    /// policy, seed and data, as `compare`'s runs share. A run that has
    /// measured it already keeps its own figure.
    pub fn set_eval_before(&mut self, before: &EvalBefore) {
        if self.state.eval_before.is_none() {
            self.state.eval_before = Some(before.0);
            self.state.eval_before_by_category = before.1.clone();
        }
    }

    /// Returns the held-out accuracy before training, overall and per
    /// category, once measured.
    pub fn eval_before(&self) -> Option<EvalBefore> {
        self.state
            .eval_before
            .map(|accuracy| (accuracy, self.state.eval_before_by_category.clone()))
    }

    /// Runs the remaining iterations, checkpointing after every batch.
    ///
    /// # Errors
    ///
    /// Fails when the selector fails, the engine fails, or the run folder
    /// cannot be written. Finished batches stay recorded.
    pub fn run(&mut self) -> Result<()> {
        let config = self.config.clone();
        // The held-out split is empty when --eval-size is 0, or when none of
        // its instances fits the context or has a reference answer.
        let evaluates = !self.eval.is_empty();
        if self.state.eval_before.is_none() && evaluates {
            let accuracy = self.evaluate("eval before")?;
            self.state.eval_before = Some(accuracy.rate());
            self.state.eval_before_by_category = Some(accuracy.per_category);
            self.save()?;
            self.stop_if_requested(None, "the held-out eval before training")?;
        }
        let batches_per_iteration = self
            .iteration_instances(0)
            .len()
            .div_ceil(config.batch_size);
        let total = u64::from(config.iterations) * batches_per_iteration as u64;
        let bar = self.progress.add(indicatif::ProgressBar::new(total));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} iteration {prefix} [{bar:30}] {pos}/{len} batches {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_position(
            u64::from(self.state.iteration) * batches_per_iteration as u64
                + self.state.next_batch as u64,
        );
        while self.state.iteration < config.iterations {
            let iteration = self.state.iteration;
            bar.set_prefix(format!("{}/{}", iteration + 1, config.iterations));
            self.add_new_arms();
            // The reference policy of an iteration is the policy at its
            // start.
            if self.state.next_batch == 0
                && let Some(policy) = &self.policy
            {
                policy.refresh_reference()?;
            }
            let instances = self.iteration_instances(iteration);
            let batches: Vec<&[Instance]> = instances.chunks(config.batch_size).collect();
            while self.state.next_batch < batches.len() {
                let index = self.state.next_batch;
                let metrics = self.run_batch(iteration, index, batches[index], &bar)?;
                let picks: Vec<String> = metrics
                    .arm_counts
                    .iter()
                    .map(|(arm, count)| format!("{arm} {count}"))
                    .collect();
                // A batch has no reward when it formed no preference pair
                // (every response tied) or its reward model failed.
                let reward = metrics.bandit_reward.map_or_else(
                    || "none (selector not updated)".to_string(),
                    |r| format!("{r:.3}"),
                );
                let mut summary = format!("reward {reward}, picks {}", picks.join(", "));
                if metrics.unscored > 0 {
                    summary.push_str(&format!(" ({} unscored)", metrics.unscored));
                }
                // Progress bars are hidden when stderr is not a terminal (a
                // log file, nohup), so print one line per batch there.
                if !std::io::stderr().is_terminal() {
                    eprintln!(
                        "iteration {}/{} batch {}/{}: {summary}",
                        iteration + 1,
                        config.iterations,
                        index + 1,
                        batches.len()
                    );
                }
                bar.set_message(summary);
                self.state.next_batch += 1;
                self.save()?;
                bar.inc(1);
                let done = format!("batch {} of iteration {}", index + 1, iteration + 1);
                self.stop_if_requested(Some(&bar), &done)?;
            }
            if evaluates {
                // Best-of-n leaves the policy as it was, so its greedy
                // accuracy is the one measured before.
                let (accuracy, by_category) = match (config.mode, self.state.eval_before) {
                    (Mode::BestOfN, Some(before)) => (
                        before,
                        self.state
                            .eval_before_by_category
                            .clone()
                            .unwrap_or_default(),
                    ),
                    _ => {
                        let label = format!("eval after iteration {}", iteration + 1);
                        let accuracy = self.evaluate(&label)?;
                        (accuracy.rate(), accuracy.per_category)
                    }
                };
                self.state.eval_per_iteration.push(accuracy);
                self.state.eval_by_category.push(by_category);
            }
            self.state.iteration += 1;
            self.state.next_batch = 0;
            self.save()?;
            if self.state.iteration < config.iterations {
                self.stop_if_requested(Some(&bar), &format!("iteration {}", iteration + 1))?;
            }
        }
        bar.finish();
        let disabled: Vec<(String, String)> = self
            .arms
            .iter()
            .filter_map(|a| {
                a.plugin
                    .disabled_reason()
                    .map(|r| (a.name.clone(), r.to_string()))
            })
            .collect();
        report::write(
            &self.out,
            &self.config,
            &self.state,
            &self.arm_names(),
            &disabled,
        )?;
        Ok(())
    }

    fn arm_names(&self) -> Vec<String> {
        self.arms.iter().map(|a| a.name.clone()).collect()
    }

    /// Loads reward models dropped into the plugin folder since the last
    /// scan; each joins as a new arm.
    fn add_new_arms(&mut self) {
        if self.state.next_batch == 0 && !self.pending_arms.is_empty() {
            for arm in std::mem::take(&mut self.pending_arms) {
                eprintln!(
                    "reward model {} joined as arm {}",
                    arm.plugin.meta().label(),
                    self.arms.len()
                );
                self.arms.push(arm);
            }
            let _ = self.write_plugins(false);
        }
        let report = match self.plugin_dir.rescan(&self.host) {
            Ok(report) => report,
            Err(err) => {
                eprintln!(
                    "warning: failed to rescan {}: {err}",
                    self.config.plugins.display()
                );
                return;
            }
        };
        for error in &report.errors {
            eprintln!("warning: skipped plugin: {error}");
        }
        for manifest in &report.changed {
            eprintln!(
                "warning: plugin {} changed on disk. This run keeps the version it \
                 loaded, and a new run (not --resume) reads the changed files",
                manifest.display()
            );
        }
        for plugin in report.loaded {
            if let LoadedPlugin::RewardModel(rm) = plugin {
                let name = rm.meta().manifest.name.clone();
                let wanted = self.config.rms.is_empty() || self.config.rms.contains(&name);
                if wanted && !self.arms.iter().any(|a| a.name == name) {
                    eprintln!(
                        "reward model {} joined as arm {}",
                        rm.meta().label(),
                        self.arms.len()
                    );
                    self.arms.push(Arm { plugin: rm, name });
                    let _ = self.write_plugins(false);
                }
            }
        }
    }

    /// Returns the training instances of `iteration`, in that iteration's
    /// order.
    fn iteration_instances(&self, iteration: u32) -> Vec<Instance> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut instances = self.train.clone();
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(self.config.seed ^ (u64::from(iteration) << 32));
        instances.shuffle(&mut rng);
        if self.config.train_size > 0 {
            instances.truncate(self.config.train_size);
        }
        instances
    }

    fn arm_infos(&self) -> Vec<ArmInfo> {
        arm_infos(&self.arms)
    }

    fn lock_engine(&self) -> Result<std::sync::MutexGuard<'_, Engine>> {
        lock_engine(&self.engine)
    }

    /// Runs one batch: context, choose, generate, score, train or pick,
    /// update; appends its metrics and selections.
    fn run_batch(
        &mut self,
        iteration: u32,
        batch_index: usize,
        batch: &[Instance],
        bar: &indicatif::ProgressBar,
    ) -> Result<BatchMetrics> {
        let config = self.config.clone();
        let mut seconds = BTreeMap::new();
        let mut clock = Instant::now();
        let mut lap = |name: &str, seconds: &mut BTreeMap<String, f64>| {
            seconds.insert(name.to_string(), clock.elapsed().as_secs_f64());
            clock = Instant::now();
        };

        // Generate n samples per prompt. The prefill also gives each
        // prompt's context, the policy's embedding of it.
        bar.set_message("generating");
        let prompts: Vec<Vec<u32>> = {
            let engine = self.lock_engine()?;
            batch
                .iter()
                .map(|i| engine.chat_prompt(&laser_data::prompt::render(i)))
                .collect::<Result<_>>()?
        };
        let n = config.n as usize;
        // Seeds the batch's samples and its random pairs.
        let batch_seed = config.seed ^ (u64::from(iteration) << 40) ^ ((batch_index as u64) << 20);
        let sampling = SamplingConfig {
            temperature: config.temperature,
            seed: batch_seed,
            max_new_tokens: config.max_new_tokens,
            ..SamplingConfig::default()
        };
        let repeated: Vec<Vec<u32>> = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), n))
            .collect();
        let (generations, repeated_contexts) =
            self.lock_engine()?
                .generate_with_contexts(&repeated, &sampling, config.pooling)?;
        let contexts: Vec<Vec<f32>> = repeated_contexts.into_iter().step_by(n).collect();
        let generated_tokens = generations.iter().map(|g| g.tokens.len()).sum();
        lap("generate", &mut seconds);

        // Choose: a weight per arm per prompt.
        let arms = self.arm_infos();
        ensure!(
            arms.iter().any(|a| a.enabled),
            "no reward model is left: every arm failed or none was loaded"
        );
        let weights = self
            .selector
            .choose(&contexts, &arms)
            .map_err(|err| selector_failed("choose", err))?;
        let picks: Vec<Pick> = weights.iter().map(|w| Pick::from_weights(w)).collect();
        lap("choose", &mut seconds);

        // Score: one batched call per arm, over the prompts that need it.
        bar.set_message("scoring");
        let mut rm_calls = 0;
        let mut rm_candidates = 0;
        let mut rm_tokens = 0;
        let mut arm_scores: Vec<Option<Vec<Vec<f64>>>> = vec![None; self.arms.len()];
        let mut needs: Vec<Vec<usize>> = vec![Vec::new(); self.arms.len()];
        for (i, pick) in picks.iter().enumerate() {
            for &k in pick.arms() {
                needs[k].push(i);
            }
        }
        for (k, members) in needs.iter().enumerate() {
            if members.is_empty() {
                continue;
            }
            let scored: Vec<ScoredInstance> = members
                .iter()
                .map(|&i| ScoredInstance {
                    instance: to_wit_instance(&batch[i]),
                    candidates: generations[i * n..(i + 1) * n]
                        .iter()
                        .map(|g| g.text.clone())
                        .collect(),
                })
                .collect();
            rm_calls += 1;
            rm_candidates += members.len() * n;
            rm_tokens += members
                .iter()
                .flat_map(|&i| &generations[i * n..(i + 1) * n])
                .map(|g| g.tokens.len())
                .sum::<usize>();
            match self.arms[k].plugin.score(&scored) {
                Ok(scores) => {
                    // Scores per batch row, placed back at instance index.
                    let mut full = vec![Vec::new(); batch.len()];
                    for (&i, row) in members.iter().zip(scores) {
                        full[i] = row;
                    }
                    arm_scores[k] = Some(full);
                }
                Err(err) => eprintln!(
                    "warning: continuing without a reward model that failed, so {}: {err}",
                    failed_arm_effect(members, &picks)
                ),
            }
        }
        lap("score", &mut seconds);

        // Combine: a single arm's raw scores, or normalised ensemble scores.
        let mut normalized: Vec<Option<Vec<Vec<f64>>>> = vec![None; self.arms.len()];
        for (k, scores) in arm_scores.iter().enumerate() {
            if let Some(scores) = scores {
                let rows: Vec<Vec<f64>> = needs[k].iter().map(|&i| scores[i].clone()).collect();
                let z = self.state.score_stats.normalize(k, &rows);
                let mut full = vec![Vec::new(); batch.len()];
                for (&i, row) in needs[k].iter().zip(z) {
                    full[i] = row;
                }
                normalized[k] = Some(full);
            }
        }
        let mut final_scores: Vec<Option<Vec<f64>>> = Vec::with_capacity(batch.len());
        for (i, pick) in picks.iter().enumerate() {
            let scores = match pick {
                Pick::Single(k) => arm_scores[*k].as_ref().map(|s| s[i].clone()),
                Pick::Ensemble(ks) => ensemble_scores(
                    &weights[i],
                    ks.iter()
                        .filter_map(|&k| normalized[k].as_ref().map(|s| (k, &s[i]))),
                    config.ensemble,
                    config.ensemble_lambda,
                ),
            };
            // A score that is not finite would be written as null, and the
            // run could not read its own records back.
            let scores = scores.filter(|scores| {
                let finite = scores.iter().all(|score| score.is_finite());
                if !finite {
                    eprintln!(
                        "warning: prompt {:?}: combined scores {scores:?} are not finite; \
                         the prompt gets no pick",
                        batch[i].id
                    );
                }
                finite
            });
            final_scores.push(scores);
        }

        // Best-of-n: the reward is the picked response's negative mean NLL.
        // Train: preference pairs update the policy; the reward is the
        // negative loss.
        bar.set_message(match config.mode {
            Mode::Train => "training",
            Mode::BestOfN => "picking",
        });
        let mut rewards: Vec<Option<f64>> = vec![None; batch.len()];
        let mut picked = vec![0usize; batch.len()];
        let (mut loss, mut margin) = (None, None);
        for (i, scores) in final_scores.iter().enumerate() {
            let Some(scores) = scores else { continue };
            let best = argmax(scores);
            picked[i] = best;
            if config.mode == Mode::BestOfN {
                rewards[i] = mean_logprob(&generations[i * n + best]);
            }
        }
        if config.mode == Mode::Train {
            let pairs =
                preference_pairs(&final_scores, n, config.pairs, config.pair_mode, batch_seed);
            let outcome = self.train_step(&prompts, &generations, &pairs)?;
            for (i, instance_loss) in outcome.losses {
                rewards[i] = Some(-instance_loss);
            }
            loss = outcome.loss;
            margin = outcome.margin;
            let loss_config = loss_config(&config);
            let tie = TiedBatch {
                picks: &picks,
                final_scores: &final_scores,
                generations: &generations,
                picked: &picked,
                n,
            };
            self.reward_tied_prompts(&tie, &loss_config, &mut rewards);
        }
        lap("train", &mut seconds);

        // Update the selector for every prompt that used a single arm.
        let updates: Vec<ArmUpdate> = picks
            .iter()
            .enumerate()
            .filter_map(|(i, pick)| match (pick, rewards[i]) {
                (Pick::Single(k), Some(reward)) if reward.is_finite() => Some(ArmUpdate {
                    arm: *k as u32,
                    context: contexts[i].clone(),
                    reward,
                }),
                _ => None,
            })
            .collect();
        if !updates.is_empty() {
            self.selector
                .update_batch(&updates)
                .map_err(|err| selector_failed("update", err))?;
        }
        self.state.selector_state = Some(self.selector.last_good_state().to_vec());
        lap("update", &mut seconds);

        // Record the batch.
        let names = self.arm_names();
        let mut arm_counts = BTreeMap::new();
        let mut selections = Vec::with_capacity(batch.len());
        let (mut correct, mut checked) = (0usize, 0usize);
        for (i, instance) in batch.iter().enumerate() {
            let arm = match &picks[i] {
                Pick::Single(k) => names[*k].clone(),
                Pick::Ensemble(_) => laser_plugins::RESERVED_ARM_NAME.to_string(),
            };
            *arm_counts.entry(arm.clone()).or_insert(0) += 1;
            let response = generations[i * n + picked[i]].text.clone();
            // Only a pick made from scores counts: an instance whose reward
            // model failed has no pick.
            let is_correct = final_scores[i]
                .as_ref()
                .and_then(|_| laser_data::grade(instance, &response));
            if let Some(ok) = is_correct {
                checked += 1;
                correct += usize::from(ok);
            }
            selections.push(Selection {
                iteration,
                batch: batch_index,
                id: instance.id.clone(),
                category: instance.category.clone(),
                arm,
                weights: weights[i].clone(),
                scores: final_scores[i].clone().unwrap_or_default(),
                picked: picked[i],
                // Spread weights update no arm, so such a prompt gives the
                // selector no reward, as the batch's metrics count it.
                reward: match picks[i] {
                    Pick::Single(_) => rewards[i],
                    Pick::Ensemble(_) => None,
                },
                correct: is_correct,
                response,
            });
        }
        let rewarded: Vec<f64> = updates.iter().map(|u| u.reward).collect();
        let metrics = BatchMetrics {
            iteration,
            batch: batch_index,
            instances: batch.len(),
            arm_counts,
            bandit_reward: (!rewarded.is_empty())
                .then(|| rewarded.iter().sum::<f64>() / rewarded.len() as f64),
            loss,
            margin,
            pick_accuracy: (checked > 0).then(|| correct as f64 / checked as f64),
            picks_checked: checked,
            unscored: final_scores
                .iter()
                .filter(|scores| scores.is_none())
                .count(),
            rm_calls,
            rm_candidates,
            rm_tokens,
            generated_tokens,
            seconds,
        };
        checkpoint::append_jsonl(
            &self.out.join(checkpoint::METRICS_FILE),
            &[&metrics],
            &mut self.state.metrics_lines,
        )?;
        let refs: Vec<&Selection> = selections.iter().collect();
        checkpoint::append_jsonl(
            &self.out.join(checkpoint::SELECTIONS_FILE),
            &refs,
            &mut self.state.selection_lines,
        )?;
        Ok(metrics)
    }

    /// Rewards each prompt whose reward model scored it but formed no
    /// preference pair, because all its responses tied. Without a reward
    /// such an arm would keep its untried confidence bound and be picked
    /// again and again. A model that cannot tell responses apart gives no
    /// training signal. So the prompt gets the negative loss of its picked
    /// response paired with itself (zero margin plus the weighted NLL),
    /// capped at the lowest reward of the run so far.
    fn reward_tied_prompts(
        &mut self,
        tie: &TiedBatch<'_>,
        loss_config: &LossConfig,
        rewards: &mut [Option<f64>],
    ) {
        let batch_lowest = rewards
            .iter()
            .flatten()
            .copied()
            .fold(None, |low: Option<f64>, r| {
                Some(low.map_or(r, |low| low.min(r)))
            });
        let lowest = match (self.state.lowest_reward, batch_lowest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (i, pick) in tie.picks.iter().enumerate() {
            if !matches!(pick, Pick::Single(_))
                || tie.final_scores[i].is_none()
                || rewards[i].is_some()
            {
                continue;
            }
            let generation = &tie.generations[i * tie.n + tie.picked[i]];
            let logprob: f64 = generation.response_logprobs().sum();
            let tokens = generation.response_logprobs().count();
            let degenerate = PairLogprobs {
                policy_chosen: logprob,
                policy_rejected: logprob,
                reference_chosen: logprob,
                reference_rejected: logprob,
                chosen_tokens: tokens,
                rejected_tokens: tokens,
            };
            let reward = -pair_loss(loss_config, &degenerate).loss;
            rewards[i] = Some(lowest.map_or(reward, |lowest| reward.min(lowest)));
        }
        self.state.lowest_reward = rewards
            .iter()
            .flatten()
            .copied()
            .fold(lowest, |low, r| Some(low.map_or(r, |low| low.min(r))));
    }

    /// Trains on `pairs`; returns the loss per instance.
    fn train_step(
        &mut self,
        prompts: &[Vec<u32>],
        generations: &[crate::engine::Generation],
        pairs: &[PreferencePair],
    ) -> Result<TrainOutcome> {
        let policy = self
            .policy
            .as_mut()
            .context("`train` mode needs the policy trainer, which this run did not open")?;
        let outcome = policy.train(prompts, generations, pairs)?;
        Ok(TrainOutcome {
            losses: outcome.losses,
            loss: outcome.loss,
            margin: outcome.margin,
        })
    }

    /// Returns the greedy accuracy on the held-out split.
    fn evaluate(&self, label: &str) -> Result<eval::Accuracy> {
        let bar = self
            .progress
            .add(indicatif::ProgressBar::new(self.eval.len() as u64));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {pos}/{len} ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(label.to_string());
        let mut engine = self.lock_engine()?;
        let accuracy = eval::evaluate(
            &mut engine,
            &self.eval,
            self.config.batch_size,
            self.config.max_new_tokens,
            |done| bar.set_position(done as u64),
        )?;
        bar.finish_and_clear();
        let line = format!(
            "{label}: accuracy {:.3} on {} held-out prompts",
            accuracy.rate(),
            accuracy.total
        );
        if std::io::stderr().is_terminal() {
            let _ = self.progress.println(line);
        } else {
            eprintln!("{line}");
        }
        Ok(accuracy)
    }

    /// Writes the checkpoint. In `train` mode the policy first goes into
    /// the folder for the batches finished so far, unless `state.json`
    /// already names it. Then `state.json` is written atomically, naming
    /// that folder, which commits both (see [`checkpoint`]).
    fn save(&mut self) -> Result<()> {
        let Some(policy) = &self.policy else {
            return self.state.save(&self.out);
        };
        let name = checkpoint::policy_dir_name(self.state.metrics_lines);
        if self.state.policy_dir.as_ref() != Some(&name) {
            let dir = self.out.join(&name);
            // A folder of this name that state.json does not name was left
            // by a run killed before it committed, so it is rewritten.
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("failed to delete {}", dir.display()))?;
            }
            let base_model = self.config.model.display().to_string();
            policy.save(&dir, &base_model)?;
        }
        self.state.policy_dir = Some(name.clone());
        self.state.save(&self.out)?;
        if let Err(err) = checkpoint::remove_stale_policies(&self.out, &name) {
            eprintln!("warning: failed to delete old policy checkpoints: {err:#}");
        }
        Ok(())
    }

    /// Ends the run and hands the engine back, for another run.
    ///
    /// # Errors
    ///
    /// Fails when a plugin still has a reference to the engine.
    pub fn into_engine(self) -> Result<Engine> {
        let Self {
            engine,
            host,
            selector,
            arms,
            plugin_dir,
            ..
        } = self;
        drop((host, selector, arms, plugin_dir));
        let engine = Arc::try_unwrap(engine)
            .map_err(|_| anyhow::anyhow!("the engine is still shared after the run ended"))?;
        engine
            .into_inner()
            .map_err(|_| anyhow::anyhow!("the engine is unusable after an earlier panic"))
    }

    /// Returns the run's outcome, summed over its batches.
    pub fn summary(&self) -> Result<RunSummary> {
        RunSummary::read(&self.out, &self.state)
    }
}

/// What `compare` reports per run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    pub eval_before: Option<f64>,
    pub eval_after: Option<f64>,
    pub pick_accuracy: Option<f64>,
    pub rm_calls: usize,
    pub rm_candidates: usize,
    pub rm_tokens: usize,
    pub seconds: BTreeMap<String, f64>,
    pub arm_counts: BTreeMap<String, usize>,
}

impl RunSummary {
    fn read(dir: &Path, state: &RunState) -> Result<Self> {
        let path = dir.join(checkpoint::METRICS_FILE);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut summary = Self {
            eval_before: state.eval_before,
            eval_after: state.eval_per_iteration.last().copied(),
            ..Self::default()
        };
        let (mut correct, mut checked) = (0.0, 0usize);
        for (i, line) in text.lines().enumerate() {
            let m: BatchMetrics = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: invalid record", path.display(), i + 1))?;
            summary.rm_calls += m.rm_calls;
            summary.rm_candidates += m.rm_candidates;
            summary.rm_tokens += m.rm_tokens;
            for (phase, s) in &m.seconds {
                *summary.seconds.entry(phase.clone()).or_default() += s;
            }
            for (arm, count) in &m.arm_counts {
                *summary.arm_counts.entry(arm.clone()).or_default() += count;
            }
            if let Some(a) = m.pick_accuracy {
                correct += a * m.pick_weight() as f64;
                checked += m.pick_weight();
            }
        }
        summary.pick_accuracy = (checked > 0).then(|| correct / checked as f64);
        Ok(summary)
    }
}

/// The preference-training settings of a run: the default LoRA adapter and
/// AdamW settings with the run's beta, NLL weight, learning rate and seed.
/// Sequences get room for the longest training prompt of
/// `longest_prompt` tokens, a whole response and its end-of-sequence
/// token, so that no prompt is cut in training.
fn policy_config(config: &RunConfig, longest_prompt: usize) -> TrainConfig {
    TrainConfig {
        loss: loss_config(config),
        lr: config.learning_rate,
        max_len: 512.max(longest_prompt + 1) + config.max_new_tokens as usize,
        seed: config.seed,
        ..TrainConfig::default()
    }
}

/// Returns the DPO + NLL loss settings of a run: its beta and NLL weight.
fn loss_config(config: &RunConfig) -> LossConfig {
    LossConfig {
        kind: LossKind::Dpo,
        beta: f64::from(config.beta),
        nll_weight: f64::from(config.nll_weight),
    }
}

/// The parts of one batch that [`Run::reward_tied_prompts`] reads: each
/// prompt's pick, final scores and picked response among its `n`
/// generations.
struct TiedBatch<'a> {
    picks: &'a [Pick],
    final_scores: &'a [Option<Vec<f64>>],
    generations: &'a [Generation],
    picked: &'a [usize],
    n: usize,
}

/// The outcome of one training step.
struct TrainOutcome {
    /// (instance index, its pairs' mean loss)
    losses: Vec<(usize, f64)>,
    loss: Option<f64>,
    margin: Option<f64>,
}

/// A preference pair: sample indices (within the batch's generations) of
/// the chosen and the rejected response for instance `instance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreferencePair {
    pub instance: usize,
    pub chosen: usize,
    pub rejected: usize,
}

/// Builds up to `max_pairs` pairs per instance from its samples' scores.
/// Instances whose samples all tie make no pair. `seed` draws the rejected
/// samples of [`PairMode::BestRandom`].
pub fn preference_pairs(
    scores: &[Option<Vec<f64>>],
    n: usize,
    max_pairs: u32,
    mode: PairMode,
    seed: u64,
) -> Vec<PreferencePair> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pairs = Vec::new();
    for (i, scores) in scores.iter().enumerate() {
        let Some(scores) = scores else { continue };
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let (Some(&best), Some(&worst)) = (order.first(), order.last()) else {
            continue;
        };
        if scores[best] <= scores[worst] {
            continue;
        }
        match mode {
            PairMode::BestWorst => pairs.push(PreferencePair {
                instance: i,
                chosen: i * n + best,
                rejected: i * n + worst,
            }),
            PairMode::BestRandom => {
                let others: Vec<usize> = order
                    .iter()
                    .copied()
                    .filter(|&j| scores[j] < scores[best])
                    .collect();
                let pick = rng.random_range(0..others.len());
                pairs.push(PreferencePair {
                    instance: i,
                    chosen: i * n + best,
                    rejected: i * n + others[pick],
                });
            }
            PairMode::TopP => {
                for p in 0..(max_pairs as usize).min(order.len() / 2) {
                    let (chosen, rejected) = (order[p], order[order.len() - 1 - p]);
                    if scores[chosen] > scores[rejected] {
                        pairs.push(PreferencePair {
                            instance: i,
                            chosen: i * n + chosen,
                            rejected: i * n + rejected,
                        });
                    }
                }
            }
        }
    }
    pairs
}

/// Describes what a reward model's failure costs `members`, the prompts it
/// was to score: a prompt that picked it alone gets no pick, and one that
/// spread its weights loses its share of the ensemble. Other members may
/// not have scored yet, so a prompt left with none is named, not counted.
fn failed_arm_effect(members: &[usize], picks: &[Pick]) -> String {
    let alone = members
        .iter()
        .filter(|&&i| matches!(picks[i], Pick::Single(_)))
        .count();
    let in_ensemble = members.len() - alone;
    let mut effects = Vec::new();
    if alone > 0 {
        effects.push(format!(
            "{alone} of this batch's prompts get no pick and give the selector no reward"
        ));
    }
    if in_ensemble > 0 {
        effects.push(format!(
            "{in_ensemble} of this batch's prompts lose its scores from their ensemble \
             (one left with no scoring member gets no pick)"
        ));
    }
    effects.join(", and ")
}

/// A selector's decision for one prompt.
#[derive(Clone, Debug, PartialEq)]
enum Pick {
    /// One arm (one-hot weights).
    Single(usize),
    /// Several arms with positive weight.
    Ensemble(Vec<usize>),
}

impl Pick {
    fn from_weights(weights: &[f32]) -> Self {
        let positive: Vec<usize> = (0..weights.len()).filter(|&k| weights[k] > 0.0).collect();
        match positive.as_slice() {
            [k] => Self::Single(*k),
            _ => Self::Ensemble(positive),
        }
    }

    fn arms(&self) -> &[usize] {
        match self {
            Self::Single(k) => std::slice::from_ref(k),
            Self::Ensemble(ks) => ks,
        }
    }
}

/// Checks that every plugin in the `plugins.json` at `path` is among
/// `loaded` (records of the same form) with the same digest.
/// Returns the labels (`name@version`) of the reward models that the
/// `plugins.json` at `path` records, or `None` when it cannot be read.
fn recorded_reward_models(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let recorded: Vec<serde_json::Value> = serde_json::from_str(&text).ok()?;
    Some(
        recorded
            .iter()
            .filter(|plugin| plugin["role"] == "reward-model")
            .filter_map(|plugin| plugin["name"].as_str().map(str::to_string))
            .collect(),
    )
}

fn check_plugins_unchanged(path: &Path, loaded: &[serde_json::Value], folder: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let recorded: Vec<serde_json::Value> =
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
    for old in &recorded {
        let (role, name) = (&old["role"], &old["name"]);
        let label = name.as_str().unwrap_or_default();
        let now = loaded
            .iter()
            .find(|new| &new["role"] == role && &new["name"] == name)
            .with_context(|| {
                format!(
                    "this run started with plugin {label}, which {} no longer holds; \
                     put it back to resume the run",
                    folder.display()
                )
            })?;
        // Runs from before plugins.json recorded settings have none to
        // compare.
        ensure!(
            old.get("settings").is_none() || now["settings"] == with_new_limits(&old["settings"]),
            "the manifest of plugin {label} in {} changed since this run started: {} records \
             {}, and it now gives {}; put the original settings back to resume the run, or \
             start a new run",
            folder.display(),
            path.display(),
            old["settings"],
            now["settings"]
        );
        ensure!(
            now["digest"] == old["digest"],
            "plugin {label} changed since this run started: {} records sha256 {}, and {} \
             now holds {}; put the original back to resume the run, or start a new run",
            path.display(),
            old["digest"].as_str().unwrap_or_default(),
            folder.display(),
            now["digest"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// Locks the engine that the run, its evaluation and the plugins' model
/// calls share.
///
/// # Errors
///
/// Fails when a thread panicked while it held the lock.
pub(crate) fn lock_engine(engine: &Mutex<Engine>) -> Result<std::sync::MutexGuard<'_, Engine>> {
    engine
        .lock()
        .map_err(|_| anyhow::anyhow!("the engine is unusable after an earlier panic"))
}

/// Returns the mean log-probability of a response's tokens, counting the
/// end-of-sequence token that ended it as training does. A response with
/// no token at all (cut before its first by a stop string, or at a limit
/// of 0 new tokens) gives `None`.
fn mean_logprob(generation: &Generation) -> Option<f64> {
    let count = generation.response_logprobs().count();
    if count == 0 {
        return None;
    }
    Some(generation.response_logprobs().sum::<f64>() / count as f64)
}

/// Returns plugin settings recorded in `plugins.json` with the limits that
/// manifests gained since then at their defaults, so that a run started by
/// an older version still resumes.
fn with_new_limits(recorded: &serde_json::Value) -> serde_json::Value {
    let mut settings = recorded.clone();
    if let Some(limits) = settings.get_mut("limits")
        && let Ok(parsed) = serde_json::from_value::<laser_plugins::Limits>(limits.clone())
        && let Ok(value) = serde_json::to_value(parsed)
    {
        *limits = value;
    }
    settings
}

/// Combines the normalised scores of several arms for one prompt's
/// candidates, or returns `None` when no arm with a positive weight scored
/// them.
fn ensemble_scores<'a>(
    weights: &[f32],
    arms: impl Iterator<Item = (usize, &'a Vec<f64>)>,
    mode: EnsembleMode,
    lambda: f64,
) -> Option<Vec<f64>> {
    let arms: Vec<(f64, &Vec<f64>)> = arms.map(|(k, s)| (f64::from(weights[k]), s)).collect();
    let first = arms.first()?;
    let total: f64 = arms.iter().map(|(w, _)| w).sum();
    // The arms the selector weighed may all have failed, leaving weights
    // of 0 and a mean of 0 / 0.
    if total <= 0.0 {
        return None;
    }
    let candidates = first.1.len();
    let combined = (0..candidates)
        .map(|c| {
            let mean = arms.iter().map(|(w, s)| w * s[c]).sum::<f64>() / total;
            match mode {
                EnsembleMode::Mean => mean,
                EnsembleMode::Min => arms.iter().map(|(_, s)| s[c]).fold(f64::INFINITY, f64::min),
                EnsembleMode::MeanMinusStd => {
                    let variance = arms
                        .iter()
                        .map(|(w, s)| w * (s[c] - mean).powi(2))
                        .sum::<f64>()
                        / total;
                    mean - lambda * variance.sqrt()
                }
            }
        })
        .collect();
    Some(combined)
}

fn argmax(scores: &[f64]) -> usize {
    (0..scores.len())
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

fn to_wit_instance(instance: &Instance) -> laser_plugins::Instance {
    laser_plugins::Instance {
        id: instance.id.clone(),
        prompt: instance.prompt.clone(),
        reference: instance.reference.clone(),
        category: instance.category.clone(),
    }
}

/// Returns the manifest settings that change what a plugin computes (its
/// `[config]`, limits and models), as `plugins.json` records them.
fn plugin_settings(manifest: &laser_plugins::Manifest) -> serde_json::Value {
    serde_json::json!({
        "config": manifest.config,
        "limits": manifest.limits,
        "models": manifest.models,
    })
}

/// Returns the description of each arm that `choose` passes to the selector.
fn arm_infos(arms: &[Arm]) -> Vec<ArmInfo> {
    arms.iter()
        .map(|arm| ArmInfo {
            name: arm.name.clone(),
            version: arm.plugin.meta().manifest.version.clone(),
            tags: arm.plugin.info().tags.clone(),
            enabled: arm.plugin.disabled_reason().is_none(),
        })
        .collect()
}

/// Returns the error that stops a run when the selector's `method` fails.
fn selector_failed(method: &str, err: laser_plugins::PluginError) -> anyhow::Error {
    anyhow::anyhow!(
        "selector failed in `{method}`, so the run stops. Finished batches are saved, \
         and --resume repeats this batch from the state before it: {err}"
    )
}

/// Checks that the selector's config fits `arms` before the run folder
/// exists. A fresh copy of the selector chooses once, for one context of
/// unit length, so the run's own selector keeps its state. A `fixed`
/// selector whose `arm` names no loaded reward model fails here.
fn check_selector_fits(selector: &SelectorPlugin, arms: &[Arm], width: usize) -> Result<()> {
    let name = &selector.meta().manifest.name;
    let mut copy = selector
        .fresh_copy()
        .map_err(|err| anyhow::anyhow!("selector {name:?} failed to start: {err}"))?;
    let context = vec![1.0 / (width.max(1) as f32).sqrt(); width];
    let names: Vec<&str> = arms.iter().map(|arm| arm.name.as_str()).collect();
    copy.choose(&[context], &arm_infos(arms)).map_err(|err| {
        // Weights of the wrong count or value are a bug in the plugin, and
        // a returned error most often comes from its config.
        let advice = if matches!(err.kind, PluginErrorKind::Guest(_)) {
            "check its [config] and --rms"
        } else {
            "the plugin's `choose` is at fault: fix and rebuild it, or pick another --selector"
        };
        anyhow::anyhow!(
            "selector {name:?} cannot choose among the reward models {names:?} ({advice}): {err}"
        )
    })?;
    Ok(())
}

/// Orders the loaded reward models as arms: the `--rms` order when given,
/// else load order. `skipped` maps the plugins that failed to load to
/// the reason.
fn pick_arms(
    config: &RunConfig,
    rms: Vec<RewardModelPlugin>,
    selectors: &[String],
    skipped: &BTreeMap<String, String>,
) -> Result<Vec<Arm>> {
    let mut by_name: BTreeMap<String, RewardModelPlugin> = rms
        .into_iter()
        .map(|rm| (rm.meta().manifest.name.clone(), rm))
        .collect();
    let names: Vec<String> = if config.rms.is_empty() {
        by_name.keys().cloned().collect()
    } else {
        config.rms.clone()
    };
    let mut arms = Vec::with_capacity(names.len());
    for name in names {
        ensure!(
            !selectors.contains(&name),
            "{name:?} in --rms is a selector, not a reward model; choose the selector with \
             --selector {name}"
        );
        if let (false, Some(reason)) = (by_name.contains_key(&name), skipped.get(&name)) {
            bail!(
                "reward model {name:?} in {} failed to load: {reason}",
                config.plugins.display()
            );
        }
        let plugin = by_name.remove(&name).with_context(|| {
            format!(
                "reward model {name:?} not found in {}; `laser-host plugins list {}` shows what is there",
                config.plugins.display(),
                config.plugins.display()
            )
        })?;
        let unknown: Vec<&String> = plugin
            .meta()
            .manifest
            .models
            .iter()
            .filter(|m| m.as_str() != service::POLICY)
            .collect();
        ensure!(
            unknown.is_empty(),
            "reward model {name:?} needs models {unknown:?}, but this host serves only \
             {:?} (the policy's base model); edit `models` in its manifest",
            service::POLICY
        );
        arms.push(Arm { plugin, name });
    }
    ensure!(
        !arms.is_empty(),
        "no reward model found in {}",
        config.plugins.display()
    );
    Ok(arms)
}

/// Loads the data and splits it into training and held-out instances.
pub fn load_data(config: &RunConfig) -> Result<(Vec<Instance>, Vec<Instance>)> {
    let instances = load_instances(
        &config.data,
        &config.data_format,
        config.seed,
        config.builtin_count,
    )?;
    ensure!(
        !instances.is_empty(),
        "no instances to train on: {}",
        if config.data.is_empty() {
            "--builtin-count is 0; give a positive count or --data FILE"
        } else {
            "the --data files hold none"
        }
    );
    let eval_size = config.eval_size.min(instances.len().saturating_sub(1));
    if eval_size < config.eval_size {
        eprintln!(
            "warning: --eval-size {} leaves no training data from {} instances; holding out {eval_size}",
            config.eval_size,
            instances.len()
        );
    }
    let eval = laser_data::EvalSize::Count(eval_size);
    let split = laser_data::split_instances(instances, eval, config.seed)?;
    ensure!(
        !split.train.is_empty(),
        "no training instances left after the eval split"
    );
    Ok((split.train, split.eval))
}

/// Returns `instances` without those whose prompt, with the chat template
/// and `max_new_tokens` more, would not fit the model's context, warning
/// about each, and the token count of the longest prompt kept. Found here,
/// such a prompt would otherwise stop the run at its batch, and again at
/// every resume.
///
/// # Errors
///
/// Fails when a prompt does not render or tokenize.
pub(crate) fn drop_long_prompts(
    engine: &Engine,
    instances: Vec<Instance>,
    max_new_tokens: u32,
    split: &str,
) -> Result<(Vec<Instance>, usize)> {
    let context = engine.config.context_length;
    let mut kept = Vec::with_capacity(instances.len());
    let mut longest = 0;
    let mut dropped = 0;
    for instance in instances {
        let tokens = engine.chat_prompt(&laser_data::prompt::render(&instance))?;
        if tokens.len() + max_new_tokens as usize <= context {
            longest = longest.max(tokens.len());
            kept.push(instance);
            continue;
        }
        dropped += 1;
        if dropped <= 5 {
            eprintln!(
                "warning: skipped {split} instance {}: its prompt is {} tokens, which with \
                 --max-new-tokens {max_new_tokens} exceeds the model's context of {context}",
                instance.id,
                tokens.len()
            );
        }
    }
    if dropped > 5 {
        eprintln!(
            "warning: skipped {dropped} {split} instances in all whose prompts do not fit the context"
        );
    }
    Ok((kept, longest))
}

/// Loads and mixes the `--data` files, or generates `builtin_count`
/// built-in instances from `seed` when there are none.
///
/// # Errors
///
/// Fails on invalid `--data-format` values (see [`data_sources`]) and on
/// the errors of [`laser_data::load_all`].
pub fn load_instances(
    data: &[PathBuf],
    formats: &[String],
    seed: u64,
    builtin_count: usize,
) -> Result<Vec<Instance>> {
    let sources = data_sources(data, formats)?;
    if sources.is_empty() {
        // The command line checks this too; a run resumed from an edited
        // config reaches this point unchecked.
        let max = laser_data::builtin::MAX_BUILTIN_COUNT;
        ensure!(
            builtin_count <= max,
            "--builtin-count {builtin_count} is more than the maximum of {max}"
        );
        return Ok(laser_data::builtin(seed, builtin_count));
    }
    Ok(laser_data::load_all(&sources)?)
}

/// Pairs each `--data` file with its `--data-format`: no format detects
/// each file's format, one applies to every file, and otherwise the Nth
/// format applies to the Nth file.
///
/// # Errors
///
/// Fails on a name other than gsm8k, strategyqa or jsonl, on formats
/// without files, and on several formats but not one per file.
pub fn data_sources(
    data: &[PathBuf],
    formats: &[String],
) -> Result<Vec<(PathBuf, Option<laser_data::Format>)>> {
    let formats: Vec<laser_data::Format> = formats
        .iter()
        .map(|name| {
            name.parse().map_err(|_| {
                anyhow::anyhow!(
                    "unknown --data-format {name:?}: expected gsm8k, strategyqa or jsonl"
                )
            })
        })
        .collect::<Result<_>>()?;
    ensure!(
        formats.is_empty() || !data.is_empty(),
        "--data-format needs a --data file"
    );
    ensure!(
        formats.len() <= 1 || formats.len() == data.len(),
        "got {} --data-format values for {} --data files: give one for all files or one per file",
        formats.len(),
        data.len()
    );
    let format_of = |index: usize| match formats.len() {
        0 => None,
        1 => Some(formats[0]),
        _ => Some(formats[index]),
    };
    Ok(data
        .iter()
        .enumerate()
        .map(|(index, path)| (path.clone(), format_of(index)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_random_pairs_vary_by_seed() {
        let scores = vec![Some(vec![0.5, 3.0, 1.0, 2.0])];
        let mut rejected = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let pairs = preference_pairs(&scores, 4, 1, PairMode::BestRandom, seed);
            assert_eq!(pairs.len(), 1);
            assert_eq!(pairs[0].chosen, 1);
            rejected.insert(pairs[0].rejected);
        }
        assert_eq!(rejected, [0, 2, 3].into(), "every lower sample is drawn");
    }

    #[test]
    fn summary_weighs_pick_accuracy_by_checked_picks() {
        let dir = tempfile::tempdir().unwrap();
        let record = |accuracy: f64, checked: usize| {
            serde_json::json!({
                "iteration": 0, "batch": 0, "instances": 4, "arm_counts": {},
                "bandit_reward": null, "loss": null, "margin": null,
                "pick_accuracy": accuracy, "picks_checked": checked,
                "rm_calls": 0, "rm_candidates": 0, "rm_tokens": 0,
                "generated_tokens": 0, "seconds": {},
            })
            .to_string()
        };
        // One right pick out of one checked, then none right out of three.
        let lines = format!("{}\n{}\n", record(1.0, 1), record(0.0, 3));
        std::fs::write(dir.path().join(checkpoint::METRICS_FILE), lines).unwrap();

        let summary = RunSummary::read(dir.path(), &RunState::default()).unwrap();
        assert_eq!(summary.pick_accuracy, Some(0.25));
    }

    #[test]
    fn mean_logprob_counts_end_token() {
        let generation = |logprobs: Vec<f32>, eos_logprob| Generation {
            tokens: vec![7; logprobs.len()],
            text: String::new(),
            logprobs,
            eos_token: None,
            eos_logprob,
            finish: crate::engine::FinishReason::Eos,
        };

        assert_eq!(
            mean_logprob(&generation(vec![-1.0, -2.0], Some(-3.0))),
            Some(-2.0)
        );
        // A response that ended at once still has the end's log-probability,
        // so it does not get a reward of 0, above every real response.
        assert_eq!(
            mean_logprob(&generation(Vec::new(), Some(-4.0))),
            Some(-4.0)
        );
        assert_eq!(mean_logprob(&generation(vec![-1.0], None)), Some(-1.0));
        assert_eq!(mean_logprob(&generation(Vec::new(), None)), None);
    }

    #[test]
    fn settings_of_older_runs_gain_new_limits() {
        let manifest = laser_plugins::Manifest::parse(
            "name = \"rm\"\nversion = \"0.1.0\"\nkind = \"reward-model\"\n\
             api = \"laser:plugin@0.1.0\"\n",
            Path::new("rm.toml"),
        )
        .unwrap();
        let now = plugin_settings(&manifest);
        let mut recorded = now.clone();
        recorded["limits"]
            .as_object_mut()
            .unwrap()
            .remove("model_time_ms");

        assert_ne!(recorded, now);
        assert_eq!(with_new_limits(&recorded), now);
        recorded["limits"]["memory_mib"] = 64.into();
        assert_ne!(with_new_limits(&recorded), now);
    }

    #[test]
    fn pick_one_hot_is_single() {
        assert_eq!(Pick::from_weights(&[0.0, 1.0, 0.0]), Pick::Single(1));
        assert_eq!(
            Pick::from_weights(&[0.5, 0.5, 0.0]),
            Pick::Ensemble(vec![0, 1])
        );
    }

    #[test]
    fn best_worst_pairs_skip_ties() {
        let scores = vec![Some(vec![0.1, 0.9, 0.5]), Some(vec![1.0, 1.0, 1.0]), None];
        let pairs = preference_pairs(&scores, 3, 1, PairMode::BestWorst, 0);
        assert_eq!(
            pairs,
            vec![PreferencePair {
                instance: 0,
                chosen: 1,
                rejected: 0
            }]
        );
    }

    #[test]
    fn top_p_pairs_pair_from_both_ends() {
        let scores = vec![Some(vec![0.0, 3.0, 1.0, 2.0])];
        let pairs = preference_pairs(&scores, 4, 2, PairMode::TopP, 0);
        assert_eq!(pairs.len(), 2);
        assert_eq!((pairs[0].chosen, pairs[0].rejected), (1, 0));
        assert_eq!((pairs[1].chosen, pairs[1].rejected), (3, 2));
    }

    #[test]
    fn ensemble_min_takes_lowest() {
        let a = vec![1.0, -1.0];
        let b = vec![0.0, 2.0];
        let arms = [(0usize, &a), (1usize, &b)];
        let min =
            ensemble_scores(&[1.0, 1.0], arms.iter().copied(), EnsembleMode::Min, 1.0).unwrap();
        assert_eq!(min, vec![0.0, -1.0]);
        let mean =
            ensemble_scores(&[1.0, 1.0], arms.iter().copied(), EnsembleMode::Mean, 1.0).unwrap();
        assert_eq!(mean, vec![0.5, 0.5]);
    }

    #[test]
    fn changed_plugin_blocks_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugins.json");
        let record = |name: &str, digest: &str| {
            let role = "reward-model";
            serde_json::json!({"role": role, "name": name, "digest": digest})
        };
        let recorded = [record("length@0.1.0", "aa"), record("format@0.1.0", "bb")];
        std::fs::write(&path, serde_json::to_string(&recorded).unwrap()).unwrap();
        let folder = Path::new("plugins");

        assert!(check_plugins_unchanged(&path, &recorded, folder).is_ok());

        let changed = [record("length@0.1.0", "cc"), record("format@0.1.0", "bb")];
        let error = check_plugins_unchanged(&path, &changed, folder).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("plugin length@0.1.0 changed"), "{message}");
        assert!(message.contains("sha256 aa"), "{message}");

        let missing = [record("format@0.1.0", "bb")];
        let error = check_plugins_unchanged(&path, &missing, folder).unwrap_err();
        assert!(error.to_string().contains("no longer holds"), "{error}");
    }

    #[test]
    fn changed_settings_block_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugins.json");
        let record = |sigma: f64| {
            serde_json::json!({
                "role": "reward-model",
                "name": "noisy@0.1.0",
                "digest": "aa",
                "settings": {"config": {"sigma": sigma}},
            })
        };
        std::fs::write(&path, serde_json::to_string(&[record(0.25)]).unwrap()).unwrap();
        let folder = Path::new("plugins");
        assert!(check_plugins_unchanged(&path, &[record(0.25)], folder).is_ok());

        let error = check_plugins_unchanged(&path, &[record(5.0)], folder).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("the manifest of plugin noisy@0.1.0"),
            "{message}"
        );
        assert!(message.contains("\"sigma\":5.0"), "{message}");

        // A record from before settings were kept passes.
        let old =
            serde_json::json!([{"role": "reward-model", "name": "noisy@0.1.0", "digest": "aa"}]);
        std::fs::write(&path, old.to_string()).unwrap();
        assert!(check_plugins_unchanged(&path, &[record(5.0)], folder).is_ok());
    }

    #[test]
    fn ensemble_without_weighted_arm_is_none() {
        // Arm 0 held all the weight and failed, so only arm 1 scored.
        let b = vec![0.0, 2.0];
        let arms = [(1usize, &b)];
        let combined = ensemble_scores(&[1.0, 0.0], arms.iter().copied(), EnsembleMode::Mean, 1.0);
        assert_eq!(combined, None);
    }

    #[test]
    fn old_single_data_file_config_reads() {
        #[derive(Deserialize)]
        struct Fields {
            #[serde(default, deserialize_with = "one_or_many")]
            data: Vec<PathBuf>,
        }
        let read = |json: &str| serde_json::from_str::<Fields>(json).unwrap().data;
        assert_eq!(read(r#"{"data": "a.jsonl"}"#), [PathBuf::from("a.jsonl")]);
        assert_eq!(read(r#"{"data": null}"#), Vec::<PathBuf>::new());
        assert_eq!(read("{}"), Vec::<PathBuf>::new());
        assert_eq!(
            read(r#"{"data": ["a.jsonl", "b.json"]}"#),
            [PathBuf::from("a.jsonl"), PathBuf::from("b.json")]
        );
    }

    #[test]
    fn one_data_format_applies_to_all_files() {
        let files = [PathBuf::from("a"), PathBuf::from("b")];
        let formats = |names: &[&str]| -> Vec<String> {
            names.iter().map(|name| (*name).to_owned()).collect()
        };
        let detected = data_sources(&files, &[]).unwrap();
        assert_eq!(detected[1], (files[1].clone(), None));
        let shared = data_sources(&files, &formats(&["jsonl"])).unwrap();
        assert_eq!(shared[1].1, Some(laser_data::Format::Jsonl));
        let each = data_sources(&files, &formats(&["gsm8k", "strategyqa"])).unwrap();
        assert_eq!(each[0].1, Some(laser_data::Format::Gsm8k));
        assert_eq!(each[1].1, Some(laser_data::Format::StrategyQa));
        assert!(data_sources(&[], &formats(&["gsm8k"])).is_err());
        assert!(data_sources(&files, &formats(&["csv"])).is_err());
    }
}
