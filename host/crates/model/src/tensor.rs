//! A borrowed view of one stored tensor: its name, element type, shape and
//! raw bytes, whichever file format it came from.

use anyhow::Result;

use crate::{DType, quant};

/// One tensor as stored in a model file.
///
/// `shape` is row-major, outermost first: a weight of N output features by
/// K input features has shape `[N, K]` (ggml dims `[ne0 = K, ne1 = N]`), and
/// each of its N rows contains K values. `data` contains the stored bytes, which
/// are `dtype.bytes_for(n_elements)` long.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorView<'a> {
    /// The canonical (GGUF) tensor name, such as `blk.0.attn_q.weight`.
    pub name: &'a str,
    /// The stored element type.
    pub dtype: DType,
    /// The row-major shape, outermost first.
    pub shape: Vec<usize>,
    /// The stored bytes.
    pub data: &'a [u8],
}

impl TensorView<'_> {
    /// Returns the number of elements.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Returns the row length: the last (innermost) dimension.
    pub fn row_len(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Returns the number of rows: the product of all dimensions but the last.
    pub fn n_rows(&self) -> usize {
        self.shape[..self.shape.len().saturating_sub(1)]
            .iter()
            .product()
    }

    /// Converts the tensor to f32 values on the CPU, in row-major order.
    ///
    /// # Errors
    ///
    /// Fails when the byte count does not match the shape and type.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        quant::dequantize(self.dtype, self.data, self.n_elements())
    }
}
