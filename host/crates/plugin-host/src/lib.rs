//! The plugin host: loads reward-model and selector plugins, which are Wasm
//! components behind the versioned WIT package `laser:plugin`, and runs them
//! sandboxed under wasmtime.
