//! Parsing of a GGUF header, metadata and tensor infos from raw bytes.
//!
//! Errors are plain messages without the path; `GgufFile::open` prefixes
//! them with `gguf: PATH:`.

use std::collections::HashSet;

use super::{
    DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS,
    MAX_METADATA_ENTRIES, MAX_STRING_LEN, MAX_TENSOR_ELEMENTS, MAX_TENSORS, MetadataArray,
    MetadataValue, TensorInfo, ValueType,
};
use crate::DType;

type ParseResult<T> = Result<T, String>;

/// Everything `parse` reads before the data section.
pub(super) struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, MetadataValue)>,
    pub tensor_infos: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: usize,
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Checks that `count` items of at least `min_item_bytes` each fit in
    /// the bytes left, before anything is allocated for them.
    fn ensure_room(
        &self,
        count: u64,
        min_item_bytes: u64,
        what: impl FnOnce() -> String,
    ) -> ParseResult<()> {
        let min_bytes = count.saturating_mul(min_item_bytes);
        if min_bytes > self.remaining() as u64 {
            return Err(format!(
                "{} needs at least {min_bytes} bytes, but only {} remain",
                what(),
                self.remaining()
            ));
        }
        Ok(())
    }

    fn take(&mut self, n: usize, what: &str) -> ParseResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(format!(
                "truncated file: {what} needs {n} bytes at offset {}, but only {} remain",
                self.pos,
                self.remaining()
            ));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> ParseResult<[u8; N]> {
        let slice = self.take(N, what)?;
        Ok(slice.try_into().expect("take returned N bytes"))
    }

    fn u8(&mut self, what: &str) -> ParseResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> ParseResult<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> ParseResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> ParseResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a length-prefixed string. Keys and tensor names must be valid
    /// UTF-8; values are decoded lossily because some converters store
    /// vocabulary entries that are not.
    fn string(&mut self, what: &str, strict: bool) -> ParseResult<String> {
        let len = self.u64(what)?;
        if len > MAX_STRING_LEN {
            return Err(format!(
                "{what} length {len} exceeds the maximum of {MAX_STRING_LEN} bytes"
            ));
        }
        let bytes = self.take(len as usize, what)?;
        if strict {
            std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| {
                format!(
                    "{what} is not valid UTF-8: \"{}\"",
                    shown(&String::from_utf8_lossy(bytes))
                )
            })
        } else {
            Ok(String::from_utf8_lossy(bytes).into_owned())
        }
    }
}

/// Parses and validates everything up to the data section of `bytes`.
pub(super) fn parse(bytes: &[u8]) -> ParseResult<Parsed> {
    let mut cursor = Cursor { bytes, pos: 0 };

    let magic = cursor.array::<4>("magic")?;
    if magic != GGUF_MAGIC {
        return Err(format!(
            "invalid magic {:?} ({}): expected \"GGUF\", so this is not a GGUF file",
            String::from_utf8_lossy(&magic),
            hex(&magic)
        ));
    }
    let version = cursor.u32("version")?;
    if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        return Err(format!(
            "big-endian GGUF (version {}) is not supported",
            version.swap_bytes()
        ));
    }
    if !(2..=3).contains(&version) {
        return Err(format!(
            "unsupported GGUF version {version}: expected 2 or 3"
        ));
    }

    let tensor_count = cursor.u64("tensor count")?;
    if tensor_count > MAX_TENSORS {
        return Err(format!(
            "tensor count {tensor_count} exceeds the maximum of {MAX_TENSORS}"
        ));
    }
    let metadata_count = cursor.u64("metadata count")?;
    if metadata_count > MAX_METADATA_ENTRIES {
        return Err(format!(
            "metadata count {metadata_count} exceeds the maximum of {MAX_METADATA_ENTRIES}"
        ));
    }

    let metadata = read_metadata(&mut cursor, metadata_count)?;
    let alignment = read_alignment(&metadata)?;
    // The tensor infos start where the metadata ends, so a wrong count in
    // the header turns into a nonsensical tensor. The message gives both.
    let tensor_infos = read_tensor_infos(&mut cursor, tensor_count).map_err(|err| {
        format!(
            "{err} (the header gives {metadata_count} metadata entries and {tensor_count} \
             tensors, and the tensor list is read where the metadata ends, so a wrong \
             count there would also explain this)"
        )
    })?;

    // A file without tensors (a vocabulary-only file) may end right after
    // the tensor infos, without padding.
    let file_len = bytes.len() as u64;
    let data_offset = align_up(cursor.pos as u64, alignment)
        .map(|offset| {
            if tensor_infos.is_empty() {
                offset.min(file_len)
            } else {
                offset
            }
        })
        .filter(|&offset| offset <= file_len)
        .ok_or_else(|| {
            format!(
                "truncated file: the data section would start past the end ({} bytes)",
                bytes.len()
            )
        })?;
    let data_len = file_len - data_offset;
    for info in &tensor_infos {
        check_tensor_range(info, alignment, data_len)?;
    }

    Ok(Parsed {
        version,
        metadata,
        tensor_infos,
        alignment,
        data_offset: data_offset as usize,
    })
}

fn read_metadata(cursor: &mut Cursor<'_>, count: u64) -> ParseResult<Vec<(String, MetadataValue)>> {
    // Each entry takes at least a key length, a type and a one-byte value.
    cursor.ensure_room(count, 8 + 4 + 1, || format!("metadata count {count}"))?;
    let mut metadata = Vec::with_capacity(count as usize);
    let mut seen = HashSet::new();
    for i in 0..count {
        let key = cursor.string(&format!("metadata key {i}"), true)?;
        let type_id = cursor.u32("metadata value type")?;
        let shown_key = shown(&key);
        let value_type = ValueType::from_id(type_id)
            .ok_or_else(|| format!("metadata `{shown_key}` has unknown value type {type_id}"))?;
        let value = read_value(cursor, value_type, &shown_key, 0)?;
        if !seen.insert(key.clone()) {
            return Err(format!("duplicate metadata key `{shown_key}`"));
        }
        metadata.push((key, value));
    }
    Ok(metadata)
}

/// Reads one value of `value_type`; `key` is the escaped key, for messages.
fn read_value(
    cursor: &mut Cursor<'_>,
    value_type: ValueType,
    key: &str,
    depth: usize,
) -> ParseResult<MetadataValue> {
    let what = format!("metadata `{key}`");
    Ok(match value_type {
        ValueType::U8 => MetadataValue::U8(cursor.u8(&what)?),
        ValueType::I8 => MetadataValue::I8(cursor.u8(&what)? as i8),
        ValueType::U16 => MetadataValue::U16(cursor.u16(&what)?),
        ValueType::I16 => MetadataValue::I16(cursor.u16(&what)? as i16),
        ValueType::U32 => MetadataValue::U32(cursor.u32(&what)?),
        ValueType::I32 => MetadataValue::I32(cursor.u32(&what)? as i32),
        ValueType::F32 => MetadataValue::F32(f32::from_bits(cursor.u32(&what)?)),
        ValueType::U64 => MetadataValue::U64(cursor.u64(&what)?),
        ValueType::I64 => MetadataValue::I64(cursor.u64(&what)? as i64),
        ValueType::F64 => MetadataValue::F64(f64::from_bits(cursor.u64(&what)?)),
        ValueType::Bool => match cursor.u8(&what)? {
            0 => MetadataValue::Bool(false),
            1 => MetadataValue::Bool(true),
            other => {
                return Err(format!(
                    "{what} has invalid bool byte {other}: expected 0 or 1"
                ));
            }
        },
        ValueType::String => MetadataValue::String(cursor.string(&what, false)?),
        ValueType::Array => MetadataValue::Array(read_array(cursor, key, depth)?),
    })
}

fn read_array(cursor: &mut Cursor<'_>, key: &str, depth: usize) -> ParseResult<MetadataArray> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(format!(
            "metadata `{key}` nests arrays deeper than the maximum of {MAX_ARRAY_DEPTH}"
        ));
    }
    let type_id = cursor.u32("array element type")?;
    let element_type = ValueType::from_id(type_id)
        .ok_or_else(|| format!("metadata `{key}` is an array of unknown type {type_id}"))?;
    let len = cursor.u64("array length")?;
    if len > MAX_ARRAY_LEN {
        return Err(format!(
            "metadata `{key}` array length {len} exceeds the maximum of {MAX_ARRAY_LEN}"
        ));
    }
    cursor.ensure_room(len, element_type.min_encoded_len(), || {
        format!("metadata `{key}` array length {len}")
    })?;
    let mut values = Vec::with_capacity(len as usize);
    for _ in 0..len {
        values.push(read_value(cursor, element_type, key, depth + 1)?);
    }
    Ok(MetadataArray {
        element_type,
        values,
    })
}

fn read_alignment(metadata: &[(String, MetadataValue)]) -> ParseResult<u64> {
    let Some((_, value)) = metadata.iter().find(|(key, _)| key == "general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let alignment = value
        .as_u64()
        .ok_or_else(|| format!("general.alignment = {value:?}: expected an unsigned integer"))?;
    if alignment == 0 || !alignment.is_power_of_two() || alignment > MAX_ALIGNMENT {
        return Err(format!(
            "general.alignment {alignment} is invalid: expected a power of two up to {MAX_ALIGNMENT}"
        ));
    }
    Ok(alignment)
}

fn read_tensor_infos(cursor: &mut Cursor<'_>, count: u64) -> ParseResult<Vec<TensorInfo>> {
    // Each info takes at least a name length, a dimension count, one
    // dimension, a type and an offset.
    cursor.ensure_room(count, 8 + 4 + 8 + 4 + 8, || format!("tensor count {count}"))?;
    let mut infos = Vec::with_capacity(count as usize);
    let mut seen = HashSet::new();
    for i in 0..count {
        let name = cursor.string(&format!("tensor {i} name"), true)?;
        let info = read_tensor_info(cursor, name)?;
        if !seen.insert(info.name.clone()) {
            return Err(format!("duplicate tensor name `{}`", shown(&info.name)));
        }
        infos.push(info);
    }
    Ok(infos)
}

fn read_tensor_info(cursor: &mut Cursor<'_>, name: String) -> ParseResult<TensorInfo> {
    let shown_name = shown(&name);
    let n_dims = cursor.u32("tensor dimension count")?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(format!(
            "tensor `{shown_name}` has {n_dims} dimensions: expected 1 to {MAX_DIMS}"
        ));
    }

    // ggml order: ne0 (the row length) first.
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        let dim = cursor.u64("tensor dimension")?;
        if dim == 0 {
            return Err(format!("tensor `{shown_name}` has a zero dimension"));
        }
        dims.push(dim);
    }
    // Name every dimension: the one that overflows the product need not
    // be the wrong one.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |count, &dim| count.checked_mul(dim))
        .filter(|&count| count <= MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| {
            format!(
                "tensor `{shown_name}` has dimensions {dims:?} (row length first), more than \
                 the maximum of {MAX_TENSOR_ELEMENTS} elements"
            )
        })?;

    let type_id = cursor.u32("tensor type")?;
    let dtype = DType::from_ggml_id(type_id).ok_or_else(|| {
        format!("tensor `{shown_name}` has unknown or unsupported ggml type {type_id}")
    })?;
    let offset = cursor.u64("tensor offset")?;

    // Rows never share a block, so the row length must be whole blocks.
    if dims[0] % dtype.block_size() as u64 != 0 {
        return Err(format!(
            "tensor `{shown_name}` row length {} is not a multiple of the {dtype} block size {}",
            dims[0],
            dtype.block_size()
        ));
    }
    let size = usize::try_from(n_elements)
        .ok()
        .and_then(|n| dtype.bytes_for(n))
        .ok_or_else(|| {
            format!("tensor `{shown_name}` byte size overflows ({n_elements} elements)")
        })?;

    let shape = dims.iter().rev().map(|&d| d as usize).collect();
    Ok(TensorInfo {
        name,
        dtype,
        shape,
        offset,
        size,
    })
}

fn check_tensor_range(info: &TensorInfo, alignment: u64, data_len: u64) -> ParseResult<()> {
    let name = shown(&info.name);
    if !info.offset.is_multiple_of(alignment) {
        return Err(format!(
            "tensor `{name}` offset {} is not a multiple of the alignment {alignment}",
            info.offset
        ));
    }
    let end = info.offset.checked_add(info.size as u64);
    if end.is_none_or(|end| end > data_len) {
        return Err(format!(
            "tensor `{name}` data at offset {} with size {} lies beyond the data section ({data_len} bytes)",
            info.offset, info.size
        ));
    }
    Ok(())
}

/// Rounds `value` up to a multiple of `alignment`, a power of two.
pub(super) fn align_up(value: u64, alignment: u64) -> Option<u64> {
    Some(value.checked_add(alignment - 1)? & !(alignment - 1))
}

/// The maximum number of characters of a key or name quoted in an error.
const MAX_SHOWN_CHARS: usize = 80;

/// Escapes a key or name read from the file for an error message, so that
/// control characters cannot break the message's single line, and cuts it
/// to [`MAX_SHOWN_CHARS`].
fn shown(text: &str) -> String {
    let mut escaped: String = text
        .chars()
        .take(MAX_SHOWN_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > MAX_SHOWN_CHARS {
        escaped.push_str("...");
    }
    escaped
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
