#!/usr/bin/env bash
# Starts a private PostgreSQL cluster for the tests (installing Debian's `postgresql` when
# missing) and prints the URL of its `steward` database; `bash .ci/postgres.sh stop DIR`
# stops it. Usage: eval "$(bash .ci/postgres.sh start)" exports STEWARD_TEST_PG and PGDIR.
set -euo pipefail
if [ "${1:-start}" = stop ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  as_pg "$PGBIN/pg_ctl" -D "$2/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$2"
  exit 0
fi
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq postgresql) >/dev/null 2>&1 \
    || { echo "echo could not install postgresql >&2; exit 1"; exit 1; }
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
DIR=$(mktemp -d /tmp/steward-pg.XXXXXX)
chmod 755 "$DIR"
[ "$(id -u)" = 0 ] && chown postgres "$DIR"
PORT=$((40000 + RANDOM % 10000))
as_pg "$PGBIN/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null 2>&1
# fsync stays on: the tests rely on what a committed transaction promises.
as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=400" \
  -l "$DIR/log" -w start >/dev/null
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres steward
echo "export STEWARD_TEST_PG=postgres://postgres@127.0.0.1:$PORT/steward PGDIR=$DIR"
