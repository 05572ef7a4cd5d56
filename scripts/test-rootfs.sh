#!/usr/bin/env bash
# Makes (once) a minimal Debian root file system for the install-script tests, with debootstrap
# from Debian's packages: curl and sudo (the printed install line runs verbatim), and systemd
# (the same tree boots as a container with systemd as PID 1 for the unit's tests). The mirror is
# read from this machine's own apt sources; nothing names a registry host here. Prints the path
# of the tarball; its name carries the package list, so a new list makes a new tarball.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=curl,ca-certificates,sudo,systemd,systemd-sysv,dbus
OUT=${ROOTFS_TAR:-$PWD/target/test-rootfs-$(echo "$PACKAGES" | cksum | cut -d' ' -f1).tar}
[ -s "$OUT" ] && { echo "$OUT"; exit 0; }
if ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi
mirror=$( { cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } |
  grep -E '^(URIs:|deb )' | grep -v security | head -n 1 |
  sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}')
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
[ -n "$mirror" ] || { echo "no apt mirror found in /etc/apt" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$dir/root" "$mirror" >&2
mkdir -p "$(dirname "$OUT")"
tar -C "$dir/root" -cf "$OUT.tmp" . && mv "$OUT.tmp" "$OUT"
echo "$OUT"
