#!/usr/bin/env bash
# Builds the static (musl) release executable and checks it: statically linked (no interpreter,
# no shared libraries) and within the size budget. Installs the musl target and Debian's
# musl-tools (ring's C code needs musl-gcc) when they are missing.
#   scripts/build-static.sh        -> target/x86_64-unknown-linux-musl/release/teleport
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-musl
# The CI budget; the goal is 4 MB. What makes it small is in Cargo.toml's release profile and in
# .cargo/config.toml (SQLite options, unwind tables, packed relocations): a plain
# `cargo build --release --target x86_64-unknown-linux-musl` gives the same executable.
BUDGET_BYTES=${BUDGET_BYTES:-8000000}
GOAL_BYTES=4000000

if ! command -v musl-gcc >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "musl-tools is missing: apt-get install musl-tools" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq musl-tools >/dev/null
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
  rustup target add "$TARGET"
fi
cargo build --release --target "$TARGET" -q
BIN=target/$TARGET/release/teleport

if readelf -l "$BIN" | grep -qi 'program interpreter'; then
  echo "FAIL: $BIN has a program interpreter: it is not static" >&2; exit 1
fi
if readelf -d "$BIN" 2>/dev/null | grep -q NEEDED; then
  echo "FAIL: $BIN needs shared libraries:" >&2; readelf -d "$BIN" | grep NEEDED >&2; exit 1
fi
SIZE=$(stat -c %s "$BIN")
echo "static executable: $BIN, $SIZE bytes ($(awk "BEGIN{printf \"%.2f\", $SIZE/1000000}") MB;" \
  "ratio to the goal of $GOAL_BYTES: $(awk "BEGIN{printf \"%.3f\", $SIZE/$GOAL_BYTES}"); budget $BUDGET_BYTES)"
if [ "$SIZE" -gt "$BUDGET_BYTES" ]; then
  echo "FAIL: the executable exceeds the size budget of $BUDGET_BYTES bytes" >&2; exit 1
fi
if [ "$SIZE" -gt "$GOAL_BYTES" ]; then
  echo "WARN: the executable is over the goal of $GOAL_BYTES bytes (bench/size.sh shows where)" >&2
fi

# The Docker image takes the executable and, when the host has one, its CA bundle (for joins
# without a pin through a publicly trusted proxy); the rest is committed under docker/.
rm -rf "target/$TARGET/release/rootfs"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "target/$TARGET/release/ca-certificates.crt"
fi
echo "next: docker build -f docker/Dockerfile -t teleport-lite ."
