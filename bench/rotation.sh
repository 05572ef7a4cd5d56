#!/usr/bin/env bash
# Benchmark: a semi-automatic host CA rotation under load. Auth, 2 proxies behind HAProxy and M
# agents (one load-generator process) holding tunnels to both. Prints the fewest nodes listed at
# any moment of the rotation, how long until every agent holds only the new CA, and auth's CPU
# during the rotation against the same span of idle heartbeats measured just before (baseline).
#
#   bench/rotation.sh [M agents, default 300] [grace period, default 30s]
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-300}
GRACE=${2:-30s}

cargo build --release -q
BIN=$PWD/target/release/teleport
W=$(mktemp -d)
. bench/lib.sh
start_cluster 2 5s

NT=$(TCTL tokens add --type=node --ttl=1h --format=text)
"$BIN" loadgen --count "$M" --token "$NT" --ca-pin "$PIN" --proxy "127.0.0.1:$LB_PORT" \
  --data-dir "$W/agents" 2>"$W/loadgen.log" & LG=$!; pids+=($LG)
# The rotation starts once every agent holds both proxies (bench/converge.sh measures how fast).
wait_until 300 all_hold 2 "$M"
TUNNELS=$(TCTL proxies ls --format=json | jq '[.[].tunnels] | add')

HZ=$(getconf CLK_TCK)
GRACE_S=$(python3 -c "import re,sys; m=re.fullmatch(r'(\d+)(s|m|h)', sys.argv[1]); print(int(m[1])*{'s':1,'m':60,'h':3600}[m[2]])" "$GRACE")
# Baseline: auth's CPU over the same span with nothing but heartbeats.
a0=$(cpu_ticks "$AUTH_PID"); sleep "$GRACE_S"; a1=$(cpu_ticks "$AUTH_PID")
IDLE_TICKS=$((a1 - a0))

old_pin=$PIN
r0=$(cpu_ticks "$AUTH_PID"); start_ms=$(date +%s%3N)
TCTL auth rotate --type=host --grace-period="$GRACE" >/dev/null
min_listed=$M
while TCTL status | grep -q 'in progress'; do
  n=$(TCTL nodes ls --format=json | jq length)
  [ "$n" -lt "$min_listed" ] && min_listed=$n
  sleep 0.5
done
r1=$(cpu_ticks "$AUTH_PID")
ROT_TICKS=$((r1 - r0))
new_pin=$(TCTL status | awk '/CA pin/{print $3}')
moved() {
  # The proxies' CA set, once it is the new CA alone (they renew after the last phase too).
  local ca n=0 f
  ca=$(curl -sk "https://127.0.0.1:$LB_PORT/webapi/auth/export?type=tls-host")
  [ "$(echo "$ca" | grep -c 'BEGIN CERTIFICATE')" = 1 ] || return 1
  local line; line=$(echo "$ca" | sed -n 2p)
  for f in "$W"/agents/*/node-identity.pem; do
    if [ "$(grep -c 'BEGIN CERTIFICATE' "$f")" = 2 ] && grep -qF "$line" "$f"; then
      n=$((n + 1))
    fi
  done
  [ "$n" = "$M" ]
}
wait_until 120 moved
end_ms=$(date +%s%3N)
LOST=$(grep -c 'tunnel to proxy .* closed' "$W/loadgen.log" || true)

cat <<OUT
teleport-lite rotation benchmark: $M agents x 2 proxies behind HAProxy, heartbeat 5s, grace $GRACE
  CA pin: $old_pin -> $new_pin   (tunnels held when it started: $TUNNELS of $((2 * M)))
  fewest nodes listed during the rotation:      $min_listed of $M
  every agent holds only the new CA after:      $(( end_ms - start_ms )) ms (grace $GRACE_S s)
  auth CPU during the rotation:                 $(awk "BEGIN{printf \"%.2f\", $ROT_TICKS/$HZ}") s  (idle heartbeats over the same span: $(awk "BEGIN{printf \"%.2f\", $IDLE_TICKS/$HZ}") s; ratio $(awk "BEGIN{printf \"%.1f\", $ROT_TICKS/($IDLE_TICKS>0?$IDLE_TICKS:1)}"))
  tunnels lost during the rotation (warnings):  $LOST
OUT
row "rotation: fewest nodes listed, of $M" "$min_listed" - "$M"
row "rotation: every agent on the new CA (s)" "$(awk "BEGIN{printf \"%.1f\", $(( end_ms - start_ms ))/1000}")" - -
row "rotation: auth CPU, rotation vs idle (s)" "$(awk "BEGIN{printf \"%.2f\", $ROT_TICKS/$HZ}")" "$(awk "BEGIN{printf \"%.2f\", $IDLE_TICKS/$HZ}")" -
