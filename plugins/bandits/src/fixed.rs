//! The single-reward-model baseline: always the arm with a configured name.

use serde::{Deserialize, Serialize};

use crate::{Arms, Bandit, BanditError, Result, check_reward};

/// Fixed-selector settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedConfig {
    /// Name of the arm (reward model) to choose.
    pub arm: String,
}

/// The fixed selector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fixed {
    config: FixedConfig,
    arms: Arms,
}

impl Fixed {
    /// Creates a selector over `arm_names`. The configured arm may be added
    /// later, so its absence is an error only at `choose`.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] for an empty arm name,
    /// [`BanditError::DuplicateArm`] for a repeated name.
    pub fn new<S: AsRef<str>>(config: FixedConfig, arm_names: &[S]) -> Result<Self> {
        if config.arm.is_empty() {
            return Err(BanditError::InvalidParameter {
                name: "arm",
                value: String::new(),
                reason: "expected the name of a reward model",
            });
        }
        Ok(Self {
            config,
            arms: Arms::new(arm_names)?,
        })
    }
}

impl Bandit for Fixed {
    fn arms(&self) -> &Arms {
        &self.arms
    }

    fn add_arm(&mut self, name: &str) -> Result<usize> {
        self.arms.push(name)
    }

    fn choose_among(&mut self, _context: &[f64], enabled: &[bool]) -> Result<usize> {
        self.arms.check_mask(enabled)?;
        let arm = self
            .arms
            .index_of(&self.config.arm)
            .ok_or_else(|| BanditError::ArmNotFound {
                name: self.config.arm.clone(),
                arms: self.arms.names().to_vec(),
            })?;
        if !enabled[arm] {
            return Err(BanditError::ArmDisabled(self.config.arm.clone()));
        }
        Ok(arm)
    }

    fn update(&mut self, arm: usize, _context: &[f64], reward: f64) -> Result<()> {
        self.arms.check_index(arm)?;
        check_reward(reward)
    }
}
