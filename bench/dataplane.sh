#!/usr/bin/env bash
# Data plane against rathole 0.5 with TLS, side by side in one run, with the same tools on both
# paths (bench/dataplane.py: a sink, a source and an echo service on loopback, and the clients):
#   ours:    client | tctl nodes dial --(TLS)--> proxy ==(TLS tunnel, yamux)==> node --> service
#   rathole: client | dataplane.py nc --> rathole server ==(TLS)==> rathole client --> service
# Measures forward (client to service) and reverse bytes/s, the median of N 64-byte round trips
# on one connection per path (taken in turn, so both see the same load), and the CPU seconds of the two server-side processes (proxy + node,
# rathole server + client) per GiB moved. Alternates ours and rathole RUNS times; medians, and
# the median of the per-run ratios.
#   bench/dataplane.sh [GiB each way, default 1] [round trips, default 2000] [runs, default 3]
# BIN=path picks the teleport executable (default: a release build of this tree). rathole is
# built with `cargo install` from the configured cargo registry into $BENCH_DIR/rathole (outside
# the repository), only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
GIB=${1:-1}
TRIPS=${2:-2000}
RUNS=${3:-3}
BENCH_DIR=${BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teleport-lite-bench}
RATHOLE=$BENCH_DIR/rathole/bin/rathole
if [ ! -x "$RATHOLE" ]; then
  if ! { command -v pkg-config && [ -e /usr/include/openssl/ssl.h ]; } >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pkg-config libssl-dev >/dev/null
  fi
  echo "building rathole 0.5 into $BENCH_DIR/rathole (once)" >&2
  cargo install --quiet rathole --version '^0.5' --root "$BENCH_DIR/rathole" >&2
fi
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=$PWD/target/release/teleport
fi
W=$(mktemp -d)
. bench/lib.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
DP="python3 $PWD/bench/dataplane.py"
BYTES=$((GIB * 1024 * 1024 * 1024))

# The services, shared by both paths.
SINK=$(port); SOURCE=$(port); ECHO=$(port)
$DP serve "$SINK" "$SOURCE" "$ECHO" "$BYTES" & pids+=($!)

# rathole: a server and a client over TLS (a CA and a server certificate made here), one
# service per port of ours.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout "$W/ca.key" \
  -out "$W/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$W/srv.key" -out "$W/srv.csr" \
  2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$W/ext"
openssl x509 -req -in "$W/srv.csr" -CA "$W/ca.crt" -CAkey "$W/ca.key" -CAcreateserial -days 2 \
  -extfile "$W/ext" -out "$W/srv.crt" 2>/dev/null
openssl pkcs12 -export -out "$W/srv.pfx" -inkey "$W/srv.key" -in "$W/srv.crt" \
  -certfile "$W/ca.crt" -passout pass:bench
RH_CTL=$(port); RH_SINK=$(port); RH_SOURCE=$(port); RH_ECHO=$(port)
{
  printf '[server]\nbind_addr = "127.0.0.1:%s"\n[server.transport]\ntype = "tls"\n' "$RH_CTL"
  printf '[server.transport.tls]\npkcs12 = "%s"\npkcs12_password = "bench"\n' "$W/srv.pfx"
  for s in sink:$RH_SINK source:$RH_SOURCE echo:$RH_ECHO; do
    printf '[server.services.%s]\ntoken = "bench"\nbind_addr = "127.0.0.1:%s"\n' "${s%%:*}" "${s#*:}"
  done
} >"$W/rh-server.toml"
{
  printf '[client]\nremote_addr = "localhost:%s"\n[client.transport]\ntype = "tls"\n' "$RH_CTL"
  printf '[client.transport.tls]\ntrusted_root = "%s"\nhostname = "localhost"\n' "$W/ca.crt"
  for s in sink:$SINK source:$SOURCE echo:$ECHO; do
    printf '[client.services.%s]\ntoken = "bench"\nlocal_addr = "127.0.0.1:%s"\n' "${s%%:*}" "${s#*:}"
  done
} >"$W/rh-client.toml"
RUST_LOG=warn "$RATHOLE" --server "$W/rh-server.toml" >"$W/rh-server.log" 2>&1 & RH_SERVER=$!
pids+=($RH_SERVER)
RUST_LOG=warn "$RATHOLE" --client "$W/rh-client.toml" >"$W/rh-client.log" 2>&1 & RH_CLIENT=$!
pids+=($RH_CLIENT)

# Ours: auth, a proxy and a node (its tunnel straight to the proxy), each its own process.
ln -sf "$BIN" "$W/tctl"
AUTH_PORT=$(port); WEB=$(port)
cat >"$W/auth.yaml" <<YAML
version: v3
teleport: {nodename: bench-auth, data_dir: $W/auth, log: {severity: WARN}}
auth_service: {enabled: yes, listen_addr: 127.0.0.1:$AUTH_PORT, cluster_name: bench.local}
ssh_service: {enabled: no}
YAML
"$BIN" start -c "$W/auth.yaml" 2>"$W/auth.log" & pids+=($!)
wait_until 20 TCTL status
PIN=$(TCTL status | awk '/CA pin/{print $3}')
PT=$(TCTL tokens add --type=proxy --format=text)
cat >"$W/proxy.yaml" <<YAML
version: v3
teleport:
  nodename: bench-proxy
  data_dir: $W/proxy
  auth_server: 127.0.0.1:$AUTH_PORT
  ca_pin: "$PIN"
  join_params: {token_name: "$PT", method: token}
  log: {severity: WARN}
auth_service: {enabled: no}
ssh_service: {enabled: no}
proxy_service: {enabled: yes, web_listen_addr: 127.0.0.1:$WEB, public_addr: 127.0.0.1:$WEB}
YAML
"$BIN" start -c "$W/proxy.yaml" 2>"$W/proxy.log" & PROXY=$!; pids+=($PROXY)
NT=$(TCTL tokens add --type=node --format=text)
wait_until 20 "$BIN" node configure --token="$NT" --proxy="127.0.0.1:$WEB" --ca-pin="$PIN" \
  --data-dir="$W/node" --node-name=sinkhost -o "file://$W/node.yaml"
"$BIN" start -c "$W/node.yaml" 2>"$W/node.log" & NODE=$!; pids+=($NODE)
tunnel_up() { TCTL nodes ls --format=json | jq -e '.[] | select(.hostname=="sinkhost") | .tunnels | length == 1'; }
wait_until 30 tunnel_up
wait_until 30 $DP probe 127.0.0.1 "$RH_ECHO"

ours() { echo "$W/tctl" -c "$W/auth.yaml" nodes dial --proxy="127.0.0.1:$WEB" sinkhost "127.0.0.1:$1"; }
theirs() { echo $DP nc 127.0.0.1 "$1"; }
cpu() { echo $(( $(cpu_ticks "$1") + $(cpu_ticks "$2") )); }
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mibs() { awk "BEGIN{printf \"%.0f\", $BYTES / 1048576 / $1}"; }
HZ=$(getconf CLK_TCK)
ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }

declare -A F R T C
# Per-run ratios: each run's two paths ran minutes apart at most, so their ratio is steadier
# than a ratio of medians while other work comes and goes.
QF="" QR="" QT="" QC=""
for run in $(seq 1 "$RUNS"); do
  # Alternate which path goes first, so a load that rises or falls favours neither.
  order="ours theirs"; [ $((run % 2)) = 0 ] && order="theirs ours"
  declare -A pf pr pc
  for who in $order; do
    if [ $who = ours ]; then
      a=$PROXY b=$NODE sink=$SINK source=$SOURCE echo=$ECHO
    else
      a=$RH_SERVER b=$RH_CLIENT sink=$RH_SINK source=$RH_SOURCE echo=$RH_ECHO
    fi
    c0=$(cpu $a $b)
    f=$($DP fwd "$BYTES" $($who "$sink"))
    r=$($DP rev "$BYTES" $($who "$source"))
    c1=$(cpu $a $b)
    pf[$who]=$(mibs "$f"); pr[$who]=$(mibs "$r")
    pc[$who]=$(awk "BEGIN{printf \"%.2f\", ($c1 - $c0) / $HZ / (2 * $GIB)}")
    F[$who]+="${pf[$who]} "; R[$who]+="${pr[$who]} "; C[$who]+="${pc[$who]} "
    echo "run $run $who: forward ${pf[$who]} MiB/s, reverse ${pr[$who]} MiB/s" >&2
  done
  QF+="$(ratio "${pf[ours]}" "${pf[theirs]}") "; QR+="$(ratio "${pr[ours]}" "${pr[theirs]}") "
  QC+="$(ratio "${pc[ours]}" "${pc[theirs]}") "
  # Round trips on both paths in turn (ours, rathole, ours, ...): both see the same load.
  read -r t1 t2 < <($DP rtt "$TRIPS" $(ours "$ECHO") -- $(theirs "$RH_ECHO"))
  T[ours]+="$t1 "; T[theirs]+="$t2 "; QT+="$(ratio "$t1" "$t2") "
  echo "run $run: 64 B round trip median ours ${t1} us, rathole ${t2} us" >&2
done
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
OF=$(med "${F[ours]}"); RF=$(med "${F[theirs]}")
OR=$(med "${R[ours]}"); RR=$(med "${R[theirs]}")
OT=$(med "${T[ours]}"); RT=$(med "${T[theirs]}")
OC=$(med "${C[ours]}"); RC=$(med "${C[theirs]}")
XF=$(med "$QF"); XR=$(med "$QR"); XT=$(med "$QT"); XC=$(med "$QC")
cat <<OUT
teleport-lite data plane vs rathole $("$RATHOLE" --version 2>/dev/null | awk '/Build Version/{print $3}') with TLS
($GIB GiB each way, $TRIPS round trips of 64 B, median of $RUNS runs; loopback; $(nproc) cores,
possibly shared: compare the ratios, not the absolute numbers; ratio = median of per-run ratios)
                                   ours    rathole   ratio (ours/rathole)
forward (MiB/s)               $(printf '%9s %9s %7s' "$OF" "$RF" "$XF")   target >= 1.0
reverse (MiB/s)               $(printf '%9s %9s %7s' "$OR" "$RR" "$XR")   target >= 1.0
64 B round trip median (us)   $(printf '%9s %9s %7s' "$OT" "$RT" "$XT")   target <= 1.0
server CPU s per GiB          $(printf '%9s %9s %7s' "$OC" "$RC" "$XC")   (proxy+node vs rathole server+client)
OUT
printf 'ROW\t%s\t%s\t%s\t%s\t%s\n' \
  "data plane forward (MiB/s)" "$OF" "$RF" "$XF" ">=1.0" \
  "data plane reverse (MiB/s)" "$OR" "$RR" "$XR" ">=1.0" \
  "data plane 64 B round trip median (us)" "$OT" "$RT" "$XT" "<=1.0" \
  "data plane server CPU per GiB (s)" "$OC" "$RC" "$XC" "-"
