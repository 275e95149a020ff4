//! Tensor element types as stored in model files, with their block layouts.
//!
//! Quantized types follow ggml's block formats (ggml `ggml-common.h`): a
//! row of K values is a sequence of K / block_size blocks, each holding its
//! scales and packed quants. Rows never share a block, so K must be a
//! multiple of the block size.

use std::fmt;

/// The stored element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// 32 values: f16 scale `d`, then 32 signed bytes; x = d * q.
    Q8_0,
    /// 32 values: f16 scale `d`, then 16 bytes of 4-bit quants; x = d * (q - 8).
    /// Byte j holds value j in its low nibble and value j + 16 in its high one.
    Q4_0,
    /// 32 values: f16 scale `d`, f16 minimum `m`, then 16 bytes of 4-bit quants
    /// in Q4_0's order; x = d * q + m.
    Q4_1,
    /// 256 values in 8 sub-blocks of 32: f16 `d`, f16 `dmin`, 12 bytes of
    /// 6-bit sub-block scales and mins, 128 bytes of 4-bit quants.
    Q4K,
    /// 256 values in 16 sub-blocks of 16: 128 bytes of low 4 bits, 64 bytes of
    /// high 2 bits, 16 signed 8-bit sub-block scales, f16 `d`.
    Q6K,
}

impl DType {
    /// Every supported type, unquantized first.
    pub const ALL: [DType; 8] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q4K,
        Self::Q6K,
    ];

    /// The number of values in one block (1 for unquantized types).
    pub const fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q8_0 | Self::Q4_0 | Self::Q4_1 => 32,
            Self::Q4K | Self::Q6K => 256,
        }
    }

    /// The number of bytes one block occupies in the file.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q8_0 => 34,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q4K => 144,
            Self::Q6K => 210,
        }
    }

    /// Whether values are stored in blocks with shared scales.
    pub const fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// The stored byte size of `n` values, or `None` when `n` is not a whole
    /// number of blocks or the size overflows.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_size()) {
            return None;
        }
        (n / self.block_size()).checked_mul(self.block_bytes())
    }

    /// The ggml type id used in GGUF tensor infos.
    pub const fn ggml_id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q6K => 14,
            Self::BF16 => 30,
        }
    }

    /// The type with ggml type id `id`, if this crate supports it.
    pub const fn from_ggml_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q8_0 => "Q8_0",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q4K => "Q4_K",
            Self::Q6K => "Q6_K",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_ids_round_trip() {
        for dtype in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::Q8_0,
            DType::Q4_0,
            DType::Q4_1,
            DType::Q4K,
            DType::Q6K,
        ] {
            assert_eq!(DType::from_ggml_id(dtype.ggml_id()), Some(dtype));
        }
    }

    #[test]
    fn bytes_for_rejects_partial_blocks() {
        assert_eq!(DType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(DType::Q4_1.bytes_for(33), None);
        assert_eq!(DType::F16.bytes_for(3), Some(6));
    }
}
