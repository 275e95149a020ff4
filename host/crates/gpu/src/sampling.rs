//! Token sampling from the output head's logits (temperature, top-k, top-p,
//! reproducible draws) and token log-probabilities under the model.

use anyhow::Result;

use crate::Gpu;
use crate::pass::{Kernel, row_grid, split_groups};

const SAMPLE_SHADER: &str = include_str!("../../../../shaders/sample.wgsl");
const TOKEN_LOGPROB_CHUNK_SHADER: &str =
    include_str!("../../../../shaders/token_logprob_chunk.wgsl");
const TOKEN_LOGPROB_BACKWARD_SHADER: &str =
    include_str!("../../../../shaders/token_logprob_backward.wgsl");

/// Per-row sampling settings, mirrored by `SampleParams` in `sample.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SampleParams {
    /// Softmax temperature; 0 (or below) selects greedy decoding, the argmax
    /// with the lowest id on ties.
    pub temperature: f32,
    /// Number of highest logits kept; 0 keeps all. Ties at the k-th value
    /// are broken towards lower ids, so exactly `min(top_k, V)` remain.
    pub top_k: u32,
    /// Nucleus mass: keeps the most probable tokens (after top-k) whose
    /// probabilities reach `top_p`; 1 keeps all. Ties at the cut are all
    /// kept.
    pub top_p: f32,
    /// Low 32 bits of the 64-bit seed.
    pub seed_lo: u32,
    /// High 32 bits of the 64-bit seed.
    pub seed_hi: u32,
    /// Decode step; with the seed and the row it addresses the random draw.
    pub step: u32,
    /// Padding to 32 bytes; write zeros.
    pub pad: [u32; 2],
}

const _: () = assert!(size_of::<SampleParams>() == 32);

impl SampleParams {
    /// Returns settings for a temperature draw keyed by `seed` at `step`.
    pub fn new(temperature: f32, top_k: u32, top_p: f32, seed: u64, step: u32) -> Self {
        Self {
            temperature,
            top_k,
            top_p,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            step,
            pad: [0; 2],
        }
    }

    /// Returns settings for greedy decoding.
    pub fn greedy() -> Self {
        Self::new(0.0, 0, 1.0, 0, 0)
    }
}

/// Uniform block of `sample.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SampleShape {
    b: u32,
    v: u32,
    stride: u32,
    _pad: u32,
}

const _: () = assert!(size_of::<SampleShape>() == 16);

/// Draws one token per row and reports its log-probability.
pub struct Sampler {
    kernel: Kernel,
}

impl Sampler {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "sample", SAMPLE_SHADER, "sample")?;
        Ok(Self { kernel })
    }

    /// Records, for rows `r < b`, a draw of `tokens[r]` from
    /// `softmax(logits[r] / temperature)` cut by top-k and top-p, and
    /// `logprobs[r] = log_softmax(logits[r])[tokens[r]]` at temperature 1.
    /// `logits` is f32 `[B, v]`, `params` is [`SampleParams`] `[B]`,
    /// `tokens` u32 `[B]` and `logprobs` f32 `[B]`. The draw depends only on
    /// the row's logits and settings, not on `r`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        logits: &wgpu::Buffer,
        params: &wgpu::Buffer,
        tokens: &wgpu::Buffer,
        logprobs: &wgpu::Buffer,
        b: u32,
        v: u32,
    ) {
        self.encode_leading(gpu, encoder, logits, params, tokens, logprobs, b, v, v);
    }

    /// Like [`Sampler::encode`] over the first `v` logits of rows `stride`
    /// values apart: the ids a tokenizer can decode when the model's
    /// embedding has padding rows past them. Those rows take no part in the
    /// draw or in the log-softmax.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_leading(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        logits: &wgpu::Buffer,
        params: &wgpu::Buffer,
        tokens: &wgpu::Buffer,
        logprobs: &wgpu::Buffer,
        b: u32,
        v: u32,
        stride: u32,
    ) {
        assert!(v <= stride, "sampling {v} logits of rows of {stride}");
        self.kernel.encode(
            gpu,
            encoder,
            &SampleShape {
                b,
                v,
                stride,
                _pad: 0,
            },
            &[logits, params, tokens, logprobs],
            row_grid(1, b),
        );
    }
}

/// Log-probability of given target tokens under each row's logits: one
/// [`TokenLogprobChunk`] pass over the whole vocabulary.
pub struct TokenLogprob {
    chunk: TokenLogprobChunk,
}

impl TokenLogprob {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let chunk = TokenLogprobChunk::new(gpu)?;
        Ok(Self { chunk })
    }

    /// Records `out[r] = log_softmax(logits[r])[targets[r]]` for rows
    /// `r < m`. `logits` is f32 `[M, v]`, `targets` u32 `[M]` with each
    /// target below `v`, and `out` f32 `[M]`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        out: &wgpu::Buffer,
        m: u32,
        v: u32,
    ) {
        let state = gpu.buffer_zeroed("token_logprob state", u64::from(m) * 3 * 4);
        let chunk = &self.chunk;
        chunk.encode(gpu, encoder, logits, targets, &state, out, m, v, 0, true);
    }
}

/// Uniform block of `token_logprob_chunk.wgsl` and
/// `token_logprob_backward.wgsl` (which ignores `first`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TokenLogprobChunkParams {
    m: u32,
    v_chunk: u32,
    v_offset: u32,
    first: u32,
}

const _: () = assert!(size_of::<TokenLogprobChunkParams>() == 16);

/// [`TokenLogprob`] over a vocabulary processed in column chunks, so that
/// training never allocates the full `[M, V]` logits. Each call merges one
/// chunk into a per-row state and rewrites the log-probabilities.
pub struct TokenLogprobChunk {
    kernel: Kernel,
}

impl TokenLogprobChunk {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(
            gpu,
            "token_logprob_chunk",
            TOKEN_LOGPROB_CHUNK_SHADER,
            "token_logprob_chunk",
        )?;
        Ok(Self { kernel })
    }

    /// Records the merge of `logits` f32 `[M, v_chunk]`, vocabulary columns
    /// `v_offset..v_offset + v_chunk`, into `state` f32 `[M, 3]` (row max,
    /// sum of exp, target logit) for rows `r < m`, and writes
    /// `out[r] = log_softmax(logits[r])[targets[r]]` over the columns seen
    /// so far. `first` resets the state. After the chunks cover the whole
    /// vocabulary, `out` is final and `state` is the input of
    /// [`TokenLogprobBackward`].
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        state: &wgpu::Buffer,
        out: &wgpu::Buffer,
        m: u32,
        v_chunk: u32,
        v_offset: u32,
        first: bool,
    ) {
        let params = TokenLogprobChunkParams {
            m,
            v_chunk,
            v_offset,
            first: u32::from(first),
        };
        let buffers = [logits, targets, state, out];
        self.kernel
            .encode(gpu, encoder, &params, &buffers, split_groups(m));
    }
}

/// Backward pass of the token log-probability, one vocabulary chunk at a
/// time: `d_logits = d_logprob * (onehot(target) - softmax(logits))`.
pub struct TokenLogprobBackward {
    kernel: Kernel,
}

impl TokenLogprobBackward {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(
            gpu,
            "token_logprob_backward",
            TOKEN_LOGPROB_BACKWARD_SHADER,
            "token_logprob_backward",
        )?;
        Ok(Self { kernel })
    }

    /// Records `d_logits[r, j] = d_logprob[r] * ([v_offset + j == targets[r]]
    /// - softmax(logits[r])[v_offset + j])` for rows `r < m` and the chunk's
    /// columns `j < v_chunk`. `logits` and `d_logits` are f32
    /// `[M, v_chunk]`; `state` f32 `[M, 3]` must hold the final state of
    /// [`TokenLogprobChunk`] over the whole vocabulary; `d_logprob` is f32
    /// `[M]`. `d_logits` is overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        state: &wgpu::Buffer,
        d_logprob: &wgpu::Buffer,
        d_logits: &wgpu::Buffer,
        m: u32,
        v_chunk: u32,
        v_offset: u32,
    ) {
        let params = TokenLogprobChunkParams {
            m,
            v_chunk,
            v_offset,
            first: 0,
        };
        let buffers = [logits, targets, state, d_logprob, d_logits];
        let groups = row_grid(v_chunk.div_ceil(256), m);
        self.kernel.encode(gpu, encoder, &params, &buffers, groups);
    }
}

/// Computes Philox4x32-10 (Salmon et al., 2011, "Parallel random numbers:
/// as easy as 1, 2, 3") of `counter` under `key`, as `sample.wgsl` does.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    let [mut k0, mut k1] = key;
    for _ in 0..10 {
        let product0 = u64::from(0xD251_1F53u32) * u64::from(c0);
        let product1 = u64::from(0xCD9E_8D57u32) * u64::from(c2);
        let (hi0, lo0) = ((product0 >> 32) as u32, product0 as u32);
        let (hi1, lo1) = ((product1 >> 32) as u32, product1 as u32);
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        k0 = k0.wrapping_add(0x9E37_79B9);
        k1 = k1.wrapping_add(0xBB67_AE85);
    }
    [c0, c1, c2, c3]
}

/// Returns the uniform draw in `[0, 1)` that a row with `params` uses: the
/// top 24 bits of Philox at counter `(step, 0, 0, 0)`, key `(seed_lo,
/// seed_hi)`. The row's place in the batch plays no part.
pub fn sample_uniform(params: &SampleParams) -> f32 {
    let word = philox4x32_10([params.step, 0, 0, 0], [params.seed_lo, params.seed_hi])[0];
    (word >> 8) as f32 / 16_777_216.0
}

/// Returns `log(sum(exp(row)))` in f64.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + row
        .iter()
        .map(|&l| (f64::from(l) - max).exp())
        .sum::<f64>()
        .ln()
}

/// Returns the lowest id among the largest values of `row`.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in row.iter().enumerate() {
        if l > row[best] {
            best = i;
        }
    }
    best
}

/// Computes [`Sampler`] on the CPU in f64 and returns `(tokens, logprobs)`
/// for `logits` f32 `[B, v]` with one [`SampleParams`] per row.
pub fn sample_reference(logits: &[f32], params: &[SampleParams], v: usize) -> (Vec<u32>, Vec<f32>) {
    let mut tokens = Vec::with_capacity(params.len());
    let mut logprobs = Vec::with_capacity(params.len());
    for (r, p) in params.iter().enumerate() {
        let row = &logits[r * v..(r + 1) * v];
        let token = if p.temperature <= 0.0 || p.top_k == 1 {
            argmax(row)
        } else {
            draw_reference(row, p, sample_uniform(p))
        };
        tokens.push(token as u32);
        logprobs.push((f64::from(row[token]) - log_sum_exp(row)) as f32);
    }
    (tokens, logprobs)
}

/// Returns the ids kept by top-k and top-p with their unnormalized weights
/// `exp((l - max) / temperature)`, in id order.
pub fn kept_tokens_reference(row: &[f32], p: &SampleParams) -> Vec<(usize, f64)> {
    let v = row.len();
    // Sorted by logit, descending, lower id first on ties.
    let mut order: Vec<usize> = (0..v).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    let k = if p.top_k == 0 {
        v
    } else {
        (p.top_k as usize).min(v)
    };
    order.truncate(k);

    let max = f64::from(row[order[0]]);
    let weight = |i: usize| ((f64::from(row[i]) - max) / f64::from(p.temperature)).exp();
    if p.top_p < 1.0 {
        let total: f64 = order.iter().map(|&i| weight(i)).sum();
        let target = f64::from(p.top_p.max(0.0)) * total;
        let mut cumulative = 0.0;
        let mut cut = order.len();
        for (n, &i) in order.iter().enumerate() {
            cumulative += weight(i);
            if cumulative >= target && cumulative > 0.0 {
                cut = n;
                break;
            }
        }
        // Every token tied with the last one needed stays.
        let threshold = row[order[cut.min(order.len() - 1)]];
        order.retain(|&i| row[i] >= threshold);
    }
    order.sort_unstable();
    order.into_iter().map(|i| (i, weight(i))).collect()
}

/// Draws from the kept tokens of `row` with uniform `u`, walking ids in order.
fn draw_reference(row: &[f32], p: &SampleParams, u: f32) -> usize {
    let kept = kept_tokens_reference(row, p);
    let total: f64 = kept.iter().map(|&(_, w)| w).sum();
    let target = f64::from(u) * total;
    let mut cumulative = 0.0;
    for &(i, w) in &kept {
        cumulative += w;
        if target < cumulative {
            return i;
        }
    }
    kept.last().expect("top-k keeps at least one token").0
}

/// Computes [`TokenLogprob`] on the CPU in f64 for `logits` f32 `[m, v]`.
pub fn token_logprob_reference(logits: &[f32], targets: &[u32], v: usize) -> Vec<f32> {
    targets
        .iter()
        .enumerate()
        .map(|(r, &t)| {
            let row = &logits[r * v..(r + 1) * v];
            (f64::from(row[t as usize]) - log_sum_exp(row)) as f32
        })
        .collect()
}

/// Computes [`TokenLogprobBackward`] on the CPU in f64 over the whole
/// vocabulary: returns `d_logits` f32 `[m, v]`.
pub fn token_logprob_backward_reference(
    logits: &[f32],
    targets: &[u32],
    d_logprob: &[f32],
    v: usize,
) -> Vec<f32> {
    let mut d_logits = vec![0.0; logits.len()];
    for (r, &t) in targets.iter().enumerate() {
        let row = &logits[r * v..(r + 1) * v];
        let log_sum = log_sum_exp(row);
        for (j, &l) in row.iter().enumerate() {
            let is_target = if j == t as usize { 1.0 } else { 0.0 };
            let prob = (f64::from(l) - log_sum).exp();
            d_logits[r * v + j] = (f64::from(d_logprob[r]) * (is_target - prob)) as f32;
        }
    }
    d_logits
}

#[cfg(test)]
mod tests;
