#!/usr/bin/env bash
# The test suite: the host workspace (GPU kernels on whatever adapter wgpu
# finds, lavapipe on machines without a GPU), then the plugins' native unit
# tests. The Wasm plugins themselves are built by the tests that load them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace
cargo test --release --manifest-path plugins/Cargo.toml --workspace
