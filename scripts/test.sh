#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit and integration tests (which start the real
# binary as separate processes on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
