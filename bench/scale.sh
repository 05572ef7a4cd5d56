#!/usr/bin/env bash
# Benchmark: scale through proxies. Auth, P proxies behind HAProxy (round-robin) and M agents
# in one load-generator process, heartbeat 5 s. Prints auth's and the proxies' CPU and RSS in
# steady state (baseline: the same cluster idle, measured before the agents start), then the
# reconnect curves: connections each proxy holds (HAProxy's count, per second) after one proxy
# is killed and restarted, and tunnels auth lists after auth is restarted. The reconnects'
# baseline is the first convergence of the same run.
#
#   bench/scale.sh [M agents, default 3000] [P proxies, default 3] [heartbeat, default 5s]
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-3000}
P=${2:-3}
HB=${3:-5s}
SAMPLE=${SAMPLE:-20}
WAIT=${WAIT:-600}

cargo build --release -q
BIN=$PWD/target/release/teleport
W=$(mktemp -d)
. bench/lib.sh
HZ=$(getconf CLK_TCK)
now_ms() { date +%s%3N; }
cpu_pct() { awk -v a="$1" -v b="$2" -v hz="$HZ" -v s="$3" 'BEGIN{printf "%.1f", (b-a)*100/hz/s}'; }
sum_cpu() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo $t; }
sum_rss() { local t=0 p; for p in "$@"; do t=$((t + $(rss_kb "$p"))); done; echo $t; }
# Seconds since $1 (ms), one decimal.
since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN{printf "%.1f", (b-a)/1000}'; }

start_cluster "$P" "$HB"
sleep 2
# Idle baseline.
a0=$(cpu_ticks "$AUTH_PID"); p0=$(sum_cpu "${proxy_pids[@]}"); sleep "$SAMPLE"
a1=$(cpu_ticks "$AUTH_PID"); p1=$(sum_cpu "${proxy_pids[@]}")
AUTH_CPU_IDLE=$(cpu_pct "$a0" "$a1" "$SAMPLE"); PROXY_CPU_IDLE=$(cpu_pct "$p0" "$p1" $((SAMPLE * P)))
AUTH_RSS_IDLE=$(rss_kb "$AUTH_PID"); PROXY_RSS_IDLE=$(( $(sum_rss "${proxy_pids[@]}") / P ))

NT=$(TCTL tokens add --type=node --ttl=1h --format=text)
t0=$(now_ms)
"$BIN" loadgen --count "$M" --token "$NT" --ca-pin "$PIN" --proxy "127.0.0.1:$LB_PORT" \
  --data-dir "$W/agents" 2>"$W/loadgen.log" & LG=$!; pids+=($LG)
wait_until "$WAIT" all_hold "$P" "$M"
CONVERGE=$(since "$t0")
echo "all $M agents hold tunnels to all $P proxies after $CONVERGE s"
sleep 5
a0=$(cpu_ticks "$AUTH_PID"); p0=$(sum_cpu "${proxy_pids[@]}"); sleep "$SAMPLE"
a1=$(cpu_ticks "$AUTH_PID"); p1=$(sum_cpu "${proxy_pids[@]}")
AUTH_CPU=$(cpu_pct "$a0" "$a1" "$SAMPLE"); PROXY_CPU=$(cpu_pct "$p0" "$p1" $((SAMPLE * P)))
AUTH_RSS=$(rss_kb "$AUTH_PID"); PROXY_RSS=$(( $(sum_rss "${proxy_pids[@]}") / P ))
LG_RSS=$(rss_kb "$LG")

# Curve 1: proxy 1 killed (no goodbye) and restarted at once; HAProxy's connection count to it.
echo "reconnect after proxy 1 is killed and restarted (connections to p1 / all proxies):"
kill -9 "${proxy_pids[0]}"; wait "${proxy_pids[0]}" 2>/dev/null || true
t0=$(now_ms)
start_proxy 1
PROXY_BACK="-" next=0
while [ "$(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN{print (b-a) < '"$WAIT"'*1000}')" = 1 ]; do
  read -r one total < <( (lb_servers || true) | awk '$1 == "p1" {o = $3} {t += $3} END {print o+0, t+0}')
  s=$(since "$t0")
  if awk -v s="$s" -v n="$next" 'BEGIN{exit !(s >= n)}'; then
    echo "  t=${s}s  p1 $one  all $total"; next=$((next + 2))
  fi
  if [ "$one" -ge "$M" ] && all_hold "$P" "$M"; then PROXY_BACK=$s; break; fi
  sleep 0.5
done
echo "  every agent holds p1 again (auth's view) after ${PROXY_BACK} s"

# Curve 2: auth stopped and restarted; tunnels it lists (proxies relink, nodes beat again).
echo "reconnect after auth restarts (tunnels listed by auth, of $((P * M))):"
kill "$AUTH_PID"; wait "$AUTH_PID" 2>/dev/null || true
t0=$(now_ms)
start_auth
AUTH_BACK="-" next=0
while [ "$(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN{print (b-a) < '"$WAIT"'*1000}')" = 1 ]; do
  total=$( (proxy_tunnels 2>/dev/null || true) | awk '{t += $1} END {print t+0}')
  s=$(since "$t0")
  if awk -v s="$s" -v n="$next" 'BEGIN{exit !(s >= n)}'; then
    echo "  t=${s}s  tunnels listed $total"; next=$((next + 2))
  fi
  if [ "$total" = $((P * M)) ]; then AUTH_BACK=$s; break; fi
  sleep 0.5
done
echo "  auth lists every tunnel again after ${AUTH_BACK} s"

PER_NODE_AUTH=$(awk "BEGIN{printf \"%.1f\", ($AUTH_RSS-$AUTH_RSS_IDLE)/$M}")
PER_TUNNEL=$(awk "BEGIN{printf \"%.1f\", ($PROXY_RSS-$PROXY_RSS_IDLE)/$M}")
cat <<OUT
teleport-lite scale benchmark: $M agents x $P proxies behind HAProxy (roundrobin), heartbeat $HB (shared machine: compare ratios)
  convergence: every agent holds every proxy after     $CONVERGE s
  auth CPU, steady state:                              $AUTH_CPU % of a core   (idle cluster: $AUTH_CPU_IDLE %)
  proxy CPU, steady state (mean of $P):                 $PROXY_CPU % of a core   (idle: $PROXY_CPU_IDLE %)
  auth RSS:                                            $AUTH_RSS KiB (idle $AUTH_RSS_IDLE KiB; $PER_NODE_AUTH KiB per node)
  proxy RSS (mean of $P):                               $PROXY_RSS KiB (idle $PROXY_RSS_IDLE KiB; $PER_TUNNEL KiB per tunnel)
  load generator RSS ($M agents, $((P * M)) tunnels):     $LG_RSS KiB
  after a proxy restart, all tunnels back after        $PROXY_BACK s
  after an auth restart, all tunnels listed after      $AUTH_BACK s
OUT
row "auth CPU, $M nodes x $P proxies (% of a core)" "$AUTH_CPU" "$AUTH_CPU_IDLE" -
row "proxy CPU, $M tunnels each (% of a core)" "$PROXY_CPU" "$PROXY_CPU_IDLE" -
row "auth memory per tunnelled node (KB)" "$PER_NODE_AUTH" - -
row "proxy memory per idle tunnel at $M (KB)" "$PER_TUNNEL" - 30
row "convergence, $M agents x $P proxies (s)" "$CONVERGE" - -
row "reconnect after a proxy restart (s)" "$PROXY_BACK" "$CONVERGE" -
row "reconnect after an auth restart (s)" "$AUTH_BACK" "$CONVERGE" -
