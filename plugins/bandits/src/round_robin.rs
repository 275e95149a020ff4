//! The sequential baseline: the arms in turn, 0, 1, ..., K-1, 0, ...
//! One step per `choose` call, so the host decides whether the turn passes
//! per prompt or per batch by how often it calls. It ignores the context
//! and the rewards.

use serde::{Deserialize, Serialize};

use crate::{Arms, Bandit, Result, check_reward};

/// Round-robin settings: there are none, and any key is rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRobinConfig {}

/// The round-robin selector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundRobin {
    arms: Arms,
    /// How many choices were made so far.
    step: u64,
}

impl RoundRobin {
    /// Creates a selector over `arm_names`, starting at arm 0.
    ///
    /// # Errors
    ///
    /// [`crate::BanditError::DuplicateArm`] for a repeated name.
    pub fn new<S: AsRef<str>>(arm_names: &[S]) -> Result<Self> {
        Ok(Self {
            arms: Arms::new(arm_names)?,
            step: 0,
        })
    }
}

impl Bandit for RoundRobin {
    fn arms(&self) -> &Arms {
        &self.arms
    }

    /// Appends an arm to the cycle; it comes up when the turn next passes
    /// the end of the old list.
    fn add_arm(&mut self, name: &str) -> Result<usize> {
        self.arms.push(name)
    }

    /// Returns the next arm in turn, passing over disabled arms.
    fn choose_among(&mut self, _context: &[f64], enabled: &[bool]) -> Result<usize> {
        self.arms.check_mask(enabled)?;
        let count = self.arms.len() as u64;
        loop {
            let arm = (self.step % count) as usize;
            self.step += 1;
            if enabled[arm] {
                return Ok(arm);
            }
        }
    }

    fn update(&mut self, arm: usize, _context: &[f64], reward: f64) -> Result<()> {
        self.arms.check_index(arm)?;
        check_reward(reward)
    }
}
