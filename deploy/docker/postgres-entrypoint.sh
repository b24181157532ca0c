#!/bin/sh
# Entrypoint of the locally built Postgres image (deploy/docker/local-images.Dockerfile),
# keeping the upstream postgres image's contract that docker-compose.yml relies on: on
# the first start with an empty $PGDATA, a cluster owned by POSTGRES_USER with password
# authentication (scram-sha-256) from other hosts and database POSTGRES_DB; later starts
# use the data as it is (a conversation store: nothing here ever rewrites it).
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"

if [ "${1:-}" != postgres ]; then
  exec "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: POSTGRES_PASSWORD is required for the first start" >&2
    exit 1
  fi
  pwfile="$(mktemp)"
  trap 'rm -f "$pwfile"' EXIT
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions >/dev/null
  rm -f "$pwfile"
  # Other containers reach it over the compose network.
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  # The database, over the local socket only, before anyone else can connect.
  pg_ctl --pgdata="$PGDATA" --silent --wait -o "-c listen_addresses=''" start
  if [ "$POSTGRES_DB" != postgres ]; then
    createdb --username="$POSTGRES_USER" --owner="$POSTGRES_USER" "$POSTGRES_DB"
  fi
  pg_ctl --pgdata="$PGDATA" --silent --wait -m fast stop
  echo "postgres-entrypoint: initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
fi

shift
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
