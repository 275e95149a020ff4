//! The AdamW optimizer step on the GPU, with gradient clipping by global
//! norm: `grad_norm.wgsl` reduces the squared norm of every gradient into
//! one value and `adamw.wgsl` scales the gradients by the clip factor as it
//! updates the parameters. Parameters, gradients and both moments are each
//! one flat f32 buffer of N elements.

use anyhow::Result;

use crate::Gpu;
use crate::pass::{Kernel, split_groups};

const GRAD_NORM_SHADER: &str = include_str!("../../../../shaders/grad_norm.wgsl");
const ADAMW_SHADER: &str = include_str!("../../../../shaders/adamw.wgsl");

/// Threads per workgroup of both kernels.
const WORKGROUP_SIZE: u32 = 256;

/// Uniform block of `grad_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GradNormParams {
    n: u32,
    _pad: [u32; 3],
}

const _: () = assert!(size_of::<GradNormParams>() == 16);

/// Hyperparameters of one AdamW step. [`AdamWConfig::default`] gives
/// PyTorch's defaults except the weight decay: lr 1e-3, betas (0.9, 0.999),
/// eps 1e-8, weight decay 0, and clipping at global norm 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Gradients are scaled so their global L2 norm is at most this; 0 or
    /// below turns clipping off.
    pub max_grad_norm: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
        }
    }
}

/// Uniform block of `adamw.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamWParams {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bias1: f32,
    bias2: f32,
    max_norm: f32,
    _pad: [u32; 3],
}

const _: () = assert!(size_of::<AdamWParams>() == 48);

impl AdamWParams {
    /// The uniform block of step `step` (counted from 1).
    fn new(config: &AdamWConfig, n: u32, step: u32) -> Self {
        let (bias1, bias2) = bias_corrections(config, step);
        Self {
            n,
            lr: config.lr,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            weight_decay: config.weight_decay,
            bias1,
            bias2,
            max_norm: config.max_grad_norm,
            _pad: [0; 3],
        }
    }
}

/// Returns `(1 - beta1^step, 1 - beta2^step)`, computed in f64.
fn bias_corrections(config: &AdamWConfig, step: u32) -> (f32, f32) {
    let power = |beta: f32| f64::from(beta).powi(step as i32);
    (
        (1.0 - power(config.beta1)) as f32,
        (1.0 - power(config.beta2)) as f32,
    )
}

/// The squared global L2 norm of a gradient buffer.
pub struct GradNorm {
    kernel: Kernel,
}

impl GradNorm {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "grad_norm", GRAD_NORM_SHADER, "grad_norm")?;
        Ok(Self { kernel })
    }

    /// Records `out[0] = sum_i grad[i]^2` over `grad` f32 `[n]`; `out` is f32
    /// `[1]`.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        grad: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n: u32,
    ) {
        let params = GradNormParams { n, _pad: [0; 3] };
        self.kernel
            .encode(gpu, encoder, &params, &[grad, out], [1, 1, 1]);
    }
}

/// One AdamW update of a flat parameter buffer.
pub struct AdamW {
    kernel: Kernel,
}

impl AdamW {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "adamw", ADAMW_SHADER, "adamw")?;
        Ok(Self { kernel })
    }

    /// Records AdamW step `step` (counted from 1) on `param`, with the
    /// moments `m` and `v`, all f32 `[n]` like `grad`. `sq_norm` f32 `[1]`
    /// holds the squared global gradient norm ([`GradNorm`]) that clipping
    /// reads.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        config: &AdamWConfig,
        step: u32,
        param: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        m: &wgpu::Buffer,
        v: &wgpu::Buffer,
        sq_norm: &wgpu::Buffer,
        n: u32,
    ) {
        let params = AdamWParams::new(config, n, step);
        let groups = split_groups(n.div_ceil(WORKGROUP_SIZE));
        self.kernel
            .encode(gpu, encoder, &params, &[param, grad, m, v, sq_norm], groups);
    }
}

/// Computes [`GradNorm`] on the CPU in f64.
pub fn grad_norm_reference(grad: &[f32]) -> f64 {
    grad.iter().map(|&g| f64::from(g) * f64::from(g)).sum()
}

/// Computes [`AdamW`] step `step` on the CPU in f64, updating `param`, `m`
/// and `v` in place with the gradients clipped by their global norm.
pub fn adamw_reference(
    config: &AdamWConfig,
    step: u32,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let norm = grad_norm_reference(grad).sqrt();
    let max_norm = f64::from(config.max_grad_norm);
    let clip = if max_norm > 0.0 {
        (max_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    };
    let (bias1, bias2) = bias_corrections(config, step);
    let (beta1, beta2) = (f64::from(config.beta1), f64::from(config.beta2));
    let lr = f64::from(config.lr);
    for i in 0..param.len() {
        let g = f64::from(grad[i]) * clip;
        let m_new = beta1 * f64::from(m[i]) + (1.0 - beta1) * g;
        let v_new = beta2 * f64::from(v[i]) + (1.0 - beta2) * g * g;
        m[i] = m_new as f32;
        v[i] = v_new as f32;
        let mut p = f64::from(param[i]) * (1.0 - lr * f64::from(config.weight_decay));
        p -= lr * (m_new / f64::from(bias1))
            / ((v_new / f64::from(bias2)).sqrt() + f64::from(config.eps));
        param[i] = p as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, gpu, read_f32, rng, run, uniform_vec};

    #[test]
    fn grad_norm_matches_reference() {
        let gpu = gpu();
        let op = GradNorm::new(gpu).unwrap();
        let mut rng = rng(80);
        for n in [1, 255, 256, 100_003] {
            let grad = uniform_vec(&mut rng, n, 1.0);
            let grad_buf = gpu.buffer_from("grad", &grad);
            let out_buf = gpu.buffer_zeroed("sq_norm", 4);
            run(|enc| op.encode(gpu, enc, &grad_buf, &out_buf, n as u32));

            let expected = grad_norm_reference(&grad) as f32;
            assert_close(
                &format!("grad_norm n={n}"),
                &read_f32(&out_buf, 1),
                &[expected],
                1e-6,
                1e-5,
            );
        }
    }

    /// Runs three steps, so the moments and bias corrections matter, with
    /// clipping active, inactive and off.
    #[test]
    fn adamw_matches_reference() {
        let gpu = gpu();
        let norm_op = GradNorm::new(gpu).unwrap();
        let adamw = AdamW::new(gpu).unwrap();
        let mut rng = rng(81);
        let n = 70_001;
        for max_grad_norm in [0.5, 1e6, 0.0] {
            let config = AdamWConfig {
                lr: 1e-2,
                weight_decay: 0.1,
                max_grad_norm,
                ..AdamWConfig::default()
            };
            let mut param = uniform_vec(&mut rng, n, 1.0);
            let mut m = vec![0.0; n];
            let mut v = vec![0.0; n];
            let param_buf = gpu.buffer_from("param", &param);
            let m_buf = gpu.buffer_from("m", &m);
            let v_buf = gpu.buffer_from("v", &v);
            let sq_norm_buf = gpu.buffer_zeroed("sq_norm", 4);
            for step in 1..=3 {
                let grad = uniform_vec(&mut rng, n, 0.01);
                let grad_buf = gpu.buffer_from("grad", &grad);
                run(|enc| {
                    norm_op.encode(gpu, enc, &grad_buf, &sq_norm_buf, n as u32);
                    adamw.encode(
                        gpu,
                        enc,
                        &config,
                        step,
                        &param_buf,
                        &grad_buf,
                        &m_buf,
                        &v_buf,
                        &sq_norm_buf,
                        n as u32,
                    );
                });
                adamw_reference(&config, step, &mut param, &grad, &mut m, &mut v);
            }
            let label = format!("max_grad_norm={max_grad_norm}");
            assert_close(
                &format!("{label} param"),
                &read_f32(&param_buf, n),
                &param,
                1e-6,
                1e-5,
            );
            assert_close(&format!("{label} m"), &read_f32(&m_buf, n), &m, 1e-7, 1e-4);
            assert_close(&format!("{label} v"), &read_f32(&v_buf, n), &v, 1e-10, 1e-4);
        }
    }

    /// With clipping, the step must differ from the unclipped one: the
    /// gradient's norm (about 100) is far above the limit.
    #[test]
    fn adamw_reference_clips_large_gradients() {
        let config = AdamWConfig {
            max_grad_norm: 1.0,
            ..AdamWConfig::default()
        };
        let grad = vec![100.0f32; 1];
        let mut clipped = vec![0.0f32];
        let (mut m, mut v) = (vec![0.0], vec![0.0]);
        adamw_reference(&config, 1, &mut clipped, &grad, &mut m, &mut v);
        assert!(
            (m[0] - 0.1 * 1.0).abs() < 1e-5,
            "first moment {} is not 0.1 * clipped gradient",
            m[0]
        );
    }
}
