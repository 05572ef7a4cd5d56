#!/usr/bin/env bash
# Installs what the test suite needs, only when it is missing: HAProxy (the load balancer in the
# tunnel tests), openssl and curl (a foreign certificate and a plain web client in tests), and
# OpenSSH's server and client (tests/ssh.rs runs its own sshd on a free port with its own keys;
# the machine's ssh setup is never used), and PostgreSQL (tests/postgres*.rs run their own server
# with initdb/pg_ctl in a temp dir, as the package's postgres user when run as root). Package sources come from the machine's own apt
# configuration.
set -euo pipefail
missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
