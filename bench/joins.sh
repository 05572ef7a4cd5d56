#!/usr/bin/env bash
# Benchmark: M agents joining from ONE source address (a fleet behind one NAT), straight to
# auth: the time until all are listed, and how many requests auth refused by rate meanwhile.
# Baseline: BASELINE_BIN=/path/to/older/teleport runs the same with that executable in the
# same run; without it, issue 11's numbers are printed, marked "issue text" (600 agents: 44
# joined in 2 s, 50 after 120 s).
#
#   bench/joins.sh [M agents, default 1000] [give up after seconds, default 180]
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-1000}
LIMIT=${2:-180}
ulimit -n "$(ulimit -Hn)"

cargo build --release -q
W=$(mktemp -d)
BIN=$PWD/target/release/teleport
. bench/lib.sh

count_nodes() { TCTL nodes ls --format=json 2>/dev/null | jq length 2>/dev/null || echo 0; }

# run_joins BIN TAG: sets JOINED SECS REFUSED.
run_joins() {
  BIN=$1
  local tag=$2
  auth_config "$W/auth-$tag" 5s
  "$BIN" start -c "$W/auth.yaml" 2>"$W/auth-$tag.log" & AUTH_PID=$!; pids+=($AUTH_PID)
  wait_until 20 TCTL status
  PIN=$(TCTL status | awk '/CA pin/{print $3}')
  local nt; nt=$(TCTL tokens add --type=node --ttl=1h --format=text)
  local start_ms; start_ms=$(date +%s%3N)
  "$BIN" loadgen --count "$M" --token "$nt" --ca-pin "$PIN" --auth-server "127.0.0.1:$AUTH_PORT" \
    --data-dir "$W/agents-$tag" 2>"$W/loadgen-$tag.log" & LG=$!; pids+=($LG)
  local el=0
  while :; do
    JOINED=$(count_nodes)
    el=$(( $(date +%s%3N) - start_ms ))
    [ "$JOINED" = "$M" ] && break
    [ "$el" -lt $(( LIMIT * 1000 )) ] || break
    sleep 1
  done
  SECS=$(awk "BEGIN{printf \"%.1f\", $el/1000}")
  REFUSED=$(grep -c 'rate limit exceeded' "$W/auth-$tag.log" || true)
  kill "$LG" "$AUTH_PID" 2>/dev/null || true
  wait "$LG" "$AUTH_PID" 2>/dev/null || true
}

run_joins "$BIN" ours
O_JOINED=$JOINED O_SECS=$SECS O_REFUSED=$REFUSED
if [ -n "${BASELINE_BIN:-}" ]; then
  run_joins "$BASELINE_BIN" base
  B_JOINED=$JOINED B_SECS=$SECS B_REFUSED=$REFUSED B_NOTE="baseline $BASELINE_BIN, same run"
else
  B_JOINED="50 of 600"; B_SECS=120; B_REFUSED=5943; B_NOTE="baseline: issue text"
fi
RATE=$(awk "BEGIN{printf \"%.1f\", $O_JOINED/$O_SECS}")
B_RATE=$(awk "BEGIN{split(\"$B_JOINED\",a,\" \"); printf \"%.2f\", a[1]/$B_SECS}")

cat <<OUT
teleport-lite joins from one address: $M agents straight to auth ($B_NOTE; the machine may be shared)
  ours:     $O_JOINED of $M listed after $O_SECS s ($RATE joins/s), $O_REFUSED requests refused by rate
  baseline: $B_JOINED listed after $B_SECS s ($B_RATE joins/s), $B_REFUSED refused
OUT
printf 'ROW\t%s\t%s\t%s\t%s\t%s\n' \
  "joins from one address: $M agents all listed after (s)" "$O_SECS" "$B_SECS" "-" "60" \
  "joins from one address: joins per second" "$RATE" "$B_RATE" "$(awk "BEGIN{printf \"%.1f\", $RATE/$B_RATE}")" "1"
