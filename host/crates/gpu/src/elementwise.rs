//! Elementwise and row-copy kernels of the transformer block: the SwiGLU
//! activation and its backward pass, the residual add, gathering rows and
//! its backward pass, and the seeded dropout of LoRA training.

use anyhow::Result;

use crate::Gpu;
use crate::pass::{Kernel, row_grid, split_groups};

const SWIGLU_SHADER: &str = include_str!("../../../../shaders/swiglu.wgsl");
const SWIGLU_BACKWARD_SHADER: &str = include_str!("../../../../shaders/swiglu_backward.wgsl");
const ADD_SHADER: &str = include_str!("../../../../shaders/add.wgsl");
const GATHER_ROWS_SHADER: &str = include_str!("../../../../shaders/gather_rows.wgsl");
const DROPOUT_SHADER: &str = include_str!("../../../../shaders/dropout.wgsl");
const GATHER_ROWS_BACKWARD_SHADER: &str =
    include_str!("../../../../shaders/gather_rows_backward.wgsl");

/// Threads per workgroup of the elementwise kernels.
const WORKGROUP_SIZE: u32 = 256;

/// Uniform block of `swiglu.wgsl`, `swiglu_backward.wgsl` and `add.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ElementwiseParams {
    n: u32,
    _pad: [u32; 3],
}

const _: () = assert!(size_of::<ElementwiseParams>() == 16);

/// Uniform block of `gather_rows.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherRowsParams {
    r: u32,
    c: u32,
    _pad: [u32; 2],
}

const _: () = assert!(size_of::<GatherRowsParams>() == 16);

/// Uniform block of `dropout.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DropoutParams {
    n: u32,
    key: u32,
    threshold: u32,
    flags: u32,
    scale: f32,
    _pad: [u32; 3],
}

const _: () = assert!(size_of::<DropoutParams>() == 32);

/// Records a flat elementwise kernel over `n` elements with `buffers` bound
/// after the uniform block at binding 0.
fn encode_elementwise(
    gpu: &Gpu,
    encoder: &mut crate::Encoder,
    kernel: &Kernel,
    buffers: &[&wgpu::Buffer],
    n: u32,
) {
    let params = ElementwiseParams { n, _pad: [0; 3] };
    let groups = split_groups(n.div_ceil(WORKGROUP_SIZE));
    kernel.encode(gpu, encoder, &params, buffers, groups);
}

/// The SwiGLU activation `out = silu(gate) * up`.
pub struct SwiGlu {
    kernel: Kernel,
}

impl SwiGlu {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "swiglu", SWIGLU_SHADER, "swiglu")?;
        Ok(Self { kernel })
    }

    /// Records `out[i] = silu(gate[i]) * up[i]` for `i < n`. All three are
    /// f32 with at least `n` elements.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        gate: &wgpu::Buffer,
        up: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n: u32,
    ) {
        encode_elementwise(gpu, encoder, &self.kernel, &[gate, up, out], n);
    }
}

/// Backward pass of [`SwiGlu`].
pub struct SwiGluBackward {
    kernel: Kernel,
}

impl SwiGluBackward {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(
            gpu,
            "swiglu_backward",
            SWIGLU_BACKWARD_SHADER,
            "swiglu_backward",
        )?;
        Ok(Self { kernel })
    }

    /// Records `d_gate = d_out * up * silu'(gate)` and
    /// `d_up = d_out * silu(gate)` for the first `n` elements. Every buffer
    /// is f32 with at least `n` elements.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        gate: &wgpu::Buffer,
        up: &wgpu::Buffer,
        d_out: &wgpu::Buffer,
        d_gate: &wgpu::Buffer,
        d_up: &wgpu::Buffer,
        n: u32,
    ) {
        let buffers = [gate, up, d_out, d_gate, d_up];
        encode_elementwise(gpu, encoder, &self.kernel, &buffers, n);
    }
}

/// The residual add `acc += x`.
pub struct Add {
    kernel: Kernel,
}

impl Add {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "add", ADD_SHADER, "add")?;
        Ok(Self { kernel })
    }

    /// Records `acc[i] += x[i]` for `i < n`.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        acc: &wgpu::Buffer,
        x: &wgpu::Buffer,
        n: u32,
    ) {
        encode_elementwise(gpu, encoder, &self.kernel, &[acc, x], n);
    }
}

/// Copies selected rows of an activation into a compact buffer.
pub struct GatherRows {
    kernel: Kernel,
}

impl GatherRows {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "gather_rows", GATHER_ROWS_SHADER, "gather_rows")?;
        Ok(Self { kernel })
    }

    /// Records `out[j, :] = x[indices[j], :]` for `j < r`. `x` is f32
    /// `[M, c]`, `indices` u32 `[R]` with every index below M, and `out`
    /// f32 `[R, c]`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        x: &wgpu::Buffer,
        indices: &wgpu::Buffer,
        out: &wgpu::Buffer,
        r: u32,
        c: u32,
    ) {
        let params = GatherRowsParams { r, c, _pad: [0; 2] };
        let groups = row_grid(c.div_ceil(WORKGROUP_SIZE), r);
        self.kernel
            .encode(gpu, encoder, &params, &[x, indices, out], groups);
    }
}

/// Rows of a gather grouped by the table row they read, as
/// [`GatherRowsBackward`] takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowGroups {
    /// u32 \[U\]: the distinct table rows, ascending.
    pub ids: Vec<u32>,
    /// u32 [U + 1]: group `u` is `rows[starts[u]..starts[u + 1]]`.
    pub starts: Vec<u32>,
    /// u32 \[R\]: the gathered rows, grouped, ascending within a group.
    pub rows: Vec<u32>,
}

impl RowGroups {
    /// Groups the rows of a gather by `indices[r]`, the table row that row
    /// `r` reads.
    pub fn new(indices: &[u32]) -> Self {
        let mut order: Vec<u32> = (0..indices.len() as u32).collect();
        order.sort_by_key(|&r| (indices[r as usize], r));
        let mut ids = Vec::new();
        let mut starts = Vec::new();
        for (j, &r) in order.iter().enumerate() {
            let id = indices[r as usize];
            if ids.last() != Some(&id) {
                ids.push(id);
                starts.push(j as u32);
            }
        }
        starts.push(order.len() as u32);
        Self {
            ids,
            starts,
            rows: order,
        }
    }
}

/// Backward pass of [`GatherRows`]: adds each gathered row's gradient to
/// the table row it was read from, deterministically.
pub struct GatherRowsBackward {
    kernel: Kernel,
}

impl GatherRowsBackward {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(
            gpu,
            "gather_rows_backward",
            GATHER_ROWS_BACKWARD_SHADER,
            "gather_rows_backward",
        )?;
        Ok(Self { kernel })
    }

    /// Records `d_table[ids[u], :] += sum_j d_out[rows[j], :]` over each
    /// group `u < groups` of a [`RowGroups`] uploaded as `ids`, `starts`
    /// and `rows` (u32). `d_out` is f32 `[R, c]` and `d_table` f32
    /// `[V, c]`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        d_out: &wgpu::Buffer,
        (ids, starts, rows): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        d_table: &wgpu::Buffer,
        groups: u32,
        c: u32,
    ) {
        let params = GatherRowsParams {
            r: groups,
            c,
            _pad: [0; 2],
        };
        let grid = row_grid(c.div_ceil(WORKGROUP_SIZE), groups);
        let buffers = [d_out, ids, starts, rows, d_table];
        self.kernel.encode(gpu, encoder, &params, &buffers, grid);
    }
}

/// A dropout mask that is a pure function of a 32-bit key and the element
/// index, so a backward pass recomputes the forward pass's mask from the
/// key alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutMask {
    pub key: u32,
    /// The probability of zeroing an element, in [0, 1).
    pub probability: f32,
}

impl DropoutMask {
    /// The integer threshold on the top 24 hash bits below which an element
    /// is dropped: `round(p * 2^24)`.
    pub fn threshold(self) -> u32 {
        (f64::from(self.probability) * f64::from(1u32 << 24)).round() as u32
    }

    /// The factor `1 / (1 - p)` applied to kept elements.
    pub fn scale(self) -> f32 {
        (1.0 / (1.0 - f64::from(self.probability))) as f32
    }

    /// Returns whether element `index` is kept, exactly as `dropout.wgsl`
    /// decides it.
    pub fn keeps(self, index: u32) -> bool {
        mix32(mix32(index) ^ self.key) >> 8 >= self.threshold()
    }
}

/// Returns the "lowbias32" integer hash of `value`, the hash of
/// `dropout.wgsl` (Chris Wellons, "Prospecting for Hash Functions",
/// nullprogram.com, 2018).
pub fn mix32(value: u32) -> u32 {
    let mut h = value;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// Inverted dropout with a [`DropoutMask`]: kept elements are scaled by
/// `1 / (1 - p)`, dropped ones become 0.
pub struct Dropout {
    kernel: Kernel,
}

impl Dropout {
    /// Compiles the kernel.
    ///
    /// # Errors
    ///
    /// Fails when the shader does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let kernel = Kernel::new(gpu, "dropout", DROPOUT_SHADER, "dropout")?;
        Ok(Self { kernel })
    }

    /// Records `out[i] = x[i] * scale` for every kept `i < n` and 0 for the
    /// dropped ones, or adds those values to `out` when `accumulate` is
    /// set. `x` and `out` are f32 with at least `n` elements.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n: u32,
        mask: DropoutMask,
        accumulate: bool,
    ) {
        let params = DropoutParams {
            n,
            key: mask.key,
            threshold: mask.threshold(),
            flags: u32::from(accumulate),
            scale: mask.scale(),
            _pad: [0; 3],
        };
        let groups = split_groups(n.div_ceil(WORKGROUP_SIZE));
        self.kernel.encode(gpu, encoder, &params, &[x, out], groups);
    }
}

/// Computes [`GatherRowsBackward`] on the CPU: returns `d_table` f32
/// `[V, c]` plus, for each `r`, row `r` of `d_out` added to row
/// `indices[r]`.
pub fn gather_rows_backward_reference(
    d_out: &[f32],
    indices: &[u32],
    d_table: &[f32],
    c: usize,
) -> Vec<f32> {
    let mut sums: Vec<f64> = d_table.iter().map(|&v| f64::from(v)).collect();
    for (r, &id) in indices.iter().enumerate() {
        let table_row = &mut sums[id as usize * c..(id as usize + 1) * c];
        for (sum, &d) in table_row.iter_mut().zip(&d_out[r * c..(r + 1) * c]) {
            *sum += f64::from(d);
        }
    }
    sums.into_iter().map(|v| v as f32).collect()
}

/// Computes [`Dropout`] on the CPU: returns `initial + dropout(x)`, or
/// `dropout(x)` when `initial` is `None`.
pub fn dropout_reference(x: &[f32], mask: DropoutMask, initial: Option<&[f32]>) -> Vec<f32> {
    let scale = mask.scale();
    x.iter()
        .enumerate()
        .map(|(i, &value)| {
            let kept = if mask.keeps(i as u32) {
                value * scale
            } else {
                0.0
            };
            initial.map_or(kept, |init| init[i] + kept)
        })
        .collect()
}

/// Returns `silu(g) = g / (1 + exp(-g))` in f64.
fn silu(g: f64) -> f64 {
    g / (1.0 + (-g).exp())
}

/// Computes [`SwiGlu`] on the CPU in f64.
pub fn swiglu_reference(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| (silu(f64::from(g)) * f64::from(u)) as f32)
        .collect()
}

/// Computes [`SwiGluBackward`] on the CPU in f64 and returns
/// `(d_gate, d_up)`.
pub fn swiglu_backward_reference(gate: &[f32], up: &[f32], d_out: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut d_gate = Vec::with_capacity(gate.len());
    let mut d_up = Vec::with_capacity(gate.len());
    for ((&g, &u), &dy) in gate.iter().zip(up).zip(d_out) {
        let (g, u, dy) = (f64::from(g), f64::from(u), f64::from(dy));
        let sigma = 1.0 / (1.0 + (-g).exp());
        d_gate.push((dy * u * sigma * (1.0 + g * (1.0 - sigma))) as f32);
        d_up.push((dy * silu(g)) as f32);
    }
    (d_gate, d_up)
}

/// Computes [`GatherRows`] on the CPU: returns rows `indices` of `x`
/// f32 `[M, c]`.
pub fn gather_rows_reference(x: &[f32], indices: &[u32], c: usize) -> Vec<f32> {
    indices
        .iter()
        .flat_map(|&row| &x[row as usize * c..(row as usize + 1) * c])
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;
    use crate::pass::MAX_GROUPS_PER_DIM;
    use crate::testing::{assert_close, gpu, read_f32, rng, run, uniform_vec};

    #[test]
    fn swiglu_matches_reference() {
        let gpu = gpu();
        let op = SwiGlu::new(gpu).unwrap();
        let mut rng = rng(30);
        for n in [1, 255, 257, 10_007] {
            let mut gate = uniform_vec(&mut rng, n + 3, 8.0);
            // Saturated gates: silu(-1e4) is -0 and silu(1e4) is 1e4.
            gate[0] = -1e4;
            gate[n - 1] = 1e4;
            let up = uniform_vec(&mut rng, n + 3, 2.0);
            let gate_buf = gpu.buffer_from("gate", &gate);
            let up_buf = gpu.buffer_from("up", &up);
            let out_buf = gpu.buffer_zeroed("out", ((n + 3) * 4) as u64);
            run(|enc| op.encode(gpu, enc, &gate_buf, &up_buf, &out_buf, n as u32));

            let expected = swiglu_reference(&gate[..n], &up[..n]);
            let actual = read_f32(&out_buf, n + 3);
            assert_close(
                &format!("swiglu n={n}"),
                &actual[..n],
                &expected,
                1e-6,
                1e-5,
            );
            assert_eq!(&actual[n..], &[0.0; 3], "elements past n were written");
        }
    }

    #[test]
    fn swiglu_backward_matches_reference() {
        let gpu = gpu();
        let op = SwiGluBackward::new(gpu).unwrap();
        let mut rng = rng(31);
        let n = 1001;
        let gate = uniform_vec(&mut rng, n, 8.0);
        let up = uniform_vec(&mut rng, n, 2.0);
        let d_out = uniform_vec(&mut rng, n, 1.0);
        let gate_buf = gpu.buffer_from("gate", &gate);
        let up_buf = gpu.buffer_from("up", &up);
        let d_out_buf = gpu.buffer_from("d_out", &d_out);
        let d_gate_buf = gpu.buffer_zeroed("d_gate", (n * 4) as u64);
        let d_up_buf = gpu.buffer_zeroed("d_up", (n * 4) as u64);
        run(|enc| {
            op.encode(
                gpu,
                enc,
                &gate_buf,
                &up_buf,
                &d_out_buf,
                &d_gate_buf,
                &d_up_buf,
                n as u32,
            )
        });

        let (d_gate, d_up) = swiglu_backward_reference(&gate, &up, &d_out);
        assert_close("d_gate", &read_f32(&d_gate_buf, n), &d_gate, 1e-6, 1e-5);
        assert_close("d_up", &read_f32(&d_up_buf, n), &d_up, 1e-6, 1e-5);
    }

    /// Checks `swiglu_backward_reference` against central finite differences
    /// of `loss = sum(swiglu(gate, up) * d_out)`.
    #[test]
    fn swiglu_backward_matches_finite_differences() {
        let mut rng = rng(32);
        let n = 9;
        let gate: Vec<f64> = (0..n).map(|_| rng.random_range(-6.0..6.0)).collect();
        let up: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
        let d_out: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let (d_gate, d_up) =
            swiglu_backward_reference(&to_f32(&gate), &to_f32(&up), &to_f32(&d_out));
        let step = 1e-5;
        for i in 0..n {
            let loss_at = |g: f64, u: f64| silu(g) * u * d_out[i];
            let numeric_gate =
                (loss_at(gate[i] + step, up[i]) - loss_at(gate[i] - step, up[i])) / (2.0 * step);
            let numeric_up =
                (loss_at(gate[i], up[i] + step) - loss_at(gate[i], up[i] - step)) / (2.0 * step);
            assert_close(
                &format!("d_gate[{i}]"),
                &[d_gate[i]],
                &[numeric_gate as f32],
                1e-5,
                1e-4,
            );
            assert_close(
                &format!("d_up[{i}]"),
                &[d_up[i]],
                &[numeric_up as f32],
                1e-5,
                1e-4,
            );
        }
    }

    #[test]
    fn add_accumulates_first_n() {
        let gpu = gpu();
        let op = Add::new(gpu).unwrap();
        let mut rng = rng(33);
        for n in [1, 300, 4099] {
            let acc = uniform_vec(&mut rng, n + 5, 1.0);
            let x = uniform_vec(&mut rng, n + 5, 1.0);
            let acc_buf = gpu.buffer_from("acc", &acc);
            let x_buf = gpu.buffer_from("x", &x);
            run(|enc| op.encode(gpu, enc, &acc_buf, &x_buf, n as u32));

            let mut expected: Vec<f32> = acc.iter().zip(&x).map(|(a, b)| a + b).collect();
            expected[n..].copy_from_slice(&acc[n..]);
            assert_close(
                &format!("add n={n}"),
                &read_f32(&acc_buf, n + 5),
                &expected,
                0.0,
                0.0,
            );
        }
    }

    /// More than 65535 workgroups of 256 elements need the y dimension.
    #[test]
    fn add_splits_large_dispatch() {
        let gpu = gpu();
        let op = Add::new(gpu).unwrap();
        let n = (MAX_GROUPS_PER_DIM * WORKGROUP_SIZE + 1000) as usize;
        let acc: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let acc_buf = gpu.buffer_from("acc", &acc);
        let x_buf = gpu.buffer_from("x", &vec![1.0f32; n]);
        run(|enc| op.encode(gpu, enc, &acc_buf, &x_buf, n as u32));

        let actual = read_f32(&acc_buf, n);
        let expected: Vec<f32> = acc.iter().map(|a| a + 1.0).collect();
        assert_close("add past 65535 workgroups", &actual, &expected, 0.0, 0.0);
    }

    #[test]
    fn row_groups_sort_by_table_row() {
        let groups = RowGroups::new(&[5, 2, 5, 0, 2, 5]);
        assert_eq!(groups.ids, vec![0, 2, 5]);
        assert_eq!(groups.starts, vec![0, 1, 3, 6]);
        assert_eq!(groups.rows, vec![3, 1, 4, 0, 2, 5]);
    }

    /// Repeated and unused table rows, and a row width that is not a
    /// multiple of the workgroup.
    #[test]
    fn gather_rows_backward_matches_reference() {
        let gpu = gpu();
        let op = GatherRowsBackward::new(gpu).unwrap();
        let mut rng = rng(36);
        let (v, c) = (11, 300);
        let indices = [4u32, 9, 4, 0, 4, 10, 9];
        let d_out = uniform_vec(&mut rng, indices.len() * c, 1.0);
        let d_table = uniform_vec(&mut rng, v * c, 1.0);
        let groups = RowGroups::new(&indices);
        let d_out_buf = gpu.buffer_from("d_out", &d_out);
        let ids_buf = gpu.buffer_from("ids", &groups.ids);
        let starts_buf = gpu.buffer_from("starts", &groups.starts);
        let rows_buf = gpu.buffer_from("rows", &groups.rows);
        let d_table_buf = gpu.buffer_from("d_table", &d_table);
        let group_count = groups.ids.len() as u32;
        run(|enc| {
            op.encode(
                gpu,
                enc,
                &d_out_buf,
                (&ids_buf, &starts_buf, &rows_buf),
                &d_table_buf,
                group_count,
                c as u32,
            )
        });

        let expected = gather_rows_backward_reference(&d_out, &indices, &d_table, c);
        let actual = read_f32(&d_table_buf, v * c);
        assert_close("gather_rows_backward", &actual, &expected, 1e-6, 1e-6);
    }

    /// The GPU mask equals the CPU mirror element for element, drops about
    /// p of the elements, and accumulates when asked.
    #[test]
    fn dropout_matches_reference() {
        let gpu = gpu();
        let op = Dropout::new(gpu).unwrap();
        let mut rng = rng(35);
        let n = 20_011;
        let x = uniform_vec(&mut rng, n, 1.0);
        let initial = uniform_vec(&mut rng, n, 1.0);
        let mask = DropoutMask {
            key: 0x1234_5678,
            probability: 0.3,
        };
        let x_buf = gpu.buffer_from("x", &x);
        for accumulate in [false, true] {
            let out_buf = gpu.buffer_from("out", &initial);
            run(|enc| op.encode(gpu, enc, &x_buf, &out_buf, n as u32, mask, accumulate));
            let expected = dropout_reference(&x, mask, accumulate.then_some(&initial[..]));
            let actual = read_f32(&out_buf, n);
            assert_close(
                &format!("dropout accumulate={accumulate}"),
                &actual,
                &expected,
                1e-6,
                1e-6,
            );
        }

        let dropped = (0..n as u32).filter(|&i| !mask.keeps(i)).count();
        let fraction = dropped as f64 / n as f64;
        assert!(
            (fraction - 0.3).abs() < 0.02,
            "dropped fraction {fraction}, expected about 0.3"
        );
        let other_key = DropoutMask {
            key: 0x1234_5679,
            ..mask
        };
        let same = (0..n as u32)
            .filter(|&i| mask.keeps(i) == other_key.keeps(i))
            .count();
        let agreement = same as f64 / n as f64;
        // Independent masks with p = 0.3 agree on 0.7^2 + 0.3^2 = 0.58.
        assert!(
            (agreement - 0.58).abs() < 0.03,
            "masks of adjacent keys agree on {agreement} of the elements"
        );
    }

    #[test]
    fn dropout_zero_probability_keeps_all() {
        let mask = DropoutMask {
            key: 99,
            probability: 0.0,
        };
        assert_eq!(mask.threshold(), 0);
        assert_eq!(mask.scale(), 1.0);
        let x = [1.5f32, -2.0, 0.25];
        assert_eq!(dropout_reference(&x, mask, None), x.to_vec());
    }

    #[test]
    fn gather_rows_matches_reference() {
        let gpu = gpu();
        let op = GatherRows::new(gpu).unwrap();
        let mut rng = rng(34);
        let (m, c) = (9, 577);
        let x = uniform_vec(&mut rng, m * c, 1.0);
        let indices = [8u32, 0, 3, 3, 5];
        let x_buf = gpu.buffer_from("x", &x);
        let indices_buf = gpu.buffer_from("indices", &indices);
        let out_buf = gpu.buffer_zeroed("out", (indices.len() * c * 4) as u64);
        let r = indices.len() as u32;
        run(|enc| op.encode(gpu, enc, &x_buf, &indices_buf, &out_buf, r, c as u32));

        let expected = gather_rows_reference(&x, &indices, c);
        let actual = read_f32(&out_buf, indices.len() * c);
        assert_close("gather_rows", &actual, &expected, 0.0, 0.0);
    }

    /// More than 65535 rows need the z dimension of the grid.
    #[test]
    fn gather_rows_past_dispatch_limit() {
        let gpu = gpu();
        let op = GatherRows::new(gpu).unwrap();
        let (m, r, c) = (10, 70_000, 2);
        let x: Vec<f32> = (0..m * c).map(|i| i as f32).collect();
        let indices: Vec<u32> = (0..r as u32).map(|j| (j * 7) % m as u32).collect();
        let x_buf = gpu.buffer_from("x", &x);
        let indices_buf = gpu.buffer_from("indices", &indices);
        let out_buf = gpu.buffer_zeroed("out", (r * c * 4) as u64);
        run(|enc| op.encode(gpu, enc, &x_buf, &indices_buf, &out_buf, r as u32, c as u32));

        let expected = gather_rows_reference(&x, &indices, c);
        let actual = read_f32(&out_buf, r * c);
        assert_close("gather_rows 70000 rows", &actual, &expected, 0.0, 0.0);
    }
}
