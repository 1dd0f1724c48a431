#!/bin/sh
# One role and one database per bibliodesk service, each database owned by its role and closed to
# the others. Run by PostgreSQL's entrypoint on the first start (empty data volume), as the
# postgres user over the local socket; idempotent, so it can be re-run by hand to rotate the
# passwords or after adding a service:
#   docker compose -f deploy/compose.yaml exec -u postgres postgres \
#       sh /docker-entrypoint-initdb.d/10-bibliodesk-databases.sh
#
# Passwords: the file <service>_db_password in $BIBLIODESK_DB_SECRETS_DIR (default /run/secrets),
# or else the variable <SERVICE>_DB_PASSWORD (e.g. PATRONS_DB_PASSWORD). A service with neither
# is an error: nothing here has a default password.
set -eu

secrets_dir=${BIBLIODESK_DB_SECRETS_DIR:-/run/secrets}
services=${BIBLIODESK_DB_SERVICES:-patrons requests reservations notify device_gateway}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

for svc in $services; do
  file="$secrets_dir/${svc}_db_password"
  var=$(echo "${svc}_DB_PASSWORD" | tr '[:lower:]' '[:upper:]')
  if [ -r "$file" ]; then
    # the file's content without a trailing newline
    printf '%s' "$(cat "$file")" >"$tmp"
  elif eval "[ -n \"\${$var:-}\" ]"; then
    eval "printf '%s' \"\$$var\"" >"$tmp"
  else
    echo "bibliodesk-init: no password for $svc: provide $file or \$$var" >&2
    exit 1
  fi
  # The password goes through a file and psql's \set `cat`, never on a command line.
  psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --quiet \
       --username "${POSTGRES_USER:-postgres}" --dbname postgres \
       -v svc="$svc" -v pwfile="$tmp" <<'SQL'
\set pw `cat :pwfile`
SELECT format('CREATE ROLE %I LOGIN', :'svc')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'svc') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L', :'svc', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I ENCODING ''UTF8''', :'svc', :'svc')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'svc') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'svc') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'svc', :'svc') \gexec
SQL
  echo "bibliodesk-init: role and database '$svc' ready"
done
