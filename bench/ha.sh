#!/usr/bin/env bash
# Benchmark: two auth servers on one PostgreSQL. Two proxies behind HAProxy, proxy 1 linked to
# auth A first and proxy 2 to auth B, so with M agents (one load-generator process, tunnels to
# both proxies) each auth server relays M nodes and writes their presence. Prints each auth
# server's CPU in steady state against one auth on SQLite with the same fleet (measured first,
# in the same run), PostgreSQL's CPU, and the time from SIGKILL of auth A until auth B alone
# serves every node (proxy 1 linked to B and B listing every tunnel of both proxies).
#
#   bench/ha.sh [M agents, default 300] [heartbeat, default 5s]
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-300}
HB=${2:-5s}
SAMPLE=${SAMPLE:-20}
WAIT=${WAIT:-300}

cargo build --release -q
BIN=$PWD/target/release/teleport
W=$(mktemp -d)
chmod 755 "$W"
. bench/lib.sh
HZ=$(getconf CLK_TCK)
now_ms() { date +%s%3N; }
since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN{printf "%.1f", (b-a)/1000}'; }
cpu_pct() { awk -v a="$1" -v b="$2" -v hz="$HZ" -v s="$3" 'BEGIN{printf "%.1f", (b-a)*100/hz/s}'; }
sum_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done; echo $t; }

# --- Baseline: one auth on SQLite, two proxies, the same agents.
start_cluster 2 "$HB"
NT=$(TCTL tokens add --type=node --ttl=1h --format=text)
"$BIN" loadgen --count "$M" --token "$NT" --ca-pin "$PIN" --proxy "127.0.0.1:$LB_PORT" \
  --data-dir "$W/agents0" 2>"$W/loadgen0.log" & pids+=($!)
wait_until "$WAIT" all_hold 2 "$M"
sleep 5
a0=$(cpu_ticks "$AUTH_PID"); sleep "$SAMPLE"; a1=$(cpu_ticks "$AUTH_PID")
BASE_CPU=$(cpu_pct "$a0" "$a1" "$SAMPLE")
echo "baseline: one auth on SQLite with $M nodes x 2 proxies: $BASE_CPU % of a core"
stop_all

# --- PostgreSQL in $W/pg, as the postgres user when root (it refuses to run as root).
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
AS=()
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); fi
mkdir -p "$W/pg"
[ ${#AS[@]} -eq 0 ] || chown postgres "$W/pg"
PG_PORT=$(port)
"${AS[@]}" "$PGBIN/initdb" -D "$W/pg/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >/dev/null
cat >>"$W/pg/data/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$W/pg'
max_connections = 60
CONF
"${AS[@]}" "$PGBIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w start >/dev/null
pg_stop() { "${AS[@]}" "$PGBIN/pg_ctl" -D "$W/pg/data" -m immediate -w stop >/dev/null 2>&1 || true; }
trap 'stop_all; pg_stop; cleanup' EXIT
"${AS[@]}" "$PGBIN/psql" -h "$W/pg" -p "$PG_PORT" -U postgres -qc "CREATE DATABASE ha" >/dev/null
URL="postgresql://postgres@127.0.0.1:$PG_PORT/ha?sslmode=disable"

# --- Two auth servers on it (new data directories: a new cluster).
ln -sf "$BIN" "$W/tctl"
declare -A APORT APID
for a in A B; do
  APORT[$a]=$(port)
  cat >"$W/auth$a.yaml" <<YAML
version: v3
teleport:
  nodename: bench-auth-$a
  data_dir: $W/auth$a
  log: {severity: WARN}
  storage: {type: postgresql, conn_string: "$URL"}
auth_service:
  enabled: yes
  listen_addr: 127.0.0.1:${APORT[$a]}
  cluster_name: bench.local
  heartbeat_interval: $HB
ssh_service: {enabled: no}
YAML
  "$BIN" start -c "$W/auth$a.yaml" 2>>"$W/auth$a.log" & APID[$a]=$!; pids+=($!)
done
TA() { "$W/tctl" -c "$W/authA.yaml" "$@"; }
TB() { "$W/tctl" -c "$W/authB.yaml" "$@"; }
wait_until 30 TA status
wait_until 30 TB status
PIN=$(TA status | awk '/CA pin/{print $3}')
LB_PORT=$(port)
backends=""
for i in 1 2; do
  p=$(port)
  backends+="  server p$i 127.0.0.1:$p check inter 500ms fall 2 rise 1"$'\n'
  t=$(TA tokens add --type=proxy --format=text)
  if [ $i = 1 ]; then order="127.0.0.1:${APORT[A]}, 127.0.0.1:${APORT[B]}"
  else order="127.0.0.1:${APORT[B]}, 127.0.0.1:${APORT[A]}"; fi
  cat >"$W/hp$i.yaml" <<YAML
version: v3
teleport:
  nodename: bench-proxy-$i
  data_dir: $W/hp$i
  auth_server: [$order]
  ca_pin: "$PIN"
  join_params: {token_name: "$t", method: token}
  log: {severity: INFO}
auth_service: {enabled: no}
ssh_service: {enabled: no}
proxy_service:
  enabled: yes
  web_listen_addr: 127.0.0.1:$p
  public_addr: 127.0.0.1:$LB_PORT
YAML
  "$BIN" start -c "$W/hp$i.yaml" 2>>"$W/hp$i.log" & pids+=($!)
done
start_lb "$backends"
# Each auth server lists both proxies (one linked to it, one through the shared presence).
both_listed() { [ "$(TA proxies ls --format=json | jq length)" = 2 ] && [ "$(TB proxies ls --format=json | jq length)" = 2 ]; }
wait_until 30 both_listed
lb_up() { [ "$(lb_servers | awk '$2 == "UP"' | wc -l)" = 2 ]; }
wait_until 30 lb_up

NT=$(TB tokens add --type=node --ttl=1h --format=text)
t0=$(now_ms)
"$BIN" loadgen --count "$M" --token "$NT" --ca-pin "$PIN" --proxy "127.0.0.1:$LB_PORT" \
  --data-dir "$W/agents" 2>"$W/loadgen.log" & pids+=($!)
# B's view: every tunnel of both proxies (proxy 1's from A's presence records).
b_holds() { [ "$(TB proxies ls --format=json | jq -r '.[].tunnels' | awk -v m="$M" '$1 == m {n++} END {print n+0}')" = 2 ]; }
wait_until "$WAIT" b_holds
CONVERGE=$(since "$t0")
echo "all $M agents hold both tunnels, as auth B lists them, after $CONVERGE s"
sleep 5
PG_PIDS=$(pgrep -u postgres -d ' ' postgres || true)
a0=$(cpu_ticks "${APID[A]}"); b0=$(cpu_ticks "${APID[B]}"); g0=$(sum_ticks $PG_PIDS)
sleep "$SAMPLE"
a1=$(cpu_ticks "${APID[A]}"); b1=$(cpu_ticks "${APID[B]}"); g1=$(sum_ticks $PG_PIDS)
CPU_A=$(cpu_pct "$a0" "$a1" "$SAMPLE"); CPU_B=$(cpu_pct "$b0" "$b1" "$SAMPLE")
CPU_PG=$(cpu_pct "$g0" "$g1" "$SAMPLE")
ROWS=$("${AS[@]}" "$PGBIN/psql" -h "$W/pg" -p "$PG_PORT" -U postgres -d ha -Atc \
  "SELECT count(*) FROM kv WHERE key LIKE 'presence/%'")

# SIGKILL A: time until proxy 1 is linked to B, and until B's own presence records (what it
# relays itself, written once per heartbeat interval) carry every node with both tunnels.
B_ID=$(cat "$W/authB/host_uuid")
kill -9 "${APID[A]}"
t0=$(now_ms)
relinked() { grep -q "link to auth at 127.0.0.1:${APORT[B]} re-established" "$W/hp1.log"; }
b_serves_all() {
  [ "$("${AS[@]}" "$PGBIN/psql" -h "$W/pg" -p "$PG_PORT" -U postgres -d ha -Atc \
    "SELECT count(*) FROM kv WHERE key LIKE 'presence/nodes/%/$B_ID' \
     AND convert_from(value, 'UTF8') LIKE '%bench-proxy-1%bench-proxy-2%'")" = "$M" ]
}
wait_until "$WAIT" relinked
RELINK=$(since "$t0")
wait_until "$WAIT" b_serves_all
SERVED=$(since "$t0")
echo "SIGKILL of auth A: proxy 1 linked to B after $RELINK s; B relays every node through both proxies after $SERVED s"

cat <<OUT
teleport-lite HA benchmark: 2 auth servers on PostgreSQL, 2 proxies, $M agents, heartbeat $HB (shared machine: compare ratios)
  auth A CPU, steady state ($M nodes relayed):      $CPU_A % of a core
  auth B CPU, steady state ($M nodes relayed):      $CPU_B % of a core
  one auth on SQLite, same fleet (baseline):       $BASE_CPU % of a core (it relays both proxies' beats)
  PostgreSQL CPU (all its processes):              $CPU_PG % of a core
  presence rows in the store:                      $ROWS
  SIGKILL of A -> proxy 1 linked to B:             $RELINK s
  SIGKILL of A -> B relays every node (both):      $SERVED s (resolution: one heartbeat)
OUT
# The baseline auth relays both proxies' beats (2 x M); each HA auth relays one proxy's (M) and
# writes and reads the shared presence: the sum of both is what compares.
row "HA: auth CPU, 2 servers on PostgreSQL with $M nodes each, summed (% of a core)" \
  "$(awk -v a="$CPU_A" -v b="$CPU_B" 'BEGIN{printf "%.1f", a+b}')" "$BASE_CPU" -
row "HA: PostgreSQL CPU with 2 auth servers x $M nodes (% of a core)" "$CPU_PG" - -
row "HA: SIGKILL of an auth server to every node served by the other (s)" "$SERVED" - 10
