#!/bin/bash
# PostgreSQL init script of compose.yaml (postgres:15 runs /docker-entrypoint-initdb.d/*.sh once,
# on an empty data directory): one login role and one database of the same name for each name
# in PETSTORE_DATABASES, the role's password from PG_<NAME>_PASSWORD, CONNECT revoked from
# PUBLIC; the launcher's pg_provision does the same. Passwords reach psql through the
# environment (\getenv) and psql quotes every name and value: nothing is pasted into SQL.
# Re-running it (e.g. by hand, to change a password) is safe.
petstore_init() (
    set -euo pipefail
    local db var
    for db in ${PETSTORE_DATABASES:?PETSTORE_DATABASES: the databases to create}; do
        var=PG_${db^^}_PASSWORD
        if [ -z "${!var:-}" ]; then
            echo "postgres-init: $var is not set: the password of database $db" >&2
            return 1
        fi
        PETSTORE_PG_PASSWORD=${!var} psql -X -q -v ON_ERROR_STOP=1 \
            --username "${POSTGRES_USER:-postgres}" --dbname postgres -v db="$db" <<'SQL'
\getenv pw PETSTORE_PG_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'db') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'db') \gexec
ALTER ROLE :"db" PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
REVOKE CONNECT ON DATABASE :"db" FROM PUBLIC;
SQL
        echo "postgres-init: database $db and its role are ready"
    done
)
# The image sources a script that is not executable: the subshell keeps our options out of it.
petstore_init
