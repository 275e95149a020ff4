//! Checks LinUCB's Sherman-Morrison inverse and its scores against a
//! closed-form reference that inverts A = I + sum x x^T explicitly by
//! Gauss-Jordan elimination after every update.

use laser_bandits::{Bandit, LinUcb, LinUcbConfig, Rng};

const D: usize = 8;
const ARMS: usize = 3;
const UPDATES: usize = 1_000;
const TOLERANCE: f64 = 1e-6;

/// Returns the inverse of the n x n row-major `matrix` by Gauss-Jordan
/// elimination with partial pivoting.
fn gauss_jordan_inverse(matrix: &[f64], n: usize) -> Vec<f64> {
    // Augmented [M | I], reduced to [I | M^-1].
    let mut a = matrix.to_vec();
    let mut inverse = vec![0.0; n * n];
    for i in 0..n {
        inverse[i * n + i] = 1.0;
    }
    for column in 0..n {
        let pivot = (column..n)
            .max_by(|r, s| a[r * n + column].abs().total_cmp(&a[s * n + column].abs()))
            .unwrap();
        for j in 0..n {
            a.swap(column * n + j, pivot * n + j);
            inverse.swap(column * n + j, pivot * n + j);
        }
        let scale = a[column * n + column];
        for j in 0..n {
            a[column * n + j] /= scale;
            inverse[column * n + j] /= scale;
        }
        for row in 0..n {
            if row == column {
                continue;
            }
            let factor = a[row * n + column];
            for j in 0..n {
                a[row * n + j] -= factor * a[column * n + j];
                inverse[row * n + j] -= factor * inverse[column * n + j];
            }
        }
    }
    inverse
}

/// Returns x^T M y for a row-major n x n matrix M.
fn quadratic_form(x: &[f64], matrix: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    (0..n)
        .map(|i| x[i] * (0..n).map(|j| matrix[i * n + j] * y[j]).sum::<f64>())
        .sum()
}

fn random_vector(rng: &mut Rng) -> Vec<f64> {
    (0..D).map(|_| rng.standard_normal()).collect()
}

#[test]
fn sherman_morrison_matches_explicit_inverse() {
    let alpha = 0.7;
    let config = LinUcbConfig {
        alpha,
        dimension: Some(D),
        ..LinUcbConfig::default()
    };
    let mut bandit = LinUcb::new(config, &["a", "b", "c"]).unwrap();
    let mut rng = Rng::seed_from_u64(11);

    // Reference statistics: A_k = I + sum x x^T and b_k = sum r x, in full.
    let mut a: Vec<Vec<f64>> = (0..ARMS)
        .map(|_| {
            (0..D * D)
                .map(|i| if i % (D + 1) == 0 { 1.0 } else { 0.0 })
                .collect()
        })
        .collect();
    let mut b = vec![vec![0.0; D]; ARMS];

    for step in 0..UPDATES {
        let arm = rng.below(ARMS);
        let x = random_vector(&mut rng);
        let reward = rng.standard_normal();
        bandit.update(arm, &x, reward).unwrap();
        for i in 0..D {
            for j in 0..D {
                a[arm][i * D + j] += x[i] * x[j];
            }
            b[arm][i] += reward * x[i];
        }

        // The updated arm's inverse matches entry by entry.
        let reference = gauss_jordan_inverse(&a[arm], D);
        let kept = bandit.inverse(arm).unwrap();
        for (index, (got, want)) in kept.iter().zip(&reference).enumerate() {
            assert!(
                (got - want).abs() < TOLERANCE,
                "step {step}, arm {arm}, entry {index}: inverse {got}, reference {want}"
            );
        }

        // Every arm's score at a fresh context matches
        // x^T A^-1 b + alpha sqrt(x^T A^-1 x).
        let probe = random_vector(&mut rng);
        let scores = bandit.scores(&probe).unwrap();
        for k in 0..ARMS {
            let inverse = gauss_jordan_inverse(&a[k], D);
            let mean = quadratic_form(&probe, &inverse, &b[k]);
            let width = quadratic_form(&probe, &inverse, &probe).sqrt();
            let want = mean + alpha * width;
            assert!(
                (scores[k] - want).abs() < TOLERANCE,
                "step {step}, arm {k}: score {}, reference {want}",
                scores[k]
            );
        }
    }
}
