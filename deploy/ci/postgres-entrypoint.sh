#!/bin/sh
# CI stand-in for the official postgres image's entrypoint, on the debootstrap base image (which
# has Debian's postgresql-15): initdb on an empty volume, password auth for the compose network,
# the same /docker-entrypoint-initdb.d scripts, then postgres in the foreground as PID 1.
# Honours POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD_FILE / POSTGRES_PASSWORD, PGDATA.
set -eu
export PATH="/usr/lib/postgresql/15/bin:$PATH"
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-postgres}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

mkdir -p "$PGDATA" /var/run/postgresql
chown -R postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then printf '%s' "$(cat "$POSTGRES_PASSWORD_FILE")" >"$pwfile"
  elif [ -n "${POSTGRES_PASSWORD:-}" ]; then printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
  else echo "postgres-entrypoint: set POSTGRES_PASSWORD_FILE or POSTGRES_PASSWORD" >&2; exit 1
  fi
  chown postgres "$pwfile"
  as_postgres initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 \
    --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    as_postgres psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)  echo "postgres-entrypoint: running $f"; as_postgres sh "$f" ;;
      *.sql) echo "postgres-entrypoint: running $f"; as_postgres psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f" ;;
      *) ;;
    esac
  done
  as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: initialised $PGDATA"
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
  postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
