//! GGUF model files: a memory-mapped reader and a small writer.
//!
//! Layout of GGUF v2 and v3 (little-endian, specified in ggml's
//! `docs/gguf.md`): the magic `GGUF`, a u32 version, a u64 tensor count and
//! a u64 metadata count. The metadata key-value pairs and the tensor infos
//! follow, then padding up to the alignment and the data section. Each tensor's offset is
//! relative to the start of the data section and is a multiple of the
//! alignment (`general.alignment`, 32 when absent).
//!
//! The reader trusts nothing in the file: every count, length, dimension and
//! offset is checked against a named cap and against the bytes left, with
//! checked arithmetic, before anything is allocated. Errors read
//! `gguf: PATH: ...` and name the bad value.

mod read;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use memmap2::Mmap;

use crate::DType;
use crate::tensor::TensorView;

pub use write::GgufWriter;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The maximum `general.alignment` accepted, in bytes.
pub const MAX_ALIGNMENT: u64 = 1 << 16;
/// The maximum number of tensors in one file.
pub const MAX_TENSORS: u64 = 1 << 16;
/// The maximum number of metadata key-value pairs in one file.
pub const MAX_METADATA_ENTRIES: u64 = 1 << 16;
/// The maximum length of one string (key, value or tensor name), in bytes.
/// Chat templates are the longest strings in practice, a few tens of KiB.
pub const MAX_STRING_LEN: u64 = 1 << 24;
/// The maximum number of elements in one metadata array. The largest
/// vocabularies and merge lists hold a few hundred thousand entries.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// The maximum nesting of arrays inside metadata arrays.
pub const MAX_ARRAY_DEPTH: usize = 4;
/// The maximum number of dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// The maximum number of elements of one tensor.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 40;

/// The type tag of a metadata value, with its GGUF id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// Returns the type with GGUF id `id`, if there is one.
    pub const fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// Returns the minimum number of bytes one value of this type occupies
    /// in a file: a string or an array stores at least its length.
    pub const fn min_encoded_len(self) -> u64 {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::String => 8,
            Self::Array => 12,
        }
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array whose elements all have type `element_type`.
    Array(MetadataArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A homogeneous metadata array. The element type is kept so that an empty
/// array still records it.
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataArray {
    /// The type of every element.
    pub element_type: ValueType,
    /// The elements, in file order.
    pub values: Vec<MetadataValue>,
}

impl MetadataValue {
    /// Returns the type tag of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::F32(_) => ValueType::F32,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(_) => ValueType::Array,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F64(_) => ValueType::F64,
        }
    }

    /// Returns the value as an unsigned integer, for any integer type holding a
    /// non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Returns the value as a float, for float types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => None,
        }
    }

    /// Returns the value as a string slice, for strings.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

macro_rules! impl_from_value {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for MetadataValue {
            fn from(v: $ty) -> Self {
                Self::$variant(v.into())
            }
        })*
    };
}

impl_from_value!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    f32 => F32, bool => Bool, String => String, &str => String,
    u64 => U64, i64 => I64, f64 => F64, MetadataArray => Array,
);

/// The description of one tensor, read from the tensor infos.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, such as `blk.0.attn_q.weight`.
    pub name: String,
    /// The stored element type.
    pub dtype: DType,
    /// The row-major shape, outermost first: ggml dims `[ne0, ne1]` become
    /// `[ne1, ne0]`, so the last entry is the row length.
    pub shape: Vec<usize>,
    /// The data's offset from the start of the data section, in bytes.
    pub offset: u64,
    /// The data's size, in bytes.
    pub size: usize,
}

impl TensorInfo {
    /// Returns the number of elements.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A GGUF file, memory-mapped, with its metadata and tensor infos parsed and
/// validated.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: Vec<(String, MetadataValue)>,
    metadata_index: HashMap<String, usize>,
    tensor_infos: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: usize,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_entries", &self.metadata.len())
            .field("tensors", &self.tensor_infos.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Opens and memory-maps the GGUF file at `path`, then parses and
    /// validates its header, metadata and tensor infos.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be opened or mapped, or when anything in
    /// it is malformed. That covers a wrong magic or unsupported version, a
    /// count, length, dimension or offset past its cap or the end of the
    /// file, an unknown value or tensor type, and a misaligned tensor.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path)
            .with_context(|| format!("gguf: {}: failed to open", path.display()))?;
        // SAFETY: the map is read-only. Another process truncating or
        // rewriting the file while it is mapped would change or fault these
        // bytes, but model files are not modified in place while loaded.
        let mmap = unsafe { Mmap::map(&file) }
            .with_context(|| format!("gguf: {}: failed to memory-map", path.display()))?;
        let parsed =
            read::parse(&mmap).map_err(|msg| anyhow!("gguf: {}: {msg}", path.display()))?;
        let metadata_index = parsed
            .metadata
            .iter()
            .enumerate()
            .map(|(i, (key, _))| (key.clone(), i))
            .collect();
        let tensor_index = parsed
            .tensor_infos
            .iter()
            .enumerate()
            .map(|(i, info)| (info.name.clone(), i))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            version: parsed.version,
            metadata: parsed.metadata,
            metadata_index,
            tensor_infos: parsed.tensor_infos,
            tensor_index,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
        })
    }

    /// Returns the path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.mmap.len() as u64
    }

    /// Returns the GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Returns the alignment of tensor data, in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Returns the offset of the data section from the start of the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Returns the metadata key-value pairs, in file order.
    pub fn metadata(&self) -> &[(String, MetadataValue)] {
        &self.metadata
    }

    /// Returns the metadata value under `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Returns the metadata value under `key`.
    ///
    /// # Errors
    ///
    /// Fails when the key is missing.
    pub fn require(&self, key: &str) -> Result<&MetadataValue> {
        self.get(key)
            .ok_or_else(|| self.error(format!("missing metadata key `{key}`")))
    }

    /// Returns the unsigned integer under `key`, which may be stored as any integer
    /// type, or `None` when the key is absent.
    ///
    /// # Errors
    ///
    /// Fails when the value is not a non-negative integer that fits a u32.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| self.error(format!("metadata `{key}` = {value:?}: expected a u32")))
    }

    /// Returns the unsigned integer under `key`, which may be stored as any integer
    /// type, or `None` when the key is absent.
    ///
    /// # Errors
    ///
    /// Fails when the value is not a non-negative integer.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value.as_u64().map(Some).ok_or_else(|| {
            self.error(format!(
                "metadata `{key}` = {value:?}: expected an unsigned integer"
            ))
        })
    }

    /// Returns the float under `key` (f32 or f64), or `None` when the key is absent.
    ///
    /// # Errors
    ///
    /// Fails when the value is not a float.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value {
            MetadataValue::F32(v) => Ok(Some(*v)),
            MetadataValue::F64(v) => Ok(Some(*v as f32)),
            _ => Err(self.error(format!("metadata `{key}` = {value:?}: expected a float"))),
        }
    }

    /// Returns the bool under `key`, or `None` when the key is absent.
    ///
    /// # Errors
    ///
    /// Fails when the value is not a bool.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetadataValue::Bool(v)) => Ok(Some(*v)),
            Some(value) => {
                Err(self.error(format!("metadata `{key}` = {value:?}: expected a bool")))
            }
        }
    }

    /// Returns the string under `key`, or `None` when the key is absent.
    ///
    /// # Errors
    ///
    /// Fails when the value is not a string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetadataValue::String(v)) => Ok(Some(v)),
            Some(value) => Err(self.error(format!(
                "metadata `{key}` has type {}: expected a string",
                value.value_type()
            ))),
        }
    }

    /// Returns the array under `key`, or `None` when the key is absent.
    ///
    /// # Errors
    ///
    /// Fails when the value is not an array.
    pub fn get_array(&self, key: &str) -> Result<Option<&MetadataArray>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetadataValue::Array(v)) => Ok(Some(v)),
            Some(value) => Err(self.error(format!(
                "metadata `{key}` has type {}: expected an array",
                value.value_type()
            ))),
        }
    }

    /// Returns the string array under `key`, or `None` when the key is absent.
    ///
    /// # Errors
    ///
    /// Fails when the value is not an array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(array) = self.get_array(key)? else {
            return Ok(None);
        };
        if array.element_type != ValueType::String {
            bail!(self.error(format!(
                "metadata `{key}` is an array of {}: expected strings",
                array.element_type
            )));
        }
        Ok(Some(
            array
                .values
                .iter()
                .filter_map(MetadataValue::as_str)
                .collect(),
        ))
    }

    /// Returns the integer array under `key` as i64 values, or `None` when the key is
    /// absent.
    ///
    /// # Errors
    ///
    /// Fails when the value is not an array of integers that fit an i64.
    pub fn get_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(array) = self.get_array(key)? else {
            return Ok(None);
        };
        array
            .values
            .iter()
            .map(|value| match *value {
                MetadataValue::U8(v) => Some(v.into()),
                MetadataValue::I8(v) => Some(v.into()),
                MetadataValue::U16(v) => Some(v.into()),
                MetadataValue::I16(v) => Some(v.into()),
                MetadataValue::U32(v) => Some(v.into()),
                MetadataValue::I32(v) => Some(v.into()),
                MetadataValue::U64(v) => i64::try_from(v).ok(),
                MetadataValue::I64(v) => Some(v),
                _ => None,
            })
            .collect::<Option<Vec<i64>>>()
            .map(Some)
            .ok_or_else(|| {
                self.error(format!(
                    "metadata `{key}` is an array of {}: expected integers",
                    array.element_type
                ))
            })
    }

    /// Returns the tensor infos, in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensor_infos
    }

    /// Returns the info of the tensor named `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensor_infos[i])
    }

    /// Returns a view of the tensor named `name`, borrowing its bytes from the map.
    ///
    /// # Errors
    ///
    /// Fails when no tensor has that name.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| self.error(format!("tensor `{name}` not found")))?;
        // `parse` checked that the range lies inside the file.
        let start = self.data_offset + info.offset as usize;
        Ok(TensorView {
            name: &info.name,
            dtype: info.dtype,
            shape: info.shape.clone(),
            data: &self.mmap[start..start + info.size],
        })
    }

    fn error(&self, message: String) -> anyhow::Error {
        anyhow!("gguf: {}: {message}", self.path.display())
    }
}

#[cfg(test)]
mod tests;
