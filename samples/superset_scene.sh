#!/usr/bin/env bash
# superset_scene.sh — the whole Superset-like scene on a local 3-member Confab ensemble:
#   1. three confabd members (data in ./default.confab/member-N, clients on 127.0.0.1:2281-2283)
#      elect a leader;
#   2. three dashboard nodes register, cache the configuration typed, elect a "scheduled
#      reports" leader and take the export lock in turn;
#   3. superset_publisher publishes a release, changes ROW_LIMIT, is refused a bad value and rolls
#      back: every node prints each change live;
#   4. the ensemble's leader is killed (kill -9): another member takes over, the nodes' sessions
#      and registrations survive, and a new release still reaches every node;
#   5. the node leading the scheduled reports stops: another node takes the job over.
# Everything it starts is stopped on exit. Run from the repository root after a build
# (./dev.sh demo does both); BUILD=dir points at another build tree.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CONFABD=$BUILD/server/confabd
CTL=$BUILD/sdk/confabctl
DATA=default.confab
PEERS=1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103
ENDPOINTS=127.0.0.1:2281,127.0.0.1:2282,127.0.0.1:2283

member_pids=()
node_pids=()
cleanup() {
  # Nodes first, while the ensemble can still close their sessions (deleting their ephemerals);
  # then the members.
  for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${node_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for pid in "${member_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${member_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The index (1..3) of the member that leads and serves, as each member says of itself.
leader() {
  for i in 1 2 3; do
    if "$CTL" --endpoints=127.0.0.1:228$i -o json status 2>/dev/null |
      /usr/bin/python3 -c 'import json,sys
s=json.load(sys.stdin); sys.exit(0 if s.get("role")=="LEADING" and s.get("serving") else 1)'; then
      echo $i
      return
    fi
  done
}

wait_for_leader() {
  for _ in $(seq 200); do
    local l
    l=$(leader)
    if [ -n "$l" ]; then echo "$l"; return 0; fi
    sleep 0.1
  done
  echo "superset_scene: no leader within 20 s; member logs in $DATA/member-*.log" >&2
  return 1
}

say "starting a 3-member Confab ensemble ($DATA/member-{1,2,3}, clients on $ENDPOINTS)"
mkdir -p "$DATA"
for i in 1 2 3; do
  "$CONFABD" --id=$i --peers=$PEERS --data-dir="$DATA/member-$i" --listen=127.0.0.1:228$i \
    >"$DATA/member-$i.log" 2>&1 &
  member_pids[$i]=$!
done
first_leader=$(wait_for_leader)
sleep 1  # every member's report reaches the others
"$CTL" --endpoints="$ENDPOINTS" status | grep -E '^member\.'

say "three dashboard nodes join (registration, typed config cache, reports election, export lock)"
for n in 1 2 3; do
  "$BUILD/samples/dashboard_node" --endpoints="$ENDPOINTS" --name=node-$n --run-seconds=60 \
    --export-every-seconds=4 > >(tee "$DATA/node-$n.log") 2>&1 &
  node_pids[$n]=$!
  sleep 0.3
done
sleep 1.5

say "superset_publisher: a release, a change, a refused value, a rollback — watch the nodes"
"$BUILD/samples/superset_publisher" --endpoints="$ENDPOINTS" --who=scene
sleep 2
"$CTL" --endpoints="$ENDPOINTS" ls /superset/nodes

say "kill -9 of the ensemble's leader (member $first_leader)"
kill -KILL "${member_pids[$first_leader]}"
wait "${member_pids[$first_leader]}" 2>/dev/null || true
unset "member_pids[$first_leader]"
start=$(date +%s%N)
new_leader=$(wait_for_leader)
echo "member $new_leader leads after $((($(date +%s%N) - start) / 1000000)) ms"
"$CTL" --endpoints="$ENDPOINTS" status | grep -E '^member\.'

say "a release through the new leader reaches every node"
"$BUILD/samples/superset_publisher" --endpoints="$ENDPOINTS" --who=scene-after-failover |
  grep -E '^release|^  changes' | head -4
sleep 2

say "the node running the scheduled reports stops; another takes the job over"
reports_leader=""
for n in 1 2 3; do
  if grep -E "became leader|lost leadership" "$DATA/node-$n.log" | tail -1 | grep -q "became"; then
    reports_leader=$n
  fi
done
if [ -n "$reports_leader" ]; then
  echo "node-$reports_leader leads the scheduled reports; stopping it"
  kill -TERM "${node_pids[$reports_leader]}"
  wait "${node_pids[$reports_leader]}" 2>/dev/null || true
  unset "node_pids[$reports_leader]"
fi
sleep 3

say "done: stopping the nodes and the ensemble"
