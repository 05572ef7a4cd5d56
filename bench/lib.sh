# Shared helpers of the benchmarks: a cluster of auth + N proxies behind HAProxy on loopback.
# Source it after setting BIN (the teleport executable) and W (a work directory).

pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
cleanup() {
  stop_all
  if [ -n "${KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
# Thousands of tunnels need thousands of descriptors (HAProxy two per connection).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
LB_MAXCONN=$(( (NOFILE - 200) / 2 ))
# ROW <metric> <ours> <baseline or -> <target or ->: one line of the benchmark table (tab
# separated; the ratio is ours/baseline, else ours/target, else -).
row() {
  local ratio
  ratio=$(awk -v o="$2" -v b="$3" -v t="$4" 'BEGIN{
    if (b != "-" && b+0 > 0) printf "%.2f", o/b; else if (t != "-" && t+0 > 0) printf "%.2f", o/t; else print "-" }')
  printf 'ROW\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$ratio" "$4"
}
# lb_servers: "name status current-sessions" per backend server, from HAProxy's stats socket.
lb_servers() {
  python3 - "$W/haproxy.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show stat\n")
d = b""
while True:
    c = s.recv(65536)
    if not c: break
    d += c
for l in d.decode().splitlines():
    f = l.split(",")
    if len(f) > 17 and f[0] == "be" and f[1] not in ("FRONTEND", "BACKEND"):
        print(f[1], f[17], f[4])
PY
}
# Tunnels every proxy holds, as auth lists them (one number per proxy).
proxy_tunnels() { TCTL proxies ls --format=json | jq -r '.[].tunnels'; }
# Whether every one of N proxies holds M tunnels (auth's view).
all_hold() { [ "$(proxy_tunnels | awk -v m="$2" '$1 == m {n++} END {print n+0}')" = "$1" ]; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
io_bytes() { awk '/^rchar|^wchar/{s+=$2} END{print s}' "/proc/$1/io"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TCTL() { "$W/tctl" -c "$W/auth.yaml" "$@"; }
wait_until() { # timeout-seconds command...
  local t=$1; shift; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || {
      echo "timed out: $*" >&2
      TCTL proxies ls >&2 || true
      tail -n 5 "$W"/*.log >&2 || true
      exit 1
    }
    sleep 0.1
  done
}

# auth_config DATA_DIR HEARTBEAT: links tctl, picks AUTH_PORT and writes $W/auth.yaml.
auth_config() {
  ln -sf "$BIN" "$W/tctl"
  AUTH_PORT=$(port)
  cat >"$W/auth.yaml" <<YAML
version: v3
teleport:
  nodename: bench-auth
  data_dir: $1
  log: {severity: WARN}
auth_service:
  enabled: yes
  listen_addr: 127.0.0.1:$AUTH_PORT
  cluster_name: bench.local
  heartbeat_interval: $2
ssh_service:
  enabled: no
YAML
}

# start_cluster N HEARTBEAT: sets AUTH_PID AUTH_PORT PIN LB_PORT and proxy_pids.
start_cluster() {
  local n=$1 hb=$2
  auth_config "$W/auth" "$hb"
  start_auth
  wait_until 20 TCTL status
  PIN=$(TCTL status | awk '/CA pin/{print $3}')
  LB_PORT=$(port)
  local backends="" i p t
  proxy_pids=()
  for i in $(seq 1 "$n"); do
    p=$(port)
    backends+="  server p$i 127.0.0.1:$p check inter 500ms fall 2 rise 1"$'\n'
    t=$(TCTL tokens add --type=proxy --format=text)
    cat >"$W/p$i.yaml" <<YAML
version: v3
teleport:
  nodename: bench-proxy-$i
  data_dir: $W/p$i
  auth_server: 127.0.0.1:$AUTH_PORT
  ca_pin: "$PIN"
  join_params: {token_name: "$t", method: token}
  log: {severity: WARN}
auth_service: {enabled: no}
ssh_service: {enabled: no}
proxy_service:
  enabled: yes
  web_listen_addr: 127.0.0.1:$p
  public_addr: 127.0.0.1:$LB_PORT
YAML
    start_proxy "$i"
  done
  start_lb "$backends"
  proxies_up() { [ "$(TCTL proxies ls --format=json | jq length)" = "$n" ]; }
  wait_until 30 proxies_up
  lb_up() { [ "$(lb_servers | awk '$2 == "UP"' | wc -l)" = "$n" ]; }
  wait_until 30 lb_up
}

# start_proxy I: (re)starts proxy I (1-based) with its config and data (same identity).
start_proxy() {
  "$BIN" start -c "$W/p$1.yaml" 2>>"$W/p$1.log" & proxy_pids[$(($1 - 1))]=$!; pids+=($!)
}
# start_auth: (re)starts auth with its config and data.
start_auth() {
  "$BIN" start -c "$W/auth.yaml" 2>>"$W/auth.log" & AUTH_PID=$!; pids+=($AUTH_PID)
}

# start_lb BACKEND_LINES: HAProxy in TCP mode on $LB_PORT, round-robin over the given
# "server ..." lines, with its stats socket at $W/haproxy.sock.
start_lb() {
  cat >"$W/haproxy.cfg" <<CFG
global
  maxconn $LB_MAXCONN
  stats socket $W/haproxy.sock
defaults
  mode tcp
  maxconn $LB_MAXCONN
  timeout connect 2s
  timeout client 1h
  timeout server 1h
frontend fe
  bind 127.0.0.1:$LB_PORT
  default_backend be
backend be
  balance roundrobin
$1
CFG
  "$(command -v haproxy || echo /usr/sbin/haproxy)" -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 &
  pids+=($!)
}
