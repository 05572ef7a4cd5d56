#!/usr/bin/env bash
# One entry point for every benchmark: runs each one in turn, keeps its full output in a log,
# and prints one table of what they measured — metric, ours, the baseline or peer measured in
# the same run, the ratio, and the target.
#
#   bench/all.sh            default sizes (about 20 minutes on 2 cores)
#   bench/all.sh --full     the issue's sizes: 10,000 direct nodes, 10 x 1,000 agents x 3 proxies,
#                           3,000 nodes x 3 proxies, 2 GiB through the data plane (about an hour)
#   bench/all.sh NAME...    only these benchmarks (names as in the list below)
#
# Each benchmark prints lines "ROW<TAB>metric<TAB>ours<TAB>baseline<TAB>ratio<TAB>target"; a
# benchmark that fails shows as FAILED in the table, with the path of its log.
set -uo pipefail
cd "$(dirname "$0")/.."

FULL=
if [ "${1:-}" = "--full" ]; then FULL=1; shift; fi

# name | default arguments | --full arguments
BENCHES=(
  "size||"
  "footprint|3|5"
  "joins|1000|1000"
  "tunnels|3 300 5s|3 1000 5s"
  "memory|1000|1000"
  "converge|3 1000 3|10 1000 3"
  "herd|1000|10000"
  "scale|300|3000"
  "dataplane|1 2000|2 5000"
  "rotation|300 30s|300 30s"
  "ha|300|1000"
)

ONLY=("$@")
wanted() { # name: true when no names were given, or when this one was
  [ ${#ONLY[@]} -eq 0 ] && return 0
  local n
  for n in "${ONLY[@]}"; do [ "$n" = "$1" ] && return 0; done
  return 1
}

LOGS=$(mktemp -d)
ROWS="$LOGS/rows.tsv"
: >"$ROWS"
for spec in "${BENCHES[@]}"; do
  IFS='|' read -r name quick full <<<"$spec"
  wanted "$name" || continue
  script="bench/$name.sh"
  [ -x "$script" ] || { printf 'ROW\t%s\tMISSING\t-\t-\t-\n' "$name" >>"$ROWS"; continue; }
  args=$quick; [ -n "$FULL" ] && args=$full
  echo "== $script $args  (log: $LOGS/$name.log)" >&2
  start=$SECONDS
  # shellcheck disable=SC2086 # the arguments are words on purpose
  if "$script" $args >"$LOGS/$name.log" 2>&1; then
    grep -P '^ROW\t' "$LOGS/$name.log" >>"$ROWS" || true
  else
    grep -P '^ROW\t' "$LOGS/$name.log" >>"$ROWS" || true
    printf 'ROW\t%s\tFAILED (see %s)\t-\t-\t-\n' "$name" "$LOGS/$name.log" >>"$ROWS"
  fi
  echo "   done in $((SECONDS - start)) s" >&2
done

echo
echo "teleport-lite benchmarks ($(git rev-parse --short HEAD 2>/dev/null), $(nproc) cores, $(date -u +%FT%TZ))"
awk -F'\t' '
  { m[NR]=$2; o[NR]=$3; b[NR]=$4; r[NR]=$5; t[NR]=$6; if (length($2) > w) w = length($2) }
  END {
    fmt = "%-" w "s  %14s  %14s  %7s  %10s\n"
    printf fmt, "metric", "ours", "baseline/peer", "ratio", "target"
    for (i = 1; i <= NR; i++) printf fmt, m[i], o[i], b[i], r[i], t[i]
  }' "$ROWS"
echo "logs: $LOGS"
