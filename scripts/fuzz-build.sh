#!/usr/bin/env bash
# Builds every fuzz target (CI runs this so they keep compiling). Needs a nightly toolchain;
# without one it says so and succeeds, since the targets cannot be built anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz-build: no nightly toolchain; skipping the fuzz target build"
    exit 0
fi
cargo +nightly build --manifest-path fuzz/Cargo.toml --bins
