//! The plugin host: loads reward-model and selector plugins, which are Wasm
//! components behind the versioned WIT package `laser:plugin`, and runs them
//! sandboxed under wasmtime.
//!
//! One [`PluginHost`] owns one engine. Each plugin runs in a store of its
//! own, with no files, environment, arguments, network or inherited stdio,
//! a memory cap, a per-call deadline enforced by epoch interruption, and
//! caps on the size of call arguments and results. Reward models call the
//! training engine's language models through [`ModelService`].
//!
//! A failing reward model is disabled for the run and the others go on; a
//! failing selector returns an error and keeps its last good state. This
//! crate does not train or pick reward models itself: the trainer drives
//! the plugins.

mod bench;
mod bindings;
mod cache;
mod dir;
mod ensemble;
mod error;
mod host;
mod manifest;
mod models;
mod plugin;
mod report;
mod reward_model;
mod sandbox;
mod selector;
mod size;

pub use bench::{BenchReport, bench_plugins};
pub use cache::{CACHE_DIR_ENV, default_cache_dir};
pub use dir::{PluginDir, ScanReport};
pub use ensemble::ScoreNormalizer;
pub use error::{LoadError, MAX_GUEST_MESSAGE_CHARS, PluginError, PluginErrorKind};
pub use host::{EPOCH_TICK, LoadedPlugin, PluginHost};
pub use manifest::{Limits, Manifest, ManifestError, PluginKind, RESERVED_ARM_NAME};
pub use models::{ModelService, StubModelService};
pub use plugin::{MAX_INFO_BYTES, PluginMeta};
pub use report::{ListReport, PluginReport, check_plugin, list_plugins};
pub use reward_model::RewardModelPlugin;
pub use sandbox::MAX_CAPTURED_OUTPUT;
pub use selector::{ArmUpdate, SelectorPlugin};

pub use bindings::v0_1_0::reward_model::laser::plugin::types::{
    ArmInfo, Continuation, Instance, PluginInfo, ScoredInstance,
};

/// Name of the WIT package that plugins are built against.
pub const API_PACKAGE: &str = "laser:plugin";

/// The WIT package version this host serves.
pub const API_VERSION: &str = "laser:plugin@0.1.0";
