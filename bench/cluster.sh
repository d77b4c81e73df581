#!/usr/bin/env bash
# Cluster: what cross-node delivery costs. The same load against one node and against three, each run on fresh
# nodes (a cluster over a throwaway Redis and PostgreSQL), driven by chorus-bench with its connections spread
# round-robin over the nodes' ports. Prints per run the delivery latency (split by whether the member is on the
# sender's node), each node's CPU and the CPU per delivered event.
#
# usage: bench/cluster.sh [RUN...]   (default: all, in this order)
#   spread-1, spread-3    30 rooms x 30 members, 300 senders, CLUSTER_RATE msg/s (default 1000, 30k deliveries/s);
#                         on 3 nodes every room has 10 members on each node and the rooms are split 10/10/10
#   owner-1, owner-3      6 rooms x 100 members, 60 senders, CLUSTER_OWNER_RATE msg/s (default 300, 30k
#                         deliveries/s); on 3 nodes node n1 owns every room and every client is on n2 or n3:
#                         n1 only orders, stores and relays, n2 and n3 only run sessions and hand relayed
#                         events to them
#   local-3               the owner shape on 3 nodes with nothing crossing nodes: room r is owned by node
#                         r mod 3 and all its members are on that node (the control: 3 processes, no relays)
#   ceiling-1, ceiling-3  the spread shape ramped from 1000 msg/s (x1.5 per step) until delivery p99 > 100 ms
#   ceiling-owner-1, ceiling-owner-3, ceiling-local-3
#                         the owner and local shapes ramped the same way from 300 msg/s
# env:   CLUSTER_RATE=R        offered msg/s of the spread runs (default 1000)
#        CLUSTER_OWNER_RATE=R  offered msg/s of the owner runs (default 300)
#        CLUSTER_DURATION=S    measured window of the fixed-rate runs (default 10; 2 s warm-up before it)
#        CLUSTER_NODE_CPUS=L   taskset CPU list of the nodes (default 0: all nodes share CPU 0, as the single
#                              node has it alone, so 1 vs 3 compares the same CPU budget)
#        CLUSTER_FLAGS="..."   extra chorusd flags for every node
#        BENCH_BUILD_DIR       Release build to use (default build/cluster; built here unless BENCH_CHORUSD is set)
#        BENCH_CHORUSD=PATH    benchmark this chorusd with this tree's chorus-bench
#        BENCH_OUT             results directory (default bench/results/cluster-DATE)
#
# Every node: --actor_threads 1 --io_threads 1, dev_mode 1, send and op limits raised far above any sender's
# rate, log level info (the `cluster: view is now N nodes` line is how the script knows the cluster formed;
# nothing is logged per message). The single node is a one-node cluster (cluster_port and redis_url set), so
# both sides pay the same Redis send-rate check and differ only in what crosses nodes. chorus-bench runs on
# CPU 1, PostgreSQL and Redis unpinned: on a 2-core machine everything shares two CPUs, which is expected and
# recorded in machine.md.
set -euo pipefail
cd "$(dirname "$0")/.."

all_runs=(spread-1 spread-3 owner-1 owner-3 local-3 ceiling-1 ceiling-3 ceiling-owner-1 ceiling-owner-3
  ceiling-local-3)
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=("${all_runs[@]}")
for r in "${runs[@]}"; do
  case " ${all_runs[*]} " in
    *" $r "*) ;;
    *) echo "cluster.sh: unknown run '$r' (one of: ${all_runs[*]})" >&2; exit 2 ;;
  esac
done

rate=${CLUSTER_RATE:-1000}
owner_rate=${CLUSTER_OWNER_RATE:-300}
duration=${CLUSTER_DURATION:-10}
node_cpus=${CLUSTER_NODE_CPUS:-0}
build=${BENCH_BUILD_DIR:-build/cluster}
out=${BENCH_OUT:-bench/results/cluster-$(date +%Y-%m-%d-%H%M)}
extra_flags=${CLUSTER_FLAGS:-}

for tool in cmake ninja taskset python3 redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "cluster.sh: '$tool' is missing (run scripts/setup.sh)" >&2; exit 1; }
done
prio=()
if nice -n -10 true 2>/dev/null; then prio=(nice -n -10); fi
bench_cpu=1
[ "$(nproc)" -ge 2 ] || bench_cpu=0

# shellcheck source=bench_build.sh
. bench/bench_build.sh
# shellcheck source=throwaway_postgres.sh
. bench/throwaway_postgres.sh

ulimit -n "$(ulimit -Hn)"
mkdir -p "$out/raw"
: >"$out/results.jsonl"
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

node_pids=() node_ports=() pg_dir="" redis_dir="" redis_pid=""
stop_nodes() {
  local pid
  for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # A clustered node leaves the registry, waits a heartbeat and hands its rooms over before it exits.
  for pid in "${node_pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  node_pids=() node_ports=()
}
stop_all() {
  stop_nodes
  if [ -n "$redis_pid" ]; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  [ -z "$redis_dir" ] || rm -rf "$redis_dir"
  if [ -n "$pg_dir" ]; then
    pg_throwaway_stop "$pg_dir"
    rm -rf "$pg_dir"
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# pick_port VAR: a free port below the ephemeral range into VAR, never one handed out before in this run (a
# node given it may not listen yet). Not a command substitution: the list of ports given out must persist.
taken=" " pg_port="" redis_port=""
pick_port() {
  local p
  for p in $(shuf -i 18000-28000 -n 50); do
    [[ $taken == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      taken+="$p "
      printf -v "$1" '%s' "$p"
      return
    fi
  done
  echo "cluster.sh: no free port found" >&2
  exit 1
}

pg_dir=$(mktemp -d)
pick_port pg_port
db_url=$(pg_throwaway_start "$pg_dir" "$pg_port") || { echo "cluster.sh: cannot start PostgreSQL" >&2; exit 1; }
if [ ${#prio[@]} -gt 0 ]; then renice -n -10 -p "$(head -n 1 "$pg_dir/data/postmaster.pid")" >/dev/null || true; fi

# A Redis of its own: the registry's keys (chorus:nodes:*) must hold this run's nodes and nothing else.
redis_dir=$(mktemp -d)
pick_port redis_port
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" \
  --logfile "$redis_dir/redis.log" &
redis_pid=$!
for _ in $(seq 50); do
  [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
  sleep 0.1
done
[ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] || { echo "cluster.sh: Redis did not start" >&2; exit 1; }
redis_url=redis://127.0.0.1:$redis_port

# shellcheck disable=SC2206
chorusd_flags=(--database_url "$db_url" --redis_url "$redis_url" --jwt_secret "$secret" --dev_mode 1
  --ops_per_second 1000000 --ops_burst 1000000 --sends_per_second 1000000 --sends_burst 1000000
  --log_level info --actor_threads 1 --io_threads 1 $extra_flags)

# start_nodes N RAW: nodes n1..nN, each waited for until its view holds all N.
start_nodes() {
  local n=$1 raw=$2 i port cluster_port log deadline
  for i in $(seq "$n"); do
    pick_port port
    pick_port cluster_port
    "${prio[@]}" taskset -c "$node_cpus" "$chorusd" --host 127.0.0.1 --port "$port" --node_id "n$i" \
      --cluster_port "$cluster_port" "${chorusd_flags[@]}" 2>"$raw-n$i.log" &
    node_pids+=($!)
    node_ports+=("$port")
  done
  deadline=$((SECONDS + 30))
  for i in $(seq "$n"); do
    log=$raw-n$i.log
    until [ "$(grep -o 'cluster: view is now [0-9]* nodes' "$log" | tail -n 1)" = "cluster: view is now $n nodes" ]; do
      kill -0 "${node_pids[$((i - 1))]}" 2>/dev/null || { echo "cluster.sh: n$i exited at start:" >&2; tail "$log" >&2; exit 1; }
      [ $SECONDS -lt $deadline ] || { echo "cluster.sh: n$i did not see $n nodes within 30 s" >&2; tail "$log" >&2; exit 1; }
      sleep 0.1
    done
  done
}

view_changes() {  # how many view changes and lost peers the logs of RAW-n* hold so far
  cat "$1"-n*.log | grep -c -e 'cluster: view is now' -e 'lost the connection' || true
}

# run_spec RUN: sets nodes, clients (the node numbers chorus-bench connects to), rooms, placement and args.
run_spec() {
  local spread="--connections 900 --rooms 30 --members-per-room 30 --senders 300"
  local owner="--connections 600 --rooms 6 --members-per-room 100 --senders 60"
  local window="--duration $duration --warmup 2"
  local ramp="--ramp --ramp-factor 1.5 --ramp-max-rate 20000 --warmup 1 --duration 3 --drain 2 --p99-bound-ms 100"
  case $1 in
    spread-*) rooms=30 placement=balanced args="$spread --rate $rate $window" ;;
    owner-*) rooms=6 placement=n1 args="$owner --rate $owner_rate $window" ;;
    local-*) rooms=6 placement=round-robin args="$owner --url-by room --rate $owner_rate $window" ;;
    ceiling-owner-*) rooms=6 placement=n1 args="$owner --rate 300 $ramp" ;;
    ceiling-local-*) rooms=6 placement=round-robin args="$owner --url-by room --rate 300 $ramp" ;;
    ceiling-*) rooms=30 placement=balanced args="$spread --rate 1000 $ramp" ;;
  esac
  nodes=${1##*-}
  clients=$(seq -s ' ' "$nodes")
  [[ $1 == *owner-3 ]] && clients="2 3"
  return 0
}

{
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) CPUs," \
    "$(free -h | awk '/^Mem:/{print $2}') RAM"
  echo "- nodes: taskset -c $node_cpus $chorusd ${chorusd_flags[*]/$db_url/DB}" | sed "s/$secret/SECRET/"
  echo "- generator: taskset -c $bench_cpu; PostgreSQL and Redis unpinned; ${prio[*]:-normal priority}"
  echo "- every node, the generator, PostgreSQL and Redis share $(nproc) CPUs: expected, and why absolute"
  echo "  figures are this machine's; compare 1 node with 3 in the same run"
  echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.md"

echo "cluster.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg);" \
  "results in $out"
for run in "${runs[@]}"; do
  run_spec "$run"
  raw=$out/raw/$run
  redis-cli -p "$redis_port" flushall >/dev/null
  start_nodes "$nodes" "$raw"
  node_ids=$(seq -s ' ' -f 'n%g' "$nodes")
  # shellcheck disable=SC2086
  prefix=$(bench/cluster_rooms.py prefix "${run%%-*}$(date +%H%M%S)x" "$rooms" "$placement" $node_ids)
  # shellcheck disable=SC2086
  owners=$(bench/cluster_rooms.py owners "$prefix" "$rooms" $node_ids)
  target=()
  for c in $clients; do target+=(--url "ws://127.0.0.1:${node_ports[$((c - 1))]}/ws"); done
  for pid in "${node_pids[@]}"; do target+=(--server-pid "$pid"); done
  changes_before=$(view_changes "$raw")
  echo "== $run: $nodes node(s), clients on $(for c in $clients; do printf 'n%s ' "$c"; done)rooms $owners"
  # shellcheck disable=SC2086
  "${prio[@]}" taskset -c "$bench_cpu" "$bench" "${target[@]}" --secret "$secret" --room-prefix "$prefix" \
    $args --json >"$raw.json" 2>"$raw.err" || echo "cluster.sh: chorus-bench reported a problem (see $raw.err)" >&2
  changes=$(($(view_changes "$raw") - changes_before))
  stop_nodes
  json=$(grep '^{' "$raw.json" | tail -n 1 || true)
  [ -z "$json" ] || echo "{\"run\":\"$run\",\"nodes\":$nodes,\"room_owners\":\"$owners\",\"view_changes\":$changes,${json#\{}" \
    >>"$out/results.jsonl"
  python3 - "$raw.json" "$run" "$changes" <<'EOF' | tee -a "$out/summary.txt"
import json, sys
path, run, changes = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [l for l in open(path) if l.startswith('{')]
if not lines:
    print(f"{run}: no report, see {path[:-5]}.err")
    sys.exit(0)
r = json.loads(lines[-1])
steps = r.get("steps") or [r.get("result") or {}]
held = r.get("result")
for s in steps:
    d, a = s.get("delivery_latency", {}), s.get("ack_latency", {})
    same, other = s.get("delivery_latency_same_url"), s.get("delivery_latency_other_url")
    cpus = s.get("server_cpus") or ([s["server_cpu"]] if s.get("server_cpu") is not None else [])
    total = sum(cpus)
    per = 1e6 * total / s["deliveries_per_s"] if s.get("deliveries_per_s") else 0
    split = "".join(f" {name} {l['p50_ms']:.1f}/{l['p99_ms']:.1f}" for name, l in
                    (("same-node", same), ("other-node", other)) if l and l.get("count"))
    errs = ",".join(f"{k}={v}" for k, v in s.get("errors", {}).items()) or "-"
    mark = " HELD" if r.get("ramp") and s.get("held") else (" failed" if r.get("ramp") else "")
    print(f"{run:9} {s.get('offered_rate', 0):6.0f} msg/s{mark}: acked {s.get('acknowledged', 0)}/{s.get('sent', 0)}, "
          f"{s.get('deliveries_per_s', 0):7.0f} deliveries/s (ratio {s.get('delivery_ratio', 0):.4f}), "
          f"delivery p50/p99 {d.get('p50_ms', 0):.1f}/{d.get('p99_ms', 0):.1f} ms{split}, "
          f"ack {a.get('p50_ms', 0):.1f}/{a.get('p99_ms', 0):.1f} ms; node CPU {total:.2f} "
          f"({' + '.join(f'{c:.2f}' for c in cpus)}) = {per:.1f} us per delivery; "
          f"by node {s.get('delivered_by_url', '-')}; gen CPU {s.get('generator_cpu', 0):.2f} "
          f"stall {s.get('max_pacer_lag_ms', 0):.0f} ms; errors {errs}; gaps {s.get('seq_gaps', 0)}")
if changes:
    print(f"{run:9} WARNING: {changes} view changes or lost peers during the run (see the node logs)")
if r.get("aborted"):
    print(f"{run:9} ABORTED: {r['aborted']}")
EOF
done
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.md"
echo "cluster.sh: per-run lines in $out/summary.txt, JSON in $out/results.jsonl, logs in $out/raw"
