//! Tests of the GGUF reader on files built with `GgufWriter`, intact and
//! damaged.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;

/// Returns a small valid file: metadata of several types and three tensors.
fn sample_writer() -> GgufWriter {
    let mut writer = GgufWriter::new();
    writer
        .add_metadata("general.architecture", "llama")
        .add_metadata("llama.block_count", 2u32)
        .add_metadata("llama.rope.freq_base", 10000f32)
        .add_metadata("test.flag", true)
        .add_metadata("test.i64", -5i64)
        .add_str_array("tokenizer.ggml.tokens", &["a", "b", "<|im_end|>"])
        .add_i32_array("tokenizer.ggml.token_type", &[1, 1, 3]);
    let values: Vec<f32> = (0..64).map(|i| i as f32 / 8.0 - 4.0).collect();
    writer
        .add_f32_tensor("a.weight", DType::F32, &[2, 32], &values)
        .unwrap()
        .add_f32_tensor("b.weight", DType::Q4_0, &[2, 32], &values)
        .unwrap()
        .add_f32_tensor("c.weight", DType::F16, &[64], &values)
        .unwrap();
    writer
}

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Returns the byte position of the tensor info of `name`: its dimension count,
/// dimensions, type and offset follow.
fn tensor_info_pos(bytes: &[u8], name: &str) -> usize {
    let needle = [&(name.len() as u64).to_le_bytes()[..], name.as_bytes()].concat();
    let start = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    start + needle.len()
}

/// Opens damaged `bytes` and returns the error message, checking that it is
/// one line naming the file.
fn open_error(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_bytes(dir.path(), "damaged.gguf", bytes);
    let err = GgufFile::open(&path).expect_err("damaged file must not open");
    let message = format!("{err:#}");
    let prefix = format!("gguf: {}: ", path.display());
    assert!(message.starts_with(&prefix), "{message}");
    assert!(!message.contains('\n'), "{message}");
    message
}

#[test]
fn written_file_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_bytes(dir.path(), "ok.gguf", &sample_writer().to_bytes());
    let file = GgufFile::open(&path).unwrap();

    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), DEFAULT_ALIGNMENT);
    assert_eq!(file.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(file.get_u32("llama.block_count").unwrap(), Some(2));
    assert_eq!(file.get_f32("llama.rope.freq_base").unwrap(), Some(10000.0));
    assert_eq!(file.get_bool("test.flag").unwrap(), Some(true));
    assert_eq!(file.get("test.i64"), Some(&MetadataValue::I64(-5)));
    assert_eq!(
        file.get_str_array("tokenizer.ggml.tokens").unwrap(),
        Some(vec!["a", "b", "<|im_end|>"])
    );
    assert_eq!(
        file.get_i64_array("tokenizer.ggml.token_type").unwrap(),
        Some(vec![1, 1, 3])
    );
    assert_eq!(file.get_u32("missing").unwrap(), None);
    assert!(file.get_u32("general.architecture").is_err());
    assert!(file.get_str("llama.block_count").is_err());

    assert_eq!(file.tensor_infos().len(), 3);
    let a = file.tensor("a.weight").unwrap();
    assert_eq!(a.shape, vec![2, 32]);
    assert_eq!(a.dtype, DType::F32);
    assert_eq!(a.to_f32().unwrap()[63], 63.0 / 8.0 - 4.0);
    let b = file.tensor("b.weight").unwrap();
    assert_eq!(b.data.len(), 2 * 18);
    for info in file.tensor_infos() {
        assert_eq!(info.offset % DEFAULT_ALIGNMENT, 0);
    }
    let missing = file.tensor("nope").unwrap_err().to_string();
    assert!(missing.contains("`nope` not found"), "{missing}");
}

#[test]
fn custom_alignment_is_honored() {
    let mut writer = sample_writer();
    writer.set_alignment(64);
    let dir = tempfile::tempdir().unwrap();
    let path = write_bytes(dir.path(), "aligned.gguf", &writer.to_bytes());
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_offset() % 64, 0);
    assert_eq!(file.tensor_info("b.weight").unwrap().offset, 256);
}

#[test]
fn file_without_tensors_needs_no_padding() {
    let mut writer = GgufWriter::new();
    writer.add_metadata("general.architecture", "llama");
    let mut bytes = writer.to_bytes();
    // Header (24) + key length (8) + key (20) + type (4) + value (8 + 5).
    bytes.truncate(69);
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(write_bytes(dir.path(), "vocab.gguf", &bytes)).unwrap();
    assert!(file.tensor_infos().is_empty());
    assert_eq!(file.get_str("general.architecture").unwrap(), Some("llama"));
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = sample_writer().to_bytes();
    let dir = tempfile::tempdir().unwrap();
    // The tail after the last tensor is padding, so stop at its end.
    let last = GgufFile::open(write_bytes(dir.path(), "full.gguf", &bytes)).unwrap();
    let info = last.tensor_info("c.weight").unwrap();
    let end = last.data_offset() + info.offset as usize + info.size;
    for len in 0..end {
        let path = write_bytes(dir.path(), "cut.gguf", &bytes[..len]);
        let err = GgufFile::open(&path).expect_err("truncated file must not open");
        assert!(!format!("{err:#}").contains('\n'));
    }
    let message = open_error(&bytes[..end - 1]);
    assert!(message.contains("tensor `c.weight`"), "{message}");
    assert!(message.contains("beyond the data section"), "{message}");
    let message = open_error(&bytes[..30]);
    assert!(
        message.contains("metadata count 7 needs at least"),
        "{message}"
    );
}

#[test]
fn wrong_magic_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let message = open_error(&bytes);
    assert!(message.contains("invalid magic \"GGML\""), "{message}");
}

#[test]
fn unsupported_version_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
    let message = open_error(&bytes);
    assert!(message.contains("unsupported GGUF version 7"), "{message}");
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    let message = open_error(&bytes);
    assert!(message.contains("big-endian"), "{message}");
}

#[test]
fn absurd_tensor_count_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("tensor count 18446744073709551615"),
        "{message}"
    );
    assert!(message.contains(&MAX_TENSORS.to_string()), "{message}");

    // Under the cap but more than the file can hold.
    bytes[8..16].copy_from_slice(&MAX_TENSORS.to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("tensor count 65536 needs at least"),
        "{message}"
    );
}

#[test]
fn absurd_metadata_count_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    bytes[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("metadata count 1099511627776"),
        "{message}"
    );
}

#[test]
fn absurd_string_length_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    // The first metadata key's length follows the 24-byte header.
    bytes[24..32].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("metadata key 0 length 9223372036854775807"),
        "{message}"
    );
    assert!(message.contains("exceeds the maximum"), "{message}");

    // Under the cap but past the end of the file.
    bytes[24..32].copy_from_slice(&1_000_000u64.to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("truncated file: metadata key 0 needs 1000000 bytes"),
        "{message}"
    );
}

#[test]
fn absurd_array_length_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    let key = "tokenizer.ggml.tokens";
    // After the key: value type (4), element type (4), then the length.
    let pos = tensor_info_pos(&bytes, key) + 8;
    bytes[pos..pos + 8].copy_from_slice(&(1u64 << 30).to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("array length 1073741824 exceeds"),
        "{message}"
    );
    bytes[pos..pos + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("array length 1048576 needs at least"),
        "{message}"
    );
}

#[test]
fn unknown_value_type_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    let pos = tensor_info_pos(&bytes, "general.architecture");
    bytes[pos..pos + 4].copy_from_slice(&77u32.to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("`general.architecture` has unknown value type 77"),
        "{message}"
    );
}

#[test]
fn invalid_bool_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    let pos = tensor_info_pos(&bytes, "test.flag") + 4;
    bytes[pos] = 2;
    let message = open_error(&bytes);
    assert!(message.contains("invalid bool byte 2"), "{message}");
}

#[test]
fn offset_beyond_file_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    // Dimension count (4), two dimensions (16), type (4), then the offset.
    let pos = tensor_info_pos(&bytes, "b.weight") + 4 + 16 + 4;
    bytes[pos..pos + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("`b.weight` data at offset 1048576"),
        "{message}"
    );

    bytes[pos..pos + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
    let message = open_error(&bytes);
    assert!(message.contains("beyond the data section"), "{message}");
}

#[test]
fn misaligned_offset_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    let pos = tensor_info_pos(&bytes, "b.weight") + 4 + 16 + 4;
    bytes[pos..pos + 8].copy_from_slice(&260u64.to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("offset 260 is not a multiple of the alignment 32"),
        "{message}"
    );
}

#[test]
fn unknown_tensor_type_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    let pos = tensor_info_pos(&bytes, "a.weight") + 4 + 16;
    bytes[pos..pos + 4].copy_from_slice(&99u32.to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("`a.weight` has unknown or unsupported ggml type 99"),
        "{message}"
    );
}

#[test]
fn overflowing_dims_are_rejected() {
    let mut bytes = sample_writer().to_bytes();
    let pos = tensor_info_pos(&bytes, "a.weight") + 4;
    bytes[pos..pos + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    bytes[pos + 8..pos + 16].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("`a.weight` has dimensions [4611686018427387904, 4611686018427387904]"),
        "{message}"
    );
    assert!(message.contains("more than the maximum"), "{message}");
}

#[test]
fn oversized_row_length_is_named() {
    // The row length is the wrong dimension here, though the product only
    // overflows at the second.
    let mut bytes = sample_writer().to_bytes();
    let pos = tensor_info_pos(&bytes, "a.weight") + 4;
    let second = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().unwrap());
    bytes[pos..pos + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains(&format!("has dimensions [1099511627776, {second}]")),
        "{message}"
    );
}

#[test]
fn bad_dimension_count_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    let pos = tensor_info_pos(&bytes, "a.weight");
    bytes[pos..pos + 4].copy_from_slice(&9u32.to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("`a.weight` has 9 dimensions: expected 1 to 4"),
        "{message}"
    );
    bytes[pos..pos + 4].copy_from_slice(&0u32.to_le_bytes());
    let message = open_error(&bytes);
    assert!(message.contains("`a.weight` has 0 dimensions"), "{message}");
}

#[test]
fn wrong_metadata_count_names_the_header_counts() {
    // A metadata count of 0 makes the reader take the first metadata entry
    // for a tensor; the message must point back at the header's counts.
    let mut bytes = sample_writer().to_bytes();
    bytes[16..24].copy_from_slice(&0u64.to_le_bytes());
    let message = open_error(&bytes);
    assert!(message.contains("`general.architecture`"), "{message}");
    assert!(
        message.contains("the header gives 0 metadata entries and 3 tensors"),
        "{message}"
    );
}

#[test]
fn partial_block_row_is_rejected() {
    let mut bytes = sample_writer().to_bytes();
    // b.weight is Q4_0 with rows of 32; make them 16 long.
    let pos = tensor_info_pos(&bytes, "b.weight") + 4;
    bytes[pos..pos + 8].copy_from_slice(&16u64.to_le_bytes());
    let message = open_error(&bytes);
    assert!(
        message.contains("row length 16 is not a multiple of the Q4_0 block size 32"),
        "{message}"
    );
}

#[test]
fn bad_alignment_is_rejected() {
    let mut writer = sample_writer();
    writer.set_alignment(48);
    let message = open_error(&writer.to_bytes());
    assert!(
        message.contains("general.alignment 48 is invalid"),
        "{message}"
    );
}

#[test]
fn duplicate_tensor_is_rejected() {
    let mut writer = sample_writer();
    writer
        .add_f32_tensor("a.weight", DType::F32, &[1], &[1.0])
        .unwrap();
    let message = open_error(&writer.to_bytes());
    assert!(
        message.contains("duplicate tensor name `a.weight`"),
        "{message}"
    );
}

#[test]
fn missing_file_names_path() {
    let err = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.starts_with("gguf: /nonexistent/model.gguf: failed to open"),
        "{message}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_mutations_never_panic(
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = sample_writer().to_bytes();
        for (index, value) in mutations {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write_bytes(dir.path(), "mutated.gguf", &bytes);
        match GgufFile::open(&path) {
            Ok(file) => {
                for info in file.tensor_infos() {
                    let view = file.tensor(&info.name).unwrap();
                    prop_assert_eq!(view.data.len(), info.size);
                    prop_assert!(view.to_f32().is_ok());
                }
            }
            Err(err) => {
                let message = format!("{err:#}");
                prop_assert!(!message.contains('\n'), "{}", message);
            }
        }
    }
}
