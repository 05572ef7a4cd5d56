#!/usr/bin/env bash
# teleport-lite installer, served by a teleport-lite proxy at /scripts/install.sh (install only)
# and /scripts/TOKEN/install-node.sh (install, configure with the token, start). Run the line
# "tctl tokens add --type=node" prints; on a cluster whose proxies serve publicly trusted
# certificates it is simply:
#   { curl -fsSL 'https://PROXY/scripts/TOKEN/install-node.sh' || echo 'exit 1'; } | sudo bash
# and otherwise the same with curl's --pinnedpubkey (the proxies' web keys) and -k.
# The agent binary comes from the proxy itself, pinned the same way, and is checked against its
# SHA-256, so hosts without internet access can be installed. Everything runs inside main(),
# so a partly downloaded script does nothing.
set -euo pipefail

main() {
  local proxy="{{PROXY}}" version="{{VERSION}}" sha256="{{SHA256}}" bin_arch="{{ARCH}}"
  local token="{{TOKEN}}" ca_pins="{{CA_PINS}}" web_pins="{{WEB_PINS}}"
  local prefix="${TELEPORT_PREFIX:-/usr/local/bin}" force=0 arch tmp
  local data=/var/lib/teleport config=/etc/teleport.yaml user=teleport
  for a in "$@"; do
    case "$a" in
      -f|--force) force=1 ;;
      *) fail "unknown option $a (use --force to replace an existing configuration)" ;;
    esac
  done

  [ "$(uname -s)" = Linux ] || fail "this installer supports Linux only"
  [ "$(id -u)" -eq 0 ] || fail "run it as root (with sudo)"
  case "$(uname -m)" in
    x86_64|amd64) arch=amd64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
  esac
  [ "$arch" = "$bin_arch" ] ||
    fail "this proxy serves the linux-$bin_arch agent, but this host is $(uname -m)"
  command -v curl >/dev/null || fail "curl is needed"
  command -v sha256sum >/dev/null || fail "sha256sum is needed (coreutils)"

  # auth.db holds the cluster CA and tokens: no flag of an installer may delete it.
  if [ -n "$token" ] && [ -e "$data/auth.db" ]; then
    fail "$data holds an auth server's data (auth.db: the cluster CA and tokens); this installer never replaces it, even with --force. Install the node on another host."
  fi
  # Without systemd the node is started with setpriv as the service user, never as root.
  if [ -n "$token" ] && ! { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; } &&
    ! command -v setpriv >/dev/null; then
    fail "setpriv (util-linux) is needed to start teleport as the user $user without systemd; install util-linux and run the same line again; nothing was installed"
  fi
  if [ -n "$token" ] && [ "$force" -eq 0 ]; then
    [ ! -e "$config" ] ||
      fail "$config exists: this host is configured already. To replace it, run the same line with \"sudo bash -s -- --force\" in place of \"sudo bash\""
    if [ -d "$data" ] && [ -n "$(ls -A "$data" 2>/dev/null)" ]; then
      fail "$data holds the state of a joined host. To join again, run the same line with \"sudo bash -s -- --force\" in place of \"sudo bash\""
    fi
  fi

  # Every download is pinned to the proxies' web keys unless they serve publicly trusted
  # certificates: -k only because --pinnedpubkey replaces the CA check.
  local fetch=(curl -fsS --proto =https)
  [ -z "$web_pins" ] || fetch+=(-k --pinnedpubkey "$web_pins")

  tmp="$(mktemp -d)"
  trap "rm -rf '$tmp'" EXIT
  echo "Downloading teleport $version (linux-$arch) from $proxy"
  "${fetch[@]}" "https://$proxy/webapi/binary/teleport-linux-$arch" -o "$tmp/teleport" ||
    fail "cannot download the agent from https://$proxy; nothing was installed"
  echo "$sha256  $tmp/teleport" | sha256sum -c --quiet - >/dev/null 2>&1 ||
    fail "the downloaded agent does not match its SHA-256 $sha256; nothing was installed"
  local systemd=0
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemd=1
    "${fetch[@]}" "https://$proxy/webapi/systemd/teleport.service" -o "$tmp/teleport.service" ||
      fail "cannot download the systemd unit; nothing was installed"
  fi
  mkdir -p "$prefix"
  install -m 0755 "$tmp/teleport" "$prefix/teleport"
  ln -sf teleport "$prefix/tctl"
  echo "Installed $prefix/teleport and $prefix/tctl"
  ensure_user "$user"

  if [ "$systemd" -eq 1 ]; then
    install -m 0644 "$tmp/teleport.service" /etc/systemd/system/teleport.service
    systemctl daemon-reload
    echo "Installed the systemd unit teleport.service (runs as the user $user)"
  fi

  if [ -z "$token" ]; then
    if [ "$systemd" -eq 1 ] && [ -e "$config" ]; then
      systemctl enable teleport >/dev/null 2>&1
      echo "Enabled teleport.service ($config exists); restart it to run the new version"
      return 0
    fi
    echo
    echo "Next: write $config, for example"
    echo "  teleport node configure --token=TOKEN --proxy=$proxy -o file"
    if [ "$systemd" -eq 1 ]; then
      echo "then: chgrp $user $config && chmod 0640 $config && systemctl enable --now teleport"
    else
      echo "then: teleport start"
    fi
    return 0
  fi

  if [ "$force" -eq 1 ]; then
    if [ "$systemd" -eq 1 ]; then systemctl stop teleport >/dev/null 2>&1 || true; fi
    rm -f "$config"
    rm -rf "$data"
  fi
  install -d -m 0700 -o "$user" -g "$user" "$data"
  local pin_args=()
  [ -z "$ca_pins" ] || pin_args=(--ca-pin="$ca_pins")
  # The token goes on stdin, not in an argument: every local user can read arguments in ps.
  "$prefix/teleport" node configure --silent --token=- --proxy="$proxy" "${pin_args[@]}" -o file <<<"$token"
  # Diagnostics (/healthz, /readyz, /metrics) on loopback, as in the Docker image.
  if grep -q '^  diag_addr:' "$config"; then
    sed -i 's|^  diag_addr:.*$|  diag_addr: "127.0.0.1:3000"|' "$config"
  else
    sed -i '/^teleport:$/a\  diag_addr: "127.0.0.1:3000"' "$config"
  fi
  # The service user reads the config (it holds the token until the first join), nobody else.
  chgrp "$user" "$config"
  chmod 0640 "$config"

  if [ "$systemd" -eq 1 ]; then
    systemctl enable teleport >/dev/null 2>&1
    # --no-block: the unit is ready only once the node has joined; the proxy may be down.
    systemctl restart --no-block teleport
    echo "Started teleport.service: systemctl status teleport, journalctl -fu teleport"
  else
    install -d -m 0755 -o "$user" -g "$user" /run/teleport
    # Never as root: the data dir belongs to the service user (setpriv was checked above).
    nohup setpriv --reuid="$user" --regid="$user" --init-groups "$prefix/teleport" start --config "$config" \
      --pid-file=/run/teleport/teleport.pid >>/var/log/teleport.log 2>&1 </dev/null &
    echo "systemd is not running here: started teleport in the background (PID $!, logs in /var/log/teleport.log)"
  fi
  wait_ready "$prefix/teleport"
}

# The service's own user: nodes need no root (they dial out, and to 127.0.0.1 for the node).
ensure_user() {
  id "$1" >/dev/null 2>&1 && return 0
  if command -v useradd >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/teleport --no-create-home \
      --shell /usr/sbin/nologin "$1"
  elif command -v adduser >/dev/null; then
    adduser -S -D -H -h /var/lib/teleport -s /sbin/nologin "$1"
  else
    fail "cannot create the system user $1 (no useradd or adduser)"
  fi
  echo "Created the system user $1"
}

# Waits a little for the node to join, so the operator sees the outcome here.
wait_ready() {
  local i
  for i in $(seq 1 60); do
    if "$1" health --diag-addr 127.0.0.1:3000 >/dev/null 2>&1; then
      echo "teleport joined the cluster and is ready"
      return 0
    fi
    sleep 0.5
  done
  echo "teleport is still joining (is the proxy reachable?); it keeps retrying in the background"
}

fail() {
  echo "ERROR: $*" >&2
  exit 1
}

main "$@"
