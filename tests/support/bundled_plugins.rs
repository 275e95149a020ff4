//! The bundled plugins, built once per test binary by `plugins/build.sh`
//! into the test binary's temporary folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Builds the bundled plugins on first use and returns their folder.
pub fn bundled_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bundled-plugins");
        let status = Command::new("bash")
            .arg(root.join("plugins/build.sh"))
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "plugins/build.sh failed");
        out
    })
}

/// Copies the bundled plugins `names` (component and manifest) into `dir`.
pub fn copy_bundled(dir: &Path, names: &[&str]) {
    for name in names {
        for extension in ["wasm", "toml"] {
            let file = format!("{name}.{extension}");
            let from = bundled_plugins().join(&file);
            std::fs::copy(&from, dir.join(&file))
                .unwrap_or_else(|err| panic!("copy {}: {err}", from.display()));
        }
    }
}
