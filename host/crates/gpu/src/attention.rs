//! The KV cache write and causal grouped-query attention (Ainslie et al.,
//! 2023, "GQA") over it, with an online softmax (Milakov and Gimelshein,
//! 2018, "Online normalizer calculation for softmax").
//!
//! The KV cache of one layer is a pair of f32 buffers `[S, T, G, D]`: S
//! sequence slots, T = `max_len` positions, G kv heads, D head size. Each
//! activation row carries its `(slot, position)` in a u32 `[M, 2]` buffer,
//! so one dispatch serves prefill (many rows of one or several sequences)
//! and decode (one row per sequence, each at its own position).

use anyhow::Result;

use crate::Gpu;
use crate::pass::{Kernel, row_grid};

const KV_WRITE_SHADER: &str = include_str!("../../../../shaders/kv_write.wgsl");
const ATTENTION_SHADER: &str = include_str!("../../../../shaders/attention.wgsl");
const ATTENTION_LANES_SHADER: &str = include_str!("../../../../shaders/attention_lanes.wgsl");
/// Head sizes `attention_lanes.wgsl` is built for.
const LANES_HEAD_DIMS: [u32; 2] = [64, 128];
/// Query heads one pass of `attention_lanes.wgsl` serves, one build each.
const LANES_BLOCK_HEADS: [u32; 3] = [1, 2, 4];
const BACKWARD_QUERY_SHADER: &str =
    include_str!("../../../../shaders/attention_backward_query.wgsl");
const BACKWARD_KV_SHADER: &str = include_str!("../../../../shaders/attention_backward_kv.wgsl");
const BACKWARD_QUERY_LANES_SHADER: &str =
    include_str!("../../../../shaders/attention_backward_query_lanes.wgsl");
const BACKWARD_KV_LANES_SHADER: &str =
    include_str!("../../../../shaders/attention_backward_kv_lanes.wgsl");

/// The largest head size [`Attention`] supports.
pub const MAX_HEAD_DIM: u32 = 256;

/// Uniform block of `kv_write.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct KvWriteParams {
    m: u32,
    kv_heads: u32,
    head_dim: u32,
    max_len: u32,
}

const _: () = assert!(size_of::<KvWriteParams>() == 16);

/// Uniform block of `attention.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    m: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    max_len: u32,
    scale: f32,
    _pad: [u32; 2],
}

const _: () = assert!(size_of::<AttentionParams>() == 32);

/// Copies new keys and values into a layer's KV cache.
pub struct KvWrite {
    kernel: Kernel,
}

impl KvWrite {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "kv_write", KV_WRITE_SHADER, "kv_write")?;
        Ok(Self { kernel })
    }

    /// Records `k_cache[slot, pos] = k[r]` and `v_cache[slot, pos] = v[r]`
    /// for rows `r < m`, where `(slot, pos) = rows[r]`. `k` and `v` are f32
    /// `[M, G, D]`, `rows` is u32 `[M, 2]` and the caches are f32
    /// `[S, max_len, G, D]`. Every `slot < S` and `pos < max_len`, and no
    /// two rows name the same cache entry; the kernel does not check.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        rows: &wgpu::Buffer,
        k_cache: &wgpu::Buffer,
        v_cache: &wgpu::Buffer,
        m: u32,
        kv_heads: u32,
        head_dim: u32,
        max_len: u32,
    ) {
        let params = KvWriteParams {
            m,
            kv_heads,
            head_dim,
            max_len,
        };
        let groups = row_grid((kv_heads * head_dim).div_ceil(256), m);
        self.kernel.encode(
            gpu,
            encoder,
            &params,
            &[k, v, rows, k_cache, v_cache],
            groups,
        );
    }
}

/// Causal grouped-query attention of new rows over a layer's KV cache.
pub struct Attention {
    kernel: Kernel,
    /// `attention_lanes.wgsl` as (head size, heads a pass, kernel), on CPU
    /// adapters with 8-lane subgroups; empty elsewhere.
    lanes: Vec<(u32, u32, Kernel)>,
}

impl Attention {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "attention", ATTENTION_SHADER, "attention")?;
        let mut lanes = Vec::new();
        if gpu.has_cpu_lanes() {
            for head_dim in LANES_HEAD_DIMS {
                for block in LANES_BLOCK_HEADS {
                    let source = format!(
                        "const HEAD_DIM: u32 = {head_dim}u;\n\
                         const BLOCK_HEADS: u32 = {block}u;\n{ATTENTION_LANES_SHADER}"
                    );
                    let kernel = Kernel::new(gpu, "attention_lanes", &source, "attention_lanes")?;
                    lanes.push((head_dim, block, kernel));
                }
            }
        }
        Ok(Self { kernel, lanes })
    }

    /// Records, for rows `r < m` with `(slot, pos) = rows[r]` and query
    /// heads `h < heads`, `out[r, h] = softmax_t(scale * q[r, h] . k_t) v_t`
    /// over cache positions `t` in `0..=pos` of `slot` and kv head
    /// `h / (heads / kv_heads)`. `q` and `out` are f32 `[M, heads, D]`,
    /// `rows` is u32 `[M, 2]` and the caches are f32 `[S, max_len, G, D]`.
    /// Every `slot < S` and `pos < max_len` (unchecked), and each row's own
    /// key and value must already be in the cache ([`KvWrite`] or
    /// [`crate::rope::RopeKvWrite`]).
    ///
    /// # Panics
    ///
    /// Panics when `head_dim` is above [`MAX_HEAD_DIM`] or `kv_heads` does
    /// not divide `heads`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        q: &wgpu::Buffer,
        k_cache: &wgpu::Buffer,
        v_cache: &wgpu::Buffer,
        rows: &wgpu::Buffer,
        out: &wgpu::Buffer,
        m: u32,
        heads: u32,
        kv_heads: u32,
        head_dim: u32,
        max_len: u32,
        scale: f32,
    ) {
        check_heads(heads, kv_heads, head_dim);
        let params = AttentionParams {
            m,
            heads,
            kv_heads,
            head_dim,
            max_len,
            scale,
            _pad: [0; 2],
        };
        // The smallest head block that holds the group, else the largest.
        let group = heads / kv_heads;
        let block = LANES_BLOCK_HEADS
            .iter()
            .copied()
            .find(|&block| block >= group)
            .unwrap_or(LANES_BLOCK_HEADS[LANES_BLOCK_HEADS.len() - 1]);
        let kernel = self
            .lanes
            .iter()
            .find(|(dim, heads, _)| *dim == head_dim && *heads == block)
            .map_or(&self.kernel, |(_, _, kernel)| kernel);
        kernel.encode(
            gpu,
            encoder,
            &params,
            &[q, k_cache, v_cache, rows, out],
            row_grid(kv_heads, m),
        );
    }
}

/// Uniform block of `attention_backward_query.wgsl` and
/// `attention_backward_kv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionBackwardParams {
    m: u32,
    seq_len: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    scale: f32,
    _pad: [u32; 2],
}

const _: () = assert!(size_of::<AttentionBackwardParams>() == 32);

/// Backward pass of causal grouped-query attention over full training
/// sequences, without a KV cache.
///
/// The forward pass for training is [`Attention`] itself: pass `k` and `v`
/// f32 `[B * T, G, D]` as the caches with `max_len = T`, and
/// `rows[b * T + t] = (b, t)`.
pub struct AttentionBackward {
    query_kernel: Kernel,
    kv_kernel: Kernel,
    /// The `*_lanes.wgsl` kernels as (head size, query kernel, kv kernel),
    /// on CPU adapters with 8-lane subgroups; empty elsewhere.
    lanes: Vec<(u32, Kernel, Kernel)>,
}

impl AttentionBackward {
    /// Compiles the kernels.
    ///
    /// # Errors
    ///
    /// Fails when a shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let query_kernel = Kernel::new(
            gpu,
            "attention_backward_query",
            BACKWARD_QUERY_SHADER,
            "attention_backward_query",
        )?;
        let kv_kernel = Kernel::new(
            gpu,
            "attention_backward_kv",
            BACKWARD_KV_SHADER,
            "attention_backward_kv",
        )?;
        let mut lanes = Vec::new();
        if gpu.has_cpu_lanes() {
            for head_dim in LANES_HEAD_DIMS {
                let constant = format!("const HEAD_DIM: u32 = {head_dim}u;\n");
                let query = Kernel::new(
                    gpu,
                    "attention_backward_query_lanes",
                    &format!("{constant}{BACKWARD_QUERY_LANES_SHADER}"),
                    "attention_backward_query_lanes",
                )?;
                let kv = Kernel::new(
                    gpu,
                    "attention_backward_kv_lanes",
                    &format!("{constant}{BACKWARD_KV_LANES_SHADER}"),
                    "attention_backward_kv_lanes",
                )?;
                lanes.push((head_dim, query, kv));
            }
        }
        Ok(Self {
            query_kernel,
            kv_kernel,
            lanes,
        })
    }

    /// Records the gradients `dq` f32 `[M, heads, D]` and `dk`, `dv` f32
    /// `[M, G, D]` (all overwritten) of causal attention over `M = batch *
    /// seq_len` rows, where row `b * seq_len + t` attends to rows
    /// `b * seq_len + 0..=t`. `q`, `out` (the forward output) and `d_out`
    /// are f32 `[M, heads, D]`; `k` and `v` are f32 `[M, G, D]`.
    ///
    /// # Panics
    ///
    /// Panics when `head_dim` is above [`MAX_HEAD_DIM`] or `kv_heads` does
    /// not divide `heads`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        d_out: &wgpu::Buffer,
        dq: &wgpu::Buffer,
        dk: &wgpu::Buffer,
        dv: &wgpu::Buffer,
        batch: u32,
        seq_len: u32,
        heads: u32,
        kv_heads: u32,
        head_dim: u32,
        scale: f32,
    ) {
        check_heads(heads, kv_heads, head_dim);
        let m = batch * seq_len;
        let params = AttentionBackwardParams {
            m,
            seq_len,
            heads,
            kv_heads,
            head_dim,
            scale,
            _pad: [0; 2],
        };
        let stats_bytes = u64::from(m) * u64::from(heads) * 2 * 4;
        let stats = gpu.buffer_zeroed("attention_backward stats", stats_bytes);
        let (query_kernel, kv_kernel) = self
            .lanes
            .iter()
            .find(|(dim, _, _)| *dim == head_dim)
            .map_or((&self.query_kernel, &self.kv_kernel), |(_, query, kv)| {
                (query, kv)
            });
        let buffers = [q, k, v, out, d_out, dq, &stats];
        query_kernel.encode(gpu, encoder, &params, &buffers, row_grid(heads, m));
        let buffers = [q, k, v, d_out, &stats, dk, dv];
        kv_kernel.encode(gpu, encoder, &params, &buffers, row_grid(kv_heads, m));
    }
}

/// Panics unless `kv_heads` divides `heads` and `head_dim` fits the kernels.
fn check_heads(heads: u32, kv_heads: u32, head_dim: u32) {
    assert!(
        head_dim <= MAX_HEAD_DIM,
        "attention: head_dim {head_dim} is above the supported {MAX_HEAD_DIM}"
    );
    assert!(
        kv_heads > 0 && heads.is_multiple_of(kv_heads),
        "attention: kv_heads {kv_heads} must divide heads {heads}"
    );
}

/// Shape of a KV cache and the heads that read it, for the CPU references.
#[derive(Clone, Copy, Debug)]
pub struct CacheShape {
    /// Query heads H.
    pub heads: usize,
    /// Key/value heads G; divides `heads`.
    pub kv_heads: usize,
    /// Head size D.
    pub head_dim: usize,
    /// Positions per slot T.
    pub max_len: usize,
}

impl CacheShape {
    /// Returns the index of element 0 of `(slot, pos, kv_head)` in a cache.
    fn index(&self, slot: usize, pos: usize, kv_head: usize) -> usize {
        ((slot * self.max_len + pos) * self.kv_heads + kv_head) * self.head_dim
    }
}

/// Computes [`KvWrite`] on the CPU: writes row `r` of `k` and `v` (f32
/// `[m, G, D]`) into `k_cache` and `v_cache` at `rows[r] = (slot, pos)`.
pub fn kv_write_reference(
    k: &[f32],
    v: &[f32],
    rows: &[[u32; 2]],
    k_cache: &mut [f32],
    v_cache: &mut [f32],
    shape: CacheShape,
) {
    let width = shape.kv_heads * shape.head_dim;
    for (r, &[slot, pos]) in rows.iter().enumerate() {
        let dst = shape.index(slot as usize, pos as usize, 0);
        k_cache[dst..dst + width].copy_from_slice(&k[r * width..(r + 1) * width]);
        v_cache[dst..dst + width].copy_from_slice(&v[r * width..(r + 1) * width]);
    }
}

/// Computes [`Attention`] on the CPU in f64: returns `out` f32
/// `[m, H, D]` for `q` f32 `[m, H, D]`, caches f32 `[S, T, G, D]` and
/// `rows` `(slot, pos)` per row.
pub fn attention_reference(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    rows: &[[u32; 2]],
    shape: CacheShape,
    scale: f32,
) -> Vec<f32> {
    let CacheShape {
        heads,
        kv_heads,
        head_dim,
        ..
    } = shape;
    let group = heads / kv_heads;
    let mut out = vec![0.0; rows.len() * heads * head_dim];
    for (r, &[slot, pos]) in rows.iter().enumerate() {
        let (slot, len) = (slot as usize, pos as usize + 1);
        for h in 0..heads {
            let q_row = &q[(r * heads + h) * head_dim..][..head_dim];
            let scores: Vec<f64> = (0..len)
                .map(|t| {
                    let k_row = &k_cache[shape.index(slot, t, h / group)..][..head_dim];
                    let dot: f64 = q_row
                        .iter()
                        .zip(k_row)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum();
                    dot * f64::from(scale)
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|&s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..head_dim {
                let value: f64 = (0..len)
                    .map(|t| weights[t] * f64::from(v_cache[shape.index(slot, t, h / group) + d]))
                    .sum();
                out[(r * heads + h) * head_dim + d] = (value / total) as f32;
            }
        }
    }
    out
}

/// Computes [`AttentionBackward`] on the CPU in f64 and returns
/// `(dq, dk, dv)` for `q`, `d_out` f32 `[B * T, H, D]` and `k`, `v` f32
/// `[B * T, G, D]`, with `T = shape.max_len`.
pub fn attention_backward_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d_out: &[f32],
    shape: CacheShape,
    scale: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let CacheShape {
        heads,
        kv_heads,
        head_dim,
        max_len: seq_len,
    } = shape;
    let group = heads / kv_heads;
    let rows = q.len() / (heads * head_dim);
    let scale = f64::from(scale);
    let mut dq = vec![0.0f64; q.len()];
    let mut dk = vec![0.0f64; k.len()];
    let mut dv = vec![0.0f64; v.len()];
    let dot = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    };
    for row in 0..rows {
        let first = row - row % seq_len;
        for h in 0..heads {
            let q_index = (row * heads + h) * head_dim;
            let q_row = &q[q_index..q_index + head_dim];
            let d_out_row = &d_out[q_index..q_index + head_dim];
            let kv_index = |j: usize| (j * kv_heads + h / group) * head_dim;
            let scores: Vec<f64> = (first..=row)
                .map(|j| scale * dot(q_row, &k[kv_index(j)..][..head_dim]))
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = scores.iter().map(|&s| (s - max).exp()).sum();
            let probs: Vec<f64> = scores.iter().map(|&s| (s - max).exp() / total).collect();
            let d_probs: Vec<f64> = (first..=row)
                .map(|j| dot(d_out_row, &v[kv_index(j)..][..head_dim]))
                .collect();
            let delta: f64 = probs.iter().zip(&d_probs).map(|(p, dp)| p * dp).sum();
            for (n, j) in (first..=row).enumerate() {
                let ds = probs[n] * (d_probs[n] - delta);
                for d in 0..head_dim {
                    let kv = kv_index(j) + d;
                    dq[q_index + d] += scale * ds * f64::from(k[kv]);
                    dk[kv] += scale * ds * f64::from(q_row[d]);
                    dv[kv] += probs[n] * f64::from(d_out_row[d]);
                }
            }
        }
    }
    let to_f32 = |g: Vec<f64>| g.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    (to_f32(dq), to_f32(dk), to_f32(dv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, gpu, read_f32, rng, run, time_gpu, uniform_vec};

    const SLOTS: usize = 3;

    fn flatten(rows: &[[u32; 2]]) -> Vec<u32> {
        rows.iter().flatten().copied().collect()
    }

    /// Returns the rows of a mixed batch: a 70-row prefill of slot 0 (past
    /// the 64-position tile), slot 1 at positions 5 and 129, and slot 2 at
    /// its last position.
    fn mixed_rows(max_len: usize) -> Vec<[u32; 2]> {
        let mut rows: Vec<[u32; 2]> = (0..70).map(|p| [0, p]).collect();
        rows.push([1, 5]);
        rows.push([2, (max_len - 1) as u32]);
        rows.push([1, 129]);
        rows
    }

    #[test]
    fn kv_write_matches_reference() {
        let gpu = gpu();
        let op = KvWrite::new(gpu).unwrap();
        let mut rng = rng(7);
        let shape = CacheShape {
            heads: 6,
            kv_heads: 3,
            head_dim: 100,
            max_len: 131,
        };
        let rows = mixed_rows(shape.max_len);
        let m = rows.len();
        let width = shape.kv_heads * shape.head_dim;
        let cache_len = SLOTS * shape.max_len * width;
        let k = uniform_vec(&mut rng, m * width, 1.0);
        let v = uniform_vec(&mut rng, m * width, 1.0);
        let mut k_cache = uniform_vec(&mut rng, cache_len, 1.0);
        let mut v_cache = uniform_vec(&mut rng, cache_len, 1.0);

        let k_buf = gpu.buffer_from("k", &k);
        let v_buf = gpu.buffer_from("v", &v);
        let rows_buf = gpu.buffer_from("rows", &flatten(&rows));
        let k_cache_buf = gpu.buffer_from("k_cache", &k_cache);
        let v_cache_buf = gpu.buffer_from("v_cache", &v_cache);
        run(|enc| {
            op.encode(
                gpu,
                enc,
                &k_buf,
                &v_buf,
                &rows_buf,
                &k_cache_buf,
                &v_cache_buf,
                m as u32,
                shape.kv_heads as u32,
                shape.head_dim as u32,
                shape.max_len as u32,
            )
        });

        kv_write_reference(&k, &v, &rows, &mut k_cache, &mut v_cache, shape);
        assert_close(
            "k_cache",
            &read_f32(&k_cache_buf, cache_len),
            &k_cache,
            0.0,
            0.0,
        );
        assert_close(
            "v_cache",
            &read_f32(&v_cache_buf, cache_len),
            &v_cache,
            0.0,
            0.0,
        );
    }

    /// Runs [`Attention`] on the GPU over random caches and compares with
    /// [`attention_reference`].
    fn check_attention(shape: CacheShape, rows: &[[u32; 2]], seed: u64) {
        let gpu = gpu();
        let op = Attention::new(gpu).unwrap();
        let mut rng = rng(seed);
        let m = rows.len();
        let cache_len = SLOTS * shape.max_len * shape.kv_heads * shape.head_dim;
        let q = uniform_vec(&mut rng, m * shape.heads * shape.head_dim, 1.0);
        let k_cache = uniform_vec(&mut rng, cache_len, 1.0);
        let v_cache = uniform_vec(&mut rng, cache_len, 1.0);
        // A scale above 1/sqrt(D) gives peaked softmaxes, so a wrong max or
        // a mis-rescaled tile shows.
        let scale = 2.0 / (shape.head_dim as f32).sqrt();

        let q_buf = gpu.buffer_from("q", &q);
        let k_cache_buf = gpu.buffer_from("k_cache", &k_cache);
        let v_cache_buf = gpu.buffer_from("v_cache", &v_cache);
        let rows_buf = gpu.buffer_from("rows", &flatten(rows));
        let out_buf = gpu.buffer_zeroed("out", (q.len() * 4) as u64);
        run(|enc| {
            op.encode(
                gpu,
                enc,
                &q_buf,
                &k_cache_buf,
                &v_cache_buf,
                &rows_buf,
                &out_buf,
                m as u32,
                shape.heads as u32,
                shape.kv_heads as u32,
                shape.head_dim as u32,
                shape.max_len as u32,
                scale,
            )
        });

        let expected = attention_reference(&q, &k_cache, &v_cache, rows, shape, scale);
        let label = format!("attention {shape:?}");
        assert_close(&label, &read_f32(&out_buf, q.len()), &expected, 1e-5, 1e-4);
    }

    #[test]
    fn attention_matches_reference_gqa_ratios() {
        for (seed, (heads, kv_heads, head_dim)) in [
            (4, 4, 64),
            (9, 3, 64),
            (8, 4, 128),
            (8, 2, 37),
            (3, 1, 256),
            (2, 2, 1),
            (10, 1, 24),
            (18, 2, 8),
        ]
        .into_iter()
        .enumerate()
        {
            let shape = CacheShape {
                heads,
                kv_heads,
                head_dim,
                max_len: 150,
            };
            check_attention(shape, &mixed_rows(shape.max_len), 10 + seed as u64);
        }
    }

    #[test]
    fn attention_decode_rows_at_different_positions() {
        let shape = CacheShape {
            heads: 12,
            kv_heads: 4,
            head_dim: 64,
            max_len: 300,
        };
        let rows = [[2, 0], [0, 63], [1, 64], [2, 299], [0, 200]];
        check_attention(shape, &rows, 20);
    }

    /// A prefill with a single position attends only to itself, so the
    /// output equals that position's value.
    #[test]
    fn attention_first_position_returns_value() {
        let gpu = gpu();
        let op = Attention::new(gpu).unwrap();
        let mut rng = rng(21);
        let (heads, head_dim, max_len) = (2, 8, 4);
        let q = uniform_vec(&mut rng, heads * head_dim, 1.0);
        let k_cache = uniform_vec(&mut rng, max_len * head_dim, 1.0);
        let v_cache = uniform_vec(&mut rng, max_len * head_dim, 1.0);
        let q_buf = gpu.buffer_from("q", &q);
        let k_buf = gpu.buffer_from("k_cache", &k_cache);
        let v_buf = gpu.buffer_from("v_cache", &v_cache);
        let rows_buf = gpu.buffer_from("rows", &[0u32, 0]);
        let out_buf = gpu.buffer_zeroed("out", (q.len() * 4) as u64);
        run(|enc| {
            op.encode(
                gpu, enc, &q_buf, &k_buf, &v_buf, &rows_buf, &out_buf, 1, 2, 1, 8, 4, 0.3,
            )
        });
        let out = read_f32(&out_buf, q.len());
        assert_close("head 0", &out[..head_dim], &v_cache[..head_dim], 1e-6, 0.0);
        assert_close("head 1", &out[head_dim..], &v_cache[..head_dim], 1e-6, 0.0);
    }

    /// Returns `(b, t)` for every row of `batch` sequences of `seq_len`.
    fn training_rows(batch: usize, seq_len: usize) -> Vec<[u32; 2]> {
        (0..batch * seq_len)
            .map(|row| [(row / seq_len) as u32, (row % seq_len) as u32])
            .collect()
    }

    #[test]
    fn attention_backward_matches_reference() {
        let gpu = gpu();
        let forward = Attention::new(gpu).unwrap();
        let backward = AttentionBackward::new(gpu).unwrap();
        let cases = [
            (2, 70, 6, 2, 37),
            (1, 9, 4, 4, 64),
            (2, 21, 9, 3, 64),
            (1, 13, 4, 2, 128),
            (3, 5, 8, 2, 16),
            (1, 3, 3, 1, 256),
        ];
        for (seed, (batch, seq_len, heads, kv_heads, head_dim)) in cases.into_iter().enumerate() {
            let mut rng = rng(60 + seed as u64);
            let shape = CacheShape {
                heads,
                kv_heads,
                head_dim,
                max_len: seq_len,
            };
            let m = batch * seq_len;
            let q = uniform_vec(&mut rng, m * heads * head_dim, 1.0);
            let k = uniform_vec(&mut rng, m * kv_heads * head_dim, 1.0);
            let v = uniform_vec(&mut rng, m * kv_heads * head_dim, 1.0);
            let d_out = uniform_vec(&mut rng, q.len(), 1.0);
            let scale = 1.5 / (head_dim as f32).sqrt();

            let q_buf = gpu.buffer_from("q", &q);
            let k_buf = gpu.buffer_from("k", &k);
            let v_buf = gpu.buffer_from("v", &v);
            let rows_buf = gpu.buffer_from("rows", &flatten(&training_rows(batch, seq_len)));
            let out_buf = gpu.buffer_zeroed("out", (q.len() * 4) as u64);
            let d_out_buf = gpu.buffer_from("d_out", &d_out);
            let dq_buf = gpu.buffer_zeroed("dq", (q.len() * 4) as u64);
            let dk_buf = gpu.buffer_zeroed("dk", (k.len() * 4) as u64);
            let dv_buf = gpu.buffer_zeroed("dv", (v.len() * 4) as u64);
            let (h, g, d) = (heads as u32, kv_heads as u32, head_dim as u32);
            run(|enc| {
                forward.encode(
                    gpu,
                    enc,
                    &q_buf,
                    &k_buf,
                    &v_buf,
                    &rows_buf,
                    &out_buf,
                    m as u32,
                    h,
                    g,
                    d,
                    seq_len as u32,
                    scale,
                );
                backward.encode(
                    gpu,
                    enc,
                    &q_buf,
                    &k_buf,
                    &v_buf,
                    &out_buf,
                    &d_out_buf,
                    &dq_buf,
                    &dk_buf,
                    &dv_buf,
                    batch as u32,
                    seq_len as u32,
                    h,
                    g,
                    d,
                    scale,
                );
            });

            let (dq, dk, dv) = attention_backward_reference(&q, &k, &v, &d_out, shape, scale);
            let label = format!("batch {batch} {shape:?}");
            assert_close(
                &format!("dq {label}"),
                &read_f32(&dq_buf, q.len()),
                &dq,
                1e-5,
                1e-4,
            );
            assert_close(
                &format!("dk {label}"),
                &read_f32(&dk_buf, k.len()),
                &dk,
                1e-5,
                1e-4,
            );
            assert_close(
                &format!("dv {label}"),
                &read_f32(&dv_buf, v.len()),
                &dv,
                1e-5,
                1e-4,
            );
        }
    }

    /// Checks `attention_backward_reference` against central finite
    /// differences of `loss = sum(attention(q, k, v) * d_out)`.
    #[test]
    fn attention_backward_matches_finite_differences() {
        let mut rng = rng(70);
        let (batch, seq_len) = (2, 4);
        let shape = CacheShape {
            heads: 4,
            kv_heads: 2,
            head_dim: 3,
            max_len: seq_len,
        };

        let m = batch * seq_len;
        let q = uniform_vec(&mut rng, m * 4 * 3, 1.0);
        let k = uniform_vec(&mut rng, m * 2 * 3, 1.0);
        let v = uniform_vec(&mut rng, m * 2 * 3, 1.0);
        let d_out = uniform_vec(&mut rng, q.len(), 1.0);
        let scale = 0.8;

        let rows = training_rows(batch, seq_len);
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            let out = attention_reference(q, k, v, &rows, shape, scale);
            out.iter()
                .zip(&d_out)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum()
        };
        let (dq, dk, dv) = attention_backward_reference(&q, &k, &v, &d_out, shape, scale);

        let step = 1e-2;
        let numeric = |which: usize, i: usize| -> f32 {
            let mut inputs = [q.clone(), k.clone(), v.clone()];
            inputs[which][i] += step;
            let plus = loss(&inputs[0], &inputs[1], &inputs[2]);
            inputs[which][i] -= 2.0 * step;
            let minus = loss(&inputs[0], &inputs[1], &inputs[2]);
            ((plus - minus) / (2.0 * f64::from(step))) as f32
        };

        for (i, &dq_i) in dq.iter().enumerate() {
            assert_close(&format!("dq[{i}]"), &[dq_i], &[numeric(0, i)], 1e-4, 1e-3);
        }
        for i in 0..k.len() {
            assert_close(&format!("dk[{i}]"), &[dk[i]], &[numeric(1, i)], 1e-4, 1e-3);
            assert_close(&format!("dv[{i}]"), &[dv[i]], &[numeric(2, i)], 1e-4, 1e-3);
        }
    }

    /// Prints attention timings for the real model's shape (9 query heads,
    /// 3 kv heads, head size 64): a 512-row prefill and a decode of 8 rows
    /// at position 1000.
    #[test]
    #[ignore = "benchmark: prints timings, takes seconds on lavapipe"]
    fn attention_throughput() {
        let gpu = gpu();
        let op = Attention::new(gpu).unwrap();
        let shape = CacheShape {
            heads: 9,
            kv_heads: 3,
            head_dim: 64,
            max_len: 1024,
        };
        let mut rng = rng(80);
        let cache_len = 8 * shape.max_len * shape.kv_heads * shape.head_dim;
        let k_buf = gpu.buffer_from("k_cache", &uniform_vec(&mut rng, cache_len, 1.0));
        let v_buf = gpu.buffer_from("v_cache", &uniform_vec(&mut rng, cache_len, 1.0));
        let prefill: Vec<[u32; 2]> = (0..512).map(|t| [0, t]).collect();
        let decode: Vec<[u32; 2]> = (0..8).map(|slot| [slot, 1000]).collect();
        for (name, rows) in [
            ("prefill 512 rows", prefill),
            ("decode 8 rows at 1000", decode),
        ] {
            let m = rows.len();
            let q_buf = gpu.buffer_from("q", &uniform_vec(&mut rng, m * 9 * 64, 1.0));
            let rows_buf = gpu.buffer_from("rows", &flatten(&rows));
            let out_buf = gpu.buffer_zeroed("out", (m * 9 * 64 * 4) as u64);
            let elapsed = time_gpu(3, |enc| {
                op.encode(
                    gpu, enc, &q_buf, &k_buf, &v_buf, &rows_buf, &out_buf, m as u32, 9, 3, 64,
                    1024, 0.125,
                )
            });
            println!("attention {name}: {elapsed:?}");
        }
    }
}
