//! Matrix products of f32 activations with [`QMatrix`] weights:
//! `out = x · wᵀ (+ bias)` for the forward pass and `out = dy · w` for the
//! backward pass through a frozen weight.
//!
//! Each kernel is compiled once per weight type, with that type's
//! `dequant_*.wgsl` snippet prepended, so the weights are dequantized as they
//! are read and stay in their stored format in GPU memory.
//!
//! On CPU adapters with 8-lane subgroups (lavapipe), F32, F16, Q4_0, Q4_1
//! and Q8_0 weights go through `matmul_gemv_lanes.wgsl` and
//! `matmul_transposed_lanes.wgsl` at every row count, except one activation
//! row of Q4_0, Q4_1 or Q8_0 weights with K of at most 640, which goes
//! through the unrolled kernels that `matmul/unrolled.rs` writes. Elsewhere
//! a few activation rows (decode) go through `matmul_gemv.wgsl`, which
//! reads the weights once, and more rows (prefill) through the tiled
//! `matmul_gemm.wgsl`, which reuses each dequantized weight tile across 64
//! rows.

mod unrolled;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use laser_model::DType;

use crate::Gpu;
use crate::device::groups;
use crate::pass::{compile, dispatch, split_groups};
use crate::qmatrix::{Chunk, DTYPES, QMatrix, dequant_snippet, dtype_index};

const PARAMS_SOURCE: &str = include_str!("../../../../shaders/matmul_params.wgsl");
const TILE_SOURCE: &str = include_str!("../../../../shaders/matmul_tile.wgsl");
const GEMV_SOURCE: &str = include_str!("../../../../shaders/matmul_gemv.wgsl");
const GEMM_SOURCE: &str = include_str!("../../../../shaders/matmul_gemm.wgsl");
const TRANSPOSED_SOURCE: &str = include_str!("../../../../shaders/matmul_transposed.wgsl");
const TRANSPOSED_GEMM_SOURCE: &str =
    include_str!("../../../../shaders/matmul_transposed_gemm.wgsl");
const LANES_SOURCE: &str = include_str!("../../../../shaders/matmul_gemv_lanes.wgsl");
const SWIGLU_LANES_SOURCE: &str = include_str!("../../../../shaders/matmul_swiglu_lanes.wgsl");
const LANES_PRODUCTS_SOURCE: &str = include_str!("../../../../shaders/matmul_lanes_products.wgsl");
const TRANSPOSED_LANES_SOURCE: &str =
    include_str!("../../../../shaders/matmul_transposed_lanes.wgsl");

/// `subgroup_row_sum` of `matmul_gemv.wgsl`: a butterfly over the
/// THREADS_PER_ROW neighbouring lanes of a row that leaves the row's total
/// in each of them.
const GEMV_SUBGROUP_ROW_SUM: &str = "fn subgroup_row_sum(value: f32) -> f32 {
    var sum = value;
    for (var offset = THREADS_PER_ROW / 2u; offset > 0u; offset /= 2u) {
        sum += subgroupShuffleXor(sum, offset);
    }
    return sum;
}";
/// The same function where SUBGROUP_REDUCE is false and the kernel never
/// calls it: a shader may not name subgroup operations on a device
/// without them.
const GEMV_NO_SUBGROUP_ROW_SUM: &str = "fn subgroup_row_sum(value: f32) -> f32 { return value; }";

/// Activation row counts up to this one use the matrix-vector kernel when
/// K is a multiple of 4 (it reads x as vec4s).
const GEMV_MAX_ROWS: u32 = 4;
/// Threads in one workgroup of `matmul_gemv.wgsl`.
const GEMV_WORKGROUP: u32 = 64;
/// Activation rows a workgroup of `matmul_gemv_lanes.wgsl` can take, one
/// pipeline each.
const LANES_TILES: [u32; 4] = [1, 2, 4, 8];
/// Weight rows in one workgroup of `matmul_gemv_lanes.wgsl`.
const LANES_WORKGROUP: u32 = 64;
/// Activation rows a workgroup of `matmul_transposed_lanes.wgsl` can take,
/// one pipeline each; every row keeps 32 accumulators a thread.
const TRANSPOSED_LANES_TILES: [u32; 3] = [1, 2, 4];
/// Activation rows a workgroup of `matmul_swiglu_lanes.wgsl` can take. It
/// keeps two sums a row, so its tiles stop below the GEMV kernel's.
const SWIGLU_LANES_TILES: [u32; 3] = [1, 2, 4];
/// Values of k one workgroup of `matmul_transposed_lanes.wgsl` covers.
const TRANSPOSED_LANES_K: u32 = 256;
/// Output tile edge of `matmul_gemm.wgsl`.
const GEMM_TILE: u32 = 64;
/// Threads in one workgroup of `matmul_transposed.wgsl`, each covering 4 k.
const TRANSPOSED_WORKGROUP: u32 = 64;

/// `MatmulParams` of `matmul_params.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    rows: u32,
    k: u32,
    row_offset: u32,
    n: u32,
    row_words: u32,
    scale_base: u32,
    flags: u32,
}

const _: () = assert!(std::mem::size_of::<MatmulParams>() == 32);

impl MatmulParams {
    fn new(w: &QMatrix, chunk: &Chunk, m: u32, flags: u32) -> Self {
        Self {
            m,
            rows: chunk.rows,
            k: w.cols() as u32,
            row_offset: chunk.row_offset,
            n: w.rows() as u32,
            row_words: w.row_words(),
            scale_base: chunk.scale_base,
            flags,
        }
    }
}

const FLAG_ACCUMULATE: u32 = 1;
const FLAG_BIAS: u32 = 2;

/// The matmul kernels of one weight type.
struct Pipelines {
    gemv: wgpu::ComputePipeline,
    gemm: wgpu::ComputePipeline,
    transposed: wgpu::ComputePipeline,
    transposed_gemm: wgpu::ComputePipeline,
}

/// Returns the whole-block dequantization snippet of `dtype` for
/// `matmul_gemv_lanes.wgsl`, for the types it supports.
fn block_snippet(dtype: DType) -> Option<&'static str> {
    match dtype {
        DType::F32 => Some(include_str!("../../../../shaders/dequant_block_f32.wgsl")),
        DType::F16 => Some(include_str!("../../../../shaders/dequant_block_f16.wgsl")),
        DType::Q4_0 => Some(include_str!("../../../../shaders/dequant_block_q4_0.wgsl")),
        DType::Q4_1 => Some(include_str!("../../../../shaders/dequant_block_q4_1.wgsl")),
        DType::Q8_0 => Some(include_str!("../../../../shaders/dequant_block_q8_0.wgsl")),
        _ => None,
    }
}

/// Renames the functions and bindings of a `dequant_block_*.wgsl` snippet
/// with `suffix`, so that one shader can dequantize two matrices.
fn rename_block(block: &str, suffix: &str) -> String {
    block
        .replace("fn dequant_block(", &format!("fn dequant_block_{suffix}("))
        .replace("halves8(", &format!("halves8_{suffix}("))
        .replace("quants[", &format!("quants_{suffix}["))
        .replace("weights[", &format!("weights_{suffix}["))
        .replace("&weights)", &format!("&weights_{suffix})"))
}

/// Matrix products with quantized weights; pipelines are compiled once.
pub struct Matmul {
    /// Indexed by [`dtype_index`].
    pipelines: Vec<Pipelines>,
    /// `matmul_gemv_lanes.wgsl` for each of [`LANES_TILES`], indexed by
    /// [`dtype_index`]; empty for types without a block snippet, and for
    /// every type on adapters that lack 8-lane subgroups.
    lanes: Vec<Vec<wgpu::ComputePipeline>>,
    /// `matmul_transposed_lanes.wgsl` for each of
    /// [`TRANSPOSED_LANES_TILES`], like `lanes`.
    transposed_lanes: Vec<Vec<wgpu::ComputePipeline>>,
    /// `matmul_swiglu_lanes.wgsl` for each of [`SWIGLU_LANES_TILES`], like
    /// `lanes`.
    swiglu_lanes: Vec<Vec<wgpu::ComputePipeline>>,
    /// `matmul_unrolled_lanes.wgsl` and `matmul_swiglu_unrolled_lanes.wgsl`
    /// by shape, compiled on first use; `None` when that failed. Only on
    /// adapters with the lane kernels.
    unrolled: Option<Mutex<HashMap<unrolled::Shape, Option<wgpu::ComputePipeline>>>>,
    /// Threads sharing one weight row in `matmul_gemv.wgsl`.
    gemv_threads_per_row: u32,
    /// Bound in place of a bias when there is none.
    no_bias: wgpu::Buffer,
}

impl Matmul {
    /// Compiles the kernels for every weight type.
    ///
    /// # Errors
    ///
    /// Fails when a kernel does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Matmul> {
        // On a CPU adapter the lanes of one SIMD vector are neighbouring
        // threads; giving each its own row lets all lanes read the same x.
        let gemv_threads_per_row = if gpu.runs_as_cpu() { 1 } else { 32 };
        Self::with_gemv_threads_per_row(gpu, gemv_threads_per_row)
    }

    /// Like [`Matmul::new`], with `gemv_threads_per_row` threads (a power of
    /// two up to 64) sharing each weight row in the GEMV kernel.
    fn with_gemv_threads_per_row(gpu: &Gpu, gemv_threads_per_row: u32) -> Result<Matmul> {
        ensure!(
            gemv_threads_per_row.is_power_of_two() && gemv_threads_per_row <= GEMV_WORKGROUP,
            "GEMV threads per row must be a power of two up to {GEMV_WORKGROUP}, \
             got {gemv_threads_per_row}"
        );
        // A row's threads fit in one subgroup when there are no more of
        // them than the smallest subgroup the adapter may run.
        // NOTE: this assumes subgroups hold consecutive invocation indices
        // of a 1D workgroup, which Vulkan, Metal and DX12 drivers do in
        // practice but no specification promises.
        let subgroups = gpu.features.contains(wgpu::Features::SUBGROUP);
        let subgroup_reduce = subgroups && gemv_threads_per_row <= gpu.info.subgroup_min_size;
        // The lane kernels suit CPU adapters whose SIMD vectors are 8-lane
        // subgroups, where they cut the loads that bound the others.
        let lanes_available = gpu.has_cpu_lanes();
        let mut pipelines = Vec::with_capacity(DTYPES.len());
        let mut lanes = Vec::with_capacity(DTYPES.len());
        let mut transposed_lanes = Vec::with_capacity(DTYPES.len());
        let mut swiglu_lanes = Vec::with_capacity(DTYPES.len());
        for dtype in DTYPES {
            let block = block_snippet(dtype).filter(|_| lanes_available);
            let compile_tiles = |tiles: &[u32], kernel: &str, source: &str| -> Result<Vec<_>> {
                let Some(block) = block else {
                    return Ok(Vec::new());
                };
                tiles
                    .iter()
                    .map(|tile| {
                        let label = format!("{kernel} {dtype} M_TILE {tile}");
                        let source = format!(
                            "const M_TILE: u32 = {tile}u;\n{PARAMS_SOURCE}\n{block}\n{source}"
                        );
                        compile(gpu, &label, &source, kernel)
                    })
                    .collect()
            };
            lanes.push(compile_tiles(
                &LANES_TILES,
                "matmul_gemv_lanes",
                &format!("{LANES_PRODUCTS_SOURCE}\n{LANES_SOURCE}"),
            )?);
            transposed_lanes.push(compile_tiles(
                &TRANSPOSED_LANES_TILES,
                "matmul_transposed_lanes",
                TRANSPOSED_LANES_SOURCE,
            )?);
            let two_blocks = block.map(|block| {
                format!(
                    "{}\n{}",
                    rename_block(block, "gate"),
                    rename_block(block, "up")
                )
            });
            swiglu_lanes.push(match &two_blocks {
                Some(blocks) => SWIGLU_LANES_TILES
                    .iter()
                    .map(|tile| {
                        let label = format!("matmul_swiglu_lanes {dtype} M_TILE {tile}");
                        let source = format!(
                            "const M_TILE: u32 = {tile}u;\n{PARAMS_SOURCE}\n{blocks}\n\
                             {LANES_PRODUCTS_SOURCE}\n{SWIGLU_LANES_SOURCE}"
                        );
                        compile(gpu, &label, &source, "matmul_swiglu_lanes")
                    })
                    .collect::<Result<_>>()?,
                None => Vec::new(),
            });
            let snippet = dequant_snippet(dtype);
            let row_sum = if subgroup_reduce {
                GEMV_SUBGROUP_ROW_SUM
            } else {
                GEMV_NO_SUBGROUP_ROW_SUM
            };
            let gemv = format!(
                "const THREADS_PER_ROW: u32 = {gemv_threads_per_row}u;\n\
                 const SUBGROUP_REDUCE: bool = {subgroup_reduce};\n\
                 {row_sum}\n{PARAMS_SOURCE}\n{snippet}\n{GEMV_SOURCE}"
            );
            pipelines.push(Pipelines {
                gemv: compile(gpu, &format!("matmul_gemv {dtype}"), &gemv, "matmul_gemv")?,
                gemm: compile(
                    gpu,
                    &format!("matmul_gemm {dtype}"),
                    &format!("{PARAMS_SOURCE}\n{snippet}\n{TILE_SOURCE}\n{GEMM_SOURCE}"),
                    "matmul_gemm",
                )?,
                transposed: compile(
                    gpu,
                    &format!("matmul_transposed {dtype}"),
                    &format!("{PARAMS_SOURCE}\n{snippet}\n{TRANSPOSED_SOURCE}"),
                    "matmul_transposed",
                )?,
                transposed_gemm: compile(
                    gpu,
                    &format!("matmul_transposed_gemm {dtype}"),
                    &format!("{PARAMS_SOURCE}\n{snippet}\n{TILE_SOURCE}\n{TRANSPOSED_GEMM_SOURCE}"),
                    "matmul_transposed_gemm",
                )?,
            });
        }
        Ok(Matmul {
            pipelines,
            lanes,
            transposed_lanes,
            swiglu_lanes,
            unrolled: lanes_available.then(|| Mutex::new(HashMap::new())),
            gemv_threads_per_row,
            no_bias: gpu.buffer_zeroed("matmul no bias", 4),
        })
    }

    /// Records `out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n])`; with
    /// `accumulate`, `out[m, n] += ` that instead.
    ///
    /// `x` is f32 [M, K], `out` f32 [M, N] and `bias` f32 [N]; only the first
    /// `m` rows of `x` and `out` are used.
    ///
    /// # Panics
    ///
    /// Panics when a buffer is smaller than its shape.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        x: &wgpu::Buffer,
        w: &QMatrix,
        bias: Option<&wgpu::Buffer>,
        out: &wgpu::Buffer,
        m: u32,
        accumulate: bool,
    ) {
        if m == 0 {
            return;
        }
        let (n, k) = (w.rows() as u64, w.cols() as u64);
        check_size("x", x, u64::from(m) * k);
        check_size("out", out, u64::from(m) * n);
        if let Some(bias) = bias {
            check_size("bias", bias, n);
        }

        let mut flags = 0;
        if accumulate {
            flags |= FLAG_ACCUMULATE;
        }
        if bias.is_some() {
            flags |= FLAG_BIAS;
        }
        let bias = bias.unwrap_or(&self.no_bias);

        if self.encode_unrolled(gpu, encoder, x, w, bias, out, m, flags) {
            return;
        }
        let lanes = &self.lanes[dtype_index(w.dtype())];
        if !lanes.is_empty() && k % 32 == 0 {
            let (tile, pipeline) = pick_tile(&LANES_TILES, lanes, m);
            for chunk in w.chunks() {
                let params = MatmulParams::new(w, chunk, m, flags);
                let [y_groups, z_groups, _] = split_groups(groups(chunk.rows, LANES_WORKGROUP));
                let workgroups = [m.div_ceil(tile), y_groups, z_groups];
                let label = format!("matmul_gemv_lanes {} rows {}", w.dtype(), chunk.row_offset);
                let buffers = [x, &chunk.buffer, bias, out];
                dispatch_lanes(
                    gpu, encoder, &label, pipeline, &params, &buffers, w, chunk, workgroups,
                );
            }
            return;
        }

        let pipelines = &self.pipelines[dtype_index(w.dtype())];
        let use_gemv = m <= GEMV_MAX_ROWS && k % 4 == 0;
        let (pipeline, kind) = if use_gemv {
            (&pipelines.gemv, "matmul_gemv")
        } else {
            (&pipelines.gemm, "matmul_gemm")
        };

        for chunk in w.chunks() {
            let params = MatmulParams::new(w, chunk, m, flags);
            let workgroups = if use_gemv {
                let rows_per_workgroup = GEMV_WORKGROUP / self.gemv_threads_per_row;
                let [x, z, _] = split_groups(groups(chunk.rows, rows_per_workgroup));
                [x, m, z]
            } else {
                [groups(chunk.rows, GEMM_TILE), groups(m, GEMM_TILE), 1]
            };
            let buffers = [x, &chunk.buffer, bias, out];
            let label = format!("{kind} {} rows {}", w.dtype(), chunk.row_offset);
            dispatch_chunk(
                gpu, encoder, &label, pipeline, &params, &buffers, workgroups,
            );
        }
    }

    /// Records `out[m, n] = silu(x[m] · gate[n]) * (x[m] · up[n])`, the
    /// gated feed-forward input of SwiGLU, in one pass, and returns true.
    /// Only the lane kernels of CPU adapters do this: elsewhere, or when
    /// the two matrices differ in type or shape, it records nothing and
    /// returns false, and the caller runs the two products and the gating
    /// apart.
    ///
    /// `x` is f32 [M, K] and `out` f32 [M, N]; only the first `m` rows are
    /// used.
    ///
    /// # Panics
    ///
    /// Panics when a buffer is smaller than its shape.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_swiglu(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        x: &wgpu::Buffer,
        gate: &QMatrix,
        up: &QMatrix,
        out: &wgpu::Buffer,
        m: u32,
    ) -> bool {
        let pipelines = &self.swiglu_lanes[dtype_index(gate.dtype())];
        // The kernels read both matrices with gate's chunk parameters.
        let same_layout = gate.dtype() == up.dtype()
            && gate.rows() == up.rows()
            && gate.cols() == up.cols()
            && gate.chunks().len() == up.chunks().len()
            && gate
                .chunks()
                .iter()
                .zip(up.chunks())
                .all(|(g, u)| g.rows == u.rows);
        if pipelines.is_empty() || !same_layout || !gate.cols().is_multiple_of(32) {
            return false;
        }
        if m == 0 {
            return true;
        }
        let (n, k) = (gate.rows() as u64, gate.cols() as u64);
        check_size("x", x, u64::from(m) * k);
        check_size("out", out, u64::from(m) * n);

        let unrolled = self.unrolled_for(gpu, gate.dtype(), m, gate.cols(), true);
        let (tile, pipeline) = match &unrolled {
            Some(pipeline) => (m, pipeline),
            None => pick_tile(&SWIGLU_LANES_TILES, pipelines, m),
        };
        for (gate_chunk, up_chunk) in gate.chunks().iter().zip(up.chunks()) {
            let params = MatmulParams::new(gate, gate_chunk, m, 0);
            let [y_groups, z_groups, _] = split_groups(groups(gate_chunk.rows, LANES_WORKGROUP));
            let kernel = if unrolled.is_some() {
                "matmul_swiglu_unrolled_lanes"
            } else {
                "matmul_swiglu_lanes"
            };
            let label = format!("{kernel} {} rows {}", gate.dtype(), gate_chunk.row_offset);
            let uniform = gpu.uniform(&label, &params);
            let quant_bytes = 4 * u64::from(gate_chunk.rows) * u64::from(gate.row_words());
            fn quants(chunk: &Chunk, bytes: u64) -> wgpu::BindingResource<'_> {
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &chunk.buffer,
                    offset: 0,
                    size: wgpu::BufferSize::new(bytes),
                })
            }
            let resources = [
                uniform.as_entire_binding(),
                x.as_entire_binding(),
                gate_chunk.buffer.as_entire_binding(),
                up_chunk.buffer.as_entire_binding(),
                out.as_entire_binding(),
                quants(gate_chunk, quant_bytes),
                quants(up_chunk, quant_bytes),
            ];
            let bind_group = gpu.bind_group(&label, pipeline, &resources);
            let workgroups = if unrolled.is_some() {
                // The unrolled kernel takes the one activation row and
                // spreads the weight rows over x and y.
                split_groups(groups(gate_chunk.rows, LANES_WORKGROUP))
            } else {
                [m.div_ceil(tile), y_groups, z_groups]
            };
            dispatch(gpu, encoder, &label, pipeline, &bind_group, workgroups);
        }
        true
    }

    /// Returns the unrolled kernel for `m` rows of x times a weight of
    /// `dtype` with `k` columns (the swiglu kernel with `swiglu`), compiling
    /// it on first use. Returns `None` where it does not apply: more than
    /// one row, K not in whole blocks or longer than
    /// [`unrolled::MAX_BLOCKS`] blocks, a type it does not read, no lane
    /// kernels, or a kernel that failed to compile.
    fn unrolled_for(
        &self,
        gpu: &Gpu,
        dtype: DType,
        m: u32,
        k: usize,
        swiglu: bool,
    ) -> Option<wgpu::ComputePipeline> {
        let cache = self.unrolled.as_ref()?;
        let blocks = u32::try_from(k / 32).ok()?;
        let fits = (1..=unrolled::MAX_BLOCKS).contains(&blocks) && k.is_multiple_of(32);
        if m != 1 || !fits || !unrolled::supports(dtype) {
            return None;
        }
        let shape = unrolled::Shape {
            dtype,
            blocks,
            swiglu,
        };
        let mut cache = cache.lock().unwrap_or_else(|err| err.into_inner());
        cache
            .entry(shape)
            .or_insert_with(|| {
                let label = format!("{} {dtype} {blocks} blocks", shape.entry());
                let source = format!("{PARAMS_SOURCE}\n{}", unrolled::source(shape));
                compile(gpu, &label, &source, shape.entry())
                    .inspect_err(|err| {
                        tracing::warn!("{err:#}; using the general kernel instead");
                    })
                    .ok()
            })
            .clone()
    }

    /// Records `encode`'s product with the unrolled kernels and returns
    /// true, or records nothing and returns false where they do not apply
    /// (see [`Matmul::unrolled_for`]).
    #[allow(clippy::too_many_arguments)]
    fn encode_unrolled(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        x: &wgpu::Buffer,
        w: &QMatrix,
        bias: &wgpu::Buffer,
        out: &wgpu::Buffer,
        m: u32,
        flags: u32,
    ) -> bool {
        let Some(pipeline) = self.unrolled_for(gpu, w.dtype(), m, w.cols(), false) else {
            return false;
        };
        for chunk in w.chunks() {
            let params = MatmulParams::new(w, chunk, m, flags);
            let label = format!(
                "matmul_unrolled_lanes {} rows {}",
                w.dtype(),
                chunk.row_offset
            );
            let workgroups = split_groups(groups(chunk.rows, LANES_WORKGROUP));
            let buffers = [x, &chunk.buffer, bias, out];
            dispatch_lanes(
                gpu, encoder, &label, &pipeline, &params, &buffers, w, chunk, workgroups,
            );
        }
        true
    }

    /// Records `out[m, k] = sum_n dy[m, n] * w[n, k]`, the product with the
    /// transposed weight; with `accumulate`, `out[m, k] += ` that instead.
    ///
    /// `dy` is f32 [M, N] and `out` f32 [M, K]; only the first `m` rows are
    /// used.
    ///
    /// # Panics
    ///
    /// Panics when a buffer is smaller than its shape.
    #[allow(clippy::too_many_arguments)]
    pub fn transposed_encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        dy: &wgpu::Buffer,
        w: &QMatrix,
        out: &wgpu::Buffer,
        m: u32,
        accumulate: bool,
    ) {
        if m == 0 {
            return;
        }
        let (n, k) = (w.rows() as u64, w.cols() as u64);
        check_size("dy", dy, u64::from(m) * n);
        check_size("out", out, u64::from(m) * k);

        let lanes = &self.transposed_lanes[dtype_index(w.dtype())];
        if !lanes.is_empty() && k % 32 == 0 {
            let (tile, pipeline) = pick_tile(&TRANSPOSED_LANES_TILES, lanes, m);
            let k_groups = (k as u32).div_ceil(TRANSPOSED_LANES_K);
            for (i, chunk) in w.chunks().iter().enumerate() {
                let flags = if accumulate || i > 0 {
                    FLAG_ACCUMULATE
                } else {
                    0
                };
                let params = MatmulParams::new(w, chunk, m, flags);
                let workgroups = [m.div_ceil(tile), k_groups, 1];
                let label = format!(
                    "matmul_transposed_lanes {} rows {}",
                    w.dtype(),
                    chunk.row_offset
                );
                let buffers = [dy, &chunk.buffer, out];
                dispatch_lanes(
                    gpu, encoder, &label, pipeline, &params, &buffers, w, chunk, workgroups,
                );
            }
            return;
        }

        let pipelines = &self.pipelines[dtype_index(w.dtype())];
        // Few rows read the weights once a row; more share 64-row tiles.
        let tiled = m > GEMV_MAX_ROWS;
        let (pipeline, kind) = if tiled {
            (&pipelines.transposed_gemm, "matmul_transposed_gemm")
        } else {
            (&pipelines.transposed, "matmul_transposed")
        };
        for (i, chunk) in w.chunks().iter().enumerate() {
            // Every chunk after the first adds its rows' share.
            let flags = if accumulate || i > 0 {
                FLAG_ACCUMULATE
            } else {
                0
            };
            let params = MatmulParams::new(w, chunk, m, flags);
            let workgroups = if tiled {
                [groups(w.groups(), GEMM_TILE / 4), groups(m, GEMM_TILE), 1]
            } else {
                [groups(w.groups(), TRANSPOSED_WORKGROUP), m, 1]
            };
            let label = format!("{kind} {} rows {}", w.dtype(), chunk.row_offset);
            let buffers = [dy, &chunk.buffer, out];
            dispatch_chunk(
                gpu, encoder, &label, pipeline, &params, &buffers, workgroups,
            );
        }
    }
}

/// Records one dispatch of `pipeline` over one weight chunk, with `params`
/// at binding 0 and `buffers` at bindings 1, 2, ...
fn dispatch_chunk(
    gpu: &Gpu,
    encoder: &mut crate::Encoder,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    params: &MatmulParams,
    buffers: &[&wgpu::Buffer],
    workgroups: [u32; 3],
) {
    let uniform = gpu.uniform(label, params);
    let mut resources = vec![uniform.as_entire_binding()];
    resources.extend(buffers.iter().map(|buffer| buffer.as_entire_binding()));
    let bind_group = gpu.bind_group(label, pipeline, &resources);
    dispatch(gpu, encoder, label, pipeline, &bind_group, workgroups);
}

/// Returns the smallest tile of `tiles` that fits `m` rows, else the
/// largest, with its pipeline from `pipelines` (one per tile).
fn pick_tile<'a>(
    tiles: &[u32],
    pipelines: &'a [wgpu::ComputePipeline],
    m: u32,
) -> (u32, &'a wgpu::ComputePipeline) {
    let index = tiles
        .iter()
        .position(|&tile| tile >= m)
        .unwrap_or(tiles.len() - 1);
    (tiles[index], &pipelines[index])
}

/// Records one dispatch of a lane kernel over one weight chunk: `params` at
/// binding 0, `buffers` at bindings 1, 2, ..., and after them the chunk's
/// quant words again as vec4s.
#[allow(clippy::too_many_arguments)]
fn dispatch_lanes(
    gpu: &Gpu,
    encoder: &mut crate::Encoder,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    params: &MatmulParams,
    buffers: &[&wgpu::Buffer],
    w: &QMatrix,
    chunk: &Chunk,
    workgroups: [u32; 3],
) {
    let uniform = gpu.uniform(label, params);
    let quant_bytes = 4 * u64::from(chunk.rows) * u64::from(w.row_words());
    let mut resources = vec![uniform.as_entire_binding()];
    resources.extend(buffers.iter().map(|buffer| buffer.as_entire_binding()));
    resources.push(wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: &chunk.buffer,
        offset: 0,
        size: wgpu::BufferSize::new(quant_bytes),
    }));
    let bind_group = gpu.bind_group(label, pipeline, &resources);
    dispatch(gpu, encoder, label, pipeline, &bind_group, workgroups);
}

/// Panics unless `buffer` has room for at least `values` f32s.
fn check_size(name: &str, buffer: &wgpu::Buffer, values: u64) {
    let needed = values * 4;
    assert!(
        buffer.size() >= needed,
        "matmul: `{name}` buffer has {} bytes, expected at least {needed}",
        buffer.size()
    );
}

/// Measures `out = x · wᵀ` for an [m, k] x and an [n, k] weight of `dtype`
/// filled with pseudo-random values, and returns GFLOP/s, counting 2·m·n·k
/// operations a product. One product runs first to warm up, then
/// `iterations` products are recorded in one command buffer, which is timed
/// from its submission until the GPU finishes; recording is not timed.
///
/// # Errors
///
/// Fails when `k` is not a multiple of the block size of `dtype`, or when the
/// device fails.
pub fn benchmark(gpu: &Gpu, dtype: DType, m: u32, n: u32, k: u32, iterations: u32) -> Result<f64> {
    measure(gpu, dtype, m, n, k, iterations, false)
}

/// Like [`benchmark`], for the backward product `out = dy · w` with an
/// [m, n] dy.
///
/// # Errors
///
/// As [`benchmark`].
pub fn benchmark_transposed(
    gpu: &Gpu,
    dtype: DType,
    m: u32,
    n: u32,
    k: u32,
    iterations: u32,
) -> Result<f64> {
    measure(gpu, dtype, m, n, k, iterations, true)
}

fn measure(
    gpu: &Gpu,
    dtype: DType,
    m: u32,
    n: u32,
    k: u32,
    iterations: u32,
    transposed: bool,
) -> Result<f64> {
    ensure!(
        m > 0 && n > 0 && k > 0,
        "benchmark shape {m}x{n}x{k} has an empty side"
    );
    ensure!(iterations > 0, "benchmark needs at least one iteration");
    let (m_size, n_size, k_size) = (m as usize, n as usize, k as usize);

    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next_value = move || {
        // xorshift64: any spread of values in [-1, 1) will do.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let weights: Vec<f32> = (0..n_size * k_size).map(|_| next_value()).collect();
    let (in_size, out_size) = if transposed {
        (n_size, k_size)
    } else {
        (k_size, n_size)
    };
    let activations: Vec<f32> = (0..m_size * in_size).map(|_| next_value()).collect();
    let bytes = laser_model::quant::quantize(dtype, &weights)
        .with_context(|| format!("benchmark weight [{n}, {k}] {dtype}"))?;

    let w = QMatrix::upload(gpu, "benchmark weight", dtype, n_size, k_size, &bytes)?;
    let x = gpu.buffer_from("benchmark x", &activations);
    let out = gpu.buffer_zeroed("benchmark out", 4 * (m_size * out_size) as u64);
    let matmul = Matmul::new(gpu)?;

    // Records `count` products into one command buffer, then times their
    // execution alone. Recording (a uniform buffer and a bind group a
    // dispatch) costs host time, but no part of the kernel's.
    let run = |count: u32| -> Result<f64> {
        let mut encoder = gpu.encoder("benchmark");
        for _ in 0..count {
            if transposed {
                matmul.transposed_encode(gpu, &mut encoder, &x, &w, &out, m, false);
            } else {
                matmul.encode(gpu, &mut encoder, &x, &w, None, &out, m, false);
            }
        }
        let start = Instant::now();
        gpu.submit(encoder);
        gpu.wait()?;
        Ok(start.elapsed().as_secs_f64())
    };
    run(1)?;
    let seconds = run(iterations)?;
    let operations = 2.0 * f64::from(m) * f64::from(n) * f64::from(k) * f64::from(iterations);
    Ok(operations / seconds / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qmatrix::test_support::{assert_close, cols_for, random_weight};
    use crate::testing::{gpu, read_f32, rng, run, uniform_vec};

    /// The types the lane kernels read.
    const LANE_DTYPES: [DType; 5] = [
        DType::F32,
        DType::F16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q8_0,
    ];

    /// Uploads a weight whole, or with `chunk_rows` rows a chunk when that
    /// is not 0.
    fn upload_in_chunks(
        dtype: DType,
        n: usize,
        k: usize,
        bytes: &[u8],
        chunk_rows: usize,
    ) -> QMatrix {
        let gpu = gpu();
        if chunk_rows == 0 {
            return QMatrix::upload(gpu, "test w", dtype, n, k, bytes).unwrap();
        }
        let chunk_bytes = (bytes.len() / n * chunk_rows) as u64;
        QMatrix::upload_chunked(gpu, "test w", dtype, n, k, bytes, chunk_bytes).unwrap()
    }

    /// Error allowed relative to sum_k |x[m, k] * w[n, k]|: the GPU sums in
    /// another order with fused multiply-adds, on the same dequantized
    /// values as the CPU reference.
    const TOLERANCE: f64 = 1e-5;

    /// Returns the CPU reference of `out = x · wᵀ (+ bias) (+ out)` in f64
    /// and the magnitude sum_k |x w| (+ |bias| + |out|) of each element.
    fn reference(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        initial: Option<&[f32]>,
        m: usize,
        n: usize,
        k: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut expected = vec![0.0; m * n];
        let mut scale = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut sum = 0.0;
                let mut magnitude = 0.0;
                for l in 0..k {
                    let term = f64::from(x[i * k + l]) * f64::from(w[j * k + l]);
                    sum += term;
                    magnitude += term.abs();
                }
                if let Some(bias) = bias {
                    sum += f64::from(bias[j]);
                    magnitude += f64::from(bias[j]).abs();
                }
                if let Some(initial) = initial {
                    sum += f64::from(initial[i * n + j]);
                    magnitude += f64::from(initial[i * n + j]).abs();
                }
                expected[i * n + j] = sum;
                scale[i * n + j] = magnitude;
            }
        }
        (expected, scale)
    }

    /// Runs `matmul.encode` on the GPU and returns `out`.
    fn run_matmul(
        matmul: &Matmul,
        x: &[f32],
        w: &QMatrix,
        bias: Option<&[f32]>,
        initial: Option<&[f32]>,
        m: usize,
    ) -> Vec<f32> {
        let gpu = gpu();
        let n = w.rows();
        let x_buffer = gpu.buffer_from("test x", x);
        let bias_buffer = bias.map(|bias| gpu.buffer_from("test bias", bias));
        // Without `initial`, `out` starts with a stale value that the
        // product must overwrite.
        let stale = vec![12345.0; m * n];
        let out = gpu.buffer_from("test out", initial.unwrap_or(&stale));
        let accumulate = initial.is_some();
        run(|encoder| {
            let bias = bias_buffer.as_ref();
            matmul.encode(gpu, encoder, &x_buffer, w, bias, &out, m as u32, accumulate);
        });
        read_f32(&out, m * n)
    }

    /// Runs `matmul.transposed_encode` on the GPU and returns `out`.
    fn run_transposed(
        matmul: &Matmul,
        dy: &[f32],
        w: &QMatrix,
        initial: Option<&[f32]>,
        m: usize,
    ) -> Vec<f32> {
        let gpu = gpu();
        let k = w.cols();
        let dy_buffer = gpu.buffer_from("test dy", dy);
        let out = match initial {
            Some(initial) => gpu.buffer_from("test out", initial),
            None => gpu.buffer_zeroed("test out", 4 * (m * k) as u64),
        };
        let accumulate = initial.is_some();
        run(|encoder| {
            matmul.transposed_encode(gpu, encoder, &dy_buffer, w, &out, m as u32, accumulate);
        });
        read_f32(&out, m * k)
    }

    /// Returns w transposed: [k, n] from [n, k].
    fn transpose(w: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut t = vec![0.0; n * k];
        for j in 0..n {
            for l in 0..k {
                t[l * n + j] = w[j * k + l];
            }
        }
        t
    }

    #[test]
    fn matmul_matches_cpu_for_every_dtype() {
        let gpu = gpu();
        let matmul = Matmul::new(gpu).unwrap();
        let mut rng = rng(1);
        // (M, N, blocks of K). M up to GEMV_MAX_ROWS takes the GEMV kernel
        // where K is a multiple of 4, and larger M the tiled one. No size is
        // a multiple of its tile.
        let shapes = [
            (1, 37, 3),
            (3, 70, 2),
            (5, 33, 3),
            (67, 130, 2),
            (130, 9, 1),
        ];
        for dtype in DTYPES {
            for &(m, n, blocks) in &shapes {
                // Unquantized types also get a K that is a multiple of 4 but
                // not of 16.
                let mut ks = vec![cols_for(dtype, blocks)];
                if !dtype.is_quantized() {
                    ks.push(blocks * 16 + 4);
                }
                for k in ks {
                    let (bytes, w_values) = random_weight(&mut rng, dtype, n, k);
                    let w = QMatrix::upload(gpu, "test w", dtype, n, k, &bytes).unwrap();
                    let x = uniform_vec(&mut rng, m * k, 1.0);

                    let actual = run_matmul(&matmul, &x, &w, None, None, m);

                    let (expected, scale) = reference(&x, &w_values, None, None, m, n, k);
                    let what = format!("{dtype} M={m} N={n} K={k}");
                    assert_close(&what, &actual, &expected, &scale, TOLERANCE);
                }
            }
        }
    }

    #[test]
    fn gemv_splits_rows_across_threads() {
        // GPUs share each row among several threads and reduce their partial
        // sums; lavapipe runs one thread a row unless told otherwise.
        let gpu = gpu();
        let mut rng = rng(6);
        let (n, k) = (70, 96);
        // lavapipe's subgroups have 8 lanes, so 2 and 8 threads a row reduce
        // with subgroup shuffles and 32 and 64 in workgroup memory.
        for threads_per_row in [2, 8, 32, 64] {
            let matmul = Matmul::with_gemv_threads_per_row(gpu, threads_per_row).unwrap();
            for dtype in [DType::F32, DType::Q4_1, DType::Q8_0] {
                let (bytes, w_values) = random_weight(&mut rng, dtype, n, k);
                let w = QMatrix::upload(gpu, "test w", dtype, n, k, &bytes).unwrap();
                let m = 2;
                let x = uniform_vec(&mut rng, m * k, 1.0);
                let bias = uniform_vec(&mut rng, n, 1.0);

                let actual = run_matmul(&matmul, &x, &w, Some(&bias), None, m);

                let (expected, scale) = reference(&x, &w_values, Some(&bias), None, m, n, k);
                let what = format!("{dtype} with {threads_per_row} threads a row");
                assert_close(&what, &actual, &expected, &scale, TOLERANCE);
            }
        }
        // One row a workgroup over more rows than one dispatch dimension
        // allows, so the rows are split over x and z.
        let matmul = Matmul::with_gemv_threads_per_row(gpu, 64).unwrap();
        let (n, k, dtype) = (65_600, 32, DType::Q4_1);
        let (bytes, w_values) = random_weight(&mut rng, dtype, n, k);
        let w = QMatrix::upload(gpu, "test w", dtype, n, k, &bytes).unwrap();
        let x = uniform_vec(&mut rng, k, 1.0);
        let actual = run_matmul(&matmul, &x, &w, None, None, 1);
        let (expected, scale) = reference(&x, &w_values, None, None, 1, n, k);
        assert_close("65600 rows", &actual, &expected, &scale, TOLERANCE);

        assert!(Matmul::with_gemv_threads_per_row(gpu, 3).is_err());
        assert!(Matmul::with_gemv_threads_per_row(gpu, 128).is_err());
    }

    #[test]
    fn matmul_adds_bias_and_accumulates() {
        let gpu = gpu();
        let matmul = Matmul::new(gpu).unwrap();
        let mut rng = rng(2);
        let (n, k) = (45, 64);
        for dtype in [DType::F32, DType::Q4_1] {
            let (bytes, w_values) = random_weight(&mut rng, dtype, n, k);
            let w = QMatrix::upload(gpu, "test w", dtype, n, k, &bytes).unwrap();
            for m in [1, 70] {
                let x = uniform_vec(&mut rng, m * k, 1.0);
                let bias = uniform_vec(&mut rng, n, 1.0);
                let initial = uniform_vec(&mut rng, m * n, 1.0);
                let cases = [
                    ("bias", Some(&bias[..]), None),
                    ("accumulate", None, Some(&initial[..])),
                    ("bias and accumulate", Some(&bias[..]), Some(&initial[..])),
                ];
                for (case, bias, initial) in cases {
                    let actual = run_matmul(&matmul, &x, &w, bias, initial, m);

                    let (expected, scale) = reference(&x, &w_values, bias, initial, m, n, k);
                    let what = format!("{dtype} M={m} {case}");
                    assert_close(&what, &actual, &expected, &scale, TOLERANCE);
                }
            }
        }
    }

    #[test]
    fn swiglu_matches_cpu_for_lane_dtypes() {
        let gpu = gpu();
        let matmul = Matmul::new(gpu).unwrap();
        let mut rng = rng(5);
        for dtype in LANE_DTYPES {
            // (M, N, blocks of K, rows a chunk): every tile, a partial tile,
            // and weights split into chunks.
            for (m, n, blocks, chunk_rows) in [
                (1, 37, 3, 0),
                (1, 150, 20, 41),
                (1, 40, 21, 0),
                (3, 70, 2, 0),
                (6, 130, 2, 0),
                (5, 150, 2, 41),
            ] {
                // The lane kernels take K in whole 32-value blocks.
                let k = 32 * blocks;
                let (gate_bytes, gate_values) = random_weight(&mut rng, dtype, n, k);
                let (up_bytes, up_values) = random_weight(&mut rng, dtype, n, k);
                let gate = upload_in_chunks(dtype, n, k, &gate_bytes, chunk_rows);
                let up = upload_in_chunks(dtype, n, k, &up_bytes, chunk_rows);
                let x = uniform_vec(&mut rng, m * k, 1.0);
                let x_buffer = gpu.buffer_from("test x", &x);
                let out = gpu.buffer_zeroed("test out", 4 * (m * n) as u64);
                let mut fused = false;
                run(|encoder| {
                    fused =
                        matmul.encode_swiglu(gpu, encoder, &x_buffer, &gate, &up, &out, m as u32);
                });
                if !gpu.has_cpu_lanes() {
                    assert!(!fused, "{dtype}: fused without lane kernels");
                    continue;
                }
                assert!(fused, "{dtype}: not fused");
                let actual = read_f32(&out, m * n);

                let (g, g_scale) = reference(&x, &gate_values, None, None, m, n, k);
                let (u, u_scale) = reference(&x, &up_values, None, None, m, n, k);
                let silu = |g: f64| g / (1.0 + (-g).exp());
                let expected: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| silu(g) * u).collect();
                // |silu'| < 1.1 and |silu(g)| <= |g|, so errors in g and u
                // carry over at most scaled by |u| and |g|.
                let scale: Vec<f64> = (0..m * n)
                    .map(|i| 1.1 * g_scale[i] * u[i].abs() + g[i].abs() * u_scale[i])
                    .collect();
                let what = format!("swiglu {dtype} M={m} N={n} K={k} chunk rows {chunk_rows}");
                assert_close(&what, &actual, &expected, &scale, TOLERANCE);
            }
        }
    }

    #[test]
    fn unrolled_kernel_matches_cpu() {
        // One activation row of quantized weights takes the unrolled kernel
        // on lane adapters when K has at most 20 blocks, and the lane kernel
        // at 21 and 48 blocks.
        let gpu = gpu();
        let matmul = Matmul::new(gpu).unwrap();
        let mut rng = rng(7);
        for dtype in LANE_DTYPES {
            let shapes = [
                (37, 1, 0),
                (70, 20, 0),
                (150, 5, 41),
                (9, 21, 0),
                (20, 48, 7),
            ];
            for (n, blocks, chunk_rows) in shapes {
                let k = 32 * blocks;
                let unrolled = matmul.unrolled_for(gpu, dtype, 1, k, false).is_some();
                let expected = gpu.has_cpu_lanes()
                    && dtype.is_quantized()
                    && blocks <= unrolled::MAX_BLOCKS as usize;
                assert_eq!(unrolled, expected, "{dtype} K={k}");
                let (bytes, w_values) = random_weight(&mut rng, dtype, n, k);
                let w = upload_in_chunks(dtype, n, k, &bytes, chunk_rows);
                let x = uniform_vec(&mut rng, k, 1.0);
                let bias = uniform_vec(&mut rng, n, 1.0);
                let initial = uniform_vec(&mut rng, n, 1.0);
                let cases = [
                    ("plain", None, None),
                    ("bias", Some(&bias[..]), None),
                    ("accumulate", None, Some(&initial[..])),
                    ("bias and accumulate", Some(&bias[..]), Some(&initial[..])),
                ];
                for (case, bias, initial) in cases {
                    let actual = run_matmul(&matmul, &x, &w, bias, initial, 1);

                    let (expected, scale) = reference(&x, &w_values, bias, initial, 1, n, k);
                    let label = format!("{dtype} N={n} K={k} chunk rows {chunk_rows} {case}");
                    assert_close(&label, &actual, &expected, &scale, TOLERANCE);
                }
            }
        }
    }

    #[test]
    fn matmul_uses_every_chunk() {
        let gpu = gpu();
        let matmul = Matmul::new(gpu).unwrap();
        let mut rng = rng(3);
        let (n, k) = (150, 64);
        for dtype in [DType::F16, DType::Q8_0, DType::Q6K] {
            let k = if dtype == DType::Q6K { 256 } else { k };
            let (bytes, w_values) = random_weight(&mut rng, dtype, n, k);
            // About 40 rows a chunk, so 4 chunks with a partial last one.
            let chunk_bytes = (bytes.len() / n * 41) as u64;
            let w =
                QMatrix::upload_chunked(gpu, "test w", dtype, n, k, &bytes, chunk_bytes).unwrap();
            assert!(w.chunk_count() >= 3, "{dtype}: {} chunks", w.chunk_count());
            for m in [1, 66] {
                let x = uniform_vec(&mut rng, m * k, 1.0);
                let bias = uniform_vec(&mut rng, n, 1.0);

                let actual = run_matmul(&matmul, &x, &w, Some(&bias), None, m);

                let (expected, scale) = reference(&x, &w_values, Some(&bias), None, m, n, k);
                let what = format!("{dtype} chunked M={m}");
                assert_close(&what, &actual, &expected, &scale, TOLERANCE);
            }
        }
    }

    #[test]
    fn transposed_matches_cpu_for_every_dtype() {
        let gpu = gpu();
        let matmul = Matmul::new(gpu).unwrap();
        let mut rng = rng(4);
        for dtype in DTYPES {
            // M = 1 takes the per-row kernel, larger M the tiled one.
            for &(m, n, blocks) in &[(1, 37, 3), (6, 21, 2), (70, 45, 3)] {
                let k = cols_for(dtype, blocks);
                let (bytes, w_values) = random_weight(&mut rng, dtype, n, k);
                let w = QMatrix::upload(gpu, "test w", dtype, n, k, &bytes).unwrap();
                let dy = uniform_vec(&mut rng, m * n, 1.0);

                let actual = run_transposed(&matmul, &dy, &w, None, m);

                // dy · w is dy · (wᵀ)ᵀ, the forward reference with wᵀ.
                let w_t = transpose(&w_values, n, k);
                let (expected, scale) = reference(&dy, &w_t, None, None, m, k, n);
                let what = format!("{dtype} transposed M={m} N={n} K={k}");
                assert_close(&what, &actual, &expected, &scale, TOLERANCE);
            }
        }
    }

    #[test]
    fn transposed_accumulates_over_chunks() {
        let gpu = gpu();
        let matmul = Matmul::new(gpu).unwrap();
        let mut rng = rng(5);
        let (n, k) = (100, 96);
        let dtype = DType::Q4_0;
        let (bytes, w_values) = random_weight(&mut rng, dtype, n, k);
        let chunk_bytes = (bytes.len() / n * 30) as u64;
        let w = QMatrix::upload_chunked(gpu, "test w", dtype, n, k, &bytes, chunk_bytes).unwrap();
        assert!(w.chunk_count() >= 3, "{} chunks", w.chunk_count());
        let w_t = transpose(&w_values, n, k);
        // M = 3 takes the per-row kernel, M = 67 the tiled one.
        for m in [3, 67] {
            let dy = uniform_vec(&mut rng, m * n, 1.0);
            let initial = uniform_vec(&mut rng, m * k, 1.0);

            let overwritten = run_transposed(&matmul, &dy, &w, None, m);
            let (expected, scale) = reference(&dy, &w_t, None, None, m, k, n);
            let what = format!("chunked transposed M={m}");
            assert_close(&what, &overwritten, &expected, &scale, TOLERANCE);

            let accumulated = run_transposed(&matmul, &dy, &w, Some(&initial), m);
            let (expected, scale) = reference(&dy, &w_t, None, Some(&initial), m, k, n);
            let what = format!("chunked transposed accumulate M={m}");
            assert_close(&what, &accumulated, &expected, &scale, TOLERANCE);
        }
    }

    #[test]
    fn benchmark_reports_throughput() {
        let gflops = benchmark(gpu(), DType::Q4_1, 2, 64, 64, 2).unwrap();
        assert!(gflops.is_finite(), "{gflops} GFLOP/s");
        assert!(gflops > 0.0, "{gflops} GFLOP/s");
    }
}

/// Throughput on the shapes of SmolLM2-135M; run with
/// `cargo test --release -p laser-gpu matmul_throughput -- --ignored --nocapture`.
#[cfg(test)]
mod throughput {
    use super::*;
    use crate::testing::gpu;

    #[test]
    #[ignore = "benchmark: prints GFLOP/s, takes tens of seconds on lavapipe"]
    fn matmul_throughput() {
        let gpu = gpu();
        println!("adapter: {}", gpu.describe());
        let env_filter = std::env::var("MATMUL_SHAPES").unwrap_or_default();
        // (dtype, M, N, K, iterations)
        let cases = [
            (DType::F32, 1024, 1024, 1024, 3),
            (DType::Q4_1, 128, 1536, 576, 5),
            (DType::Q8_0, 128, 1536, 576, 5),
            (DType::F16, 128, 1536, 576, 5),
            (DType::Q4K, 128, 1536, 768, 5),
            (DType::Q4_1, 1, 576, 576, 200),
            (DType::Q4_1, 1, 192, 576, 200),
            (DType::Q4_1, 1, 1536, 576, 100),
            (DType::Q4_1, 1, 576, 1536, 100),
            (DType::Q8_0, 1, 49152, 576, 10),
            (DType::F16, 1, 1536, 576, 100),
            (DType::F32, 1, 1536, 576, 100),
            (DType::F32, 1, 1024, 1024, 50),
            // Nearly no work: the fixed cost of one dispatch.
            (DType::Q4_1, 1, 8, 32, 200),
        ];
        for (dtype, m, n, k, iterations) in cases {
            let name = format!("{dtype} {m}x{n}x{k}");
            if !env_filter.is_empty() && !name.contains(&env_filter) {
                continue;
            }
            // The best of 3 runs, because other processes share the CPU
            // that lavapipe runs on.
            let gflops = (0..3)
                .map(|_| benchmark(gpu, dtype, m, n, k, iterations).unwrap())
                .fold(0.0, f64::max);
            let micros = 2.0 * f64::from(m * n) * f64::from(k) / gflops / 1e3;
            println!("{name}: {gflops:.2} GFLOP/s, {micros:.1} us per product");
        }
    }
}
