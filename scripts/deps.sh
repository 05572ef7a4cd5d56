#!/usr/bin/env bash
# Installs what the test suite needs, only when it is missing. Package sources come from the
# machine's own apt and cargo configuration.
set -euo pipefail
missing=()
command -v sed >/dev/null || missing+=(sed)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
