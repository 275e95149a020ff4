//! A small seeded pseudo-random generator (xoshiro256++, seeded through
//! SplitMix64) whose whole state serialises with the bandit that owns it.
//!
//! The bandits never draw entropy from the OS: the same seed and the same
//! calls give the same choices on every platform, wasm32-wasip2 included.
//! Algorithm: Blackman and Vigna, "Scrambled linear pseudorandom number
//! generators" (2021), <https://prng.di.unimi.it/>.

use serde::{Deserialize, Serialize};

/// A xoshiro256++ generator. Not cryptographically secure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// Creates a generator whose 256-bit state is expanded from `seed` by
    /// SplitMix64, so that nearby seeds give unrelated streams.
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut z = seed;
        let mut state = [0u64; 4];
        for word in &mut state {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *word = x ^ (x >> 31);
        }
        Self { state }
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Returns a uniform sample from [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Returns a uniform index in `0..n`.
    ///
    /// # Panics
    ///
    /// Panics if `n` is zero.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below needs n > 0");
        // Lemire's multiply-shift: the bias is at most n / 2^64, far below
        // anything a bandit run could detect.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Returns a standard normal sample by the Box-Muller transform.
    pub fn standard_normal(&mut self) -> f64 {
        // u1 lies in (0, 1], so ln(u1) is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::seed_from_u64(7);
        let mut b = Rng::seed_from_u64(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn uniform_in_unit_interval() {
        let mut rng = Rng::seed_from_u64(1);
        for _ in 0..10_000 {
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u), "uniform sample {u} outside [0, 1)");
        }
    }

    #[test]
    fn below_covers_every_index() {
        let mut rng = Rng::seed_from_u64(2);
        let mut counts = [0usize; 5];
        for _ in 0..5_000 {
            counts[rng.below(5)] += 1;
        }
        for (index, count) in counts.iter().enumerate() {
            assert!(
                *count > 800,
                "index {index} drawn only {count} times of 5000"
            );
        }
    }

    #[test]
    fn normal_moments() {
        let mut rng = Rng::seed_from_u64(3);
        let n = 100_000;
        let samples: Vec<f64> = (0..n).map(|_| rng.standard_normal()).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let variance = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean} too far from 0");
        assert!(
            (variance - 1.0).abs() < 0.02,
            "variance {variance} too far from 1"
        );
    }
}
