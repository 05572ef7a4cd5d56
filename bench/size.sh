#!/usr/bin/env bash
# Size of the shipped static (musl) executable against the 4.0 MB goal, with its biggest sections.
# With a git ref, that commit is built too (in a temporary worktree with its own target
# directory: slow, a full release build) and is the baseline of the same run.
#   bench/size.sh            -> ours, baseline "-"
#   bench/size.sh REF        -> ours and REF's size (e.g. bench/size.sh fc84a13)
# Prints one `ROW` line (tab-separated: metric, ours, baseline, ratio to the goal, target).
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${1:-}
GOAL=4000000
TARGET=x86_64-unknown-linux-musl
./scripts/build-static.sh >/dev/null
BIN=target/$TARGET/release/teleport
OURS=$(stat -c %s "$BIN")

BASE=-
if [ -n "$REF" ]; then
  W=$(mktemp -d)
  trap 'git worktree remove --force "$W/src" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
  git worktree add -q --detach "$W/src" "$REF"
  # The ref's own .cargo/config.toml (if any) applies: it is built as it was committed.
  (cd "$W/src" && CARGO_TARGET_DIR="$W/target" ./scripts/build-static.sh >/dev/null)
  BASE=$(stat -c %s "$W/target/$TARGET/release/teleport")
fi

echo "static executable: $BIN"
size -A "$BIN" | awk '$1 ~ /^\./ && $1 != ".bss" && $2 >= 16384 { printf "  %-16s %9d bytes\n", $1, $2 }'
echo "  total            $OURS bytes (goal $GOAL: ratio $(awk "BEGIN{printf \"%.3f\", $OURS/$GOAL}"))"
[ "$BASE" = - ] || echo "  $REF:    $BASE bytes (ours/baseline $(awk "BEGIN{printf \"%.3f\", $OURS/$BASE}"))"
printf 'ROW\t%s\t%s\t%s\t%s\t%s\n' "static executable (bytes)" "$OURS" "$BASE" \
  "$(awk "BEGIN{printf \"%.3f\", $OURS/$GOAL}")" "$GOAL"
