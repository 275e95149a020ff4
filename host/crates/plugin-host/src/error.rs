//! Errors of loading plugins and of calls into them. Every message names
//! the plugin (`name@version`) or the file.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::manifest::ManifestError;

/// A failed call into a loaded plugin.
#[derive(Debug)]
pub struct PluginError {
    /// The plugin, as `name@version`.
    pub plugin: String,
    /// The kind of failure.
    pub kind: PluginErrorKind,
    /// Stdout and stderr of the plugin during the call, such as a panic
    /// message. Empty when the plugin wrote nothing.
    pub output: String,
}

/// The ways a plugin call fails. Errors that the plugin returned are kept
/// apart from traps, which abort the plugin's code.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginErrorKind {
    /// The plugin returned an error value.
    Guest(String),
    /// The plugin trapped: a panic, an unreachable instruction, an
    /// out-of-bounds access. The message is wasmtime's trap message; the
    /// wasm backtrace is logged at debug level.
    Trap(String),
    /// The plugin computed past its `call_deadline_ms`.
    Timeout {
        /// The deadline, in milliseconds.
        deadline_ms: u64,
    },
    /// A memory growth past `memory_mib` was rejected and the plugin
    /// trapped.
    MemoryLimit {
        /// The cap, in MiB.
        limit_mib: u64,
        /// Memory size the plugin requested, in bytes.
        requested: usize,
    },
    /// The call's arguments exceed `max_input_bytes`.
    InputTooLarge {
        /// Size of the arguments, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The call's result exceeds `max_output_bytes`.
    OutputTooLarge {
        /// Size of the result, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The result has the wrong shape or a non-finite value.
    InvalidOutput(String),
    /// The caller passed an invalid argument, such as an unknown arm; the
    /// plugin was not called.
    InvalidInput(String),
    /// An earlier call failed, so the host no longer calls the plugin.
    Disabled(String),
}

/// Rust's hint after a panic message. The sandbox gives a plugin no
/// environment variables, so the hint is of no use and is left out.
const BACKTRACE_HINT: &str = "note: run with `RUST_BACKTRACE=1`";

/// Returns a hint naming `found`, a file whose extension differs from the
/// expected one only in case, or nothing when there is none.
pub(crate) fn lowercase_hint(found: Option<&Path>) -> String {
    found.map_or(String::new(), |found| {
        format!(
            " (found {}: the extension must be lowercase)",
            found.display()
        )
    })
}

/// The maximum number of characters kept of an error message that a plugin
/// returns. The rest is dropped and counted, so that a plugin cannot flood
/// the terminal, the log or a run's reports.
pub const MAX_GUEST_MESSAGE_CHARS: usize = 2000;

/// Returns `text` with control characters other than newline and tab
/// written as escapes (`\u{1b}`), so that plugin text printed to a terminal
/// cannot move the cursor or change colours.
pub(crate) fn escape_controls(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            escaped.extend(c.escape_unicode());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// Returns an error message a plugin returned, cut to
/// [`MAX_GUEST_MESSAGE_CHARS`] characters with its control characters
/// escaped.
pub(crate) fn guest_message(message: &str) -> String {
    let total = message.chars().count();
    if total <= MAX_GUEST_MESSAGE_CHARS {
        return escape_controls(message);
    }
    let shortened: String = message.chars().take(MAX_GUEST_MESSAGE_CHARS).collect();
    format!(
        "{}… [{} more characters dropped]",
        escape_controls(&shortened),
        total - MAX_GUEST_MESSAGE_CHARS
    )
}

/// The maximum number of characters of plugin output that
/// [`PluginError::summary`] keeps.
const SUMMARY_OUTPUT_CHARS: usize = 300;

impl PluginError {
    /// Returns the lines the plugin wrote during the call, less blank lines
    /// and Rust's backtrace hint.
    pub fn output_lines(&self) -> impl Iterator<Item = &str> {
        self.output
            .lines()
            .map(str::trim_end)
            .filter(|line| !line.trim().is_empty() && !line.starts_with(BACKTRACE_HINT))
    }

    /// Returns the failure on one line, as reports list it: the kind, and
    /// for a trap the first two lines the plugin wrote, which for a Rust
    /// panic are its location and message.
    pub fn summary(&self) -> String {
        let mut line = self.kind.to_string();
        let output: Vec<&str> = self.output_lines().take(2).map(str::trim).collect();
        if self.is_trap() && !output.is_empty() {
            let mut output = output.join(" ");
            if output.chars().count() > SUMMARY_OUTPUT_CHARS {
                output = output
                    .chars()
                    .take(SUMMARY_OUTPUT_CHARS)
                    .collect::<String>()
                    + "…";
            }
            line.push_str(&format!(" (plugin output: {output})"));
        }
        line
    }

    /// Returns true when the plugin trapped, ran out of time or memory, as
    /// opposed to returning an error or invalid output.
    pub fn is_trap(&self) -> bool {
        matches!(
            self.kind,
            PluginErrorKind::Trap(_)
                | PluginErrorKind::Timeout { .. }
                | PluginErrorKind::MemoryLimit { .. }
        )
    }
}

impl fmt::Display for PluginErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginErrorKind::Guest(message) => {
                write!(f, "returned an error: {message}")
            }
            PluginErrorKind::Trap(reason) => write!(f, "trapped: {reason}"),
            PluginErrorKind::Timeout { deadline_ms } => write!(
                f,
                "timed out: the call computed past its deadline of \
                 {deadline_ms} ms (`limits.call_deadline_ms`)"
            ),
            PluginErrorKind::MemoryLimit {
                limit_mib,
                requested,
            } => write!(
                f,
                "memory limit exceeded: growing memory to {requested} bytes \
                 was rejected by the cap of {limit_mib} MiB \
                 (`limits.memory_mib`)"
            ),
            PluginErrorKind::InputTooLarge { size, limit } => write!(
                f,
                "input of {size} bytes exceeds the limit of {limit} bytes \
                 (`limits.max_input_bytes`)"
            ),
            PluginErrorKind::OutputTooLarge { size, limit } => write!(
                f,
                "output of {size} bytes exceeds the limit of {limit} bytes \
                 (`limits.max_output_bytes`)"
            ),
            PluginErrorKind::InvalidOutput(reason) => {
                write!(f, "invalid output: {reason}")
            }
            PluginErrorKind::InvalidInput(reason) => {
                write!(f, "invalid input: {reason}")
            }
            PluginErrorKind::Disabled(reason) => write!(
                f,
                "disabled for this run after an earlier failure: {reason}"
            ),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {}: {}", self.plugin, self.kind)?;
        let mut lines = self.output_lines().peekable();
        if lines.peek().is_some() {
            write!(f, "\nplugin output:")?;
            for line in lines {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for PluginError {}

/// A plugin that could not be loaded. Each variant names the file. The
/// message includes the underlying error, so `source()` returns `None`,
/// because an error chain printed with `{:#}` would otherwise show it twice.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The manifest is missing, unreadable or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A component has no manifest beside it.
    #[error(
        "{}: missing manifest {}: every NAME.wasm needs a NAME.toml beside it",
        path.display(),
        manifest.display()
    )]
    MissingManifest {
        /// The component.
        path: PathBuf,
        /// The manifest path expected.
        manifest: PathBuf,
    },
    /// A manifest has no component beside it.
    #[error(
        "{}: missing component {}: every NAME.toml needs a NAME.wasm beside it{}",
        path.display(),
        component.display(),
        lowercase_hint(other_case.as_deref())
    )]
    MissingComponent {
        /// The manifest.
        path: PathBuf,
        /// The component path expected.
        component: PathBuf,
        /// A file beside it whose extension is `wasm` in other case.
        other_case: Option<PathBuf>,
    },
    /// A precompiled file was found in a plugin folder. The host only
    /// deserializes machine code from its own cache.
    #[error(
        "{}: precompiled components are never loaded from a plugin \
         folder: ship the .wasm component instead",
        path.display()
    )]
    Precompiled {
        /// The file.
        path: PathBuf,
    },
    /// Another plugin in the same folder has a name that differs only in
    /// case. The two would clash on a case-insensitive file system.
    #[error(
        "{}: plugin name {name:?} differs only in case from {}, which \
         clashes on case-insensitive file systems: rename or remove one of \
         the two plugins",
        path.display(),
        other.display()
    )]
    NameCaseClash {
        /// A file of the rejected plugin.
        path: PathBuf,
        /// The rejected plugin's name, its file stem.
        name: String,
        /// A file of the plugin that keeps the name because it appeared
        /// first.
        other: PathBuf,
    },
    /// The file is not a WebAssembly component.
    #[error("{}: not a WebAssembly component: {reason}", path.display())]
    NotAComponent {
        /// The file.
        path: PathBuf,
        /// The file's actual format.
        reason: String,
    },
    /// The component imports a `laser:plugin` version the host does not
    /// serve.
    #[error(
        "{}: built against {found}, but this host serves {expected}: \
         rebuild the plugin against {expected}",
        path.display()
    )]
    ApiVersion {
        /// The component.
        path: PathBuf,
        /// The version the host serves.
        expected: String,
        /// The version the component imports.
        found: String,
    },
    /// The component does not match its manifest's `kind`, or imports
    /// something the sandbox does not provide.
    #[error("{}: {reason}", path.display())]
    Mismatch {
        /// The component.
        path: PathBuf,
        /// The mismatch.
        reason: String,
    },
    /// Compilation or instantiation failed.
    #[error("{}: failed to {action}: {reason}", path.display())]
    Wasm {
        /// The component.
        path: PathBuf,
        /// `compile` or `instantiate`.
        action: &'static str,
        /// wasmtime's message.
        reason: String,
    },
    /// `info` or `configure` failed.
    #[error("{}: {error}", path.display())]
    Call {
        /// The component.
        path: PathBuf,
        /// The failed call.
        error: PluginError,
    },
}

impl LoadError {
    /// Returns the file that failed to load.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Manifest(error) => &error.path,
            LoadError::Io { path, .. }
            | LoadError::MissingManifest { path, .. }
            | LoadError::MissingComponent { path, .. }
            | LoadError::Precompiled { path }
            | LoadError::NameCaseClash { path, .. }
            | LoadError::NotAComponent { path, .. }
            | LoadError::ApiVersion { path, .. }
            | LoadError::Mismatch { path, .. }
            | LoadError::Wasm { path, .. }
            | LoadError::Call { path, .. } => path,
        }
    }
}

/// Returned by the epoch deadline callback when a call runs out of time.
#[derive(Debug)]
pub(crate) struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("call deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}
