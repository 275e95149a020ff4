//! Products of small f32 matrices stored at element offsets of flat
//! buffers: the LoRA adapter's forward and backward products, whose
//! operands are slices of one parameter buffer and one gradient buffer.
//!
//! Dimension letters: M rows of the product, N its columns, K the summed
//! dimension.

use anyhow::Result;

use crate::Gpu;
use crate::device::groups;
use crate::pass::Kernel;

const SHADER: &str = include_str!("../../../../shaders/dense_matmul.wgsl");
const LANES_SHADER: &str = include_str!("../../../../shaders/dense_matmul_lanes.wgsl");

/// Output tile edge of `dense_matmul.wgsl`.
const TILE: u32 = 16;
/// Output tile edge of `dense_matmul_lanes.wgsl`.
const LANES_TILE: u32 = 8;

/// Uniform block of `dense_matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DenseParams {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    a_offset: u32,
    b_offset: u32,
    out_offset: u32,
    alpha: f32,
}

const _: () = assert!(size_of::<DenseParams>() == 32);

const FLAG_ACCUMULATE: u32 = 1;
const FLAG_A_TRANSPOSED: u32 = 2;
const FLAG_B_K_BY_N: u32 = 4;

/// How an operand matrix is laid out in its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row-major with the summed dimension K contiguous: `a` as [M, K],
    /// `b` as [N, K] (a weight matrix, [out, in]).
    KContiguous,
    /// Row-major with K as the row index: `a` as [K, M], `b` as [K, N].
    KMajor,
}

/// One operand: a buffer, the element offset of the matrix in it, and its
/// layout.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u32,
    pub layout: Layout,
}

impl<'a> Operand<'a> {
    /// An operand stored [rows, K] from element 0 of `buffer`.
    pub fn rows(buffer: &'a wgpu::Buffer) -> Self {
        Self {
            buffer,
            offset: 0,
            layout: Layout::KContiguous,
        }
    }

    /// An operand stored [rows, K] from element `offset` of `buffer`.
    pub fn rows_at(buffer: &'a wgpu::Buffer, offset: u32) -> Self {
        Self {
            buffer,
            offset,
            layout: Layout::KContiguous,
        }
    }

    /// An operand stored [K, columns] from element `offset` of `buffer`.
    pub fn k_major_at(buffer: &'a wgpu::Buffer, offset: u32) -> Self {
        Self {
            buffer,
            offset,
            layout: Layout::KMajor,
        }
    }
}

/// The shape and output of one [`DenseMatmul`] product.
#[derive(Clone, Copy, Debug)]
pub struct DenseShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    /// Scale applied to the product before it is stored or added.
    pub alpha: f32,
    /// Add to `out` instead of overwriting it.
    pub accumulate: bool,
}

/// `out = alpha * a · b (+ out)` for f32 matrices at offsets of flat
/// buffers.
pub struct DenseMatmul {
    kernel: Kernel,
    /// `dense_matmul_lanes.wgsl`, on CPU adapters with 8-lane subgroups.
    lanes: Option<Kernel>,
}

impl DenseMatmul {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "dense_matmul", SHADER, "dense_matmul")?;
        let lanes = if gpu.has_cpu_lanes() {
            Some(Kernel::new(
                gpu,
                "dense_matmul_lanes",
                LANES_SHADER,
                "dense_matmul_lanes",
            )?)
        } else {
            None
        };
        Ok(Self { kernel, lanes })
    }

    /// Records `out[m, n] (+)= alpha * sum_k a(m, k) * b(k, n)` for the
    /// [M, N] block of `out` f32 starting at element `out_offset`.
    ///
    /// # Panics
    ///
    /// Panics when an operand or the output reaches past its buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        a: Operand<'_>,
        b: Operand<'_>,
        out: &wgpu::Buffer,
        out_offset: u32,
        shape: DenseShape,
    ) {
        let DenseShape {
            m,
            n,
            k,
            alpha,
            accumulate,
        } = shape;
        let (m64, n64, k64) = (u64::from(m), u64::from(n), u64::from(k));
        check_size("a", a.buffer, a.offset, m64 * k64);
        check_size("b", b.buffer, b.offset, n64 * k64);
        check_size("out", out, out_offset, m64 * n64);
        let mut flags = 0;
        if accumulate {
            flags |= FLAG_ACCUMULATE;
        }
        if a.layout == Layout::KMajor {
            flags |= FLAG_A_TRANSPOSED;
        }
        if b.layout == Layout::KMajor {
            flags |= FLAG_B_K_BY_N;
        }
        let params = DenseParams {
            m,
            n,
            k,
            flags,
            a_offset: a.offset,
            b_offset: b.offset,
            out_offset,
            alpha,
        };
        let (kernel, tile) = match &self.lanes {
            Some(lanes) => (lanes, LANES_TILE),
            None => (&self.kernel, TILE),
        };
        let workgroups = [groups(n, tile), groups(m, tile), 1];
        kernel.encode(
            gpu,
            encoder,
            &params,
            &[a.buffer, b.buffer, out],
            workgroups,
        );
    }
}

/// Panics unless `buffer` holds `values` f32s from element `offset`.
fn check_size(name: &str, buffer: &wgpu::Buffer, offset: u32, values: u64) {
    let needed = (u64::from(offset) + values) * 4;
    assert!(
        buffer.size() >= needed,
        "dense_matmul: `{name}` buffer has {} bytes, expected at least {needed}",
        buffer.size()
    );
}

/// Computes [`DenseMatmul`] on the CPU in f64: returns the [m, n] product
/// `alpha * a · b + initial` for `a` and `b` laid out as given.
#[allow(clippy::too_many_arguments)]
pub fn dense_matmul_reference(
    a: &[f32],
    a_layout: Layout,
    b: &[f32],
    b_layout: Layout,
    initial: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    alpha: f32,
) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0.0f64;
            for l in 0..k {
                let x = match a_layout {
                    Layout::KContiguous => a[i * k + l],
                    Layout::KMajor => a[l * m + i],
                };
                let y = match b_layout {
                    Layout::KContiguous => b[j * k + l],
                    Layout::KMajor => b[l * n + j],
                };
                sum += f64::from(x) * f64::from(y);
            }
            let start = initial.map_or(0.0, |init| f64::from(init[i * n + j]));
            out[i * n + j] = (f64::from(alpha) * sum + start) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, gpu, read_f32, rng, run, uniform_vec};

    /// Runs every layout pair at shapes off the 16-element tile, with the
    /// operands and the output at nonzero offsets.
    #[test]
    fn dense_matmul_matches_reference() {
        let gpu = gpu();
        let op = DenseMatmul::new(gpu).unwrap();
        let mut rng = rng(70);
        let layouts = [Layout::KContiguous, Layout::KMajor];
        for (m, n, k) in [(1, 1, 1), (17, 5, 33), (40, 16, 7), (3, 70, 100)] {
            for a_layout in layouts {
                for b_layout in layouts {
                    for accumulate in [false, true] {
                        let (a_off, b_off, out_off) = (3usize, 5usize, 7usize);
                        let a = uniform_vec(&mut rng, a_off + m * k, 1.0);
                        let b = uniform_vec(&mut rng, b_off + n * k, 1.0);
                        let initial = uniform_vec(&mut rng, out_off + m * n + 2, 1.0);
                        let a_buf = gpu.buffer_from("a", &a);
                        let b_buf = gpu.buffer_from("b", &b);
                        let out_buf = gpu.buffer_from("out", &initial);
                        let shape = DenseShape {
                            m: m as u32,
                            n: n as u32,
                            k: k as u32,
                            alpha: 0.75,
                            accumulate,
                        };
                        let a_op = Operand {
                            buffer: &a_buf,
                            offset: a_off as u32,
                            layout: a_layout,
                        };
                        let b_op = Operand {
                            buffer: &b_buf,
                            offset: b_off as u32,
                            layout: b_layout,
                        };
                        run(|enc| op.encode(gpu, enc, a_op, b_op, &out_buf, out_off as u32, shape));

                        let start = &initial[out_off..out_off + m * n];
                        let expected = dense_matmul_reference(
                            &a[a_off..],
                            a_layout,
                            &b[b_off..],
                            b_layout,
                            accumulate.then_some(start),
                            (m, n, k),
                            0.75,
                        );
                        let actual = read_f32(&out_buf, out_off + m * n + 2);
                        let label =
                            format!("{m}x{n}x{k} {a_layout:?} {b_layout:?} acc={accumulate}");
                        assert_close(
                            &label,
                            &actual[out_off..out_off + m * n],
                            &expected,
                            1e-5,
                            1e-5,
                        );
                        assert_eq!(
                            &actual[..out_off],
                            &initial[..out_off],
                            "{label}: wrote before offset"
                        );
                        assert_eq!(
                            &actual[out_off + m * n..],
                            &initial[out_off + m * n..],
                            "{label}: wrote past the block"
                        );
                    }
                }
            }
        }
    }
}
