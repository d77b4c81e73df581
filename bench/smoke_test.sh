#!/usr/bin/env bash
# ctest smoke test: a second of chorus-bench against a real chorusd, its JSON checked: the harness cannot rot.
# usage: smoke_test.sh CHORUSD CHORUS_BENCH
set -euo pipefail

chorusd=$1
bench=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=throwaway_postgres.sh
. "$here/throwaway_postgres.sh"
work=$(mktemp -d)
chmod 755 "$work"  # a throwaway PostgreSQL inside runs as the postgres user
node_pid=""

cleanup() {
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$node_pid" 2>/dev/null || true
  fi
  pg_throwaway_stop "$work/pg"
  if [ -n "${db_name:-}" ]; then
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "bench_smoke: $*" >&2
  echo "--- chorusd log (tail) ---" >&2
  tail -n 30 "$work/chorusd.log" >&2 || true
  exit 1
}

secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

# A node with durable messages needs PostgreSQL. With CHORUS_DATABASE_URL (scripts/test.sh sets it) the node
# gets a database of its own on that server, dropped afterwards; without it, a throwaway cluster. Like every
# test that needs PostgreSQL, this one fails rather than skips when there is none.
db_flags=()
if chorusd_needs_database "$chorusd"; then
  if [ -n "${CHORUS_DATABASE_URL:-}" ]; then
    admin_url=$CHORUS_DATABASE_URL
    db_name=chorus_t_$$_bench_smoke
    psql -q -v ON_ERROR_STOP=1 "$admin_url" -c "DROP DATABASE IF EXISTS $db_name" \
      -c "CREATE DATABASE $db_name" >/dev/null || fail "cannot create $db_name on CHORUS_DATABASE_URL"
    url=$(pg_url_with_database "$admin_url" "$db_name")
  else
    url=""
    for pg_port in $(shuf -i 18000-28000 -n 3); do
      url=$(pg_throwaway_start "$work/pg" "$pg_port") && break
      pg_throwaway_stop "$work/pg"
      rm -rf "$work/pg"
    done
    [ -n "$url" ] || fail "chorusd needs PostgreSQL: set CHORUS_DATABASE_URL or install postgresql"
  fi
  db_flags=(--database_url "$url")
fi

# The default rate limit (20 ops/s per connection) is plenty for this scenario: 4 senders at 25 msg/s would
# not be, so the senders are 10 at 10 msg/s.
"$chorusd" --port 0 --jwt_secret "$secret" --log_level info --dev_mode 1 "${db_flags[@]}" 2>"$work/chorusd.log" &
node_pid=$!

port=""
for _ in $(seq 200); do
  port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$work/chorusd.log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 "$node_pid" 2>/dev/null || fail "chorusd exited before listening"
  sleep 0.05
done
[ -n "$port" ] || fail "chorusd did not log its port within 10 s"

# Twice: frames written one by one through Beast, then coalesced (--write-tick-ms: 500 ms ticks give each
# sender about five frames a write, framed and masked by the generator itself, which the node must accept).
run_and_check() {
  local mode=$1
  shift
  "$bench" --url "ws://127.0.0.1:$port/ws" --secret "$secret" --connections 20 --rooms 2 --members-per-room 10 \
    --senders 10 --rate 100 --warmup 0.3 --duration 1 --drain 5 --server-pid "$node_pid" --json "$@" \
    >"$work/result.json" || fail "$mode: chorus-bench exited with status $? ($(cat "$work/result.json"))"

  local json result delivered ratio sent acknowledged errors setup_errors disconnects
  json=$(tail -n 1 "$work/result.json")
  echo "$json"

  # Checked with sed rather than a JSON tool so the test needs nothing beyond coreutils: the numbers sit in
  # the "result" object, and the first match of each key after it is that object's.
  result=${json#*\"result\":}
  field() { printf '%s' "$result" | sed -n "s/^[^}]*\"$1\":\([^,}]*\).*/\1/p" | head -n 1; }
  delivered=$(field delivered)
  ratio=$(field delivery_ratio)
  sent=$(field sent)
  acknowledged=$(field acknowledged)
  errors=$(printf '%s' "$result" | sed -n 's/.*"errors":\({[^}]*}\).*/\1/p' | head -n 1)
  setup_errors=$(printf '%s' "$json" | sed -n 's/.*"setup_errors":\({[^}]*}\).*/\1/p')
  disconnects=$(printf '%s' "$json" | sed -n 's/.*"disconnects":\([0-9]*\),"close_codes".*/\1/p')

  if [ -z "$delivered" ] || [ "$delivered" -le 0 ]; then fail "$mode: nothing delivered"; fi
  [ "$ratio" = "1" ] || fail "$mode: delivery ratio $ratio, expected 1"
  [ "$sent" = "$acknowledged" ] || fail "$mode: sent $sent but acknowledged $acknowledged"
  [ "$errors" = "{}" ] || fail "$mode: errors during the run: $errors"
  [ "$setup_errors" = "{}" ] || fail "$mode: errors while connecting: $setup_errors"
  [ "$disconnects" = "0" ] || fail "$mode: $disconnects disconnects"

  # Every ack is timed from its send's write too, which is never before the send was scheduled; with 500 ms
  # ticks a send waits about 250 ms for its write, so timed from the write its ack is clearly sooner.
  local ack from_write ack_p50 from_write_p50 from_write_count
  ack=${result#*\"ack_latency\":}
  from_write=${result#*\"ack_latency_from_write\":}
  [ "$from_write" != "$result" ] || fail "$mode: no ack_latency_from_write in the result"
  ack_p50=$(printf '%s' "$ack" | sed -n 's/^{[^}]*"p50_ms":\([0-9.]*\).*/\1/p')
  from_write_p50=$(printf '%s' "$from_write" | sed -n 's/^{[^}]*"p50_ms":\([0-9.]*\).*/\1/p')
  from_write_count=$(printf '%s' "$from_write" | sed -n 's/^{"count":\([0-9]*\).*/\1/p')
  [ "$from_write_count" = "$acknowledged" ] ||
    fail "$mode: $from_write_count acks timed from their write, $acknowledged acknowledged"
  awk -v w="$from_write_p50" -v a="$ack_p50" 'BEGIN { exit !(w <= a) }' ||
    fail "$mode: ack p50 from the write $from_write_p50 ms, later than from the schedule $ack_p50 ms"
  if [ "$mode" = "coalesced" ]; then
    awk -v w="$from_write_p50" -v a="$ack_p50" 'BEGIN { exit !(a - w >= 100) }' ||
      fail "$mode: ack p50 $ack_p50 ms from the schedule, $from_write_p50 ms from the write: the tick's wait is not left out"
  fi
  echo "bench_smoke: $mode ok (delivered $delivered, ratio $ratio)"
}

run_and_check "frame by frame"
run_and_check "coalesced" --write-tick-ms 500

kill -TERM "$node_pid"
wait "$node_pid" || fail "chorusd exited with status $? on SIGTERM"
node_pid=""
echo "bench_smoke: ok"
