#!/usr/bin/env bash
# Runs a private PostgreSQL and Redis on loopback under ./var/ for development and tests.
#
#   scripts/services.sh start    start what is not running, wait until both answer, print their URLs
#   scripts/services.sh stop     stop both (only servers whose data lives under ./var/)
#   scripts/services.sh status   print what runs; exit 0 only when both answer
#   scripts/services.sh env      print `export CHORUS_DATABASE_URL=… CHORUS_REDIS_URL=…` for eval
#
# Ports (not CHORUS_* names: chorusd refuses CHORUS_* variables it does not know): SERVICES_PG_PORT (default 55432) and SERVICES_REDIS_PORT (default 56379), chosen away from the system
# defaults so a developer's own servers are never touched. Progress goes to stderr, URLs to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

var=$PWD/var
pg_port=${SERVICES_PG_PORT:-55432}
redis_port=${SERVICES_REDIS_PORT:-56379}
pg_dir=$var/pg
redis_dir=$var/redis
database=chorus
wait_seconds=30

redis_url="redis://127.0.0.1:$redis_port"

say() { echo "services: $*" >&2; }
die() {
  say "$*"
  exit 1
}

pg_bin=${SERVICES_PG_BIN:-}
if [ -z "$pg_bin" ]; then
  # Debian keeps server binaries out of PATH, one directory per major version; take the newest.
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi

# PostgreSQL refuses to run as root, so as root its commands run as the postgres user.
as_pg() {
  if [ "$(id -u)" -ne 0 ]; then
    "$@"
  elif command -v runuser >/dev/null; then
    runuser -u postgres -- "$@"
  else
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  fi
}

# PostgreSQL runs as its own user, which may not reach a checkout inside a private directory (a mktemp
# clone, a home directory): then its files live under /tmp, in a directory named after this checkout.
if [ "$(id -u)" -eq 0 ] && [ -z "${SERVICES_PG_DIR:-}" ] && ! as_pg test -x "$PWD"; then
  pg_dir=/tmp/chorus-pg-$(printf '%s' "$PWD" | cksum | cut -d' ' -f1)
fi
[ -z "${SERVICES_PG_DIR:-}" ] || pg_dir=$SERVICES_PG_DIR

# Through the server's Unix socket: on the same machine PostgreSQL needs a tenth to a sixth less CPU for the
# same writes than over TCP on loopback (docs/postgresql.md). TCP on 127.0.0.1 stays open for other tools.
database_url="postgresql://postgres@/$database?host=$pg_dir/sock&port=$pg_port"

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$pg_port" -t 2 >/dev/null 2>&1; }
redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = PONG ]; }

# Our PostgreSQL runs when the postmaster named in our data directory's pid file is alive.
pg_ours_running() {
  [ -f "$pg_dir/data/postmaster.pid" ] && kill -0 "$(head -n 1 "$pg_dir/data/postmaster.pid")" 2>/dev/null
}
redis_ours_running() {
  [ -f "$redis_dir/redis.pid" ] && kill -0 "$(cat "$redis_dir/redis.pid")" 2>/dev/null
}

start_pg() {
  [ -x "$pg_bin/pg_ctl" ] || die "PostgreSQL server binaries not found (install postgresql: scripts/setup.sh)"
  if pg_ours_running; then
    say "PostgreSQL already running on port $pg_port"
  else
    mkdir -p "$pg_dir/sock"
    if [ "$(id -u)" -eq 0 ]; then
      chown -R postgres:postgres "$pg_dir"
      as_pg test -w "$pg_dir" || die "the postgres user cannot write $pg_dir (is a parent directory private?)"
    fi
    if [ ! -f "$pg_dir/data/PG_VERSION" ]; then
      say "initialising PostgreSQL in $pg_dir/data"
      as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
        >"$pg_dir/initdb.log" 2>&1 || die "initdb failed, see $pg_dir/initdb.log"
    fi
    say "starting PostgreSQL on 127.0.0.1:$pg_port"
    # Integration tests start several nodes, each with a few writer connections: allow more than 100.
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t "$wait_seconds" \
      -o "-p $pg_port -k '$pg_dir/sock' -c listen_addresses=127.0.0.1 -c max_connections=300" start \
      >/dev/null || die "PostgreSQL did not start, see $pg_dir/server.log: $(tail -n 3 "$pg_dir/server.log")"
  fi
  local i
  for ((i = 0; i < wait_seconds * 10; i++)); do
    pg_ready && break
    sleep 0.1
  done
  pg_ready || die "PostgreSQL on port $pg_port does not answer, see $pg_dir/server.log"
  if [ "$(psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$database'")" != 1 ]; then
    say "creating database $database"
    psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc "CREATE DATABASE $database" >/dev/null
  fi
}

start_redis() {
  command -v redis-server >/dev/null || die "redis-server not found (install redis-server: scripts/setup.sh)"
  if redis_ours_running; then
    say "Redis already running on port $redis_port"
  else
    mkdir -p "$redis_dir"
    say "starting Redis on 127.0.0.1:$redis_port"
    # Development and test data only: no snapshots or append-only file to slow it down or fill the disk.
    redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes --dir "$redis_dir" \
      --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" --save "" --appendonly no \
      || die "Redis did not start, see $redis_dir/redis.log"
  fi
  local i
  for ((i = 0; i < wait_seconds * 10; i++)); do
    redis_ready && return 0
    sleep 0.1
  done
  die "Redis on port $redis_port does not answer: $(tail -n 3 "$redis_dir/redis.log")"
}

stop_pg() {
  if pg_ours_running; then
    say "stopping PostgreSQL"
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w -t "$wait_seconds" stop >/dev/null
  else
    say "PostgreSQL not running"
  fi
}

stop_redis() {
  if redis_ours_running; then
    say "stopping Redis"
    local pid i
    pid=$(cat "$redis_dir/redis.pid")
    kill "$pid"
    for ((i = 0; i < wait_seconds * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$redis_dir/redis.pid"
  else
    say "Redis not running"
  fi
}

case "${1:-}" in
  start)
    start_pg
    start_redis
    echo "CHORUS_DATABASE_URL=$database_url"
    echo "CHORUS_REDIS_URL=$redis_url"
    ;;
  stop)
    stop_pg
    stop_redis
    ;;
  status)
    rc=0
    if pg_ours_running && pg_ready; then
      echo "postgresql: running, $database_url"
    else
      echo "postgresql: stopped"
      rc=3
    fi
    if redis_ours_running && redis_ready; then
      echo "redis: running, $redis_url"
    else
      echo "redis: stopped"
      rc=3
    fi
    exit $rc
    ;;
  env)
    # Quoted for eval: the database URL holds `&` and `?`.
    printf 'export CHORUS_DATABASE_URL=%q\n' "$database_url"
    printf 'export CHORUS_REDIS_URL=%q\n' "$redis_url"
    ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
