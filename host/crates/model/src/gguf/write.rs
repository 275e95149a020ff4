//! A small GGUF v3 writer, for building test models as real files.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

use super::read::align_up;
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MetadataArray, MetadataValue, ValueType};
use crate::{DType, quant};

/// Builds a GGUF v3 file in memory: metadata, then tensors in any `DType`.
///
/// Defaults: no metadata, no tensors, alignment 32 (written as
/// `general.alignment` only when changed with [`GgufWriter::set_alignment`]).
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<PendingTensor>,
    alignment: Option<u32>,
}

#[derive(Clone, Debug)]
struct PendingTensor {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl GgufWriter {
    /// Creates an empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the metadata pair `key` = `value`, replacing an earlier value
    /// under the same key.
    pub fn add_metadata(&mut self, key: &str, value: impl Into<MetadataValue>) -> &mut Self {
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key.to_owned(), value)),
        }
        self
    }

    /// Adds a string array under `key`.
    pub fn add_str_array<S: AsRef<str>>(&mut self, key: &str, values: &[S]) -> &mut Self {
        let values = values
            .iter()
            .map(|s| MetadataValue::String(s.as_ref().to_owned()))
            .collect();
        self.add_metadata(
            key,
            MetadataArray {
                element_type: ValueType::String,
                values,
            },
        )
    }

    /// Adds an i32 array under `key`.
    pub fn add_i32_array(&mut self, key: &str, values: &[i32]) -> &mut Self {
        let values = values.iter().map(|&v| MetadataValue::I32(v)).collect();
        self.add_metadata(
            key,
            MetadataArray {
                element_type: ValueType::I32,
                values,
            },
        )
    }

    /// Sets the alignment of tensor data and records it as
    /// `general.alignment`.
    pub fn set_alignment(&mut self, alignment: u32) -> &mut Self {
        self.alignment = Some(alignment);
        self.add_metadata("general.alignment", alignment)
    }

    /// Adds a tensor from its stored bytes. `shape` is row-major, outermost
    /// first, as in [`crate::TensorView`].
    ///
    /// # Errors
    ///
    /// Fails when the shape is empty, has a zero or more than four
    /// dimensions, has a row length that is not whole blocks, or does not
    /// match the byte count.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[usize],
        data: Vec<u8>,
    ) -> Result<&mut Self> {
        ensure!(
            (1..=4).contains(&shape.len()) && shape.iter().all(|&d| d > 0),
            "gguf writer: tensor `{name}` shape {shape:?} is invalid: expected 1 to 4 nonzero dimensions"
        );
        let n: usize = shape.iter().product();
        let row = shape[shape.len() - 1];
        ensure!(
            row.is_multiple_of(dtype.block_size()),
            "gguf writer: tensor `{name}` row length {row} is not a multiple of the {dtype} block size {}",
            dtype.block_size()
        );
        let expected = dtype
            .bytes_for(n)
            .context("gguf writer: tensor size overflows")?;
        if data.len() != expected {
            bail!(
                "gguf writer: tensor `{name}` has {} bytes: expected {expected} for {dtype} {shape:?}",
                data.len()
            );
        }
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dtype,
            shape: shape.to_vec(),
            data,
        });
        Ok(self)
    }

    /// Adds a tensor from f32 values, converted or quantized to `dtype`.
    ///
    /// # Errors
    ///
    /// Fails as [`GgufWriter::add_tensor`] does, and when `values.len()`
    /// does not match the shape.
    pub fn add_f32_tensor(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[usize],
        values: &[f32],
    ) -> Result<&mut Self> {
        let n: usize = shape.iter().product();
        ensure!(
            values.len() == n,
            "gguf writer: tensor `{name}` has {} values: expected {n} for shape {shape:?}",
            values.len()
        );
        let row = shape.last().copied().unwrap_or(0);
        ensure!(
            row > 0 && row.is_multiple_of(dtype.block_size()),
            "gguf writer: tensor `{name}` row length {row} is not a multiple of the {dtype} block size {}",
            dtype.block_size()
        );
        let data = quant::quantize(dtype, values)?;
        self.add_tensor(name, dtype, shape, data)
    }

    /// Serializes the file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = self.alignment.map_or(DEFAULT_ALIGNMENT, u64::from).max(1);
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_string(&mut out, key);
            out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            write_value(&mut out, value);
        }

        // Offsets are relative to the data section, which starts aligned,
        // and every tensor's data is padded to the alignment.
        let mut offset = 0u64;
        for tensor in &self.tensors {
            write_string(&mut out, &tensor.name);
            out.extend_from_slice(&(tensor.shape.len() as u32).to_le_bytes());
            for &dim in tensor.shape.iter().rev() {
                out.extend_from_slice(&(dim as u64).to_le_bytes());
            }
            out.extend_from_slice(&tensor.dtype.ggml_id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = align_up(offset + tensor.data.len() as u64, alignment).expect("small sizes");
        }

        pad_to(&mut out, alignment);
        for tensor in &self.tensors {
            out.extend_from_slice(&tensor.data);
            pad_to(&mut out, alignment);
        }
        out
    }

    /// Writes the file to `path`.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be written.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes())
            .with_context(|| format!("gguf writer: failed to write {}", path.display()))
    }
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let len = align_up(out.len() as u64, alignment).expect("small sizes") as usize;
    out.resize(len, 0);
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &MetadataValue) {
    match value {
        MetadataValue::U8(v) => out.push(*v),
        MetadataValue::I8(v) => out.push(*v as u8),
        MetadataValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.push(u8::from(*v)),
        MetadataValue::String(v) => write_string(out, v),
        MetadataValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Array(array) => {
            out.extend_from_slice(&(array.element_type as u32).to_le_bytes());
            out.extend_from_slice(&(array.values.len() as u64).to_le_bytes());
            for element in &array.values {
                write_value(out, element);
            }
        }
    }
}
