#!/usr/bin/env bash
# Durable sends (issue 4): a rate sweep of the `durable` scenario (5,000 connections in 2,500 two-member
# rooms, every connection sending; each send acknowledged only after the PostgreSQL commit holding it).
# Prints, per offered rate, the acknowledged sends per second, the ack latency p50/p99, the CPU of the node,
# PostgreSQL and the generator over the measured window, and what the node's batch writers did in it (from
# its GET /metrics: busy fraction, batches a second, rows a batch and the time a batch took), and the node's
# own ack p50/p99 (from a room giving a send its seq to the ack, without the client's side and the network),
# and how often it held clients back (reads_paused, sends_shed: README, "Metrics").
#
# usage: bench/durable.sh [RATE...]        (default: 10000 20000 30000 40000 50000)
# env:   DURABLE_DURATION=S  measured window per rate (default 5)
#        DURABLE_WARMUP=S    sending before the window opens (default 1). The joins' request timeouts (5 s,
#                            request_timeout_ms) expire about 5 s after connecting, thousands at once with the
#                            preset; a warm-up of 6 keeps that burst out of the window (steady state).
#        DURABLE_REPEAT=N    runs per rate (default 1), each against a fresh node
#        DURABLE_FLAGS="..." extra chorusd flags, e.g. "--writer_count 4 --batch_max_delay_ms 0"
#        DURABLE_SHAPE="..." chorus-bench flags overriding the preset's shape, e.g. "--connections 500 --rooms 250"
#        DURABLE_PERF=RATE   record `perf record -g` of chorusd during the run at RATE (into $out/raw/perf-RATE.data)
#        DURABLE_PERF_ARGS="..." perf record options instead of -g, e.g. "--call-graph dwarf,16384 -F 499"
#        DURABLE_PERF_ALL=1  record every process on the machine (perf -a: node, PostgreSQL, generator, kernel)
#        DURABLE_NODE_CPUS=L CPUs chorusd may run on (taskset list; default 0), e.g. "0,1" with
#                            DURABLE_FLAGS="--actor_threads 2"
#        DURABLE_PG_CPUS=L   CPUs PostgreSQL may run on (default: all), e.g. "1": the generator's CPU
#        DURABLE_GEN_CPUS=L  CPUs chorus-bench may run on (default 1)
#        DURABLE_PG_PRIO=0   leave PostgreSQL at normal priority (default: the node's raised priority)
#        DURABLE_PG_SOCKET=1 the node (and psql) reach PostgreSQL through its Unix socket instead of TCP on loopback
#        DURABLE_PG_PAUSE=S@T stop every PostgreSQL process (SIGSTOP) for S seconds, about T seconds into the
#                            window, as a frozen database host would be (its timers fire when it resumes:
#                            idle_in_transaction_session_timeout may end a session that was idle when stopped)
#        DURABLE_PG_STALL=S@T hold the write lock of `rooms` and `messages` for S seconds, about T seconds into
#                            the window (connecting and joining are taken as 3 s): writes wait, as behind a
#                            disk stall; p99_by_s then shows how long the node takes to work off the queue
#        PG_EXTRA_OPTS="..." PostgreSQL server options, e.g. "-c shared_preload_libraries=pg_stat_statements"
#                            (with it loaded, each run's statements go to $out/raw/rate-R-N.statements)
#                            The server's log is kept as $out/raw/postgres.log (e.g. with
#                            "-c log_autovacuum_min_duration=0 -c log_checkpoints=on")
#        BENCH_BUILD_DIR     Release build to use (default build/perf; built here unless BENCH_CHORUSD is set)
#        BENCH_CHORUSD=PATH  benchmark this chorusd (e.g. an older commit's) with this tree's chorus-bench
#        BENCH_OUT           where raw output goes (default bench/results/durable-DATE)
#
# Placement as in bench/run.sh: chorusd on CPU 0 (one actor thread, one io thread; its batch writers are
# detached threads on the same CPU), chorus-bench on CPU 1, a throwaway PostgreSQL 15 with default settings
# (fsync and synchronous_commit on: durability is the point) unpinned on both CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."

rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(10000 20000 30000 40000 50000)
duration=${DURABLE_DURATION:-5}
warmup=${DURABLE_WARMUP:-1}
repeat=${DURABLE_REPEAT:-1}
build=${BENCH_BUILD_DIR:-build/perf}
out=${BENCH_OUT:-bench/results/durable-$(date +%Y-%m-%d-%H%M)}
extra_flags=${DURABLE_FLAGS:-}
# shellcheck disable=SC2206
shape=(${DURABLE_SHAPE:-})
perf_rate=${DURABLE_PERF:-}

for tool in cmake ninja taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "durable.sh: '$tool' is missing (run scripts/setup.sh)" >&2; exit 1; }
done
prio=()
if nice -n -10 true 2>/dev/null; then prio=(nice -n -10); fi
server_cpu=0 bench_cpu=1
[ "$(nproc)" -ge 2 ] || server_cpu=0 bench_cpu=0
server_cpu=${DURABLE_NODE_CPUS:-$server_cpu}
bench_cpu=${DURABLE_GEN_CPUS:-$bench_cpu}

# shellcheck source=bench_build.sh
. bench/bench_build.sh
# shellcheck source=throwaway_postgres.sh
. bench/throwaway_postgres.sh

ulimit -n "$(ulimit -Hn)"
mkdir -p "$out/raw"
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

server_pid="" pg_dir="" perf_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
stop_all() {
  [ -z "$perf_pid" ] || kill -INT "$perf_pid" 2>/dev/null || true
  stop_server
  if [ -n "$pg_dir" ]; then
    pg_throwaway_stop "$pg_dir"
    # Its log says what the server did meanwhile (autovacuum, checkpoints, with PG_EXTRA_OPTS to log them).
    cp "$pg_dir/server.log" "$out/raw/postgres.log" 2>/dev/null || true
    rm -rf "$pg_dir"
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

free_port() {
  local p
  for p in $(shuf -i 18000-28000 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "durable.sh: no free port found" >&2
  return 1
}

pg_dir=$(mktemp -d)
db_url=$(pg_throwaway_start "$pg_dir" "$(free_port)") || { echo "durable.sh: cannot start PostgreSQL" >&2; exit 1; }
if [ "${DURABLE_PG_SOCKET:-0}" = 1 ]; then
  # The same server through its Unix socket instead of TCP on loopback.
  pg_port=${db_url##*:}
  db_url="postgresql://postgres@/postgres?host=$pg_dir/sock&port=${pg_port%%/*}"
fi
# PostgreSQL is half of what is measured: it gets the node's priority (its backends inherit the
# postmaster's), so that other work on the machine slows both alike.
if [ ${#prio[@]} -gt 0 ] && [ "${DURABLE_PG_PRIO:-1}" = 1 ]; then renice -n -10 -p "$(head -n 1 "$pg_dir/data/postmaster.pid")" >/dev/null || true; fi
# Its processes running now and every backend forked later (they inherit the postmaster's CPU set).
if [ -n "${DURABLE_PG_CPUS:-}" ]; then
  for p in $(pgrep -u postgres -f "$pg_dir"); do taskset -p -c "$DURABLE_PG_CPUS" "$p" >/dev/null; done
fi

# WAL as a server that has run for a while has it. A fresh cluster has no WAL segments to reuse, so each new
# 16 MB segment is zero-filled when the write path reaches it (every second or so at these rates), and the
# commits queued behind it wait: at 20,000/s that was most of the p99 (BENCHMARKS.md, durable sends). A
# running server reuses the segments its checkpoints recycle. So about 1 GB of WAL is written and
# checkpointed here first, and every run starts with a checkpoint: the segments the run before used are
# recycled, and its data pages are written out rather than left for the kernel to write back during the next
# run. DURABLE_WAL_WARM=0: neither, each run in the state the one before left.
wal_warm=${DURABLE_WAL_WARM:-1}
if [ "$wal_warm" = 1 ]; then
  psql -q "$db_url" -c "CREATE TABLE chorus_wal_warm AS SELECT i, i + 1 AS j FROM generate_series(1, 16000000) i" \
    -c "DROP TABLE chorus_wal_warm" -c "CHECKPOINT" >/dev/null
fi

# The per-connection op rate limit would throttle senders: raised far above any per-sender rate here.
# shellcheck disable=SC2206
chorusd_flags=(--database_url "$db_url" --ops_per_second 1000000 --ops_burst 1000000 --log_level warn
  --actor_threads 1 --io_threads 1 $extra_flags)

# Rows stored so far and PostgreSQL's WAL counters: the summary gives WAL bytes and full-page images per row.
wal_counters() {
  psql "$db_url" -Atc "SELECT (SELECT count(*) FROM messages), wal_fpi, wal_bytes FROM pg_stat_wal" 2>/dev/null || true
}

# With pg_stat_statements loaded (PG_EXTRA_OPTS): what PostgreSQL spent on each statement during a run (from
# the join on, so the rooms' activations are in it too).
statements_reset() {
  [[ "${PG_EXTRA_OPTS:-}" == *pg_stat_statements* ]] || return 0
  psql "$db_url" -Atqc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()" \
    >/dev/null 2>&1 || true
}
statements_report() {
  psql "$db_url" -c "SELECT calls, round(mean_exec_time::numeric, 3) AS mean_ms,
    round(stddev_exec_time::numeric, 3) AS stddev_ms, round(max_exec_time::numeric, 1) AS max_ms,
    round(rows::numeric / calls, 1) AS rows_per_call, wal_bytes, left(regexp_replace(query, '\s+', ' ', 'g'), 70)
    AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8" 2>/dev/null || true
}

# Milliseconds a fixed loop takes on the node's CPU just before a run: other tenants of the host slow this
# machine from hour to hour (p50s two to four times higher at the same rate), and this shows when.
cpu_probe() {
  taskset -c "${server_cpu%%,*}" python3 -c 'import time
t = time.perf_counter()
s = 0
for i in range(2_000_000): s += i
print(round((time.perf_counter() - t) * 1000))'
}

start_server() {
  local log=$1
  port=$(free_port)
  "${prio[@]}" taskset -c "$server_cpu" "$chorusd" --host 127.0.0.1 --port "$port" --jwt_secret "$secret" \
    --dev_mode 1 --sends_per_second 1000000 --sends_burst 1000000 "${chorusd_flags[@]}" 2>"$log" &
  server_pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || { echo "durable.sh: chorusd exited at start:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "durable.sh: chorusd did not answer /healthz on port $port" >&2
  exit 1
}

echo "durable.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "durable.sh: taskset -c $server_cpu $chorusd ${chorusd_flags[*]/$db_url/DB}"
echo "durable.sh: taskset -c $bench_cpu $bench --scenario durable ${shape[*]} --rate R --duration $duration --warmup $warmup"
# gen_stall: the generator's worst timer lateness; when it is large, the machine (not the node) was busy and
# the latencies of that run are the generator's as much as the node's: repeat the point. wal_per_row and
# fpi_per_row: PostgreSQL's WAL bytes and full-page images over the run, per message stored in it.
# cpu_probe: see cpu_probe() above; compare runs only when it is about the same. p99_by_s: the ack p99 (ms) of
# the sends of each second of the window: a queue that builds up climbs, a one-off stall is one high second.
# ack_from_write_p50/p99: the ack latency from the moment each send was written to its socket instead of its
# scheduled time (the columns): without the generator's lateness and the wait for its --write-tick-ms tick.
# io_burst and dirty_max: the highest write rate of PostgreSQL's disk (per half second) and the most dirty page
# cache during the window (see the disk sampler below).
printf '%9s %17s %10s %9s %9s %9s %8s %s\n' offered "acked/sent" "acked/s" "ack p50" "ack p99" "ack max" \
  delivered "errors, CPU of node, PostgreSQL and generator (1 = one core), ..."
for rate in "${rates[@]}"; do
  for run in $(seq "$repeat"); do
    raw=$out/raw/rate-$rate-$run
    [ "$wal_warm" != 1 ] || psql -q "$db_url" -c "CHECKPOINT" >/dev/null
    start_server "$raw.log"
    if [ "$perf_rate" = "$rate" ] && [ "$run" = 1 ]; then
      # From about the end of the warm-up (connecting and joining take about 3 s) to the end of the window.
      perf_target=(-p "$server_pid")
      [ "${DURABLE_PERF_ALL:-}" = 1 ] && perf_target=(-a)
      (sleep $((3 + warmup)) && exec perf record ${DURABLE_PERF_ARGS:--g} -o "$out/raw/perf-$rate.data" "${perf_target[@]}" -- sleep "$duration" \
        >/dev/null 2>&1) &
      perf_pid=$!
    fi
    # PostgreSQL's CPU (the postmaster and its children), sampled each second; the summary reports it over the
    # measured window (which starts after connecting, joining and the warm-up the report gives). One process
    # reading /proc: a shell loop forking pgrep each second cost about 55 ms of CPU a second, in bursts.
    python3 - "$(head -n 1 "$pg_dir/data/postmaster.pid")" >"$raw.pgcpu" 2>/dev/null <<'EOF_SAMPLER' &
import os, sys, time
postmaster = sys.argv[1]
def fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
while True:
    ticks = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            st = fields(pid)
        except OSError:
            continue
        if pid == postmaster or st[1] == postmaster:  # st[1]: the parent's pid
            ticks += int(st[11]) + int(st[12])  # utime, stime
    print(f"{time.time():.3f} {ticks}", flush=True)
    time.sleep(1)
EOF_SAMPLER
    pg_sampler=$!
    # The node's batch writers and its rooms' ack times (GET /metrics; nothing from a node too old to serve
    # it), each second: the summary gives the writers' busy fraction, batches a second, rows a batch and the
    # node's own ack p50/p99 over the window. A line: time, three totals, then the histogram's buckets.
    python3 - "$port" >"$raw.writer" 2>/dev/null <<'EOF_WRITER' &
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/metrics"
names = ("chorus_write_batches_total", "chorus_write_rows_total", "chorus_write_busy_seconds_total")
while True:
    try:
        lines = urllib.request.urlopen(url, timeout=1).read().decode().splitlines()
        values = dict(l.split() for l in lines if l.startswith(names))
        # Each bucket as upper-bound=count, its bound in seconds as the node gives it ("+Inf" last).
        buckets = [l.split('"')[1] + "=" + l.split()[1] for l in lines
                   if l.startswith("chorus_send_ack_seconds_bucket")]
        print(f"{time.time():.3f} " + " ".join([values[n] for n in names] + buckets), flush=True)
    except Exception:
        pass
    time.sleep(1)
EOF_WRITER
    writer_sampler=$!
    # The disk under PostgreSQL, sampled every half second: the page cache's dirty data and the write rate.
    # A run that writes for long enough (the kernel writes back data dirtied 30 s before) meets bursts of
    # hundreds of MB/s, which hold up the WAL flushes that commits wait for: io_burst says when a run had one.
    python3 - "$pg_dir" >"$raw.io" 2>/dev/null <<'EOF_IO' &
import os, sys, time
st = os.stat(sys.argv[1])
dev = (os.major(st.st_dev), os.minor(st.st_dev))
def sectors_written():
    for line in open("/proc/diskstats"):
        f = line.split()
        if (int(f[0]), int(f[1])) == dev:
            return int(f[9])
    return None
if sectors_written() is None:
    sys.exit(0)  # not a block device of its own (a container's overlay, tmpfs): nothing to say
prev = None
while True:
    t, written = time.time(), sectors_written()
    dirty = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("Dirty:"))
    if prev:
        print(f"{t:.3f} {dirty // 1024} {(written - prev[1]) * 512 / 1048576 / (t - prev[0]):.0f}", flush=True)
    prev = (t, written)
    time.sleep(0.5)
EOF_IO
    io_sampler=$!
    wal_before=$(wal_counters)
    probe_ms=$(cpu_probe)
    statements_reset
    bench_start=$(date +%s.%N)
    stall_pids=()
    if [ -n "${DURABLE_PG_STALL:-}" ]; then
      (sleep "$(echo "3 + $warmup + ${DURABLE_PG_STALL#*@}" | bc)" &&
        psql "$db_url" -qc "BEGIN; LOCK TABLE rooms, messages IN EXCLUSIVE MODE;
          SELECT pg_sleep(${DURABLE_PG_STALL%@*}); COMMIT" >/dev/null 2>&1) &
      stall_pids+=($!)
    fi
    if [ -n "${DURABLE_PG_PAUSE:-}" ]; then
      postmaster=$(head -n 1 "$pg_dir/data/postmaster.pid")
      (sleep "$(echo "3 + $warmup + ${DURABLE_PG_PAUSE#*@}" | bc)" &&
        mapfile -t pids < <(echo "$postmaster"; pgrep -P "$postmaster") &&
        kill -STOP "${pids[@]}" && sleep "${DURABLE_PG_PAUSE%@*}"; kill -CONT "${pids[@]}") &
      stall_pids+=($!)
    fi
    "${prio[@]}" taskset -c "$bench_cpu" "$bench" --url "ws://127.0.0.1:$port/ws" --secret "$secret" \
      --server-pid "$server_pid" --scenario durable "${shape[@]}" --rate "$rate" --duration "$duration" \
      --warmup "$warmup" --json >"$raw.json" 2>"$raw.err" || true
    kill "$pg_sampler" "$io_sampler" "$writer_sampler" 2>/dev/null || true
    wait "$pg_sampler" "$io_sampler" "$writer_sampler" 2>/dev/null || true
    if [ -n "$perf_pid" ]; then wait "$perf_pid" 2>/dev/null || true; perf_pid=""; fi
    if [ ${#stall_pids[@]} -gt 0 ]; then wait "${stall_pids[@]}" 2>/dev/null || true; fi
    wal_after=$(wal_counters)
    [[ "${PG_EXTRA_OPTS:-}" != *pg_stat_statements* ]] || statements_report >"$raw.statements"
    # How often the node held its clients back over the run: connections not read while their session was
    # behind, and sends refused while the database was (empty from a node too old to count them).
    held_back=$(curl -s --max-time 2 "http://127.0.0.1:$port/metrics" |
      awk '$1 == "chorus_reads_paused_total" { printf " reads_paused=%s", $2 }
           $1 == "chorus_sends_shed_total" { printf " sends_shed=%s", $2 }' || true)
    stop_server
    python3 - "$raw.json" "$raw.pgcpu" "$bench_start" "$(getconf CLK_TCK)" "$wal_before" "$wal_after" "$probe_ms" \
      "$raw.io" "$raw.writer" "$held_back" <<'EOF' | tee -a "$out/summary.txt"
import json, sys
wal = [b - a for a, b in zip(*(map(int, x.split("|")) for x in sys.argv[5:7]))] if all(sys.argv[5:7]) else []
samples = [(float(t), int(k)) for t, k in (l.split() for l in open(sys.argv[2]))]
io = [tuple(map(float, l.split())) for l in open(sys.argv[8]) if len(l.split()) == 3]
writer = []  # (time, batches, rows, busy seconds, [(bound in ms, cumulative count), ...])
for l in open(sys.argv[9]):
    f = l.split()
    if len(f) >= 4:
        writer.append((*map(float, f[:4]), [(1000 * float(b), float(n)) for b, n in (x.split("=") for x in f[4:])]))
def window(r):
    c = r.get("connect", {})
    begin = float(sys.argv[3]) + c.get("connect_time_s", 0) + c.get("join_time_s", 0) + r.get("warmup_s", 0)
    return begin, begin + r.get("duration_s", 0)
def pg_cpu(r):
    begin, end = window(r)
    inside = [(t, k) for t, k in samples if begin - 0.5 <= t <= end + 0.5]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return float("nan")
    return (inside[-1][1] - inside[0][1]) / float(sys.argv[4]) / (inside[-1][0] - inside[0][0])
lines = [l for l in open(sys.argv[1]) if l.startswith('{')]
if not lines:
    print(f"{'?':>9} (no report: see {sys.argv[1][:-5]}.err)")
    sys.exit(0)
r = json.loads(lines[-1])
pg = pg_cpu(r)
begin, end = window(r)
io_inside = [(d, w) for t, d, w in io if begin <= t <= end + 0.5]
def writer_figures():
    inside = [w for w in writer if begin - 0.5 <= w[0] <= end + 0.5]
    if len(inside) < 2 or inside[-1][1] <= inside[0][1]:
        return ""
    (t0, b0, r0, s0, h0), (t1, b1, r1, s1, h1) = inside[0], inside[-1]
    out = (f" writer_busy={(s1 - s0) / (t1 - t0):.2f} batches_per_s={(b1 - b0) / (t1 - t0):.0f}"
           f" rows_per_batch={(r1 - r0) / (b1 - b0):.0f} ms_per_batch={1000 * (s1 - s0) / (b1 - b0):.1f}")
    bounds = [b for b, _ in h1]
    counts = [n1 - n0 for (_, n0), (_, n1) in zip(h0, h1)]  # cumulative, by bound
    if h0 and len(h0) == len(h1) and counts[-1] > 0:
        def quantile(q):  # linear within the bucket that holds it, as Prometheus' histogram_quantile
            rank = q * counts[-1]
            for i, c in enumerate(counts[:-1]):
                if c >= rank:
                    lo, below = (bounds[i - 1], counts[i - 1]) if i else (0, 0)
                    return lo + (bounds[i] - lo) * (rank - below) / max(c - below, 1)
            return float("inf")
        out += f" node_ack_p50={quantile(0.5):.1f}ms node_ack_p99={quantile(0.99):.1f}ms"
    return out
s = r.get("result") or (r["steps"][-1] if r.get("steps") else {})
a = s.get("ack_latency", {})
errs = ",".join(f"{k}={v}" for k, v in s.get("errors", {}).items()) or "-"
print(f"{s.get('offered_rate', 0):9.0f} {s.get('acknowledged', 0):>8}/{s.get('sent', 0):<8} "
      f"{s.get('acknowledged', 0) / max(s.get('duration_s', 1), 1e-9):10.0f} {a.get('p50_ms', 0):7.1f}ms "
      f"{a.get('p99_ms', 0):7.1f}ms {a.get('max_ms', 0):7.1f}ms {100 * s.get('delivery_ratio', 0):7.2f}% "
      f"{errs} node_cpu={s.get('server_cpu')} pg_cpu={pg:.2f} gen_cpu={s.get('generator_cpu', 0):.2f} "
      f"gen_stall={s.get('max_pacer_lag_ms', 0):.0f}ms "
      f"gaps={s.get('seq_gaps', 0)}"
      + (f" ack_from_write_p50={w['p50_ms']:.1f}ms ack_from_write_p99={w['p99_ms']:.1f}ms"
         if (w := s.get("ack_latency_from_write")) else "")
      + (f" wal_per_row={wal[2] / max(wal[0], 1):.0f}B fpi_per_row={wal[1] / max(wal[0], 1):.2f}" if wal else "")
      + writer_figures()
      + sys.argv[10]
      + f" cpu_probe={sys.argv[7]}ms"
      + (f" io_burst={max(w for _, w in io_inside):.0f}MB/s dirty_max={max(d for d, _ in io_inside):.0f}MB"
         if io_inside else "")
      + (" p99_by_s=" + ",".join(f"{x[1]:.0f}" for x in s["ack_p50_p99_max_by_second"])
         if s.get("ack_p50_p99_max_by_second") else ""))
EOF
  done
done
echo "durable.sh: per-rate lines in $out/summary.txt, raw output in $out/raw"
