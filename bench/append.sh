#!/usr/bin/env bash
# The durable write path alone: chorus-append-bench (message_store::append, one writer) against a throwaway
# PostgreSQL 15 with default settings (fsync and synchronous_commit on), rows per second by batch size.
#
# usage: bench/append.sh [google-benchmark flags...]     e.g. --benchmark_filter='rows:500'
# env:   BENCH_BUILD_DIR  Release build to use (default build/perf; built here)
#        BENCH_APPEND=PATH  run this chorus-append-bench instead (e.g. an older commit's, for a before/after)
#        APPEND_LOCALE=L  the database's collation and ctype, e.g. en_US.UTF-8 (the locale must exist:
#                         `localedef -i en_US -f UTF-8 en_US.UTF-8`); default the server's, C.UTF-8 here
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
if [ -n "${APPEND_LOCALE:-}" ]; then
  psql "$CHORUS_DATABASE_URL" -qc "CREATE DATABASE bench LC_COLLATE '$APPEND_LOCALE' LC_CTYPE '$APPEND_LOCALE' TEMPLATE template0"
  CHORUS_DATABASE_URL=$(pg_url_with_database "$CHORUS_DATABASE_URL" bench)
fi
export CHORUS_DATABASE_URL
echo "append.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
  "collation $(psql "$CHORUS_DATABASE_URL" -Atc 'SHOW lc_collate')"
"${BENCH_APPEND:-$build/bench/micro/chorus-append-bench}" "$@"
