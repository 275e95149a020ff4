#!/usr/bin/env bash
# Builds the bundled plugins (every plugins/rm/NAME and plugins/selector/NAME
# folder with a manifest NAME.toml) for wasm32-wasip2, and copies each
# NAME.wasm beside its NAME.toml into OUT_DIR, the folder layout that
# `laser-host --plugins OUT_DIR` loads.
#
# Usage: plugins/build.sh OUT_DIR
# Needs: rustup target add wasm32-wasip2
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
out_dir=$1
plugins_dir=$(cd "$(dirname "$0")" && pwd)
target_dir=${CARGO_TARGET_DIR:-$plugins_dir/target}

# A plugin is a folder whose manifest is named after it; the shared library
# crates (scoring, glue) have no manifest and are skipped.
names=()
manifests=()
for manifest in "$plugins_dir"/rm/*/*.toml "$plugins_dir"/selector/*/*.toml; do
    folder=$(basename "$(dirname "$manifest")")
    if [[ $(basename "$manifest" .toml) == "$folder" ]]; then
        names+=("$folder")
        manifests+=("$manifest")
    fi
done
if [[ ${#names[@]} -eq 0 ]]; then
    echo "error: no plugin manifests found under $plugins_dir/rm or $plugins_dir/selector" >&2
    exit 1
fi

packages=()
for name in "${names[@]}"; do
    packages+=(-p "$name")
done
echo "building ${#names[@]} plugins: ${names[*]}"
cargo build --release --target wasm32-wasip2 --manifest-path "$plugins_dir/Cargo.toml" \
    "${packages[@]}"

mkdir -p "$out_dir"
for index in "${!names[@]}"; do
    name=${names[$index]}
    # Cargo writes a cdylib named after the package with `-` as `_`.
    wasm="$target_dir/wasm32-wasip2/release/${name//-/_}.wasm"
    if [[ ! -f $wasm ]]; then
        echo "error: $wasm missing after the build of plugin $name" >&2
        exit 1
    fi
    cp "$wasm" "$out_dir/$name.wasm"
    cp "${manifests[$index]}" "$out_dir/$name.toml"
done
echo "wrote ${#names[@]} plugins (NAME.wasm + NAME.toml) to $out_dir"
