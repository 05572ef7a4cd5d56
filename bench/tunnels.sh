#!/usr/bin/env bash
# Benchmark: auth, N proxies behind HAProxy (round-robin) and M agents in one load-generator
# process. Prints the time until every agent holds a tunnel to every proxy, the proxy's RSS per
# tunnel, and heartbeat traffic per node; as a baseline measured in the same run, the same M
# agents heartbeating straight to auth.
#
#   bench/tunnels.sh [N proxies, default 3] [M agents, default 300] [heartbeat interval, default 5s]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}
M=${2:-300}
HB=${3:-5s}
SAMPLE=15

cargo build --release -q
BIN=$PWD/target/release/teleport
W=$(mktemp -d)
. bench/lib.sh
start_cluster "$N" "$HB"
sleep 1
P1=${proxy_pids[0]}
PROXY_RSS_IDLE=$(rss_kb "$P1")
AUTH_RSS_IDLE=$(rss_kb "$AUTH_PID")

NT=$(TCTL tokens add --type=node --ttl=1h --format=text)
start_ms=$(date +%s%3N)
"$BIN" loadgen --count "$M" --token "$NT" --ca-pin "$PIN" --proxy "127.0.0.1:$LB_PORT" \
  --data-dir "$W/agents" 2>"$W/loadgen.log" & LG=$!; pids+=($LG)
wait_until "${TUNNEL_WAIT:-300}" all_hold "$N" "$M"
end_ms=$(date +%s%3N)
sleep 2
PROXY_RSS_LOADED=$(rss_kb "$P1")
AUTH_RSS_LOADED=$(rss_kb "$AUTH_PID")
io0=$(io_bytes "$LG"); a0=$(cpu_ticks "$AUTH_PID"); p0=$(cpu_ticks "$P1"); sleep $SAMPLE
io1=$(io_bytes "$LG"); a1=$(cpu_ticks "$AUTH_PID"); p1=$(cpu_ticks "$P1")
LG_RSS=$(rss_kb "$LG")
kill "$LG"; wait "$LG" 2>/dev/null || true
per_s() { awk -v b="$1" -v m="$M" -v s="$SAMPLE" 'BEGIN{printf "%.1f", b/m/s}'; }
TUNNEL_BPS=$(per_s $((io1 - io0)))

# Baseline in the same run: the same number of agents heartbeating straight to auth.
NT2=$(TCTL tokens add --type=node --ttl=1h --format=text)
"$BIN" loadgen --count "$M" --token "$NT2" --ca-pin "$PIN" --auth-server "127.0.0.1:$AUTH_PORT" \
  --prefix direct --data-dir "$W/direct" 2>"$W/direct.log" & LG2=$!; pids+=($LG2)
direct_up() { [ "$(TCTL nodes ls --format=json | jq '[.[] | select(.hostname | startswith("direct-"))] | length')" = "$M" ]; }
wait_until 300 direct_up
sleep 2
d0=$(io_bytes "$LG2"); sleep $SAMPLE; d1=$(io_bytes "$LG2")
DIRECT_BPS=$(per_s $((d1 - d0)))
kill "$LG2"; wait "$LG2" 2>/dev/null || true

HZ=$(getconf CLK_TCK)
PER_TUNNEL=$(( (PROXY_RSS_LOADED - PROXY_RSS_IDLE) * 1024 / M ))
cat <<OUT
teleport-lite tunnel benchmark: $N proxies behind HAProxy (roundrobin), $M agents, heartbeat $HB
  all $M agents hold tunnels to all $N proxies after  $(( end_ms - start_ms )) ms (join + $((N*M)) tunnels)
  proxy RSS: idle $PROXY_RSS_IDLE KiB, with $M tunnels $PROXY_RSS_LOADED KiB
  proxy memory per tunnel:                      $PER_TUNNEL bytes  (target 30720; ratio $(awk "BEGIN{printf \"%.2f\", $PER_TUNNEL/30720}"))
  auth RSS: idle $AUTH_RSS_IDLE KiB, with $M tunnelled nodes $AUTH_RSS_LOADED KiB
  heartbeat traffic per node, tunnels:          $TUNNEL_BPS B/s  ($N tunnels each)
  heartbeat traffic per node, direct (baseline): $DIRECT_BPS B/s
  ratio tunnels/direct:                          $(awk "BEGIN{printf \"%.2f\", $TUNNEL_BPS/($DIRECT_BPS>0?$DIRECT_BPS:1)}")
  CPU over ${SAMPLE}s steady state: auth $(awk "BEGIN{printf \"%.1f\", ($a1-$a0)*100/$HZ/$SAMPLE}") %, one proxy $(awk "BEGIN{printf \"%.1f\", ($p1-$p0)*100/$HZ/$SAMPLE}") %
  load generator RSS ($M agents, $((N*M)) tunnels): $LG_RSS KiB
OUT
row "convergence, $M agents x $N proxies (s)" "$(awk "BEGIN{printf \"%.1f\", $(( end_ms - start_ms ))/1000}")" - -
row "proxy memory per idle tunnel at $M (KB)" "$(awk "BEGIN{printf \"%.1f\", $PER_TUNNEL/1024}")" - 30
row "heartbeat bytes per node, $N tunnels vs direct (B/s)" "$TUNNEL_BPS" "$DIRECT_BPS" "$(awk -v d="$DIRECT_BPS" 'BEGIN{printf "%.1f", 2*d}')"
