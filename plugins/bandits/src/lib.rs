//! Arm-selection algorithms for LASeR (Nguyen et al., "LASeR: Learning to
//! Adaptively Select Reward Models with Multi-Armed Bandits", arXiv
//! 2410.01735), written as pure state machines.
//!
//! Each arm is one reward model (RM). A selector sees a context (the policy's
//! embedding of the prompt), chooses an arm, and later receives the bandit
//! reward for that choice (in LASeR, the negative training loss, normalised
//! by [`RewardNormalizer`]). Every algorithm's state is plain data that
//! [`Bandit::save`] and [`Bandit::load`] turn into bytes and back, so a
//! selector plugin can checkpoint it.
//!
//! This crate holds no Wasm bindings: the selector plugins in
//! `plugins/selector/*` wrap it, and it builds natively for its tests.
//! Randomised algorithms draw only from a seeded [`Rng`], never from the OS.

mod arms;
mod context;
mod driver;
mod ensemble;
mod epsilon_greedy;
mod exp3;
mod fixed;
mod linalg;
mod lints;
mod linucb;
mod means;
mod normalizer;
mod random;
mod ridge;
mod rng;
mod round_robin;
mod ucb1;

pub use arms::Arms;
pub use context::{ContextConfig, ContextMap};
pub use driver::{Driver, DriverConfig, Granularity, parse_config};
pub use ensemble::{Aggregation, Ensemble, EnsembleConfig};
pub use epsilon_greedy::{EpsilonGreedy, EpsilonGreedyConfig};
pub use exp3::{Exp3, Exp3Config};
pub use fixed::{Fixed, FixedConfig};
pub use lints::{LinTs, LinTsConfig};
pub use linucb::{LinUcb, LinUcbConfig};
pub use normalizer::{NormalizerConfig, RewardNormalizer};
pub use random::{Random, RandomConfig};
pub use rng::Rng;
pub use round_robin::{RoundRobin, RoundRobinConfig};
pub use ucb1::{Ucb1, Ucb1Config};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors from choosing, updating, configuring or restoring a bandit.
#[derive(Debug, thiserror::Error)]
pub enum BanditError {
    /// `choose` was called before any arm was added.
    #[error("no arms to choose from: add an arm first")]
    NoArms,
    /// An arm index passed to `update` does not exist.
    #[error("arm index {index} out of range for {count} arms")]
    ArmOutOfRange {
        /// The index that was passed.
        index: usize,
        /// The number of arms.
        count: usize,
    },
    /// `add_arm` was called with a name already in use.
    #[error("duplicate arm name `{0}`: arm names must be unique")]
    DuplicateArm(String),
    /// A named arm does not exist.
    #[error("arm `{name}` not found among arms {arms:?}")]
    ArmNotFound {
        /// The requested name.
        name: String,
        /// The names that exist.
        arms: Vec<String>,
    },
    /// A context has a different length from earlier contexts.
    #[error("context dimension {actual} does not match the bandit's dimension {expected}")]
    DimensionMismatch {
        /// The dimension fixed by the configuration or the first context.
        expected: usize,
        /// The length of the context that was passed.
        actual: usize,
    },
    /// The ensemble received a number of score rows other than its arm count.
    #[error("expected one score row per arm ({expected} arms), got {actual} rows")]
    ScoreRows {
        /// The number of arms.
        expected: usize,
        /// The number of rows passed.
        actual: usize,
    },
    /// An enabled-arm mask has a different length from the arm list.
    #[error("enabled-arm mask has {actual} entries for {expected} arms")]
    MaskLength {
        /// The number of arms.
        expected: usize,
        /// The mask's length.
        actual: usize,
    },
    /// Every arm is disabled.
    #[error("every arm is disabled: enable at least one reward model")]
    NoEnabledArms,
    /// The fixed selector's arm is disabled.
    #[error("arm `{0}` is disabled, and the fixed selector chooses no other arm")]
    ArmDisabled(String),
    /// A context is wider than a linear bandit accepts.
    #[error(
        "context dimension {actual} exceeds the maximum {max}: set `context.projection_dim` \
         (e.g. 64) to project the embedding first"
    )]
    DimensionTooLarge {
        /// The dimension of the context or configuration.
        actual: usize,
        /// The maximum.
        max: usize,
    },
    /// A context is empty.
    #[error("empty context: a context needs at least one feature")]
    EmptyContext,
    /// A context entry or a reward is NaN or infinite.
    #[error("non-finite {what}: {value}")]
    NonFinite {
        /// The input that carried the value, e.g. "reward" or "context entry".
        what: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A configuration value is outside its valid range.
    #[error("invalid `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// The configuration key.
        name: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// The valid range.
        reason: &'static str,
    },
    /// The config object is not JSON, or a key is unknown or has the wrong
    /// type.
    #[error("{0}")]
    Config(serde_json::Error),
    /// Saved state bytes could not be encoded or decoded.
    #[error("invalid bandit state: {0}")]
    State(#[from] serde_json::Error),
}

/// Shorthand for results in this crate.
pub type Result<T, E = BanditError> = std::result::Result<T, E>;

/// A selector that chooses one arm per call.
///
/// The usual cycle is `choose(x)`, run the chosen reward model, compute the
/// bandit reward r, then `update(arm, x, r)` with the same context. Several
/// `choose` calls may precede their updates (one per prompt of a batch).
pub trait Bandit: Clone + Serialize + DeserializeOwned {
    /// Returns the arm names, in index order.
    fn arms(&self) -> &Arms;

    /// Adds an arm and returns its index. Existing arms keep their indices
    /// and statistics.
    ///
    /// # Errors
    ///
    /// [`BanditError::DuplicateArm`] if the name is taken.
    fn add_arm(&mut self, name: &str) -> Result<usize>;

    /// Chooses an arm for `context` among the arms whose `enabled` entry is
    /// true (one entry per arm, in index order).
    ///
    /// # Errors
    ///
    /// [`BanditError::NoArms`] without arms, [`BanditError::MaskLength`] or
    /// [`BanditError::NoEnabledArms`] for a bad mask, and context errors for
    /// algorithms that read the context.
    fn choose_among(&mut self, context: &[f64], enabled: &[bool]) -> Result<usize>;

    /// Chooses an arm for each of `contexts`, all before any of their
    /// rewards is known, among the arms whose `enabled` entry is true. By
    /// default each context is chosen for alone; an algorithm may spread a
    /// batch over arms instead.
    ///
    /// # Errors
    ///
    /// As [`Bandit::choose_among`].
    fn choose_batch_among(
        &mut self,
        contexts: &[Vec<f64>],
        enabled: &[bool],
    ) -> Result<Vec<usize>> {
        contexts
            .iter()
            .map(|x| self.choose_among(x, enabled))
            .collect()
    }

    /// Chooses an arm for `context` among all arms.
    ///
    /// # Errors
    ///
    /// As [`Bandit::choose_among`].
    fn choose(&mut self, context: &[f64]) -> Result<usize> {
        let enabled = vec![true; self.arms().len()];
        self.choose_among(context, &enabled)
    }

    /// Records `reward` for `arm` chosen at `context`.
    ///
    /// # Errors
    ///
    /// [`BanditError::ArmOutOfRange`], a non-finite reward, or context errors
    /// for algorithms that read the context.
    fn update(&mut self, arm: usize, context: &[f64], reward: f64) -> Result<()>;

    /// Encodes the whole state (configuration, statistics, generator) as
    /// JSON bytes.
    ///
    /// # Errors
    ///
    /// [`BanditError::State`] if serialisation fails.
    fn save(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Restores a state written by [`Bandit::save`].
    ///
    /// # Errors
    ///
    /// [`BanditError::State`] if the bytes are not a valid state of this type.
    fn load(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// A bandit that can be built from its settings alone, with no arms yet:
/// how the selector plugins create it before the host's arm list arrives.
pub trait FromConfig: Bandit {
    /// The algorithm's settings, as read from the plugin's config.
    type Config: DeserializeOwned + Default;

    /// Creates the bandit with no arms.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] for an invalid setting.
    fn from_config(config: Self::Config) -> Result<Self>;
}

/// Implements [`FromConfig`] for a bandit whose `new` takes its settings and
/// the arm names.
macro_rules! impl_from_config {
    ($($bandit:ty => $config:ty),* $(,)?) => {
        $(impl FromConfig for $bandit {
            type Config = $config;

            fn from_config(config: $config) -> Result<Self> {
                <$bandit>::new(config, &[] as &[&str])
            }
        })*
    };
}

impl_from_config! {
    LinUcb => LinUcbConfig,
    LinTs => LinTsConfig,
    Exp3 => Exp3Config,
    EpsilonGreedy => EpsilonGreedyConfig,
    Ucb1 => Ucb1Config,
    Random => RandomConfig,
    Fixed => FixedConfig,
}

impl FromConfig for RoundRobin {
    type Config = RoundRobinConfig;

    fn from_config(_config: RoundRobinConfig) -> Result<Self> {
        RoundRobin::new(&[] as &[&str])
    }
}

/// Returns the enabled index with the largest value, the lowest index on
/// ties. Callers guarantee, through [`Arms::check_mask`], that some entry
/// of `enabled` is true, and pass no NaN for an enabled arm.
pub(crate) fn argmax_enabled(values: &[f64], enabled: &[bool]) -> usize {
    let mut best: Option<usize> = None;
    for (index, value) in values.iter().enumerate() {
        let better = match best {
            None => true,
            Some(b) => *value > values[b],
        };
        if enabled[index] && better {
            best = Some(index);
        }
    }
    best.expect("the mask has an enabled arm")
}

/// Rejects a non-finite reward.
pub(crate) fn check_reward(reward: f64) -> Result<()> {
    if reward.is_finite() {
        Ok(())
    } else {
        Err(BanditError::NonFinite {
            what: "reward",
            value: reward,
        })
    }
}

/// Rejects a parameter that is negative, NaN or infinite.
pub(crate) fn check_non_negative(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(BanditError::InvalidParameter {
            name,
            value: value.to_string(),
            reason: "expected a finite number >= 0",
        })
    }
}
