#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, the static (musl) build with its size budget,
# unit and integration tests (the real binary as separate processes, HAProxy, systemd-analyze,
# Docker, a debootstrap root for the install script).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
./scripts/build-static.sh
export FUZZ_SECS="${FUZZ_SECS:-60}" LIVE_FUZZ_SECS="${LIVE_FUZZ_SECS:-15}" # docs/fuzzing.md
cargo test --all-targets
