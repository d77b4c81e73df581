#!/usr/bin/env bash
# The durable write path alone: chorus-append-bench (message_store::append, one writer) against a throwaway
# PostgreSQL 15 with default settings (fsync and synchronous_commit on), rows per second by batch size.
#
# usage: bench/append.sh [google-benchmark flags...]     e.g. --benchmark_filter='rows:500'
# env:   BENCH_BUILD_DIR  Release build to use (default build/perf; built here)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BENCH_BUILD_DIR:-build/perf}

# shellcheck disable=SC2034  # read by bench_build.sh
bench_targets=(chorus-append-bench)
# shellcheck source=bench_build.sh
. bench/bench_build.sh

# shellcheck source=throwaway_postgres.sh
. bench/throwaway_postgres.sh
pg_dir=$(mktemp -d)
trap 'pg_throwaway_stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
port=$(shuf -i 18000-28000 -n 1)
CHORUS_DATABASE_URL=$(pg_throwaway_start "$pg_dir" "$port") || { echo "append.sh: cannot start PostgreSQL" >&2; exit 1; }
export CHORUS_DATABASE_URL
echo "append.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/bench/micro/chorus-append-bench" "$@"
