//! Per-arm ridge-regression statistics shared by LinUCB and linear Thompson
//! sampling: A_k = I + sum x x^T is kept only as its inverse, updated by
//! Sherman-Morrison, and b_k = sum r x.

use serde::{Deserialize, Serialize};

use crate::linalg::{check_context, dot, identity, mat_vec, sherman_morrison_update};
use crate::{BanditError, Result};

/// Largest context dimension accepted. Each arm stores a d x d matrix of
/// f64 (32 MiB at d = 2048) that is saved as JSON after every update, so
/// wider embeddings must be projected first (`context.projection_dim`).
pub(crate) const MAX_DIMENSION: usize = 2048;

/// The statistics of one arm in d dimensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RidgeArm {
    /// A_k^-1, d x d row-major.
    pub(crate) inverse: Vec<f64>,
    /// b_k, length d.
    pub(crate) b: Vec<f64>,
    /// How many updates the arm received.
    pub(crate) pulls: u64,
}

impl RidgeArm {
    /// Starts at A = I (so A^-1 = I) and b = 0.
    fn new(d: usize) -> Self {
        Self {
            inverse: identity(d),
            b: vec![0.0; d],
            pulls: 0,
        }
    }

    /// Returns the ridge estimate theta_k = A_k^-1 b_k.
    pub(crate) fn theta(&self) -> Vec<f64> {
        mat_vec(&self.inverse, &self.b)
    }

    /// Returns x^T A_k^-1 x, the squared confidence width at x.
    pub(crate) fn variance(&self, x: &[f64]) -> f64 {
        // Rounding can push a tiny true value below zero.
        dot(x, &mat_vec(&self.inverse, x)).max(0.0)
    }

    /// Adds one observation.
    fn update(&mut self, x: &[f64], reward: f64) {
        // A_k += x x^T, applied to the inverse by Sherman-Morrison.
        sherman_morrison_update(&mut self.inverse, x);

        // b_k += r x
        for (b_i, x_i) in self.b.iter_mut().zip(x) {
            *b_i += reward * x_i;
        }
        self.pulls += 1;
    }
}

/// The statistics of every arm. The dimension is fixed by the configuration
/// or, when that is unset, by the first context seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RidgeArms {
    dimension: Option<usize>,
    /// One entry per arm once the dimension is known, else empty.
    pub(crate) arms: Vec<RidgeArm>,
    /// Arms added before the dimension was known.
    pending: usize,
}

impl RidgeArms {
    /// Creates statistics for no arms; `dimension` may be fixed up front.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] for a dimension of 0, and
    /// [`BanditError::DimensionTooLarge`] above [`MAX_DIMENSION`].
    pub(crate) fn new(dimension: Option<usize>) -> Result<Self> {
        match dimension {
            Some(0) => Err(BanditError::InvalidParameter {
                name: "dimension",
                value: "0".to_owned(),
                reason: "expected at least 1, or leave it unset to take it from the first context",
            }),
            Some(d) if d > MAX_DIMENSION => Err(BanditError::DimensionTooLarge {
                actual: d,
                max: MAX_DIMENSION,
            }),
            _ => Ok(Self {
                dimension,
                arms: Vec::new(),
                pending: 0,
            }),
        }
    }

    /// Returns the context dimension, once known.
    pub(crate) fn dimension(&self) -> Option<usize> {
        self.dimension
    }

    /// Adds an arm at A = I, b = 0.
    pub(crate) fn add_arm(&mut self) {
        match self.dimension {
            Some(d) if self.pending == 0 => self.arms.push(RidgeArm::new(d)),
            _ => self.pending += 1,
        }
    }

    /// Validates `context`, fixes the dimension on first use and allocates
    /// arms that were added before it was known.
    pub(crate) fn prepare(&mut self, context: &[f64]) -> Result<()> {
        check_context(context)?;
        if self.dimension.is_none() && context.len() > MAX_DIMENSION {
            return Err(BanditError::DimensionTooLarge {
                actual: context.len(),
                max: MAX_DIMENSION,
            });
        }
        let d = *self.dimension.get_or_insert(context.len());
        if context.len() != d {
            return Err(BanditError::DimensionMismatch {
                expected: d,
                actual: context.len(),
            });
        }
        for _ in 0..self.pending {
            self.arms.push(RidgeArm::new(d));
        }
        self.pending = 0;
        Ok(())
    }

    /// Adds the observation (x, r) to arm `arm`; call [`Self::prepare`] first.
    pub(crate) fn update(&mut self, arm: usize, x: &[f64], reward: f64) {
        self.arms[arm].update(x, reward);
    }
}
