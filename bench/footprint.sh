#!/usr/bin/env bash
# Footprint of the shipped static executable: size, RSS of an idle agent holding tunnels to three
# proxies behind HAProxy, RSS of idle auth and proxy, and the time from `teleport start` of a fresh
# node to its first acknowledged heartbeat (measured with the systemd readiness datagram, which
# is sent at exactly that moment). Baselines measured in the same run: `teleport version`
# (process start alone) and a fresh node joining straight to auth.
#   bench/footprint.sh [runs, default 5]
# Ends with ROW lines (metric, ours, baseline or -, ratio, target) for bench/all.sh; the
# executable size row is bench/size.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
./scripts/build-static.sh >/dev/null
BIN=$PWD/target/x86_64-unknown-linux-musl/release/teleport
W=$(mktemp -d)
. bench/lib.sh
start_cluster 3 5s

# Start-to-ready timer: spawns a command with NOTIFY_SOCKET set and waits for READY=1.
cat >"$W/ready.py" <<'PY'
import os, socket, subprocess, sys, time
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(path); s.settimeout(30)
env = dict(os.environ, NOTIFY_SOCKET=path)
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[2:], env=env, stderr=subprocess.DEVNULL)
while b"READY=1" not in s.recv(256):
    pass
print(int((time.monotonic() - t0) * 1000))
p.terminate(); p.wait()
PY
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
time_ms() { # command...
  local t0 t1; t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 ))
}

NT=$(TCTL tokens add --type=node --ttl=1h --format=text)
tunnel_ms=(); direct_ms=(); version_ms=()
for i in $(seq 1 "$RUNS"); do
  "$BIN" node configure --token="$NT" --proxy="127.0.0.1:$LB_PORT" --ca-pin="$PIN" \
    --data-dir="$W/fresh$i" --node-name="fresh$i" -o "file://$W/fresh$i.yaml" >/dev/null
  tunnel_ms+=("$(python3 "$W/ready.py" "$W/n$i.sock" "$BIN" start -c "$W/fresh$i.yaml")")
  direct_ms+=("$(python3 "$W/ready.py" "$W/d$i.sock" "$BIN" start --roles=node --token="$NT" \
    --ca-pin="$PIN" --auth-server="127.0.0.1:$AUTH_PORT" --data-dir="$W/direct$i" --nodename="direct$i")")
  version_ms+=("$(time_ms "$BIN" version)")
done
T_TUNNEL=$(printf '%s\n' "${tunnel_ms[@]}" | median)
T_DIRECT=$(printf '%s\n' "${direct_ms[@]}" | median)
T_VERSION=$(printf '%s\n' "${version_ms[@]}" | median)

# An idle agent holding tunnels to all three proxies.
"$BIN" node configure --token="$NT" --proxy="127.0.0.1:$LB_PORT" --ca-pin="$PIN" \
  --data-dir="$W/idle" --node-name=idle -o "file://$W/idle.yaml" >/dev/null
"$BIN" start -c "$W/idle.yaml" 2>"$W/idle.log" & AGENT=$!; pids+=($AGENT)
three() { [ "$(TCTL nodes ls --format=json | jq '[.[] | select(.hostname=="idle")][0].tunnels | length')" = 3 ]; }
wait_until 60 three
sleep 12   # two heartbeat intervals of idling
SIZE=$(stat -c %s "$BIN")
A_RSS=$(rss_kb "$AGENT"); AUTH_RSS=$(rss_kb "$AUTH_PID"); P_RSS=$(rss_kb "${proxy_pids[0]}")
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
cat <<OUT
teleport-lite footprint (static musl executable, loopback, $RUNS runs, medians)
  executable size:                               $SIZE bytes   (goal 4000000: ratio $(ratio "$SIZE" 4000000); CI budget 8000000)
  idle agent RSS, tunnels to 3 proxies:          $A_RSS KiB   (goal 6144 KiB: ratio $(ratio "$A_RSS" 6144))
  idle auth RSS (no local node):                 $AUTH_RSS KiB
  idle proxy RSS:                                $P_RSS KiB
  fresh start -> first acknowledged heartbeat:
    through HAProxy and a proxy (join + tunnel): $T_TUNNEL ms   (goal 100 ms: ratio $(ratio "$T_TUNNEL" 100))
    straight to auth (baseline):                 $T_DIRECT ms
    'teleport version' (process start baseline): $T_VERSION ms
OUT
row() { printf 'ROW\t%s\t%s\t%s\t%s\t%s\n' "$@"; }
row "idle agent RSS, 3 tunnels (KiB)" "$A_RSS" - "$(ratio "$A_RSS" 6144)" 6144
row "fresh node start to first heartbeat via proxy (ms)" "$T_TUNNEL" "$T_DIRECT" \
  "$(ratio "$T_TUNNEL" "$T_DIRECT")" 100
