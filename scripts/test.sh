#!/usr/bin/env bash
# The test suite: the host workspace (GPU kernels on whatever adapter wgpu
# finds, lavapipe on machines without a GPU), then the plugins' native unit
# tests. The Wasm plugins themselves are built by the tests that load them.
#
# On a CPU adapter the host runs CPU-tuned kernels. So the second part
# runs the kernel tests again with the kernels a GPU runs
# (LASER_HOST_KERNELS, see the README), with and without subgroup
# operations, and the model, engine and training tests without them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace
cargo test --release --manifest-path plugins/Cargo.toml --workspace

echo "== the GPU kernels (LASER_HOST_KERNELS=gpu)"
LASER_HOST_KERNELS=gpu cargo test --release -p laser-gpu
echo "== the GPU kernels without subgroups (LASER_HOST_KERNELS=gpu-no-subgroups)"
LASER_HOST_KERNELS=gpu-no-subgroups cargo test --release -p laser-gpu
LASER_HOST_KERNELS=gpu-no-subgroups cargo test --release -p laser-host \
    --test smollm2 --test engine --test train
