#!/usr/bin/env bash
# Memory and heartbeat bytes at scale: auth + 3 proxies behind HAProxy (round-robin), M agents in
# one load-generator process, first heartbeating straight to auth, then (same identities, no new
# joins) holding a tunnel to each of the 3 proxies. Prints
#   - auth KB per idle direct node          (auth RSS with M direct nodes minus idle auth)
#   - proxy KB per idle tunnel              (proxy RSS with M tunnels minus idle proxy, 3 proxies)
#   - both again as a slope between M/2 and M (the fleet comes in two halves): what one more
#     node or tunnel costs, without the fixed cost of the first ones (allocator warm-up)
#   - proxy memory returned after the M tunnels closed (% of what they had taken)
#   - idle agent RSS with 3 tunnels         (a separate `teleport start` node process)
#   - heartbeat bytes per node and second with 3 tunnels, against the same M agents direct
#     (load generator's rchar+wchar, as in bench/tunnels.sh)
# Baselines come from the same run: the idle processes before any load, the direct agents.
# The executable is the static musl build (what ships); `glibc` as 3rd argument uses the
# glibc release build instead.
#
#   bench/memory.sh [M agents, default 1000] [heartbeat interval, default 5s] [musl|glibc]
#
# More than ~400 agents from one address need the join limiter that charges a join once.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-1000}
HB=${2:-5s}
LIBC=${3:-musl}
SAMPLE=${SAMPLE:-60} # one full pace of a quiet tunnel (12 intervals of 5 s)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ -n "${TELEPORT_BIN:-}" ]; then
  BIN=$(realpath "$TELEPORT_BIN") # a given executable (A/B runs)
elif [ "$LIBC" = glibc ]; then
  cargo build --release -q
  BIN=$PWD/target/release/teleport
else
  ./scripts/build-static.sh >/dev/null
  BIN=$PWD/target/x86_64-unknown-linux-musl/release/teleport
fi
W=$(mktemp -d)
. bench/lib.sh
start_cluster 3 "$HB"
HB_S=$(awk -v h="$HB" 'BEGIN{sub(/s$/,"",h); print h+0}')
settle() { sleep "$(awk -v h="$HB_S" 'BEGIN{print 2*h+1}')"; } # two beats of idling
rss_sum() { local s=0 p; for p in "$@"; do s=$((s + $(rss_kb "$p"))); done; echo $s; }

sleep 1
AUTH_IDLE=$(rss_kb "$AUTH_PID")
P_IDLE=$(rss_sum "${proxy_pids[@]}")

# The fleet in two load generators of M/2 (A) and M - M/2 (B) agents: RSS is read with A's
# half and with all M.
HALF=$((M / 2))
NT=$(TCTL tokens add --type=node --ttl=1h --format=text)
# half A|B, then the loadgen's further arguments; sets LG_A or LG_B.
fleet() {
  local h=$1 n=$HALF; shift
  [ "$h" = A ] || n=$((M - HALF))
  "$BIN" loadgen --count "$n" --token "$NT" --ca-pin "$PIN" --prefix "mem$h" \
    --data-dir "$W/agents" "$@" & pids+=($!)
  eval "LG_$h=$!"
}
io_fleet() { echo $(($(io_bytes "$LG_A") + $(io_bytes "$LG_B"))); }
stop_fleet() { kill "$LG_A" "$LG_B"; wait "$LG_A" "$LG_B" 2>/dev/null || true; }

# 1. M agents straight to auth (they join here; the tunnel phase reuses their identities).
nodes_up() { [ "$(TCTL nodes ls --format=json | jq length)" = "$1" ]; }
fleet A --auth-server "127.0.0.1:$AUTH_PORT" 2>"$W/direct-a.log"
wait_until "${JOIN_WAIT:-600}" nodes_up "$HALF"
settle
AUTH_HALF=$(rss_kb "$AUTH_PID")
fleet B --auth-server "127.0.0.1:$AUTH_PORT" 2>"$W/direct-b.log"
wait_until "${JOIN_WAIT:-600}" nodes_up "$M"
settle
AUTH_LOADED=$(rss_kb "$AUTH_PID")
d0=$(io_fleet); sleep "$SAMPLE"; d1=$(io_fleet)
stop_fleet
nobody() { [ "$(TCTL nodes ls --format=json | jq length)" = 0 ]; }
wait_until 60 nobody

# 2. The same agents through the load balancer: a tunnel to every proxy.
all_tunnels() { [ "$(TCTL proxies ls --format=json | jq "[.[] | select(.tunnels == $1)] | length")" = 3 ]; }
fleet A --proxy "127.0.0.1:$LB_PORT" 2>"$W/tunnels-a.log"
wait_until "${TUNNEL_WAIT:-600}" all_tunnels "$HALF"
settle
P_HALF=$(rss_sum "${proxy_pids[@]}")
fleet B --proxy "127.0.0.1:$LB_PORT" 2>"$W/tunnels-b.log"
wait_until "${TUNNEL_WAIT:-600}" all_tunnels "$M"
settle
P_LOADED=$(rss_sum "${proxy_pids[@]}")
t0=$(io_fleet); sleep "$SAMPLE"; t1=$(io_fleet)

# 3. One real agent process holding a tunnel to each proxy.
"$BIN" node configure --token="$NT" --proxy="127.0.0.1:$LB_PORT" --ca-pin="$PIN" \
  --data-dir="$W/idle" --node-name=idle-agent -o "file://$W/idle.yaml" >/dev/null
"$BIN" start -c "$W/idle.yaml" 2>"$W/idle.log" & AGENT=$!; pids+=($AGENT)
three() { [ "$(TCTL nodes ls --format=json | jq '[.[] | select(.hostname=="idle-agent")][0].tunnels | length')" = 3 ]; }
wait_until 120 three
settle
AGENT_RSS=$(rss_kb "$AGENT")

# 4. The tunnels close (the agents say goodbye): what do the proxies give back?
stop_fleet
one_left() { [ "$(TCTL proxies ls --format=json | jq '[.[] | select(.tunnels <= 1)] | length')" = 3 ]; }
wait_until 120 one_left
prev=0
for _ in $(seq 1 30); do # until the proxies' RSS holds still for a second
  now=$(rss_sum "${proxy_pids[@]}")
  [ "$now" = "$prev" ] && break
  prev=$now; sleep 1
done
P_AFTER=$(rss_sum "${proxy_pids[@]}")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b>0 ? a/b : 0)}'; }
kb() { awk -v a="$1" -v n="$2" 'BEGIN{printf "%.1f", a/n}'; }
AUTH_PER=$(kb $((AUTH_LOADED - AUTH_IDLE)) "$M")
P_PER=$(kb $((P_LOADED - P_IDLE)) $((3 * M)))
AUTH_SLOPE=$(kb $((AUTH_LOADED - AUTH_HALF)) $((M - HALF)))
P_SLOPE=$(kb $((P_LOADED - P_HALF)) $((3 * (M - HALF))))
TAKEN=$((P_LOADED - P_IDLE))
RETURNED=$(awk -v t="$TAKEN" -v l="$P_LOADED" -v a="$P_AFTER" 'BEGIN{printf "%.0f", (t>0 ? (l-a)*100/t : 0)}')
AGENT_MB=$(awk -v k="$AGENT_RSS" 'BEGIN{printf "%.1f", k/1024}')
per_s() { awk -v b="$1" -v m="$M" -v s="$SAMPLE" 'BEGIN{printf "%.1f", b/m/s}'; }
T_BPS=$(per_s $((t1 - t0)))
D_BPS=$(per_s $((d1 - d0)))
cat <<OUT
teleport-lite memory benchmark ($LIBC build): auth + 3 proxies behind HAProxy, $M agents, heartbeat $HB
  auth RSS: idle $AUTH_IDLE KiB, with $M direct nodes $AUTH_LOADED KiB -> $AUTH_PER KiB per node (target 12)
    with $HALF nodes $AUTH_HALF KiB: $AUTH_SLOPE KiB per node from $HALF to $M
  proxies' RSS (sum of 3): idle $P_IDLE KiB, with $M tunnels each $P_LOADED KiB -> $P_PER KiB per tunnel (target 30)
    with $HALF tunnels each $P_HALF KiB: $P_SLOPE KiB per tunnel from $HALF to $M
  after the tunnels closed: $P_AFTER KiB, $RETURNED % of what the tunnels took given back
  idle agent with 3 tunnels: $AGENT_RSS KiB (target 6 MiB)
  heartbeat bytes per node: $T_BPS B/s with 3 tunnels, $D_BPS B/s direct (ratio $(ratio "$T_BPS" "$D_BPS"), target 2)
OUT
printf 'ROW\t%s\t%s\t%s\t%s\t%s\n' \
  "auth memory per idle direct node, $LIBC (KB)" "$AUTH_PER" "$AUTH_IDLE" "$(ratio "$AUTH_PER" 12)" 12 \
  "proxy memory per idle tunnel, $LIBC (KB)" "$P_PER" "$P_IDLE" "$(ratio "$P_PER" 30)" 30 \
  "auth memory per direct node, slope M/2..M, $LIBC (KB)" "$AUTH_SLOPE" - "$(ratio "$AUTH_SLOPE" 12)" 12 \
  "proxy memory per tunnel, slope M/2..M, $LIBC (KB)" "$P_SLOPE" - "$(ratio "$P_SLOPE" 30)" 30 \
  "proxy memory returned after tunnels close, $LIBC (%)" "$RETURNED" - - ">= 90" \
  "idle agent RSS with 3 tunnels, $LIBC (MB)" "$AGENT_MB" - "$(ratio "$AGENT_MB" 6)" 6 \
  "heartbeat bytes per node with 3 tunnels (B/s)" "$T_BPS" "$D_BPS" "$(ratio "$T_BPS" "$D_BPS")" "2x direct"
