#!/usr/bin/env bash
# What one listing of the node registry costs Redis: every clustered node lists the live nodes after each
# heartbeat (cluster/membership.cpp: SCAN MATCH chorus:nodes:* COUNT 500 over the whole database, then MGET in
# chunks of 256), so a cluster of N nodes does N listings per node_heartbeat_ms. This fills a throwaway Redis
# with N node entries and K other keys (standing in for the rate-limit buckets that share the database,
# chorus:rl:tb:*), runs `chorusctl nodes` (the same live_nodes() call) 20 times, and reads Redis's own
# per-command accounting (INFO commandstats).
#
# usage: bench/registry.sh [N:K ...]   (default: 10:0 100:0 1000:0 10:100000 100:100000 100:1000000)
# env:   BENCH_BUILD_DIR   build with chorusctl (default build/cluster; built here if missing)
#        BENCH_OUT         where the table goes (default: stdout only)
set -euo pipefail
cd "$(dirname "$0")/.."

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(10:0 100:0 1000:0 10:100000 100:100000 100:1000000)
build=${BENCH_BUILD_DIR:-build/cluster}
listings=20
for tool in redis-server redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "registry.sh: '$tool' is missing (run scripts/setup.sh)" >&2; exit 1; }
done
if [ ! -x "$build/chorusctl" ]; then
  export CCACHE_NOHASHDIR=1
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHORUS_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j2 --target chorusctl
fi

dir=$(mktemp -d)
port=$(shuf -i 18000-28000 -n 1)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
redis=(redis-cli -p "$port")
for _ in $(seq 50); do [ "$("${redis[@]}" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done

# fill N K: N entries as a node writes them (cluster/node_registry.cpp encode()), K keys with a TTL like a bucket.
fill() {
  python3 - "$1" "$2" <<'EOF' | "${redis[@]}" --pipe >/dev/null
import json, sys
nodes, others = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.write
def command(*args):
    out(f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args))
for i in range(nodes):
    entry = {"id": f"node-{i}", "incarnation": f"{i * 7919:016x}", "host": f"10.0.{i // 250}.{i % 250}",
             "client_port": 8080, "cluster_port": 4242, "started_at_ms": 1764547200000}
    command("SET", f"chorus:nodes:node-{i}", json.dumps(entry, separators=(",", ":")))
for i in range(others):
    command("SET", f"chorus:rl:tb:send:user-{i}", "1", "EX", "600")
EOF
}

report() {
  printf '%6s %9s | %9s %9s %12s %12s | %s\n' "$@"
}
{
  echo "registry.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $listings listings per case"
  report nodes "other keys" "SCAN/list" "MGET/list" "Redis us/list" "wall ms/list" "Redis CPU if all N nodes list once a second"
  for c in "${cases[@]}"; do
    n=${c%%:*} k=${c##*:}
    "${redis[@]}" flushall >/dev/null
    fill "$n" "$k"
    "${redis[@]}" config resetstat >/dev/null
    t0=$(date +%s%N)
    for _ in $(seq "$listings"); do "$build/chorusctl" --redis_url "redis://127.0.0.1:$port" nodes >/dev/null; done
    t1=$(date +%s%N)
    "${redis[@]}" info commandstats | tr -d '\r' | python3 -c "
import re, sys
n, k, listings, wall_ns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
stats = {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r'cmdstat_(\w+):calls=(\d+),usec=(\d+)', sys.stdin.read())}
scan, mget = stats.get('scan', (0, 0)), stats.get('mget', (0, 0))
us = (scan[1] + mget[1]) / listings
share = n * us / 1e6
print(f'{n:6} {k:9} | {scan[0] / listings:9.0f} {mget[0] / listings:9.0f} {us:12.0f} {wall_ns / listings / 1e6:12.1f} | '
      f'{share:.3f} of Redis\'s one thread' + ('  (over 1: saturated)' if share > 1 else ''))
" "$n" "$k" "$listings" "$((t1 - t0))"
  done
} | if [ -n "${BENCH_OUT:-}" ]; then mkdir -p "$BENCH_OUT" && tee "$BENCH_OUT/registry.txt"; else cat; fi
