//! The ordered list of arm names that every bandit keeps.

use serde::{Deserialize, Serialize};

use crate::{BanditError, Result};

/// Arm names in index order. Names are unique, and an arm's index never
/// changes once it is added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arms {
    names: Vec<String>,
}

impl Arms {
    /// Creates a list from `names`.
    ///
    /// # Errors
    ///
    /// [`BanditError::DuplicateArm`] if a name repeats.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        let mut arms = Self::default();
        for name in names {
            arms.push(name.as_ref())?;
        }
        Ok(arms)
    }

    /// Appends `name` and returns its index.
    ///
    /// # Errors
    ///
    /// [`BanditError::DuplicateArm`] if the name is taken.
    pub fn push(&mut self, name: &str) -> Result<usize> {
        if self.index_of(name).is_some() {
            return Err(BanditError::DuplicateArm(name.to_owned()));
        }
        self.names.push(name.to_owned());
        Ok(self.names.len() - 1)
    }

    /// Returns the index of `name`, if present.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Returns the name of arm `index`, if present.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// Returns the names in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Returns the number of arms.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Returns true when there are no arms.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Checks an enabled-arm mask: arms exist, the mask has one entry per
    /// arm, and at least one entry is true.
    ///
    /// # Errors
    ///
    /// [`BanditError::NoArms`], [`BanditError::MaskLength`] or
    /// [`BanditError::NoEnabledArms`].
    pub fn check_mask(&self, enabled: &[bool]) -> Result<()> {
        if self.is_empty() {
            return Err(BanditError::NoArms);
        }
        if enabled.len() != self.len() {
            return Err(BanditError::MaskLength {
                expected: self.len(),
                actual: enabled.len(),
            });
        }
        if !enabled.contains(&true) {
            return Err(BanditError::NoEnabledArms);
        }
        Ok(())
    }

    /// Checks that arm `index` exists.
    ///
    /// # Errors
    ///
    /// [`BanditError::ArmOutOfRange`] otherwise.
    pub fn check_index(&self, index: usize) -> Result<()> {
        if index < self.len() {
            Ok(())
        } else {
            Err(BanditError::ArmOutOfRange {
                index,
                count: self.len(),
            })
        }
    }
}
