//! Dense vector and matrix helpers for the linear bandits. Matrices are
//! row-major `Vec<f64>` of length d * d.

use crate::{BanditError, Result};

/// Returns x^T y.
pub(crate) fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Returns M x for a d x d row-major matrix M.
pub(crate) fn mat_vec(matrix: &[f64], x: &[f64]) -> Vec<f64> {
    matrix
        .chunks_exact(x.len())
        .map(|row| dot(row, x))
        .collect()
}

/// Returns the d x d identity matrix.
pub(crate) fn identity(d: usize) -> Vec<f64> {
    let mut matrix = vec![0.0; d * d];
    for i in 0..d {
        matrix[i * d + i] = 1.0;
    }
    matrix
}

/// Replaces `inverse` = A^-1 by (A + x x^T)^-1 in O(d^2), for symmetric A.
///
/// Sherman-Morrison with u = A^-1 x:
///   (A + x x^T)^-1 = A^-1 - u u^T / (1 + x^T u).
/// The denominator is at least 1 because A^-1 is positive definite.
pub(crate) fn sherman_morrison_update(inverse: &mut [f64], x: &[f64]) {
    let d = x.len();

    // u = A^-1 x
    let u = mat_vec(inverse, x);

    // denominator = 1 + x^T A^-1 x
    let denominator = 1.0 + dot(x, &u);

    // A^-1 -= u u^T / denominator
    for i in 0..d {
        let scale = u[i] / denominator;
        let row = &mut inverse[i * d..(i + 1) * d];
        for (entry, u_j) in row.iter_mut().zip(&u) {
            *entry -= scale * u_j;
        }
    }
}

/// Checks that every entry of `context` is finite and that it is non-empty.
pub(crate) fn check_context(context: &[f64]) -> Result<()> {
    if context.is_empty() {
        return Err(BanditError::EmptyContext);
    }
    match context.iter().find(|value| !value.is_finite()) {
        Some(value) => Err(BanditError::NonFinite {
            what: "context entry",
            value: *value,
        }),
        None => Ok(()),
    }
}
