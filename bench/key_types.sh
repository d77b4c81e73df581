#!/usr/bin/env bash
# What the key types of `messages` cost PostgreSQL per inserted row: batches of 600 rows into four copies of
# the table that differ only in `room` (text like the API's room ids, or an integer key) and `author` (text
# holding a user id, or uuid), each with the three unique indexes of the real table. PostgreSQL alone, on a
# throwaway server with default settings (fsync on): no node, no network. Prints pgbench's latency per batch,
# the four variants in turn, ROUNDS times.
#
# usage: bench/key_types.sh            env: ROUNDS=N (default 3), BATCHES=N per run (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
batches=${BATCHES:-200}
# shellcheck source=throwaway_postgres.sh
. bench/throwaway_postgres.sh
bin=$(pg_throwaway_bin) || { echo "key_types.sh: no PostgreSQL server binaries" >&2; exit 1; }
dir=$(mktemp -d)
trap 'pg_throwaway_stop "$dir"; rm -rf "$dir"' EXIT
url=$(pg_throwaway_start "$dir" "$(shuf -i 18000-28000 -n 1)")

# room_type author_type per variant; text columns compare as bytes, as in migration 0007.
declare -A variants=([text_text]="text text" [int_text]="bigint text" [text_uuid]="text uuid" [int_uuid]="bigint uuid")
order=(text_text int_text text_uuid int_uuid)
collate() { if [ "$1" = text ]; then echo ' COLLATE "C"'; fi; }
{
  echo "CREATE SEQUENCE s;"
  echo "CREATE TABLE authors AS SELECT i, gen_random_uuid() AS u FROM generate_series(0, 49) i;"
  for v in "${order[@]}"; do
    read -r room author <<<"${variants[$v]}"
    echo "CREATE TABLE m_$v (id uuid PRIMARY KEY, room $room$(collate "$room") NOT NULL, seq bigint NOT NULL,
      author $author$(collate "$author") NOT NULL, text text NOT NULL, client_msg_id text COLLATE \"C\",
      created_at timestamptz NOT NULL, epoch bigint NOT NULL, UNIQUE (room, seq), UNIQUE (author, client_msg_id));"
  done
} | psql -q "$url"

for v in "${order[@]}"; do
  read -r room author <<<"${variants[$v]}"
  # 25 rooms and 50 authors; a room id like the API's (a uuid as text) or its integer key.
  room_expr="v % 25"
  [ "$room" = text ] && room_expr="'c0ffee00-1111-4222-8333-0000000000' || lpad((v % 25)::text, 2, '0')"
  author_expr="a.u"
  [ "$author" = text ] && author_expr="a.u::text"
  cat >"$dir/$v.sql" <<EOF
INSERT INTO m_$v SELECT gen_random_uuid(), $room_expr, v, $author_expr, 'hello there, this is message ' || v,
  'cm-' || v, now(), 1
FROM (SELECT nextval('s') v FROM generate_series(1, 600) n) g JOIN authors a ON a.i = g.v % 50;
EOF
done

echo "key_types.sh: $(date -u +%FT%TZ), $(nproc) CPUs, $batches batches of 600 rows per run"
for ((r = 1; r <= rounds; r++)); do
  for v in "${order[@]}"; do
    ms=$("$bin/pgbench" -n -t "$batches" -f "$dir/$v.sql" "$url" 2>&1 | sed -n 's/^latency average = //p')
    read -r room author <<<"${variants[$v]}"
    printf '%-10s room %-6s author %-5s %s a batch\n' "$v" "$room" "$author" "$ms"
  done
done
