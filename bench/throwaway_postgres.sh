# A throwaway PostgreSQL cluster for bench/run.sh and the smoke test, when chorusd needs a database_url.
# shellcheck shell=bash
# Source this file, then:  url=$(pg_throwaway_start DIR PORT)  ...  pg_throwaway_stop DIR
# As root it runs the server as the `postgres` user (PostgreSQL refuses root), per ../shared/TOOLCHAIN.md.

pg_throwaway_bin() {
  local b bin=""
  for b in /usr/lib/postgresql/*/bin; do [ -x "$b/initdb" ] && bin=$b; done
  [ -n "$bin" ] && echo "$bin"
}

pg_throwaway_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Prints the connection URL on success; the cluster lives in DIR/data, its log in DIR/server.log. PG_EXTRA_OPTS adds
# server options, e.g. "-c shared_preload_libraries=pg_stat_statements" to see where its time goes.
pg_throwaway_start() {
  local dir=$1 port=$2 bin
  if ! bin=$(pg_throwaway_bin); then
    echo "no PostgreSQL server binaries (apt-get install postgresql)" >&2
    return 1
  fi
  mkdir -p "$dir/sock"
  [ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$dir"
  if ! pg_throwaway_as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync \
    >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    return 1
  fi
  pg_throwaway_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 ${PG_EXTRA_OPTS:-}" start >/dev/null ||
    { cat "$dir/server.log" >&2; return 1; }
  echo "postgresql://postgres@127.0.0.1:$port/postgres"
}

# URL with its database replaced by NAME; a query string (such as a socket directory in host=) is kept.
pg_url_with_database() {
  local url=$1 name=$2 query=""
  if [[ $url == *\?* ]]; then
    query="?${url#*\?}"
    url=${url%%\?*}
  fi
  echo "${url%/*}/$name$query"
}

pg_throwaway_stop() {
  local dir=$1 bin
  [ -f "$dir/data/postmaster.pid" ] || return 0
  bin=$(pg_throwaway_bin) || return 0
  pg_throwaway_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# Whether this chorusd refuses to start without a database (the durable-messages build does).
chorusd_needs_database() {
  # Not `| grep -q`: grep would exit at the first match and, under pipefail, chorusd's SIGPIPE would say no.
  local help
  help=$("$1" --help 2>/dev/null) || true
  [[ $help == *database_url* ]]
}
