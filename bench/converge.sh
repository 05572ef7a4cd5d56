#!/usr/bin/env bash
# Benchmark: how fast a fleet converges onto every proxy. For each run, a fresh cluster of
# auth and P proxies behind HAProxy (round-robin) and M agents in one load-generator process:
# the time from the agents' start until every agent holds a tunnel to every proxy (auth's
# view: each proxy lists M tunnels). Baseline from the same run: the time until every agent is
# listed at all (joined, one tunnel), which convergence cannot beat.
#
#   bench/converge.sh [runs, default 3] [M agents, default 1000] [P proxies, default 3]
#
# More than a few hundred agents joining from one address need the join limiter to charge a
# join once (issue 11); RUN_WAIT (default 300 s) bounds each run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
M=${2:-1000}
P=${3:-3}
RUN_WAIT=${RUN_WAIT:-300}

cargo build --release -q
BIN=$PWD/target/release/teleport
ROOT=$(mktemp -d)
W=$ROOT
. bench/lib.sh

now_ms() { date +%s%3N; }
times=() listed=() ok=0
for r in $(seq 1 "$RUNS"); do
  W=$ROOT/run$r
  mkdir -p "$W"
  start_cluster "$P" 5s
  NT=$(TCTL tokens add --type=node --ttl=1h --format=text)
  t0=$(now_ms)
  "$BIN" loadgen --count "$M" --token "$NT" --ca-pin "$PIN" --proxy "127.0.0.1:$LB_PORT" \
    --data-dir "$W/agents" 2>"$W/loadgen.log" & pids+=($!)
  end=$((SECONDS + RUN_WAIT)) t_listed="" t_all=""
  while [ $SECONDS -lt $end ]; do
    counts=$( (proxy_tunnels || true) | tr '\n' ' ')
    if [ -z "$t_listed" ] && [ "$(TCTL nodes ls --format=json | jq length)" = "$M" ]; then
      t_listed=$(( $(now_ms) - t0 ))
    fi
    if [ "$(echo "$counts" | awk -v m="$M" '{for (i = 1; i <= NF; i++) if ($i == m) n++} END {print n+0}')" = "$P" ]; then
      t_all=$(( $(now_ms) - t0 ))
      [ -n "$t_listed" ] || t_listed=$t_all
      break
    fi
    sleep 0.5
  done
  sticky=$(grep -c 'keeps sending new connections' "$W/loadgen.log" || true)
  if [ -n "$t_all" ]; then
    ok=$((ok + 1)); times+=("$t_all"); listed+=("$t_listed")
    printf 'run %d: converged after %.1f s (all listed after %.1f s; %s sticky warnings)\n' \
      "$r" "$(awk "BEGIN{print $t_all/1000}")" "$(awk "BEGIN{print $t_listed/1000}")" "$sticky"
  else
    echo "run $r: NOT converged after ${RUN_WAIT}s: tunnels per proxy: $counts; $sticky sticky warnings"
    lb_servers | sed 's/^/  haproxy: /'
  fi
  stop_all
done
W=$ROOT

stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {if (NR == 0) {print "- -"; exit}
  m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f %.1f\n", m/1000, a[NR]/1000}'; }
read -r med max < <(stats "${times[@]}")
read -r lmed lmax < <(stats "${listed[@]}")
cat <<OUT
teleport-lite convergence benchmark: $RUNS runs of $M agents x $P proxies behind HAProxy (roundrobin), heartbeat 5s
  converged $ok of $RUNS
  time until every agent holds every proxy: median $med s, max $max s
  baseline, time until every agent is listed: median $lmed s, max $lmax s
OUT
row "runs converged ($M agents x $P proxies)" "$ok" - "$RUNS"
row "convergence time, median (s)" "$med" "$lmed" -
row "convergence time, max (s)" "$max" "$lmax" -
