#!/usr/bin/env bash
# Installs what is missing, builds Chorus in Release and runs one node on 127.0.0.1 with a development config.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

build=build/release
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHORUS_BUILD_TESTS=OFF -DCHORUS_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target chorusd

# A development config with its own random secret, made once and kept in var/ (ignored by git).
mkdir -p var
config=var/dev.toml
if [ ! -f "$config" ]; then
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cat >"$config" <<TOML
# Development configuration written by scripts/run.sh. Every key: build/release/chorusd --help
host = "127.0.0.1"
port = ${CHORUS_PORT:-8080}
node_id = "dev-1"
log_level = "info"
jwt_secret = "$secret"
# Development only: lets \`chorusd token\` mint tokens and creates rooms on first join.
dev_mode = 1
TOML
fi

# PostgreSQL and Redis: the caller's, or private ones under var/ (scripts/services.sh; it keeps running after
# the node stops: `scripts/services.sh stop` ends it).
if [ -z "${CHORUS_DATABASE_URL:-}" ] || [ -z "${CHORUS_REDIS_URL:-}" ]; then
  bash scripts/services.sh start >/dev/null
  [ -n "${CHORUS_DATABASE_URL:-}" ] || eval "$(bash scripts/services.sh env | grep CHORUS_DATABASE_URL)"
  [ -n "${CHORUS_REDIS_URL:-}" ] || eval "$(bash scripts/services.sh env | grep CHORUS_REDIS_URL)"
fi

port=$(sed -n 's/^port = //p' "$config")
cat <<TXT
Chorus: http://127.0.0.1:$port/healthz  ·  WebSocket: ws://127.0.0.1:$port/ws
Database:     $CHORUS_DATABASE_URL
Get a token:  $build/chorusd token --config $config --user alice
Chat:         /usr/bin/python3 -m websockets ws://127.0.0.1:$port/ws   then send {"op":"auth","id":1,"token":"<token>"}
Stop with Ctrl-C.
TXT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$build/chorusd" --config "$config" "$@"
