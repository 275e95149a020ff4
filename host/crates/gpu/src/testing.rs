//! Helpers for the kernel tests: one shared GPU per test binary, seeded
//! random data and tolerance checks.

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Gpu;

/// Returns the GPU shared by every test in this binary, opened on first use.
pub(crate) fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new().expect("tests need a GPU adapter (lavapipe will do)"))
}

/// Returns a random generator seeded with `seed`, so failures reproduce.
pub(crate) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Returns `n` values drawn uniformly from `[-scale, scale)`.
pub(crate) fn uniform_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Reads the first `n` f32 values of `buffer`.
pub(crate) fn read_f32(buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
    gpu()
        .read(buffer, (n * 4) as u64)
        .expect("GPU readback failed")
}

/// Reads the first `n` u32 values of `buffer`.
pub(crate) fn read_u32(buffer: &wgpu::Buffer, n: usize) -> Vec<u32> {
    gpu()
        .read(buffer, (n * 4) as u64)
        .expect("GPU readback failed")
}

/// Records work with `record` into a fresh encoder and submits it.
pub(crate) fn run(record: impl FnOnce(&mut crate::Encoder)) {
    let gpu = gpu();
    let mut encoder = gpu.encoder("test");
    record(&mut encoder);
    gpu.submit(encoder);
}

/// Asserts that every `actual[i]` is within `abs + rel * |expected[i]|` of
/// `expected[i]`, naming the first index that is not.
#[track_caller]
pub(crate) fn assert_close(label: &str, actual: &[f32], expected: &[f32], abs: f32, rel: f32) {
    assert_eq!(actual.len(), expected.len(), "{label}: length differs");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let bound = abs + rel * e.abs();
        assert!(
            (a - e).abs() <= bound && a.is_finite() == e.is_finite(),
            "{label}: index {i}: got {a}, expected {e} (bound {bound})"
        );
    }
}

/// Returns the mean wall time of one submission of `record`, after one
/// warm-up submission, over `iterations` submissions waited on one by one.
pub(crate) fn time_gpu(
    iterations: u32,
    mut record: impl FnMut(&mut crate::Encoder),
) -> std::time::Duration {
    let gpu = gpu();
    let mut submit_and_wait = || {
        run(&mut record);
        gpu.wait().expect("GPU wait failed");
    };
    submit_and_wait();
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        submit_and_wait();
    }
    start.elapsed() / iterations
}
