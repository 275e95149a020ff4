//! The on-disk cache of compiled components, keyed by the component's
//! sha256 digest and the engine's precompile compatibility hash.
//!
//! Only files this cache wrote are ever deserialized: deserializing runs
//! machine code without validation, so a precompiled file from anywhere
//! else (a plugin folder included) is never loaded.

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Environment variable that overrides the cache folder.
pub const CACHE_DIR_ENV: &str = "LASER_PLUGIN_CACHE";

/// A folder of compiled components for one engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    /// Hex sha256 of the engine's precompile compatibility hash, so that a
    /// new wasmtime or different settings never read an old entry.
    engine_key: String,
}

/// Returns the default cache folder: `$LASER_PLUGIN_CACHE`, else
/// `$XDG_CACHE_HOME/laser-host/components`, else
/// `$HOME/.cache/laser-host/components`; `None` when none is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(base.join("laser-host").join("components"))
}

/// Feeds `Hash` output into sha256, for a hash that is stable on disk.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the sha256 digest is read")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CompileCache {
    pub(crate) fn new(engine: &Engine, dir: PathBuf) -> CompileCache {
        let mut hasher = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let engine_key = hex(&hasher.0.finalize());
        CompileCache { dir, engine_key }
    }

    fn entry(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{digest}-{}.cwasm", &self.engine_key[..16]))
    }

    /// Returns the cached compilation of the component with `digest`, if
    /// there is a usable one.
    pub(crate) fn get(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.entry(digest);
        if !path.is_file() {
            return None;
        }
        // SAFETY: `path` is inside the cache folder and named by the
        // engine key, so this process or an earlier one with the same
        // engine settings wrote it from a component with this digest.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %error,
                    "ignoring an unreadable compile cache entry"
                );
                None
            }
        }
    }

    /// Stores a compiled component. Failures are logged and ignored,
    /// because the cache only saves time.
    pub(crate) fn put(&self, digest: &str, component: &Component) {
        if let Err(error) = self.try_put(digest, component) {
            tracing::warn!(
                dir = %self.dir.display(),
                error = %error,
                "failed to write the compile cache"
            );
        }
    }

    fn try_put(&self, digest: &str, component: &Component) -> anyhow::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| anyhow::anyhow!("failed to serialize: {e}"))?;
        create_private_dir(&self.dir)?;

        // Write to a unique temporary name, then rename, so that a reader
        // never sees a partial file.
        let path = self.entry(digest);
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        Ok(())
    }
}

/// Creates `dir` readable only by this user, since its files are run as
/// machine code.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Formats bytes as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the hex sha256 digest of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
