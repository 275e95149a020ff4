//! RMS normalization (Zhang and Sennrich, 2019, "Root Mean Square Layer
//! Normalization"): `out = x / sqrt(mean(x^2) + eps) * weight` per row, as in
//! Llama and Qwen2.

use anyhow::Result;

use crate::Gpu;
use crate::pass::Kernel;

const SHADER: &str = include_str!("../../../../shaders/rms_norm.wgsl");

/// Uniform block of `rms_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RmsNormParams {
    m: u32,
    c: u32,
    eps: f32,
    _pad: u32,
}

const _: () = assert!(size_of::<RmsNormParams>() == 16);

/// RMS normalization of each row of an `[M, C]` activation.
pub struct RmsNorm {
    kernel: Kernel,
}

impl RmsNorm {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "rms_norm", SHADER, "rms_norm")?;
        Ok(Self { kernel })
    }

    /// Records `out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight`
    /// for rows `r < m`. `x` and `out` are f32 `[M, C]`, `weight` is f32 `[C]`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        out: &wgpu::Buffer,
        m: u32,
        c: u32,
        eps: f32,
    ) {
        self.kernel.encode(
            gpu,
            encoder,
            &RmsNormParams { m, c, eps, _pad: 0 },
            &[x, weight, out],
            [m, 1, 1],
        );
    }
}

/// Computes [`RmsNorm`] on the CPU in f64 and returns `out` f32 `[m, c]`
/// for `x` f32 `[m, c]` and `weight` f32 `[c]`.
pub fn rms_norm_reference(x: &[f32], weight: &[f32], m: usize, c: usize, eps: f32) -> Vec<f32> {
    let mut out = vec![0.0; m * c];
    for r in 0..m {
        let row = &x[r * c..(r + 1) * c];
        let mean_sq = row
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            / c as f64;
        let inv_rms = 1.0 / (mean_sq + f64::from(eps)).sqrt();
        for i in 0..c {
            out[r * c + i] = (f64::from(row[i]) * inv_rms * f64::from(weight[i])) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, gpu, read_f32, rng, run, uniform_vec};

    #[test]
    fn rms_norm_matches_reference() {
        let gpu = gpu();
        let op = RmsNorm::new(gpu).unwrap();
        let mut rng = rng(1);
        // (allocated rows, used rows, channels): odd sizes, fewer used rows
        // than allocated, and C below, at and above the workgroup size.
        for (rows, m, c) in [(1, 1, 1), (3, 3, 7), (5, 4, 255), (9, 9, 576), (4, 2, 1001)] {
            let x = uniform_vec(&mut rng, rows * c, 3.0);
            let weight = uniform_vec(&mut rng, c, 2.0);
            let eps = 1e-5;
            let x_buf = gpu.buffer_from("x", &x);
            let w_buf = gpu.buffer_from("weight", &weight);
            let out_buf = gpu.buffer_zeroed("out", (rows * c * 4) as u64);
            run(|enc| op.encode(gpu, enc, &x_buf, &w_buf, &out_buf, m as u32, c as u32, eps));

            let expected = rms_norm_reference(&x, &weight, m, c, eps);
            let actual = read_f32(&out_buf, rows * c);
            assert_close("rms_norm", &actual[..m * c], &expected, 1e-6, 1e-5);
            assert!(
                actual[m * c..].iter().all(|&v| v == 0.0),
                "rows past m were written"
            );
        }
    }
}
