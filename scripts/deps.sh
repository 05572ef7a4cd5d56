#!/usr/bin/env bash
# Installs what the test suite needs, only when it is missing: HAProxy (the load balancer in the
# tunnel tests), openssl and curl (a foreign certificate and a plain web client in tests).
# Package sources come from the machine's own apt configuration.
set -euo pipefail
missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
