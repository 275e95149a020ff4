//! Weight matrices kept on the GPU in their stored (quantized) format.
//!
//! A [`QMatrix`] is an [N, K] weight (N output features, K input features)
//! uploaded from the bytes of a model file. Blocks are repacked at upload so
//! every kernel reads whole `u32` words: the quants of each row go first, the
//! scales of all the chunk's blocks after them (Q8_0's 34-byte and Q4_0's
//! 18-byte blocks are not word-aligned as stored). The bits per weight stay
//! within about 2% of the file's. The `dequant_*.wgsl` snippet of each type
//! documents its packed layout and reads it back.
//!
//! A matrix larger than one storage binding is split into row chunks, each
//! in its own buffer. Kernels are dispatched once a chunk, with the chunk's
//! row offset.

use anyhow::{Context, Result, bail, ensure};
use laser_model::DType;

/// Returns the WGSL dequantization snippet that reads the packed layout of
/// `dtype`, prepended to every kernel that reads a [`QMatrix`].
pub(crate) fn dequant_snippet(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => include_str!("../../../../shaders/dequant_f32.wgsl"),
        DType::F16 => include_str!("../../../../shaders/dequant_f16.wgsl"),
        DType::BF16 => include_str!("../../../../shaders/dequant_bf16.wgsl"),
        DType::Q8_0 => include_str!("../../../../shaders/dequant_q8_0.wgsl"),
        DType::Q4_0 => include_str!("../../../../shaders/dequant_q4_0.wgsl"),
        DType::Q4_1 => include_str!("../../../../shaders/dequant_q4_1.wgsl"),
        DType::Q4K => include_str!("../../../../shaders/dequant_q4_k.wgsl"),
        DType::Q6K => include_str!("../../../../shaders/dequant_q6_k.wgsl"),
    }
}

/// Every type a [`QMatrix`] can hold, in a fixed order for pipeline tables.
pub(crate) const DTYPES: [DType; 8] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q4K,
    DType::Q6K,
];

/// Position of `dtype` in [`DTYPES`].
pub(crate) fn dtype_index(dtype: DType) -> usize {
    DTYPES
        .iter()
        .position(|&d| d == dtype)
        .expect("DTYPES lists every DType")
}

/// One row range of a [`QMatrix`] in its own buffer.
pub(crate) struct Chunk {
    /// Packed words: `rows * row_words` quant words, then the scales.
    pub buffer: wgpu::Buffer,
    /// The matrix row of this chunk's first row.
    pub row_offset: u32,
    pub rows: u32,
    /// The word index in `buffer` where the scales start.
    pub scale_base: u32,
}

/// A [rows, cols] weight kept on the GPU in its stored (quantized) format.
pub struct QMatrix {
    /// N, the number of output features.
    rows: usize,
    /// K, the number of input features.
    cols: usize,
    dtype: DType,
    /// Quant words per row in the packed layout.
    row_words: u32,
    chunks: Vec<Chunk>,
}

impl QMatrix {
    /// Uploads a weight. `bytes` is the tensor as stored in the model file,
    /// row-major, `rows` rows of `cols` values each.
    ///
    /// # Errors
    ///
    /// Fails when `cols` is not a multiple of the block size, when `bytes`
    /// has the wrong length, or when one row does not fit in a storage
    /// binding.
    pub fn upload(
        gpu: &crate::Gpu,
        label: &str,
        dtype: DType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<QMatrix> {
        Self::upload_chunked(
            gpu,
            label,
            dtype,
            rows,
            cols,
            bytes,
            gpu.max_binding_bytes(),
        )
    }

    /// Like [`QMatrix::upload`], with each buffer at most `max_chunk_bytes`
    /// long instead of the device's binding limit (which still applies).
    ///
    /// # Errors
    ///
    /// As [`QMatrix::upload`], and when one row does not fit in
    /// `max_chunk_bytes`.
    pub fn upload_chunked(
        gpu: &crate::Gpu,
        label: &str,
        dtype: DType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
        max_chunk_bytes: u64,
    ) -> Result<QMatrix> {
        let packing =
            Packing::new(dtype, cols).with_context(|| format!("cannot upload weight {label:?}"))?;
        ensure!(rows > 0, "weight {label:?} has no rows");
        ensure!(
            u32::try_from(rows).is_ok(),
            "weight {label:?} has {rows} rows; at most {} are supported",
            u32::MAX
        );
        let row_bytes = dtype.bytes_for(cols).context("row size overflows")?;
        let expected = row_bytes
            .checked_mul(rows)
            .context("weight size overflows")?;
        ensure!(
            bytes.len() == expected,
            "weight {label:?}: got {} bytes for [{rows}, {cols}] {dtype}, expected {expected}",
            bytes.len()
        );

        let max_bytes = max_chunk_bytes.min(gpu.max_binding_bytes());
        let max_rows = packing.max_rows(max_bytes).min(rows);
        if max_rows == 0 {
            bail!(
                "weight {label:?}: one row of {cols} {dtype} values does not fit in a \
                 {max_bytes}-byte storage binding"
            );
        }
        let mut chunks = Vec::new();
        for row_offset in (0..rows).step_by(max_rows) {
            let chunk_rows = max_rows.min(rows - row_offset);
            let start = row_offset * row_bytes;
            let words = packing.pack(&bytes[start..start + chunk_rows * row_bytes], chunk_rows);
            let chunk_label = format!("{label} rows {row_offset}..{}", row_offset + chunk_rows);
            chunks.push(Chunk {
                buffer: gpu.buffer_from(&chunk_label, &words),
                row_offset: row_offset as u32,
                rows: chunk_rows as u32,
                scale_base: (chunk_rows * packing.row_words) as u32,
            });
        }
        Ok(QMatrix {
            rows,
            cols,
            dtype,
            row_words: packing.row_words as u32,
            chunks,
        })
    }

    /// Returns N, the number of output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Returns K, the number of input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Returns the stored element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Returns the bytes this matrix occupies on the GPU, over all chunks.
    pub fn gpu_bytes(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.buffer.size()).sum()
    }

    /// Returns the number of buffers the rows are split into.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    pub(crate) fn row_words(&self) -> u32 {
        self.row_words
    }

    pub(crate) fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// Returns the number of 4-value groups a row is read in, ceil(K / 4).
    pub(crate) fn groups(&self) -> u32 {
        self.cols.div_ceil(4) as u32
    }
}

/// The word layout that one type's rows are repacked into.
struct Packing {
    dtype: DType,
    cols: usize,
    /// Quant words per row.
    row_words: usize,
}

impl Packing {
    fn new(dtype: DType, cols: usize) -> Result<Self> {
        ensure!(cols > 0, "weight has no columns");
        let block = dtype.block_size();
        ensure!(
            cols.is_multiple_of(block),
            "{cols} columns are not a multiple of the {dtype} block size {block}"
        );
        let padded = cols.next_multiple_of(4);
        let blocks = cols / block;
        let row_words = match dtype {
            DType::F32 => padded,
            DType::F16 | DType::BF16 => padded / 2,
            DType::Q8_0 => blocks * 8,
            DType::Q4_0 | DType::Q4_1 => blocks * 4,
            DType::Q4K => blocks * 32,
            DType::Q6K => blocks * 48,
        };
        Ok(Self {
            dtype,
            cols,
            row_words,
        })
    }

    /// Returns the number of scale words for `rows` rows.
    fn scale_words(&self, rows: usize) -> usize {
        let blocks = rows * (self.cols / self.dtype.block_size());
        match self.dtype {
            DType::F32 | DType::F16 | DType::BF16 => 0,
            DType::Q8_0 | DType::Q4_0 => blocks.div_ceil(2),
            DType::Q4_1 => blocks,
            DType::Q4K | DType::Q6K => blocks * 5,
        }
    }

    /// Returns the number of packed bytes of `rows` rows.
    fn bytes(&self, rows: usize) -> u64 {
        4 * (rows * self.row_words + self.scale_words(rows)) as u64
    }

    /// Returns the maximum number of rows whose packed words fit in
    /// `max_bytes`.
    fn max_rows(&self, max_bytes: u64) -> usize {
        // An estimate from the per-row size, corrected down for the rounding
        // of packed f16 scales.
        let per_row = self.bytes(2).div_ceil(2).max(1);
        let mut rows = (max_bytes / per_row) as usize;
        while rows > 0 && self.bytes(rows) > max_bytes {
            rows -= 1;
        }
        rows
    }

    /// Repacks `rows` stored rows into quant words followed by scale words.
    fn pack(&self, bytes: &[u8], rows: usize) -> Vec<u32> {
        let mut quants = Vec::with_capacity(rows * self.row_words);
        let mut scales = Vec::with_capacity(self.scale_words(rows));
        let mut halves: Vec<u16> = Vec::new();
        let row_bytes = bytes.len() / rows;
        for row in bytes.chunks_exact(row_bytes) {
            let start = quants.len();
            match self.dtype {
                DType::F32 => quants.extend(row.chunks_exact(4).map(le_word)),
                DType::F16 | DType::BF16 => {
                    let values: Vec<u16> = row.chunks_exact(2).map(le_half).collect();
                    quants.extend(values.chunks(2).map(pack_halves));
                }
                DType::Q8_0 => {
                    for block in row.chunks_exact(34) {
                        halves.push(le_half(&block[0..2]));
                        quants.extend(block[2..34].chunks_exact(4).map(le_word));
                    }
                }
                DType::Q4_0 => {
                    for block in row.chunks_exact(18) {
                        halves.push(le_half(&block[0..2]));
                        quants.extend(block[2..18].chunks_exact(4).map(le_word));
                    }
                }
                DType::Q4_1 => {
                    for block in row.chunks_exact(20) {
                        scales.push(le_word(&block[0..4]));
                        quants.extend(block[4..20].chunks_exact(4).map(le_word));
                    }
                }
                DType::Q4K => {
                    for block in row.chunks_exact(144) {
                        scales.push(le_word(&block[0..4]));
                        let (sc, mn) = unpack_q4k_scales(&block[4..16]);
                        scales.extend(sc.chunks_exact(4).map(le_word));
                        scales.extend(mn.chunks_exact(4).map(le_word));
                        quants.extend(block[16..144].chunks_exact(4).map(le_word));
                    }
                }
                DType::Q6K => {
                    for block in row.chunks_exact(210) {
                        quants.extend(block[0..192].chunks_exact(4).map(le_word));
                        scales.extend(block[192..208].chunks_exact(4).map(le_word));
                        let d = half::f16::from_bits(le_half(&block[208..210]));
                        scales.push(d.to_f32().to_bits());
                    }
                }
            }
            // Zero-pad unquantized rows to a multiple of 4 values.
            quants.resize(start + self.row_words, 0);
        }
        scales.extend(halves.chunks(2).map(pack_halves));
        debug_assert_eq!(scales.len(), self.scale_words(rows));
        quants.extend(scales);
        quants
    }
}

fn le_word(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
}

fn le_half(bytes: &[u8]) -> u16 {
    u16::from_le_bytes(bytes.try_into().expect("2 bytes"))
}

/// Packs one or two 16-bit values into a word, the first in the lower half.
fn pack_halves(pair: &[u16]) -> u32 {
    let high = pair.get(1).copied().unwrap_or(0);
    u32::from(pair[0]) | (u32::from(high) << 16)
}

/// Unpacks the 12 bytes of 6-bit Q4_K sub-block scales and mins into one
/// byte each, as ggml's `get_scale_min_k4` does.
fn unpack_q4k_scales(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = packed[j] & 63;
            mn[j] = packed[j + 4] & 63;
        } else {
            sc[j] = (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4);
            mn[j] = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
        }
    }
    (sc, mn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_bits_per_weight() {
        // Bits per weight as stored in the file, and the most the packed
        // layout may add.
        let cases = [
            (DType::Q8_0, 8.5, 0.0),
            (DType::Q4_0, 4.5, 0.0),
            (DType::Q4_1, 5.0, 0.0),
            (DType::Q4K, 4.5, 0.125),
            (DType::Q6K, 6.5625, 0.0625),
        ];
        for (dtype, file_bits, extra) in cases {
            let packing = Packing::new(dtype, 1024).unwrap();
            let bits = packing.bytes(64) as f64 * 8.0 / (64.0 * 1024.0);
            assert!(bits >= file_bits, "{dtype}: {bits} bits per weight");
            assert!(bits <= file_bits + extra, "{dtype}: {bits} bits per weight");
        }
    }

    #[test]
    fn max_rows_fits_the_limit() {
        for dtype in DTYPES {
            let packing = Packing::new(dtype, 256).unwrap();
            for limit in [1000u64, 4096, 10_000, 65_536] {
                let rows = packing.max_rows(limit);
                assert!(packing.bytes(rows) <= limit, "{dtype} limit {limit}");
                assert!(packing.bytes(rows + 1) > limit, "{dtype} limit {limit}");
            }
        }
    }

    #[test]
    fn packing_rejects_partial_blocks() {
        assert!(Packing::new(DType::Q4_1, 48).is_err());
        assert!(Packing::new(DType::Q6K, 128).is_err());
        assert!(Packing::new(DType::F16, 3).is_ok());
    }
}

/// Weights, activations and CPU references shared by the kernel tests.
#[cfg(test)]
pub(crate) mod test_support {
    use laser_model::DType;
    use rand::rngs::StdRng;

    use crate::testing::uniform_vec;

    /// Returns a random [rows, cols] weight: its stored bytes and their CPU
    /// dequantization, the reference every kernel is checked against.
    pub fn random_weight(
        rng: &mut StdRng,
        dtype: DType,
        rows: usize,
        cols: usize,
    ) -> (Vec<u8>, Vec<f32>) {
        let values = uniform_vec(rng, rows * cols, 1.0);
        let bytes = laser_model::quant::quantize(dtype, &values).unwrap();
        let dequantized = laser_model::quant::dequantize(dtype, &bytes, rows * cols).unwrap();
        (bytes, dequantized)
    }

    /// Returns a K that is a valid row length for `dtype`: `blocks` blocks,
    /// or for unquantized types 16 * `blocks` + 5, which is not a multiple
    /// of 4.
    pub fn cols_for(dtype: DType, blocks: usize) -> usize {
        if dtype.is_quantized() {
            blocks * dtype.block_size()
        } else {
            blocks * 16 + 5
        }
    }

    /// Asserts `|actual - expected| <= tolerance * scale` for every element,
    /// where `scale[i]` is the magnitude the error is relative to.
    pub fn assert_close(
        what: &str,
        actual: &[f32],
        expected: &[f64],
        scale: &[f64],
        tolerance: f64,
    ) {
        assert_eq!(actual.len(), expected.len(), "{what}: length");
        for i in 0..actual.len() {
            let error = (f64::from(actual[i]) - expected[i]).abs();
            let allowed = tolerance * scale[i].max(1e-3);
            assert!(
                error <= allowed,
                "{what}: element {i} is {}, expected {} (error {error:e} > {allowed:e})",
                actual[i],
                expected[i]
            );
        }
    }
}
