#!/usr/bin/env bash
# teleport-lite installer, served by a teleport-lite proxy at /scripts/install.sh (install only)
# and /scripts/TOKEN/install-node.sh (install, configure with the token, start):
#   curl -fsSL https://PROXY/scripts/install.sh | sudo bash
#   curl -fsSL https://PROXY/scripts/TOKEN/install-node.sh | sudo bash [-s -- --force]
# The agent binary comes from the proxy itself and is checked against its SHA-256, so hosts
# without internet access can be installed. Everything runs inside main(), so a partly
# downloaded script does nothing.
set -euo pipefail

main() {
  local proxy="{{PROXY}}" version="{{VERSION}}" sha256="{{SHA256}}" bin_arch="{{ARCH}}"
  local token="{{TOKEN}}" ca_pins="{{CA_PINS}}"
  local prefix="${TELEPORT_PREFIX:-/usr/local/bin}" force=0 arch tmp
  for a in "$@"; do
    case "$a" in
      -f|--force) force=1 ;;
      *) fail "unknown option $a (use --force to replace an existing configuration)" ;;
    esac
  done

  [ "$(uname -s)" = Linux ] || fail "this installer supports Linux only"
  [ "$(id -u)" -eq 0 ] || fail "run it as root: curl -fsSL https://$proxy/scripts/install.sh | sudo bash"
  case "$(uname -m)" in
    x86_64|amd64) arch=amd64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
  esac
  [ "$arch" = "$bin_arch" ] ||
    fail "this proxy serves the linux-$bin_arch agent, but this host is $(uname -m)"
  command -v curl >/dev/null || fail "curl is needed"
  command -v sha256sum >/dev/null || fail "sha256sum is needed (coreutils)"

  if [ -n "$token" ] && [ "$force" -eq 0 ]; then
    [ ! -e /etc/teleport.yaml ] ||
      fail "/etc/teleport.yaml exists: this host is configured already. To replace it, run the same command with: | sudo bash -s -- --force"
    if [ -d /var/lib/teleport ] && [ -n "$(ls -A /var/lib/teleport 2>/dev/null)" ]; then
      fail "/var/lib/teleport holds the state of a joined host. To join again, run the same command with: | sudo bash -s -- --force"
    fi
  fi

  tmp="$(mktemp -d)"
  trap "rm -rf '$tmp'" EXIT
  echo "Downloading teleport $version (linux-$arch) from $proxy"
  curl -fsS "https://$proxy/webapi/binary/teleport-linux-$arch" -o "$tmp/teleport" ||
    fail "cannot download the agent from https://$proxy"
  echo "$sha256  $tmp/teleport" | sha256sum -c --quiet - >/dev/null 2>&1 ||
    fail "the downloaded agent does not match its SHA-256 $sha256; nothing was installed"
  mkdir -p "$prefix"
  install -m 0755 "$tmp/teleport" "$prefix/teleport"
  ln -sf teleport "$prefix/tctl"
  echo "Installed $prefix/teleport and $prefix/tctl"

  local systemd=0
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemd=1
    curl -fsS "https://$proxy/webapi/systemd/teleport.service" -o /etc/systemd/system/teleport.service ||
      fail "cannot download the systemd unit"
    systemctl daemon-reload
    systemctl enable teleport >/dev/null 2>&1
    echo "Installed and enabled the systemd unit teleport.service"
  fi

  if [ -z "$token" ]; then
    echo
    echo "Next: write /etc/teleport.yaml, for example"
    echo "  teleport node configure --token=TOKEN --proxy=$proxy -o file"
    if [ "$systemd" -eq 1 ]; then echo "then: systemctl start teleport"; else echo "then: teleport start"; fi
    return 0
  fi

  if [ "$force" -eq 1 ]; then
    if [ "$systemd" -eq 1 ]; then systemctl stop teleport >/dev/null 2>&1 || true; fi
    rm -f /etc/teleport.yaml
    rm -rf /var/lib/teleport
  fi
  local pin_args=()
  [ -z "$ca_pins" ] || pin_args=(--ca-pin="$ca_pins")
  "$prefix/teleport" node configure --silent --token="$token" --proxy="$proxy" "${pin_args[@]}" -o file
  if [ "$systemd" -eq 1 ]; then
    systemctl restart teleport
    echo "Started teleport.service: systemctl status teleport, journalctl -fu teleport"
  else
    mkdir -p /var/log
    nohup "$prefix/teleport" start --config /etc/teleport.yaml --pid-file=/run/teleport.pid \
      >>/var/log/teleport.log 2>&1 </dev/null &
    echo "systemd is not running here: started teleport in the background (PID $!, logs in /var/log/teleport.log)"
  fi
}

fail() {
  echo "ERROR: $*" >&2
  exit 1
}

main "$@"
