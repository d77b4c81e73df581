#!/usr/bin/env bash
# Runs the load-test suite: builds Release, drives chorusd (CPU 0) and the Node reference with chorus-bench
# (CPU 1), writes JSON lines, a side-by-side table and plots to bench/results/DATE/.
#
# usage: bench/run.sh [RUN...]   runs: fanout fanout-500k fanout-ramp big-room dm idle churn churn-alone
#                                (default: all)
# env:   BENCH_DURATION=S (measured window per run, default 5)   BENCH_REFERENCE=0 (skip the Node reference)
#        BENCH_BUILD_DIR (default build/bench)                    BENCH_OUT (default bench/results/DATE)
#        BENCH_CHORUSD=PATH: benchmark this chorusd instead of the one built here (e.g. an older commit's)
#        BENCH_ARGS="...": more chorus-bench arguments for every run, after the run's own (a later flag wins),
#                   e.g. "--warmup 5"
set -euo pipefail
cd "$(dirname "$0")/.."

all_runs=(fanout fanout-500k fanout-ramp big-room dm idle churn churn-alone)
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=("${all_runs[@]}")
for r in "${runs[@]}"; do
  case " ${all_runs[*]} " in
    *" $r "*) ;;
    *) echo "run.sh: unknown run '$r' (one of: ${all_runs[*]})" >&2; exit 2 ;;
  esac
done

duration=${BENCH_DURATION:-5}
build=${BENCH_BUILD_DIR:-build/bench}
out=${BENCH_OUT:-bench/results/$(date +%Y-%m-%d-%H%M)}
with_reference=${BENCH_REFERENCE:-1}

for tool in cmake ninja taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: '$tool' is missing (run scripts/setup.sh)" >&2; exit 1; }
done
if [ "$with_reference" = 1 ] && ! command -v node >/dev/null; then
  echo "run.sh: node is missing: skipping the reference (install nodejs and npm for it)" >&2
  with_reference=0
fi
plots=1
if ! command -v gnuplot >/dev/null; then
  echo "run.sh: gnuplot is missing: no plots (apt-get install gnuplot-nox)" >&2
  plots=0
fi
# Other work on the machine (compilers, tests) competes for the same two CPUs and would show up as latency:
# the server and the generator run at a higher priority when the user may raise it (root may).
prio=()
if nice -n -10 true 2>/dev/null; then prio=(nice -n -10); fi
cpus=$(nproc)
if [ "$cpus" -lt 2 ]; then
  echo "run.sh: only $cpus CPU: server and generator share it, so figures are not comparable" >&2
  server_cpu=0 bench_cpu=0
else
  server_cpu=0 bench_cpu=1
fi

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHORUS_BUILD_TESTS=OFF -DCHORUS_BUILD_BENCH=ON \
  >/dev/null
if [ -n "${BENCH_CHORUSD:-}" ]; then
  cmake --build "$build" --target chorus-bench
else
  cmake --build "$build" --target chorusd chorus-bench
fi
chorusd=${BENCH_CHORUSD:-$build/chorusd}
bench=$build/bench/chorus-bench
# shellcheck source=throwaway_postgres.sh
. bench/throwaway_postgres.sh

if [ "$with_reference" = 1 ] && [ ! -d bench/reference/node_modules/ws ]; then
  (cd bench/reference && npm ci --no-audit --no-fund --loglevel=error)
fi

# Thousands of sockets per process: both the node and the generator inherit the raised limit.
ulimit -n "$(ulimit -Hn)"
mkdir -p "$out/raw"
results=$out/results.jsonl
: >"$results"
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

server_pid=""
pg_dir=""
stop_all() {
  stop_server
  if [ -n "$pg_dir" ]; then
    pg_throwaway_stop "$pg_dir"
    rm -rf "$pg_dir"
  fi
}
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# A free port below the ephemeral range, so that none of the generator's own sockets can be holding it.
free_port() {
  local p
  for p in $(shuf -i 18000-28000 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "run.sh: no free port found" >&2
  return 1
}

# The per-connection op rate limit (20/s by default) would throttle senders at 50 msg/s each: the suite
# raises it far above any scenario's per-sender rate. Logging is at warn because per-connection info lines
# (open/close) would cost the node real time in the idle and churn runs. One actor thread and one io thread:
# the node has one core, and a second scheduler thread on it only adds context switches.
chorusd_flags=(--ops_per_second 1000000 --ops_burst 1000000 --log_level warn --actor_threads 1 --io_threads 1)

# A node with durable messages needs PostgreSQL: one throwaway cluster serves the whole suite.
if chorusd_needs_database "$chorusd"; then
  pg_dir=$(mktemp -d)
  if ! db_url=$(pg_throwaway_start "$pg_dir" "$(free_port)"); then
    echo "run.sh: cannot start PostgreSQL" >&2
    exit 1
  fi
  chorusd_flags+=(--database_url "$db_url")
fi

start_server() {  # start_server chorus|reference LOG
  local kind=$1 log=$2
  port=$(free_port)
  if [ "$kind" = chorus ]; then
    "${prio[@]}" taskset -c "$server_cpu" "$chorusd" --host 127.0.0.1 --port "$port" --jwt_secret "$secret" \
      --dev_mode 1 --sends_per_second 1000000 --sends_burst 1000000 "${chorusd_flags[@]}" 2>"$log" &
  else
    "${prio[@]}" taskset -c "$server_cpu" node bench/reference/server.js --host 127.0.0.1 --port "$port" \
      2>"$log" &
  fi
  server_pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "run.sh: $kind exited at start:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "run.sh: $kind did not answer /healthz on port $port" >&2
  exit 1
}

args_for() {  # the chorus-bench arguments of one run
  case $1 in
    fanout) echo "--scenario fanout --rate 1000 --duration $duration" ;;               # 100k deliveries/s
    fanout-500k) echo "--scenario fanout --rate 5000 --duration $duration" ;;          # 500k deliveries/s
    fanout-ramp) echo "--scenario fanout --ramp --rate 100 --ramp-factor 1.5 --ramp-max-rate 12000 \
                       --warmup 1 --duration 3 --drain 2 --p99-bound-ms 100" ;;
    big-room) echo "--scenario big-room --duration $duration --connect-timeout 180" ;;  # joins are slow
    dm) echo "--scenario dm --duration $duration" ;;
    idle) echo "--scenario idle --duration 2" ;;
    churn) echo "--scenario churn --duration $duration" ;;  # 5,000 new connections/s offered while 1,000 chat
    # Connection set-up alone (ten idle connections keep the generator's bookkeeping simple), offered above
    # the 5,000/s target so the figure is the node's capacity.
    churn-alone) echo "--scenario churn --connections 10 --rooms 0 --members-per-room 0 --senders 0 --rate 0 \
                       --churn-rate 8000 --churn-concurrency 1024 --duration $duration" ;;
  esac
}

servers=(chorus)
[ "$with_reference" = 1 ] && servers+=(reference)

echo "run.sh: results in $out (chorusd ${chorusd_flags[*]})"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for run in "${runs[@]}"; do
  for server in "${servers[@]}"; do
    # A fresh server per run: memory figures start from a clean process, one run's rooms cannot slow the next.
    start_server "$server" "$out/raw/$server-$run.log"
    echo "== $run on $server (server pid $server_pid, port $port)"
    # shellcheck disable=SC2046
    if "${prio[@]}" taskset -c "$bench_cpu" "$bench" --url "ws://127.0.0.1:$port/ws" --secret "$secret" \
      --server-pid "$server_pid" $(args_for "$run") ${BENCH_ARGS:-} >"$out/raw/$server-$run.txt"; then :; else
      echo "run.sh: chorus-bench reported a problem in $run on $server (see $out/raw/$server-$run.txt)" >&2
    fi
    grep -v '^{' "$out/raw/$server-$run.txt" | sed -n '/^chorus-bench/,$p' || true
    json=$(grep '^{' "$out/raw/$server-$run.txt" | tail -n 1)
    [ -n "$json" ] && echo "{\"server\":\"$server\",\"run\":\"$run\",${json#\{}" >>"$results"
    stop_server
  done
done

{
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) CPUs," \
    "$(free -h | awk '/^Mem:/{print $2}') RAM"
  echo "- chorusd: taskset -c $server_cpu $chorusd ${chorusd_flags[*]}; generator: taskset -c $bench_cpu"
  echo "- node: $(command -v node >/dev/null && node --version || echo none); open-files limit $(ulimit -n)"
  echo "- load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)" \
    "(other processes share both CPUs when this is well above 1; ${prio[*]:-normal priority})"
} >"$out/machine.md"
python3 bench/summarize.py "$results" "$out"
if [ "$plots" = 1 ]; then
  gnuplot -e "dir='$out'" bench/plot.gp && echo "run.sh: plots in $out/*.png"
fi
cat "$out/summary.md"
