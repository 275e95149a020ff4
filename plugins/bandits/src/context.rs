//! Preparation of a raw prompt embedding into a bandit context: an optional
//! seeded Gaussian random projection to fewer dimensions, scaling to unit
//! L2 norm, and an appended constant feature.
//!
//! LinUCB keeps a d x d matrix per arm, so a 4096-wide hidden state would
//! cost 128 MiB per arm. A random projection with entries N(0, 1/k) to
//! k dimensions keeps inner products within a factor (1 +- eps) with high
//! probability once k is of order log(n) / eps^2 (Johnson-Lindenstrauss).
//! Unit norm keeps the linear models' scale independent of the policy's
//! hidden-state magnitude, and the constant feature lets each arm learn a
//! context-free mean reward.

use serde::{Deserialize, Serialize};

use crate::linalg::{check_context, mat_vec};
use crate::{BanditError, Result, Rng};

/// Context-preparation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextConfig {
    /// Project to this many dimensions first. Default: unset, no projection.
    pub projection_dim: Option<usize>,
    /// Scale the (projected) embedding to unit L2 norm. Default true.
    pub unit_norm: bool,
    /// Append a constant 1.0 feature. Default true.
    pub bias: bool,
    /// Seed of the projection matrix. Default 0.
    pub seed: u64,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            projection_dim: None,
            unit_norm: true,
            bias: true,
            seed: 0,
        }
    }
}

/// Maps raw embeddings to contexts. The projection matrix is rebuilt from
/// the seed after loading, so saved state stays small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextMap {
    config: ContextConfig,
    /// Embedding width, fixed by the first embedding.
    input_dim: Option<usize>,
    /// The k x input_dim projection, row-major; built on first use.
    #[serde(skip)]
    projection: Vec<f64>,
}

impl ContextMap {
    /// Creates a map with the given settings.
    ///
    /// # Errors
    ///
    /// [`BanditError::InvalidParameter`] for a zero `projection_dim`.
    pub fn new(config: ContextConfig) -> Result<Self> {
        if config.projection_dim == Some(0) {
            return Err(BanditError::InvalidParameter {
                name: "projection_dim",
                value: "0".to_owned(),
                reason: "expected at least 1, or leave it unset for no projection",
            });
        }
        Ok(Self {
            config,
            input_dim: None,
            projection: Vec::new(),
        })
    }

    /// Returns the context for `embedding`.
    ///
    /// # Errors
    ///
    /// [`BanditError::EmptyContext`], [`BanditError::NonFinite`] for a NaN or
    /// infinite entry, or [`BanditError::DimensionMismatch`] when the width
    /// differs from the first embedding's.
    pub fn apply(&mut self, embedding: &[f64]) -> Result<Vec<f64>> {
        check_context(embedding)?;
        let width = *self.input_dim.get_or_insert(embedding.len());
        if embedding.len() != width {
            return Err(BanditError::DimensionMismatch {
                expected: width,
                actual: embedding.len(),
            });
        }

        // x <- P x, with P of shape k x width.
        let mut context = match self.config.projection_dim {
            Some(k) => {
                if self.projection.is_empty() {
                    self.projection = gaussian_projection(k, width, self.config.seed);
                }
                mat_vec(&self.projection, embedding)
            }
            None => embedding.to_vec(),
        };

        // x <- x / ||x||, unless x = 0.
        if self.config.unit_norm {
            let norm = context.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                context.iter_mut().for_each(|v| *v /= norm);
            }
        }

        if self.config.bias {
            context.push(1.0);
        }
        Ok(context)
    }
}

/// Returns a k x width matrix of independent N(0, 1/k) entries.
fn gaussian_projection(k: usize, width: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    let scale = 1.0 / (k as f64).sqrt();
    (0..k * width)
        .map(|_| scale * rng.standard_normal())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_normalises_and_appends_bias() {
        let mut map = ContextMap::new(ContextConfig::default()).unwrap();
        assert_eq!(map.apply(&[3.0, 4.0]).unwrap(), vec![0.6, 0.8, 1.0]);
    }

    #[test]
    fn projection_sets_width() {
        let config = ContextConfig {
            projection_dim: Some(8),
            ..ContextConfig::default()
        };
        let mut map = ContextMap::new(config).unwrap();
        let embedding: Vec<f64> = (0..100).map(|i| i as f64).collect();
        assert_eq!(map.apply(&embedding).unwrap().len(), 9);
    }

    #[test]
    fn projection_survives_reload() {
        let config = ContextConfig {
            projection_dim: Some(4),
            ..ContextConfig::default()
        };
        let mut map = ContextMap::new(config).unwrap();
        let embedding = [1.0, -2.0, 0.5, 3.0, 7.0, -1.0];
        let before = map.apply(&embedding).unwrap();
        let bytes = serde_json::to_vec(&map).unwrap();
        let mut reloaded: ContextMap = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(reloaded.apply(&embedding).unwrap(), before);
    }

    #[test]
    fn width_change_rejected() {
        let mut map = ContextMap::new(ContextConfig::default()).unwrap();
        map.apply(&[1.0, 2.0]).unwrap();
        let error = map.apply(&[1.0]).unwrap_err();
        assert!(matches!(
            error,
            BanditError::DimensionMismatch {
                expected: 2,
                actual: 1
            }
        ));
    }
}
