#!/usr/bin/env bash
# run_matrix.sh — Confab, ZooKeeper and etcd, each as a 3-member ensemble on 127.0.0.1 with fsync
# on, through the same workloads of confab_bench; the results go into docs/benchmarks.md.
#
#   tests/bench/run_matrix.sh [--quick] [--systems=confab,zookeeper,etcd] [--rounds=N]
#                             [--build-dir=DIR] [--work-dir=DIR] [--out=FILE] [--keep] [--no-build]
#
#   --quick      short runs (1 s warm-up, 3 s measured, 20,000 nodes for memory, 1 round): a
#                smoke test
#   --smoke      shorter still (0.2 s / 0.5 s, 2,000 nodes, 1 round): for ctest
#                (tests/bench/matrix_smoke_test.sh), to show every part runs, not to measure
#   --rounds     rounds of the headline workloads (write, and a lone writer), default 3: each
#                round starts every system in turn on a fresh ensemble, so that all three meet the
#                same background load; the report shows each round and uses the median
#   --build-dir  where confabd and confab_bench are built (default: build); they are built there
#   --work-dir   parent of the temporary data directories (default: $TMPDIR or /tmp); put it on
#                the disk to be measured: every system fsyncs its log there
#   --out        the report (default: docs/benchmarks.md); only the part between its
#                "results:begin/end" markers is replaced, the prose around it is kept
#   --keep       keep the data directories and logs
#   --no-build   use the binaries already in --build-dir as they are
#
# Needs: Debian's zookeeper (server) and libzookeeper-mt-dev (C client, found at cmake time),
# etcd-server, java, python3. Each system is started fresh for its workloads and fresh again for
# the memory workload. Confab runs as 3 members when confabd has --peers, else standalone (and
# the report says so). Exactly the processes started here are stopped, on any exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

QUICK=0
SMOKE=0
SYSTEMS=confab,zookeeper,etcd
BUILD_DIR=build
WORK_PARENT=${TMPDIR:-/tmp}
OUT=docs/benchmarks.md
KEEP=0
BUILD=1
ROUNDS=""
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --smoke) QUICK=1 SMOKE=1 ;;
    --systems=*) SYSTEMS=${arg#*=} ;;
    --build-dir=*) BUILD_DIR=${arg#*=} ;;
    --work-dir=*) WORK_PARENT=${arg#*=} ;;
    --out=*) OUT=${arg#*=} ;;
    --keep) KEEP=1 ;;
    --no-build) BUILD=0 ;;
    --rounds=*) ROUNDS=${arg#*=} ;;
    *) echo "usage: $0 [--quick|--smoke] [--systems=confab,zookeeper,etcd] [--rounds=N]" \
         "[--build-dir=DIR] [--work-dir=DIR] [--out=FILE] [--keep] [--no-build]" >&2; exit 2 ;;
  esac
done

if ((SMOKE)); then
  WARMUP_S=0.2 DURATION_S=0.5 MEMORY_NODES=2000
  ROUNDS=${ROUNDS:-1}
elif ((QUICK)); then
  WARMUP_S=1 DURATION_S=3 MEMORY_NODES=20000
  ROUNDS=${ROUNDS:-1}
else
  WARMUP_S=2 DURATION_S=10 MEMORY_NODES=100000
  ROUNDS=${ROUNDS:-3}
fi
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds wants a number >= 1" >&2; exit 2; }
CLIENTS=8 INFLIGHT=16

log() { echo "run_matrix: $*" >&2; }

# ---- processes: every one started is recorded, and stopped on exit -----------------------------
STARTED=()  # pids of the servers of the current ensemble
WORK=$(mktemp -d "$WORK_PARENT/confab-matrix.XXXXXX")

stop_started() {
  local pid
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  STARTED=()
}
cleanup() {
  stop_started
  if ((KEEP)); then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# N free TCP ports on 127.0.0.1, held together while they are picked so that they differ.
free_ports() {
  python3 -c '
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}

# ---- build ----------------------------------------------------------------------------------------
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR=$ROOT/$BUILD_DIR
if ((BUILD)); then
  log "building confabd and confab_bench in $BUILD_DIR"
  export CCACHE_BASEDIR=$ROOT
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCONFAB_BINDING_PYTHON=OFF -DCONFAB_BINDING_NODE=OFF >/dev/null
  ninja -C "$BUILD_DIR" confabd confab_bench >/dev/null
fi
CONFABD=$BUILD_DIR/server/confabd
BENCH=$BUILD_DIR/tests/bench/confab_bench

CONFAB_MODE=standalone
CONFABD_HELP=$("$CONFABD" --help 2>&1 || true)  # --help exits non-zero
if grep -q -- '--peers' <<<"$CONFABD_HELP"; then CONFAB_MODE=3-member; fi

# ---- ensembles: each start_<system> sets ENDPOINTS and appends its pids to STARTED --------------
ENDPOINTS=""

start_confab() {  # start_confab DIR
  local dir=$1 members=3
  [ "$CONFAB_MODE" = standalone ] && members=1
  local ports; read -r -a ports <<<"$(free_ports $((2 * members)))"
  local peers="" i
  for ((i = 1; i <= members; i++)); do
    peers+="${peers:+,}$i=127.0.0.1:${ports[$((members + i - 1))]}"
  done
  ENDPOINTS=""
  for ((i = 1; i <= members; i++)); do
    local client=127.0.0.1:${ports[$((i - 1))]}
    local args=(--listen "$client" --data-dir "$dir/m$i" --log-level warn)
    [ "$members" -gt 1 ] && args+=(--id "$i" --peers "$peers")
    "$CONFABD" "${args[@]}" >"$dir/m$i.log" 2>&1 &
    STARTED+=($!)
    ENDPOINTS+="${ENDPOINTS:+,}$client"
  done
}

# ZooKeeper 3.8 from Debian's jars, as zkServer.sh runs it (QuorumPeerMain, -Xmx1000m); the log
# goes through slf4j-simple at WARN. forceSync is left at its default (yes: fsync on).
start_zookeeper() {  # start_zookeeper DIR
  local dir=$1 ports i
  read -r -a ports <<<"$(free_ports 9)"
  local classpath=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar
  ENDPOINTS=""
  for i in 1 2 3; do
    mkdir -p "$dir/m$i/data"
    echo "$i" >"$dir/m$i/data/myid"
    {
      echo "tickTime=2000"
      echo "initLimit=10"
      echo "syncLimit=5"
      echo "dataDir=$dir/m$i/data"
      echo "clientPort=${ports[$((i - 1))]}"
      echo "clientPortAddress=127.0.0.1"
      echo "admin.enableServer=false"
      echo "4lw.commands.whitelist=mntr,srvr,ruok"
      local j
      for j in 1 2 3; do
        echo "server.$j=127.0.0.1:${ports[$((2 + j))]}:${ports[$((5 + j))]}"
      done
    } >"$dir/m$i/zoo.cfg"
    java -Xmx1000m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
      -cp "$classpath" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/m$i/zoo.cfg" \
      >"$dir/m$i.log" 2>&1 &
    STARTED+=($!)
    ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:${ports[$((i - 1))]}"
  done
}

# etcd 3.4 with its defaults (the WAL is fsynced on every commit).
start_etcd() {  # start_etcd DIR
  local dir=$1 ports i cluster=""
  read -r -a ports <<<"$(free_ports 6)"
  for i in 1 2 3; do cluster+="${cluster:+,}m$i=http://127.0.0.1:${ports[$((2 + i))]}"; done
  ENDPOINTS=""
  for i in 1 2 3; do
    local client=http://127.0.0.1:${ports[$((i - 1))]} peer=http://127.0.0.1:${ports[$((2 + i))]}
    etcd --name "m$i" --data-dir "$dir/m$i" --listen-client-urls "$client" \
      --advertise-client-urls "$client" --listen-peer-urls "$peer" \
      --initial-advertise-peer-urls "$peer" --initial-cluster "$cluster" \
      --initial-cluster-state new --initial-cluster-token confab-matrix \
      --logger zap --log-level warn >"$dir/m$i.log" 2>&1 &
    STARTED+=($!)
    ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:${ports[$((i - 1))]}"
  done
}

# Ready when a short write through every member succeeds (session i uses member i % 3).
wait_ready() {  # wait_ready SYSTEM
  local system=$1
  for _ in $(seq 60); do
    if timeout 30 "$BENCH" --system="$system" --endpoints="$ENDPOINTS" --workload=write \
        --clients=3 --inflight=1 --keys_per_client=1 --warmup_s=0 --duration_s=0.2 \
        >/dev/null 2>&1; then
      return 0
    fi
    local pid
    for pid in "${STARTED[@]}"; do
      kill -0 "$pid" 2>/dev/null || { log "$system: a member exited; see its log"; return 1; }
    done
    sleep 1
  done
  log "$system: not ready after 60 attempts"
  return 1
}

start_ensemble() {  # start_ensemble SYSTEM NAME
  local system=$1 dir=$WORK/$1-$2
  mkdir -p "$dir"
  "start_$system" "$dir"
  log "$system ($2): members ${STARTED[*]} on $ENDPOINTS"
  wait_ready "$system"
}

# ---- the matrix ------------------------------------------------------------------------------
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS=$WORK/results.jsonl
COMMANDS=$WORK/commands.txt
: >"$RESULTS"
: >"$COMMANDS"

label_of() {
  if [ "$1" = confab ]; then echo "$CONFAB_MODE"; else echo 3-member; fi
}

ROUND=""  # set while the headline rounds run: recorded with each result
run() {  # run SYSTEM CASE FLAGS...: one confab_bench run; its JSON line (or its failure) recorded
  local system=$1 case=$2; shift 2
  local pids; pids=$(IFS=,; echo "${STARTED[*]}")
  local args=(--system="$system" --endpoints="$ENDPOINTS" --server_pids="$pids"
    --label="$(label_of "$system")" --warmup_s="$WARMUP_S" --duration_s="$DURATION_S"
    --clients="$CLIENTS" --inflight="$INFLIGHT" "$@")
  echo "confab_bench ${args[*]}" | sed -E 's/--(endpoints|server_pids)=[^ ]*/--\1=…/g' \
    >>"$COMMANDS"
  log "$system $case${ROUND:+ (round $ROUND)}"
  local line
  if line=$(timeout 600 "$BENCH" "${args[@]}" 2>"$WORK/last.err"); then
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])
d["case"] = sys.argv[2]
if sys.argv[3]:
    d["round"] = int(sys.argv[3])
print(json.dumps(d))' "$line" "$case" "$ROUND" >>"$RESULTS"
    echo "$line" >&2
  else
    local error; error=$(tail -c 400 "$WORK/last.err")
    log "$system $case failed: $error"
    python3 -c 'import json,sys; print(json.dumps(
        {"system": sys.argv[1], "case": sys.argv[2], "failed": True, "error": sys.argv[3]}))' \
      "$system" "$case" "$error" >>"$RESULTS"
  fi
}

# The headline workloads, in rounds: every system in turn on a fresh ensemble, then again.
run_rounds() {
  local round system
  for ((round = 1; round <= ROUNDS; round++)); do
    for system in "${systems[@]}"; do
      start_ensemble "$system" "round$round" || { stop_started; continue; }
      ROUND=$round
      run "$system" write --workload=write
      run "$system" write-1x1 --workload=write --clients=1 --inflight=1
      ROUND=""
      stop_started
    done
  done
}

run_system() {
  local system=$1
  start_ensemble "$system" main || { stop_started; return 0; }
  run "$system" read-local --workload=read --read_mode=local
  run "$system" read-linearizable --workload=read --read_mode=linearizable
  if [ "$system" = etcd ]; then
    run "$system" create --workload=create --etcd_lease=false
    run "$system" create-lease --workload=create --etcd_lease=true
  else
    run "$system" create --workload=create
  fi
  run "$system" mixed --workload=mixed
  case "$system" in
    confab)
      run "$system" watch-persistent --workload=watch --watch_kind=persistent
      run "$system" watch-oneshot --workload=watch --watch_kind=oneshot ;;
    zookeeper) run "$system" watch-oneshot --workload=watch --watch_kind=oneshot ;;
    etcd) run "$system" watch-persistent --workload=watch --watch_kind=persistent ;;
  esac
  stop_started
  start_ensemble "$system" memory || { stop_started; return 0; }
  run "$system" memory --workload=memory --memory_nodes="$MEMORY_NODES"
  stop_started
}

IFS=, read -r -a systems <<<"$SYSTEMS"
for system in "${systems[@]}"; do
  case "$system" in
    confab|zookeeper|etcd) ;;
    *) log "unknown system $system"; exit 2 ;;
  esac
done
run_rounds
for system in "${systems[@]}"; do run_system "$system"; done

# ---- the report --------------------------------------------------------------------------------
MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'),"
MACHINE+=" Linux $(uname -r), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; load average"
MACHINE+=" (1/5/15 min) at the start: $LOAD_AT_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 tests/bench/make_report.py --results="$RESULTS" --commands="$COMMANDS" --out="$OUT" \
  --machine="$MACHINE" --confab-mode="$CONFAB_MODE" --quick="$QUICK" \
  --invocation="tests/bench/run_matrix.sh $*" \
  --versions="confabd $(git rev-parse --short HEAD 2>/dev/null || echo '?') (+ working tree);\
 ZooKeeper $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo '?')\
 on $(java -version 2>&1 | head -1);\
 etcd $(dpkg-query -W -f='${Version}' etcd-server 2>/dev/null || echo '?')"
log "wrote $OUT"
