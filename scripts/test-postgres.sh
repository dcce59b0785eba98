#!/usr/bin/env bash
# Start (once) a throw-away PostgreSQL server for the test suite and print its URL.
#
# Uses INTEROP_TEST_PG_URL as it is when set. Otherwise finds the Debian PostgreSQL binaries
# (installing the `postgresql` package when absent), initialises a cluster under ./var/pgtest
# owned by the `postgres` user, starts it on a Unix socket + 127.0.0.1:${INTEROP_TEST_PG_PORT:-54329},
# and creates the database `interop_test`. Idempotent: a running server is reused.
#
# Run as root from a checkout the `postgres` user cannot enter (a home folder, a `mktemp -d`
# folder), the cluster lives under /var/lib/postgresql/dho-interop-test/ instead, one per
# checkout and port, where its server user reaches it. INTEROP_TEST_PG_DATA names the folder.
set -euo pipefail

if [ -n "${INTEROP_TEST_PG_URL:-}" ]; then
  echo "$INTEROP_TEST_PG_URL"
  exit 0
fi

port="${INTEROP_TEST_PG_PORT:-54329}"
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${INTEROP_TEST_PG_DATA:-$root/var/pgtest}"
log="$data.log"

find_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

bin="$(find_bin)"
if [ -z "$bin" ]; then
  echo "installing PostgreSQL from Debian packages…" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  bin="$(find_bin)"
fi
if [ -z "$bin" ]; then
  echo "PostgreSQL binaries not found and could not be installed" >&2
  exit 1
fi

run_as_pg() {
  if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

mkdir -p "$root/var"
if [ "$(id -u)" = "0" ] && [ -z "${INTEROP_TEST_PG_DATA:-}" ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  if ! runuser -u postgres -- test -x "$root/var"; then
    # the server user cannot enter the checkout: keep the cluster where it can
    key="$(printf '%s:%s' "$root" "$port" | sha256sum | cut -c1-16)"
    base=/var/lib/postgresql/dho-interop-test
    mkdir -p "$base"
    chown postgres "$base"
    chmod 700 "$base"
    data="$base/$key"
    log="$data.log"
    echo "the postgres user cannot enter $root: cluster in $data" >&2
  fi
fi
if [ ! -s "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  [ "$(id -u)" = "0" ] && chown -R postgres "$data"
  run_as_pg "$bin/initdb" -D "$data" -A trust -U postgres --encoding=UTF8 --locale=C.UTF-8 >&2
fi
[ "$(id -u)" = "0" ] && touch "$log" && chown postgres "$log"

if ! run_as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  run_as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >&2
fi

for db in interop_test interop_bench; do
  if ! run_as_pg "$bin/psql" -h "$data" -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
    run_as_pg "$bin/createdb" -h "$data" -p "$port" -U postgres "$db"
  fi
done

echo "postgresql://postgres@127.0.0.1:$port/interop_test"
