//! Rotary position embedding (Su et al., 2021, "RoFormer: Enhanced
//! Transformer with Rotary Position Embedding") applied in place to query or
//! key heads, and its backward pass.

use anyhow::Result;

use crate::Gpu;
use crate::pass::{Kernel, row_grid};

const SHADER: &str = include_str!("../../../../shaders/rope.wgsl");

/// The largest head size the kernel's frequency table holds.
pub const MAX_HEAD_DIM: u32 = 256;

/// The pairing of a head's elements into rotated pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Pair `(x[2i], x[2i + 1])`, as in GGUF llama checkpoints.
    Adjacent,
    /// Pair `(x[i], x[i + D/2])`, as in Hugging Face and GGUF qwen2
    /// checkpoints.
    Halves,
}

/// Uniform block of `rope.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    m: u32,
    heads: u32,
    head_dim: u32,
    pair_layout: u32,
    direction: f32,
    _pad: [u32; 3],
    inv_freq: [f32; MAX_HEAD_DIM as usize / 2],
}

const _: () = assert!(size_of::<RopeParams>() == 32 + 4 * 128);

/// Returns `theta^(-2i / head_dim)` for each pair `i`, computed in f64 and
/// rounded to f32 as Hugging Face and llama.cpp store it.
pub fn rope_inv_freq(head_dim: u32, theta: f32) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| f64::from(theta).powf(-2.0 * f64::from(i) / f64::from(head_dim)) as f32)
        .collect()
}

/// Rotary position embedding, applied in place.
pub struct Rope {
    kernel: Kernel,
}

impl Rope {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "rope", SHADER, "rope")?;
        Ok(Self { kernel })
    }

    /// Records the rotation of rows `r < m` of `x` f32 `[M, heads, D]` in
    /// place, pair `i` of row `r` by `positions[r] * theta^(-2i/D)`.
    /// `positions` is u32 `[M]`.
    ///
    /// # Panics
    ///
    /// Panics when `head_dim` is odd or above [`MAX_HEAD_DIM`].
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        x: &wgpu::Buffer,
        positions: &wgpu::Buffer,
        m: u32,
        heads: u32,
        head_dim: u32,
        theta: f32,
        layout: RopeLayout,
    ) {
        let args = RopeArgs {
            m,
            heads,
            head_dim,
            theta,
            layout,
        };
        encode_rotation(gpu, encoder, &self.kernel, x, positions, args, 1.0);
    }
}

/// Backward pass of [`Rope`]: rotates gradients back by the same angles,
/// because the transpose of a rotation is its inverse.
pub struct RopeBackward {
    kernel: Kernel,
}

impl RopeBackward {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "rope_backward", SHADER, "rope")?;
        Ok(Self { kernel })
    }

    /// Records `dx = R^T dy` in place on `grad` f32 `[M, heads, D]`, with the
    /// arguments of [`Rope::encode`].
    ///
    /// # Panics
    ///
    /// Panics when `head_dim` is odd or above [`MAX_HEAD_DIM`].
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        grad: &wgpu::Buffer,
        positions: &wgpu::Buffer,
        m: u32,
        heads: u32,
        head_dim: u32,
        theta: f32,
        layout: RopeLayout,
    ) {
        let args = RopeArgs {
            m,
            heads,
            head_dim,
            theta,
            layout,
        };
        encode_rotation(gpu, encoder, &self.kernel, grad, positions, args, -1.0);
    }
}

/// Shape and frequency arguments shared by [`Rope`] and [`RopeBackward`].
/// Returns the inverse frequencies of [`rope_inv_freq`] padded to the
/// fixed-size table of the kernels' uniform block.
///
/// # Panics
///
/// When `head_dim` is odd or above [`MAX_HEAD_DIM`]; `kernel` names the
/// caller in the message.
fn uniform_inv_freq(kernel: &str, head_dim: u32, theta: f32) -> [f32; MAX_HEAD_DIM as usize / 2] {
    assert!(
        head_dim.is_multiple_of(2) && head_dim <= MAX_HEAD_DIM,
        "{kernel}: head_dim {head_dim} must be even and at most {MAX_HEAD_DIM}"
    );
    let mut inv_freq = [0.0; MAX_HEAD_DIM as usize / 2];
    let table = rope_inv_freq(head_dim, theta);
    inv_freq[..table.len()].copy_from_slice(&table);
    inv_freq
}

const ROPE_KV_SHADER: &str = include_str!("../../../../shaders/rope_kv_write.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeKvParams {
    m: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    pair_layout: u32,
    max_len: u32,
    _pad: [u32; 2],
    inv_freq: [f32; MAX_HEAD_DIM as usize / 2],
}

const _: () = assert!(size_of::<RopeKvParams>() == 32 + 4 * 128);

/// The shapes of one [`RopeKvWrite`] pass.
#[derive(Clone, Copy, Debug)]
pub struct RopeKvShape {
    /// Rows (tokens) in the pass.
    pub m: u32,
    /// Query heads H.
    pub heads: u32,
    /// Key and value heads G.
    pub kv_heads: u32,
    /// Head size D, even and at most [`MAX_HEAD_DIM`].
    pub head_dim: u32,
    /// Positions per slot in the cache.
    pub max_len: u32,
    pub theta: f32,
    pub layout: RopeLayout,
}

/// RoPE on q and k plus the KV-cache append of one layer, in one dispatch
/// (`rope_kv_write.wgsl`). It rotates q in place and writes the rotated k
/// and the unchanged v to the cache at each row's (slot, position). The k
/// buffer itself is left as it was.
pub struct RopeKvWrite {
    kernel: Kernel,
}

impl RopeKvWrite {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "rope_kv_write", ROPE_KV_SHADER, "rope_kv_write")?;
        Ok(Self { kernel })
    }

    /// Encodes the pass. `rows` contains (slot, position) u32 pairs, one per
    /// row; q is f32 `[m, heads, head_dim]`, k and v f32
    /// `[m, kv_heads, head_dim]`, the caches f32
    /// `[slots, max_len, kv_heads, head_dim]`.
    ///
    /// # Panics
    ///
    /// When the head size is odd or above [`MAX_HEAD_DIM`].
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        rows: &wgpu::Buffer,
        k_cache: &wgpu::Buffer,
        v_cache: &wgpu::Buffer,
        shape: RopeKvShape,
    ) {
        let RopeKvShape {
            m,
            heads,
            kv_heads,
            head_dim,
            max_len,
            theta,
            layout,
        } = shape;
        let inv_freq = uniform_inv_freq("rope_kv_write", head_dim, theta);
        let params = RopeKvParams {
            m,
            heads,
            kv_heads,
            head_dim,
            pair_layout: match layout {
                RopeLayout::Adjacent => 0,
                RopeLayout::Halves => 1,
            },
            max_len,
            _pad: [0; 2],
            inv_freq,
        };
        let pairs = (heads + 2 * kv_heads) * (head_dim / 2);
        self.kernel.encode(
            gpu,
            encoder,
            &params,
            &[q, k, v, rows, k_cache, v_cache],
            row_grid(pairs.div_ceil(256), m),
        );
    }
}

struct RopeArgs {
    m: u32,
    heads: u32,
    head_dim: u32,
    theta: f32,
    layout: RopeLayout,
}

#[allow(clippy::too_many_arguments)]
fn encode_rotation(
    gpu: &Gpu,
    encoder: &mut crate::Encoder,
    kernel: &Kernel,
    x: &wgpu::Buffer,
    positions: &wgpu::Buffer,
    args: RopeArgs,
    direction: f32,
) {
    let RopeArgs {
        m,
        heads,
        head_dim,
        theta,
        layout,
    } = args;
    let inv_freq = uniform_inv_freq("rope", head_dim, theta);
    let params = RopeParams {
        m,
        heads,
        head_dim,
        pair_layout: match layout {
            RopeLayout::Adjacent => 0,
            RopeLayout::Halves => 1,
        },
        direction,
        _pad: [0; 3],
        inv_freq,
    };
    let pairs = heads * (head_dim / 2);
    kernel.encode(
        gpu,
        encoder,
        &params,
        &[x, positions],
        row_grid(pairs.div_ceil(256), m),
    );
}

/// Returns the element indices `(a, b)` of pair `i` within a head.
fn pair_indices(i: usize, head_dim: usize, layout: RopeLayout) -> (usize, usize) {
    match layout {
        RopeLayout::Adjacent => (2 * i, 2 * i + 1),
        RopeLayout::Halves => (i, i + head_dim / 2),
    }
}

/// Rotates every pair of `x` f32 `[m, heads, head_dim]` by `direction` times
/// its angle. The angle is an f32 product as on the GPU; sin and cos are f64.
fn rotate_reference(
    x: &mut [f32],
    positions: &[u32],
    heads: usize,
    head_dim: usize,
    theta: f32,
    layout: RopeLayout,
    direction: f64,
) {
    let inv_freq = rope_inv_freq(head_dim as u32, theta);
    for (r, &pos) in positions.iter().enumerate() {
        for h in 0..heads {
            let base = (r * heads + h) * head_dim;
            for (i, &freq) in inv_freq.iter().enumerate() {
                let angle = f64::from(pos as f32 * freq);
                let (sin, cos) = angle.sin_cos();
                let sin = direction * sin;
                let (ia, ib) = pair_indices(i, head_dim, layout);
                let a = f64::from(x[base + ia]);
                let b = f64::from(x[base + ib]);
                x[base + ia] = (a * cos - b * sin) as f32;
                x[base + ib] = (a * sin + b * cos) as f32;
            }
        }
    }
}

/// Computes [`Rope`] on the CPU: returns `x` f32 `[m, heads, head_dim]`
/// rotated for row positions `positions` u32 `[m]`.
pub fn rope_reference(
    x: &[f32],
    positions: &[u32],
    heads: usize,
    head_dim: usize,
    theta: f32,
    layout: RopeLayout,
) -> Vec<f32> {
    let mut out = x.to_vec();
    rotate_reference(&mut out, positions, heads, head_dim, theta, layout, 1.0);
    out
}

/// Computes [`RopeBackward`] on the CPU: returns `dx` for `dy` f32
/// `[m, heads, head_dim]`.
pub fn rope_backward_reference(
    dy: &[f32],
    positions: &[u32],
    heads: usize,
    head_dim: usize,
    theta: f32,
    layout: RopeLayout,
) -> Vec<f32> {
    let mut dx = dy.to_vec();
    rotate_reference(&mut dx, positions, heads, head_dim, theta, layout, -1.0);
    dx
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;
    use crate::testing::{assert_close, gpu, read_f32, rng, run, uniform_vec};

    const THETA: f32 = 10_000.0;

    /// Runs [`Rope`] (or [`RopeBackward`] when `backward`) on the GPU.
    fn rotate_on_gpu(
        x: &[f32],
        positions: &[u32],
        heads: usize,
        head_dim: usize,
        layout: RopeLayout,
        backward: bool,
    ) -> Vec<f32> {
        let gpu = gpu();
        let m = positions.len() as u32;
        let x_buf = gpu.buffer_from("x", x);
        let pos_buf = gpu.buffer_from("positions", positions);
        let (heads_u32, dim_u32) = (heads as u32, head_dim as u32);
        if backward {
            let op = RopeBackward::new(gpu).unwrap();
            run(|enc| {
                op.encode(
                    gpu, enc, &x_buf, &pos_buf, m, heads_u32, dim_u32, THETA, layout,
                )
            });
        } else {
            let op = Rope::new(gpu).unwrap();
            run(|enc| {
                op.encode(
                    gpu, enc, &x_buf, &pos_buf, m, heads_u32, dim_u32, THETA, layout,
                )
            });
        }
        read_f32(&x_buf, x.len())
    }

    #[test]
    fn rope_matches_reference_both_layouts() {
        let mut rng = rng(2);
        for layout in [RopeLayout::Adjacent, RopeLayout::Halves] {
            for (m, heads, head_dim) in [(1, 1, 2), (3, 5, 6), (7, 9, 64), (2, 3, 128), (5, 2, 256)]
            {
                let x = uniform_vec(&mut rng, m * heads * head_dim, 1.0);
                let positions: Vec<u32> = (0..m).map(|_| rng.random_range(0..128)).collect();
                let actual = rotate_on_gpu(&x, &positions, heads, head_dim, layout, false);
                let expected = rope_reference(&x, &positions, heads, head_dim, THETA, layout);
                let label = format!("rope {layout:?} m={m} heads={heads} D={head_dim}");
                assert_close(&label, &actual, &expected, 2e-6, 1e-5);
            }
        }
    }

    #[test]
    fn rope_kv_write_matches_separate_passes() {
        let gpu = gpu();
        let mut rng = rng(4);
        let op = RopeKvWrite::new(gpu).unwrap();
        for layout in [RopeLayout::Adjacent, RopeLayout::Halves] {
            for (heads, kv_heads, head_dim) in [(3, 1, 6), (9, 3, 64), (4, 4, 128)] {
                let (slots, max_len) = (3usize, 5usize);
                let rows: Vec<(u32, u32)> = vec![(2, 4), (0, 0), (1, 3), (2, 1)];
                let m = rows.len();
                let q = uniform_vec(&mut rng, m * heads * head_dim, 1.0);
                let k = uniform_vec(&mut rng, m * kv_heads * head_dim, 1.0);
                let v = uniform_vec(&mut rng, m * kv_heads * head_dim, 1.0);
                let width = kv_heads * head_dim;
                let cache_len = slots * max_len * width;
                let k_cache = uniform_vec(&mut rng, cache_len, 1.0);
                let v_cache = uniform_vec(&mut rng, cache_len, 1.0);

                let positions: Vec<u32> = rows.iter().map(|r| r.1).collect();
                let q_expected = rope_reference(&q, &positions, heads, head_dim, THETA, layout);
                let k_rotated = rope_reference(&k, &positions, kv_heads, head_dim, THETA, layout);
                let (mut k_expected, mut v_expected) = (k_cache.clone(), v_cache.clone());
                for (r, &(slot, pos)) in rows.iter().enumerate() {
                    let dst = (slot as usize * max_len + pos as usize) * width;
                    k_expected[dst..dst + width].copy_from_slice(&k_rotated[r * width..][..width]);
                    v_expected[dst..dst + width].copy_from_slice(&v[r * width..][..width]);
                }

                let flat_rows: Vec<u32> = rows.iter().flat_map(|r| [r.0, r.1]).collect();
                let bufs = [&q, &k, &v, &k_cache, &v_cache].map(|d| gpu.buffer_from("t", d));
                let rows_buf = gpu.buffer_from("rows", &flat_rows);
                let shape = RopeKvShape {
                    m: m as u32,
                    heads: heads as u32,
                    kv_heads: kv_heads as u32,
                    head_dim: head_dim as u32,
                    max_len: max_len as u32,
                    theta: THETA,
                    layout,
                };
                run(|enc| {
                    op.encode(
                        gpu, enc, &bufs[0], &bufs[1], &bufs[2], &rows_buf, &bufs[3], &bufs[4],
                        shape,
                    )
                });
                let label = format!("rope_kv_write {layout:?} H={heads} G={kv_heads} D={head_dim}");
                let q_actual = read_f32(&bufs[0], q.len());
                assert_close(&format!("{label} q"), &q_actual, &q_expected, 2e-6, 1e-5);
                let k_actual = read_f32(&bufs[1], k.len());
                assert_eq!(k_actual, k, "{label}: k changed");
                let k_cache_actual = read_f32(&bufs[3], cache_len);
                let label_k = format!("{label} k_cache");
                assert_close(&label_k, &k_cache_actual, &k_expected, 2e-6, 1e-5);
                let v_cache_actual = read_f32(&bufs[4], cache_len);
                assert_eq!(v_cache_actual, v_expected, "{label}: v_cache");
            }
        }
    }

    #[test]
    fn rope_accurate_at_large_positions() {
        let mut rng = rng(3);
        let (heads, head_dim) = (2, 64);
        let positions = [1000, 4095, 8191, 32767];
        let x = uniform_vec(&mut rng, positions.len() * heads * head_dim, 1.0);
        let layout = RopeLayout::Halves;
        let actual = rotate_on_gpu(&x, &positions, heads, head_dim, layout, false);
        let expected = rope_reference(&x, &positions, heads, head_dim, THETA, layout);
        // Both sides form the same f32 angle, so what remains is sin and cos after
        // range reduction of an angle up to 32767 rad.
        assert_close("rope at large positions", &actual, &expected, 2e-5, 1e-5);
    }

    #[test]
    fn rope_leaves_position_zero_unchanged() {
        let mut rng = rng(4);
        let x = uniform_vec(&mut rng, 3 * 16, 1.0);
        let actual = rotate_on_gpu(&x, &[0], 3, 16, RopeLayout::Adjacent, false);
        assert_close("rope at position 0", &actual, &x, 0.0, 0.0);
    }

    #[test]
    fn rope_backward_matches_reference() {
        let mut rng = rng(5);
        for layout in [RopeLayout::Adjacent, RopeLayout::Halves] {
            let (heads, head_dim) = (3, 10);
            let positions = [0, 5, 77];
            let dy = uniform_vec(&mut rng, positions.len() * heads * head_dim, 1.0);
            let actual = rotate_on_gpu(&dy, &positions, heads, head_dim, layout, true);
            let expected = rope_backward_reference(&dy, &positions, heads, head_dim, THETA, layout);
            assert_close("rope_backward", &actual, &expected, 2e-6, 1e-5);
        }
    }

    /// Checks `rope_backward_reference` against central finite differences
    /// of `loss = sum(rope(x) * dy)`, whose gradient in `x` is `R^T dy`.
    #[test]
    fn rope_backward_matches_finite_differences() {
        let mut rng = rng(6);
        for layout in [RopeLayout::Adjacent, RopeLayout::Halves] {
            let (heads, head_dim) = (2, 6);
            let positions = [3, 11];
            let n = positions.len() * heads * head_dim;
            let x: Vec<f32> = uniform_vec(&mut rng, n, 1.0);
            let dy: Vec<f32> = uniform_vec(&mut rng, n, 1.0);
            let loss = |x: &[f32]| -> f64 {
                let y = rope_reference(x, &positions, heads, head_dim, THETA, layout);
                y.iter()
                    .zip(&dy)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum()
            };
            let dx = rope_backward_reference(&dy, &positions, heads, head_dim, THETA, layout);
            let step = 1e-2;
            for i in 0..n {
                let mut plus = x.clone();
                plus[i] += step;
                let mut minus = x.clone();
                minus[i] -= step;
                let numeric = ((loss(&plus) - loss(&minus)) / (2.0 * f64::from(step))) as f32;
                assert_close(
                    &format!("rope dx[{i}] {layout:?}"),
                    &[dx[i]],
                    &[numeric],
                    1e-4,
                    1e-3,
                );
            }
        }
    }
}
