//! RMS normalization (Zhang and Sennrich, 2019, "Root Mean Square Layer
//! Normalization"): `out = x / sqrt(mean(x^2) + eps) * weight` per row, as in
//! Llama and Qwen2, and its backward pass.

use anyhow::Result;

use crate::Gpu;
use crate::pass::{Kernel, row_grid};

const SHADER: &str = include_str!("../../../../shaders/rms_norm.wgsl");
const ROW_SUM_WORKGROUP: &str = include_str!("../../../../shaders/row_sum_workgroup.wgsl");
const ROW_SUM_LANES: &str = include_str!("../../../../shaders/row_sum_lanes.wgsl");
const BACKWARD_SHADER: &str = include_str!("../../../../shaders/rms_norm_backward.wgsl");
const BACKWARD_WEIGHT_SHADER: &str =
    include_str!("../../../../shaders/rms_norm_backward_weight.wgsl");

/// Uniform block of `rms_norm.wgsl`, `rms_norm_backward.wgsl` and
/// `rms_norm_backward_weight.wgsl`.
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
    /// Compiles the kernel, summing each row in one 8-lane subgroup on CPU
    /// adapters with such subgroups and in a 256-thread workgroup
    /// elsewhere.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Self::with_lanes(gpu, gpu.has_cpu_lanes())
    }

    /// Compiles the kernel with `row_sum_lanes.wgsl` with `lanes`, else
    /// with `row_sum_workgroup.wgsl`.
    fn with_lanes(gpu: &Gpu, lanes: bool) -> Result<Self> {
        // The label names the variant in profiles.
        let label = if lanes { "rms_norm_lanes" } else { "rms_norm" };
        let source = format!("{}\n{SHADER}", row_sum(lanes));
        let kernel = Kernel::new(gpu, label, &source, "rms_norm")?;
        Ok(Self { kernel })
    }
    /// Records `out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight`
    /// for rows `r < m`. `x` and `out` are f32 `[M, C]`, `weight` is f32 `[C]`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
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
            row_grid(1, m),
        );
    }
}

/// Backward pass of [`RmsNorm`]: the input gradient and the accumulated
/// weight gradient.
pub struct RmsNormBackward {
    input_kernel: Kernel,
    weight_kernel: Kernel,
}

impl RmsNormBackward {
    /// Compiles the kernels, the input gradient's summing each row as
    /// [`RmsNorm::new`] does.
    ///
    /// # Errors
    ///
    /// Fails when a shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Self::with_lanes(gpu, gpu.has_cpu_lanes())
    }

    /// Compiles the input gradient's kernel with `row_sum_lanes.wgsl` with
    /// `lanes`, else with `row_sum_workgroup.wgsl`, and the weight
    /// gradient's kernel.
    fn with_lanes(gpu: &Gpu, lanes: bool) -> Result<Self> {
        let label = if lanes {
            "rms_norm_backward_lanes"
        } else {
            "rms_norm_backward"
        };
        let source = format!("{}\n{BACKWARD_SHADER}", row_sum(lanes));
        let input_kernel = Kernel::new(gpu, label, &source, "rms_norm_backward")?;
        let weight_kernel = Kernel::new(
            gpu,
            "rms_norm_backward_weight",
            BACKWARD_WEIGHT_SHADER,
            "rms_norm_backward_weight",
        )?;
        Ok(Self {
            input_kernel,
            weight_kernel,
        })
    }

    /// Records, for rows `r < m` of `x` and `dy` f32 `[M, C]`, the input
    /// gradient `dx` f32 `[M, C]` (overwritten) and `d_weight += sum_r
    /// dy[r] * x[r] / rms(x[r])` into `d_weight` f32 `[C]` (accumulated, so
    /// the caller zeroes it once per step).
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        x: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        d_weight: &wgpu::Buffer,
        m: u32,
        c: u32,
        eps: f32,
    ) {
        let params = RmsNormParams { m, c, eps, _pad: 0 };
        let inv_rms = gpu.buffer_zeroed("rms_norm_backward inv_rms", u64::from(m) * 4);
        let buffers = [x, weight, dy, dx, &inv_rms];
        self.input_kernel
            .encode(gpu, encoder, &params, &buffers, row_grid(1, m));
        // NOTE: one thread per column loops over all M rows, so only
        // ceil(C / 256) workgroups run; a wide GPU would want the rows split.
        let buffers = [x, dy, &inv_rms, d_weight];
        let groups = [c.div_ceil(256), 1, 1];
        self.weight_kernel
            .encode(gpu, encoder, &params, &buffers, groups);
    }
}

/// Returns the row-sum snippet: the lane one with `lanes`, the workgroup
/// one otherwise.
fn row_sum(lanes: bool) -> &'static str {
    if lanes {
        ROW_SUM_LANES
    } else {
        ROW_SUM_WORKGROUP
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

/// Computes [`RmsNormBackward`] on the CPU in f64 and returns
/// `(dx, d_weight)` for `x` and `dy` f32 `[m, c]`, with `d_weight` summed
/// over the rows from zero.
pub fn rms_norm_backward_reference(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    m: usize,
    c: usize,
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0; m * c];
    let mut d_weight = vec![0.0f64; c];
    for r in 0..m {
        let row = &x[r * c..(r + 1) * c];
        let grad = &dy[r * c..(r + 1) * c];
        let mean_sq = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / c as f64;
        let inv_rms = 1.0 / (mean_sq + f64::from(eps)).sqrt();
        let dot: f64 = (0..c)
            .map(|i| f64::from(weight[i]) * f64::from(grad[i]) * f64::from(row[i]))
            .sum();
        let correction = inv_rms.powi(3) / c as f64 * dot;
        for i in 0..c {
            let (xi, gi, wi) = (f64::from(row[i]), f64::from(grad[i]), f64::from(weight[i]));
            dx[r * c + i] = (inv_rms * wi * gi - correction * xi) as f32;
            d_weight[i] += gi * xi * inv_rms;
        }
    }
    (dx, d_weight.into_iter().map(|g| g as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, gpu, read_f32, rng, run, uniform_vec};

    /// Returns the row-sum variants to test: the workgroup one, and the
    /// lane one where the adapter runs it.
    fn row_sum_variants() -> Vec<bool> {
        if gpu().has_cpu_lanes() {
            vec![false, true]
        } else {
            vec![false]
        }
    }

    #[test]
    fn rms_norm_matches_reference() {
        for lanes in row_sum_variants() {
            check_rms_norm(&RmsNorm::with_lanes(gpu(), lanes).unwrap());
        }
    }

    fn check_rms_norm(op: &RmsNorm) {
        let gpu = gpu();
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

    #[test]
    fn rms_norm_backward_matches_reference() {
        for lanes in row_sum_variants() {
            check_rms_norm_backward(&RmsNormBackward::with_lanes(gpu(), lanes).unwrap());
        }
    }

    fn check_rms_norm_backward(op: &RmsNormBackward) {
        let gpu = gpu();
        let mut rng = rng(8);
        for (m, c) in [(1, 1), (3, 7), (5, 300), (17, 576)] {
            let x = uniform_vec(&mut rng, m * c, 2.0);
            let weight = uniform_vec(&mut rng, c, 2.0);
            let dy = uniform_vec(&mut rng, m * c, 1.0);
            let initial_d_weight = uniform_vec(&mut rng, c, 1.0);
            let eps = 1e-5;
            let x_buf = gpu.buffer_from("x", &x);
            let w_buf = gpu.buffer_from("weight", &weight);
            let dy_buf = gpu.buffer_from("dy", &dy);
            let dx_buf = gpu.buffer_zeroed("dx", (m * c * 4) as u64);
            let dw_buf = gpu.buffer_from("d_weight", &initial_d_weight);
            let (m32, c32) = (m as u32, c as u32);
            run(|enc| {
                op.encode(
                    gpu, enc, &x_buf, &w_buf, &dy_buf, &dx_buf, &dw_buf, m32, c32, eps,
                )
            });

            let (dx, d_weight) = rms_norm_backward_reference(&x, &weight, &dy, m, c, eps);
            let accumulated: Vec<f32> = initial_d_weight
                .iter()
                .zip(&d_weight)
                .map(|(a, b)| a + b)
                .collect();
            let label = format!("m={m} c={c}");
            assert_close(
                &format!("dx {label}"),
                &read_f32(&dx_buf, m * c),
                &dx,
                1e-5,
                1e-4,
            );
            let actual_dw = read_f32(&dw_buf, c);
            assert_close(
                &format!("d_weight {label}"),
                &actual_dw,
                &accumulated,
                1e-5,
                1e-4,
            );
        }
    }

    /// Checks `rms_norm_backward_reference` against central finite
    /// differences of `loss = sum(rms_norm(x, weight) * dy)`.
    #[test]
    fn rms_norm_backward_matches_finite_differences() {
        let mut rng = rng(9);
        let (m, c, eps) = (2, 5, 1e-5);
        let x = uniform_vec(&mut rng, m * c, 2.0);
        let weight = uniform_vec(&mut rng, c, 2.0);
        let dy = uniform_vec(&mut rng, m * c, 1.0);
        let loss = |x: &[f32], weight: &[f32]| -> f64 {
            let out = rms_norm_reference(x, weight, m, c, eps);
            out.iter()
                .zip(&dy)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum()
        };
        let (dx, d_weight) = rms_norm_backward_reference(&x, &weight, &dy, m, c, eps);
        let step = 1e-2;
        for i in 0..m * c {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus[i] += step;
            minus[i] -= step;
            let numeric =
                (loss(&plus, &weight) - loss(&minus, &weight)) / f64::from(plus[i] - minus[i]);
            assert_close(&format!("dx[{i}]"), &[dx[i]], &[numeric as f32], 1e-4, 1e-3);
        }
        for i in 0..c {
            let (mut plus, mut minus) = (weight.clone(), weight.clone());
            plus[i] += step;
            minus[i] -= step;
            let numeric = (loss(&x, &plus) - loss(&x, &minus)) / f64::from(plus[i] - minus[i]);
            assert_close(
                &format!("d_weight[{i}]"),
                &[d_weight[i]],
                &[numeric as f32],
                1e-4,
                1e-3,
            );
        }
    }

    /// More than 65535 rows need the z dimension of the grid.
    #[test]
    fn rms_norm_rows_past_dispatch_limit() {
        let gpu = gpu();
        let op = RmsNorm::new(gpu).unwrap();
        let mut rng = rng(10);
        let (m, c) = (65_537, 3);
        let x = uniform_vec(&mut rng, m * c, 3.0);
        let weight = uniform_vec(&mut rng, c, 2.0);
        let x_buf = gpu.buffer_from("x", &x);
        let w_buf = gpu.buffer_from("weight", &weight);
        let out_buf = gpu.buffer_zeroed("out", (m * c * 4) as u64);
        run(|enc| op.encode(gpu, enc, &x_buf, &w_buf, &out_buf, m as u32, c as u32, 1e-5));

        let expected = rms_norm_reference(&x, &weight, m, c, 1e-5);
        assert_close(
            "rms_norm 65537 rows",
            &read_f32(&out_buf, m * c),
            &expected,
            1e-6,
            1e-5,
        );
    }
}
