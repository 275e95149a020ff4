//! Token embedding lookup from a [`QMatrix`] table, dequantized on the fly
//! by `embedding.wgsl`.

use anyhow::Result;

use crate::Gpu;
use crate::device::groups;
use crate::pass::{compile, dispatch};
use crate::qmatrix::{DTYPES, QMatrix, dequant_snippet, dtype_index};

const SOURCE: &str = include_str!("../../../../shaders/embedding.wgsl");

/// Threads in one workgroup of `embedding.wgsl`, each covering 4 channels.
const WORKGROUP: u32 = 64;

/// `EmbeddingParams` of `embedding.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct EmbeddingParams {
    m: u32,
    rows: u32,
    c: u32,
    row_offset: u32,
    vocabulary: u32,
    row_words: u32,
    scale_base: u32,
    last_chunk: u32,
}

const _: () = assert!(std::mem::size_of::<EmbeddingParams>() == 32);

/// Embedding lookup; one pipeline per table type, compiled once.
pub struct Embedding {
    /// Indexed by [`dtype_index`].
    pipelines: Vec<wgpu::ComputePipeline>,
}

impl Embedding {
    /// Compiles the lookup kernel for every table type.
    ///
    /// # Errors
    ///
    /// Fails when the kernel does not compile on this device.
    pub fn new(gpu: &Gpu) -> Result<Embedding> {
        let mut pipelines = Vec::with_capacity(DTYPES.len());
        for dtype in DTYPES {
            let source = format!("{}\n{SOURCE}", dequant_snippet(dtype));
            pipelines.push(compile(
                gpu,
                &format!("embedding {dtype}"),
                &source,
                "embedding",
            )?);
        }
        Ok(Embedding { pipelines })
    }

    /// Records `out[m, :] = table[tokens[m], :]`, dequantized to f32.
    ///
    /// `tokens` is u32 \[M\] and `out` f32 \[M, C\] with C = `table.cols()`;
    /// only the first `m` tokens are used. A token id past the table's last
    /// row gives a row of zeros.
    ///
    /// # Panics
    ///
    /// Panics when a buffer is smaller than its shape.
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut crate::Encoder,
        table: &QMatrix,
        tokens: &wgpu::Buffer,
        out: &wgpu::Buffer,
        m: u32,
    ) {
        if m == 0 {
            return;
        }
        let channels = table.cols() as u64;
        assert!(
            tokens.size() >= 4 * u64::from(m),
            "embedding: `tokens` buffer has {} bytes for {m} tokens",
            tokens.size()
        );
        assert!(
            out.size() >= 4 * u64::from(m) * channels,
            "embedding: `out` buffer has {} bytes, expected at least {}",
            out.size(),
            4 * u64::from(m) * channels
        );

        let pipeline = &self.pipelines[dtype_index(table.dtype())];
        let chunks = table.chunks();
        for (i, chunk) in chunks.iter().enumerate() {
            let params = EmbeddingParams {
                m,
                rows: chunk.rows,
                c: channels as u32,
                row_offset: chunk.row_offset,
                vocabulary: table.rows() as u32,
                row_words: table.row_words(),
                scale_base: chunk.scale_base,
                last_chunk: u32::from(i + 1 == chunks.len()),
            };
            let label = format!("embedding {} rows {}", table.dtype(), chunk.row_offset);
            let uniform = gpu.uniform(&label, &params);
            let bind_group = gpu.bind_group(
                &label,
                pipeline,
                &[
                    uniform.as_entire_binding(),
                    tokens.as_entire_binding(),
                    chunk.buffer.as_entire_binding(),
                    out.as_entire_binding(),
                ],
            );
            let workgroups = [groups(table.groups(), WORKGROUP), m, 1];
            dispatch(gpu, encoder, &label, pipeline, &bind_group, workgroups);
        }
    }
}

#[cfg(test)]
mod tests {
    use laser_model::DType;

    use super::*;
    use crate::qmatrix::test_support::{assert_close, cols_for, random_weight};
    use crate::testing::{gpu, read_f32, rng, run};

    /// Runs the lookup on the GPU and returns `out`.
    fn lookup(embedding: &Embedding, table: &QMatrix, tokens: &[u32]) -> Vec<f32> {
        let gpu = gpu();
        let m = tokens.len();
        let token_buffer = gpu.buffer_from("test tokens", tokens);
        // Start from NaN so rows the kernel skips show up.
        let out = gpu.buffer_from("test out", &vec![f32::NAN; m * table.cols()]);
        run(|encoder| embedding.encode(gpu, encoder, table, &token_buffer, &out, m as u32));
        read_f32(&out, m * table.cols())
    }

    /// Returns the rows of `values` named by `tokens`, zeros past the end.
    fn reference(values: &[f32], rows: usize, cols: usize, tokens: &[u32]) -> Vec<f64> {
        let mut expected = Vec::new();
        for &token in tokens {
            let token = token as usize;
            for c in 0..cols {
                let value = if token < rows {
                    values[token * cols + c]
                } else {
                    0.0
                };
                expected.push(f64::from(value));
            }
        }
        expected
    }

    #[test]
    fn embedding_matches_cpu_for_every_dtype() {
        let gpu = gpu();
        let embedding = Embedding::new(gpu).unwrap();
        let mut rng = rng(11);
        let rows = 50;
        let tokens = [3, 0, 49, 3, 17, 50, 1000];
        for dtype in DTYPES {
            let cols = cols_for(dtype, 2);
            let (bytes, values) = random_weight(&mut rng, dtype, rows, cols);
            let table = QMatrix::upload(gpu, "test table", dtype, rows, cols, &bytes).unwrap();

            let actual = lookup(&embedding, &table, &tokens);

            let expected = reference(&values, rows, cols, &tokens);
            let scale = vec![1.0; expected.len()];
            // Lookups copy the dequantized value: exact up to f32 rounding.
            assert_close(
                &format!("{dtype} embedding"),
                &actual,
                &expected,
                &scale,
                1e-6,
            );
        }
    }

    #[test]
    fn embedding_reads_every_chunk() {
        let gpu = gpu();
        let embedding = Embedding::new(gpu).unwrap();
        let mut rng = rng(12);
        let (rows, dtype) = (100, DType::Q8_0);
        let cols = cols_for(dtype, 3);
        let (bytes, values) = random_weight(&mut rng, dtype, rows, cols);
        let chunk_bytes = (bytes.len() / rows * 30) as u64;
        let table =
            QMatrix::upload_chunked(gpu, "test table", dtype, rows, cols, &bytes, chunk_bytes)
                .unwrap();
        assert!(table.chunk_count() >= 3, "{} chunks", table.chunk_count());
        let tokens = [99, 0, 29, 30, 31, 65, 100, 5];

        let actual = lookup(&embedding, &table, &tokens);

        let expected = reference(&values, rows, cols, &tokens);
        let scale = vec![1.0; expected.len()];
        assert_close("chunked embedding", &actual, &expected, &scale, 1e-6);
    }
}
