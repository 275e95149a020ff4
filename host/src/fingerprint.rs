//! Fingerprints of the inputs a run was started with, so that `--resume`
//! can reject a data file or model that changed in between.
//!
//! Data files are hashed whole. Model files can be many gigabytes, so a
//! model's fingerprint hashes its size and [`SAMPLES`] stretches of
//! [`SAMPLE_BYTES`] spread over each file: replaced weights change every
//! stretch, though an edit of a few bytes between them goes unseen.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Stretches of each model file that go into its fingerprint.
const SAMPLES: u64 = 16;
/// Bytes in one stretch.
const SAMPLE_BYTES: u64 = 64 * 1024;

/// Returns the lowercase hex sha256 of the whole file at `path`.
///
/// # Errors
///
/// Fails when the file cannot be read.
pub fn data_file(path: &Path) -> Result<String> {
    crate::fetch::sha256_file(path)
}

/// Returns the fingerprint of a model: a GGUF file, or a Hugging Face
/// folder, whose `config.json`, `tokenizer.json` and `*.safetensors`
/// files count, in name order.
///
/// # Errors
///
/// Fails when a file cannot be read or the folder cannot be listed.
pub fn model(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    if path.is_dir() {
        let mut files: Vec<_> = fs::read_dir(path)
            .with_context(|| format!("failed to list {}", path.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|file| {
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name == "config.json" || name == "tokenizer.json" || name.ends_with(".safetensors")
            })
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            hasher.update(name.as_bytes());
            sample_file(&file, &mut hasher)?;
        }
    } else {
        sample_file(path, &mut hasher)?;
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Feeds the size of the file at `path` and [`SAMPLES`] evenly spaced
/// stretches of it (the whole file when it is small) into `hasher`.
fn sample_file(path: &Path, hasher: &mut Sha256) -> Result<()> {
    let mut file =
        fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("failed to read the size of {}", path.display()))?
        .len();
    hasher.update(len.to_le_bytes());
    let read_error = || format!("failed to read {}", path.display());
    if len <= SAMPLES * SAMPLE_BYTES {
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes).with_context(read_error)?;
        hasher.update(&bytes);
        return Ok(());
    }
    let mut buffer = vec![0u8; SAMPLE_BYTES as usize];
    let stride = (len - SAMPLE_BYTES) / (SAMPLES - 1);
    for i in 0..SAMPLES {
        file.seek(SeekFrom::Start(i * stride))
            .with_context(read_error)?;
        file.read_exact(&mut buffer).with_context(read_error)?;
        hasher.update(&buffer);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_fingerprint_sees_replaced_weights() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &bytes).unwrap();
        let first = model(&path).unwrap();
        assert_eq!(model(&path).unwrap(), first);

        let mut other = bytes.clone();
        other.iter_mut().skip(1000).step_by(7).for_each(|b| *b ^= 1);
        fs::write(&path, &other).unwrap();
        assert_ne!(model(&path).unwrap(), first);

        fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        assert_ne!(model(&path).unwrap(), first);
    }

    #[test]
    fn folder_fingerprint_covers_weights_and_config() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config.json"), b"{}").unwrap();
        fs::write(dir.path().join("model.safetensors"), b"weights").unwrap();
        fs::write(dir.path().join("README.md"), b"notes").unwrap();
        let first = model(dir.path()).unwrap();

        fs::write(dir.path().join("README.md"), b"other notes").unwrap();
        assert_eq!(model(dir.path()).unwrap(), first);

        fs::write(dir.path().join("config.json"), b"{\"a\": 1}").unwrap();
        assert_ne!(model(dir.path()).unwrap(), first);
    }
}
