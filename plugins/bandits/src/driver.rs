//! The part of a selector plugin that is the same for every algorithm. It
//! keeps the bandit's arms in step with the host's arm list, prepares raw
//! f32 embeddings into contexts, normalises rewards, turns choices into
//! one-hot weights, and saves all of it as one state.
//!
//! It uses no Wasm bindings, so the selector plugins stay thin and this
//! logic is tested natively.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{
    Bandit, BanditError, ContextConfig, ContextMap, NormalizerConfig, Result, RewardNormalizer,
    check_reward,
};

/// Whether the selector chooses per prompt or once per `choose` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One choice per context (per prompt).
    #[default]
    Instance,
    /// One choice per call, made at the mean of the call's prepared
    /// contexts and given to every prompt of the batch. The batch's updates
    /// are held until the next choice or save, then applied as one update
    /// per arm at the mean context and the mean raw reward, so that the
    /// bandit learns once per decision.
    Batch,
}

/// Settings shared by every selector plugin, read from the `granularity`,
/// `normalize_reward`, `context` and `reward` keys of the plugin's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriverConfig {
    /// Per-prompt or per-batch choice. Default `instance`.
    pub granularity: Granularity,
    /// Pass rewards through [`RewardNormalizer`] before the bandit sees
    /// them. Default true; turn it off when the host already normalises.
    pub normalize_reward: bool,
    /// Context preparation (`[config.context]`).
    pub context: ContextConfig,
    /// Reward normalisation (`[config.reward]`).
    pub reward: NormalizerConfig,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            granularity: Granularity::Instance,
            normalize_reward: true,
            context: ContextConfig::default(),
            reward: NormalizerConfig::default(),
        }
    }
}

/// Keys of a selector's config object that belong to [`DriverConfig`];
/// the rest configure the algorithm.
const DRIVER_KEYS: [&str; 4] = ["granularity", "normalize_reward", "context", "reward"];

/// Splits a selector plugin's config JSON object into the algorithm's
/// settings and the [`DriverConfig`].
///
/// # Errors
///
/// [`BanditError::Config`] when the text is not a JSON object or a key is
/// unknown or has the wrong type; the message names the key.
pub fn parse_config<C: DeserializeOwned>(config_json: &str) -> Result<(C, DriverConfig)> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(config_json).map_err(BanditError::Config)?;
    let mut driver = serde_json::Map::new();
    for key in DRIVER_KEYS {
        if let Some(value) = object.remove(key) {
            driver.insert(key.to_owned(), value);
        }
    }
    let algorithm =
        serde_json::from_value(serde_json::Value::Object(object)).map_err(BanditError::Config)?;
    let driver =
        serde_json::from_value(serde_json::Value::Object(driver)).map_err(BanditError::Config)?;
    Ok((algorithm, driver))
}

/// A bandit with its context map, reward normaliser and settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Driver<B> {
    bandit: B,
    config: DriverConfig,
    context: ContextMap,
    normalizer: RewardNormalizer,
    /// Updates of the last batch not yet applied, with batch granularity.
    #[serde(default)]
    pending: Vec<PendingUpdate>,
}

/// An update held until its batch is complete: the arm, the prepared
/// context and the raw reward.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingUpdate {
    arm: usize,
    context: Vec<f64>,
    reward: f64,
}

impl<B: Bandit> Driver<B> {
    /// Wraps `bandit`.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] for invalid context or reward
    /// settings.
    pub fn new(bandit: B, config: DriverConfig) -> Result<Self> {
        Ok(Self {
            bandit,
            context: ContextMap::new(config.context.clone())?,
            normalizer: RewardNormalizer::new(config.reward.clone())?,
            config,
            pending: Vec::new(),
        })
    }

    /// Returns the wrapped bandit.
    pub fn bandit(&self) -> &B {
        &self.bandit
    }

    /// Adds the arms of `names` beyond those the bandit has, after checking
    /// that the arms it has keep their names and order.
    ///
    /// # Errors
    ///
    /// [`BanditError::ArmNotFound`] when an existing index has another name,
    /// as when a saved state comes from a run with other reward models.
    pub fn sync_arms<S: AsRef<str>>(&mut self, names: &[S]) -> Result<()> {
        let known = self.bandit.arms().names().to_vec();
        for (index, name) in known.iter().enumerate() {
            if names.get(index).map(AsRef::as_ref) != Some(name.as_str()) {
                return Err(BanditError::ArmNotFound {
                    name: name.clone(),
                    arms: names.iter().map(|n| n.as_ref().to_owned()).collect(),
                });
            }
        }
        for name in &names[known.len().min(names.len())..] {
            self.bandit.add_arm(name.as_ref())?;
        }
        Ok(())
    }

    /// Chooses arms for a batch and returns one-hot weights: `result[i][k]`
    /// is 1 for the arm chosen for context i and 0 elsewhere. `names` and
    /// `enabled` describe every arm, in index order.
    ///
    /// # Errors
    ///
    /// Arm-list errors from [`Driver::sync_arms`], and the bandit's choice
    /// and context errors.
    pub fn choose<S: AsRef<str>>(
        &mut self,
        contexts: &[Vec<f32>],
        names: &[S],
        enabled: &[bool],
    ) -> Result<Vec<Vec<f32>>> {
        self.apply_pending()?;
        self.sync_arms(names)?;
        let prepared: Vec<Vec<f64>> = contexts
            .iter()
            .map(|raw| self.prepare(raw))
            .collect::<Result<_>>()?;

        let chosen: Vec<usize> = match self.config.granularity {
            Granularity::Instance => self.bandit.choose_batch_among(&prepared, enabled)?,
            Granularity::Batch if prepared.is_empty() => Vec::new(),
            Granularity::Batch => {
                let arm = self.bandit.choose_among(&mean(&prepared), enabled)?;
                vec![arm; prepared.len()]
            }
        };
        Ok(chosen
            .into_iter()
            .map(|arm| one_hot(arm, names.len()))
            .collect())
    }

    /// Records the raw `reward` (in LASeR, the negative training loss) of
    /// `arm` at the raw embedding `context`, normalised when configured.
    /// With batch granularity the update waits for the rest of its batch
    /// (see [`Granularity::Batch`]).
    ///
    /// # Errors
    ///
    /// The bandit's arm, reward and context errors.
    pub fn update(&mut self, arm: usize, context: &[f32], reward: f64) -> Result<()> {
        self.bandit.arms().check_index(arm)?;
        check_reward(reward)?;
        let x = self.prepare(context)?;
        match self.config.granularity {
            Granularity::Instance => self.apply(arm, &x, reward),
            Granularity::Batch => {
                self.pending.push(PendingUpdate {
                    arm,
                    context: x,
                    reward,
                });
                Ok(())
            }
        }
    }

    /// Encodes the whole driver as JSON bytes, with the updates of the last
    /// batch applied.
    ///
    /// # Errors
    ///
    /// [`BanditError::State`] if serialisation fails, and the bandit's
    /// errors from applying the held updates.
    pub fn save(&self) -> Result<Vec<u8>> {
        if self.pending.is_empty() {
            return Ok(serde_json::to_vec(self)?);
        }
        let mut applied = self.clone();
        applied.apply_pending()?;
        Ok(serde_json::to_vec(&applied)?)
    }

    /// Applies the held updates of a batch: for each arm, one update at the
    /// mean of its contexts with the mean of its raw rewards.
    fn apply_pending(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let mut arms: Vec<usize> = pending.iter().map(|update| update.arm).collect();
        arms.sort_unstable();
        arms.dedup();
        for arm in arms {
            let updates: Vec<&PendingUpdate> = pending.iter().filter(|u| u.arm == arm).collect();
            let contexts: Vec<Vec<f64>> = updates.iter().map(|u| u.context.clone()).collect();
            let reward = updates.iter().map(|u| u.reward).sum::<f64>() / updates.len() as f64;
            self.apply(arm, &mean(&contexts), reward)?;
        }
        Ok(())
    }

    /// Normalises `reward` when configured and updates the bandit.
    fn apply(&mut self, arm: usize, x: &[f64], reward: f64) -> Result<()> {
        let reward = if self.config.normalize_reward {
            self.normalizer.normalize(reward)?
        } else {
            reward
        };
        self.bandit.update(arm, x, reward)
    }

    /// Restores a driver written by [`Driver::save`]. The saved settings
    /// replace the configured ones, so that a resumed run continues as it
    /// started.
    ///
    /// # Errors
    ///
    /// [`BanditError::State`] if the bytes are not a valid state.
    pub fn load(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Converts a raw embedding to f64 and applies the context map.
    fn prepare(&mut self, raw: &[f32]) -> Result<Vec<f64>> {
        let widened: Vec<f64> = raw.iter().map(|v| f64::from(*v)).collect();
        self.context.apply(&widened)
    }
}

/// Returns the entrywise mean of equally long vectors.
fn mean(vectors: &[Vec<f64>]) -> Vec<f64> {
    let mut sum = vec![0.0; vectors[0].len()];
    for vector in vectors {
        for (total, value) in sum.iter_mut().zip(vector) {
            *total += value;
        }
    }
    sum.iter()
        .map(|total| total / vectors.len() as f64)
        .collect()
}

/// Returns a weight vector of `count` zeros with a 1 at `arm`.
fn one_hot(arm: usize, count: usize) -> Vec<f32> {
    let mut weights = vec![0.0; count];
    weights[arm] = 1.0;
    weights
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContextConfig, LinUcb, LinUcbConfig, RoundRobin};

    #[test]
    fn config_split() {
        let json = r#"{"alpha": 0.3, "granularity": "batch", "context": {"projection_dim": 8}}"#;
        let (algorithm, driver): (LinUcbConfig, DriverConfig) = parse_config(json).unwrap();
        assert_eq!(algorithm.alpha, 0.3);
        assert_eq!(driver.granularity, Granularity::Batch);
        assert_eq!(driver.context.projection_dim, Some(8));
        assert!(driver.normalize_reward);
    }

    #[test]
    fn unknown_key_rejected() {
        let error = parse_config::<LinUcbConfig>(r#"{"alpah": 0.3}"#).unwrap_err();
        assert!(
            error.to_string().contains("alpah"),
            "message {error} does not name the key"
        );
    }

    #[test]
    fn one_hot_per_instance() {
        let bandit = RoundRobin::new::<&str>(&[]).unwrap();
        let mut driver = Driver::new(bandit, DriverConfig::default()).unwrap();
        let contexts = vec![vec![1.0, 0.0]; 3];
        let weights = driver
            .choose(&contexts, &["a", "b"], &[true, true])
            .unwrap();
        assert_eq!(
            weights,
            vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0]]
        );
    }

    #[test]
    fn batch_shares_one_choice() {
        let config = DriverConfig {
            granularity: Granularity::Batch,
            ..DriverConfig::default()
        };
        let mut driver = Driver::new(RoundRobin::new(&["a", "b"]).unwrap(), config).unwrap();
        let contexts = vec![vec![1.0, 0.0]; 3];
        let weights = driver
            .choose(&contexts, &["a", "b"], &[true, true])
            .unwrap();
        assert_eq!(weights, vec![vec![1.0, 0.0]; 3]);
    }

    #[test]
    fn batch_updates_apply_at_means() {
        // Contexts pass through unchanged, so the mean of the prepared
        // contexts is the prepared mean context.
        let driver = |granularity| {
            let bandit = LinUcb::new(LinUcbConfig::default(), &["a", "b"]).unwrap();
            let config = DriverConfig {
                granularity,
                context: ContextConfig {
                    unit_norm: false,
                    bias: false,
                    ..ContextConfig::default()
                },
                ..DriverConfig::default()
            };
            Driver::new(bandit, config).unwrap()
        };
        let state = |driver: &Driver<LinUcb>| serde_json::to_value(driver.bandit()).unwrap();

        // Two prompts of arm 1 and one of arm 0, against one update per arm
        // at its mean context with its mean reward, arm 0 first.
        let mut batch = driver(Granularity::Batch);
        batch.update(1, &[0.5, -1.0, 2.0], -2.0).unwrap();
        batch.update(0, &[1.0, 1.0, 0.0], -0.5).unwrap();
        batch.update(1, &[1.5, 0.0, 1.0], -1.0).unwrap();
        let mut single = driver(Granularity::Instance);
        single.update(0, &[1.0, 1.0, 0.0], -0.5).unwrap();
        single.update(1, &[1.0, -0.5, 1.5], -1.5).unwrap();
        assert_ne!(state(&batch), state(&single), "held until the batch ends");

        let saved: Driver<LinUcb> = Driver::load(&batch.save().unwrap()).unwrap();
        assert_eq!(state(&saved), state(&single), "a save applies them");
        let context = vec![0.0, 1.0, 0.0];
        batch.choose(&[context], &["a", "b"], &[true; 2]).unwrap();
        assert_eq!(
            state(&batch),
            state(&single),
            "the next choice applies them"
        );
    }

    #[test]
    fn arms_grow_from_host_list() {
        let bandit = LinUcb::new(LinUcbConfig::default(), &["a"]).unwrap();
        let mut driver = Driver::new(bandit, DriverConfig::default()).unwrap();
        let weights = driver
            .choose(&[vec![1.0]], &["a", "b", "c"], &[true; 3])
            .unwrap();
        assert_eq!(weights[0].len(), 3);
        assert_eq!(driver.bandit().arms().names(), ["a", "b", "c"]);
    }

    #[test]
    fn renamed_arm_rejected() {
        let bandit = LinUcb::new(LinUcbConfig::default(), &["a", "b"]).unwrap();
        let mut driver = Driver::new(bandit, DriverConfig::default()).unwrap();
        let error = driver
            .choose(&[vec![1.0]], &["a", "x"], &[true; 2])
            .unwrap_err();
        assert!(matches!(error, BanditError::ArmNotFound { .. }));
    }

    #[test]
    fn save_load_keeps_choices() {
        let bandit = LinUcb::new(LinUcbConfig::default(), &["a", "b"]).unwrap();
        let mut driver = Driver::new(bandit, DriverConfig::default()).unwrap();
        for step in 0..20 {
            let context = vec![step as f32, 1.0];
            let arm = step % 2;
            driver.update(arm, &context, -(step as f64)).unwrap();
        }
        let mut restored: Driver<LinUcb> = Driver::load(&driver.save().unwrap()).unwrap();
        let contexts: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32, -1.0]).collect();
        let original = driver.choose(&contexts, &["a", "b"], &[true; 2]).unwrap();
        let copy = restored.choose(&contexts, &["a", "b"], &[true; 2]).unwrap();
        assert_eq!(original, copy);
    }

    #[test]
    fn update_rejects_unknown_arm() {
        let bandit = LinUcb::new(LinUcbConfig::default(), &["a"]).unwrap();
        let mut driver = Driver::new(bandit, DriverConfig::default()).unwrap();
        let error = driver.update(3, &[1.0], 0.0).unwrap_err();
        assert!(matches!(
            error,
            BanditError::ArmOutOfRange { index: 3, count: 1 }
        ));
    }
}
