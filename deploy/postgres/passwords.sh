#!/bin/sh
# PostgreSQL for the docker-compose stack, after init.sql (mounted as
# /docker-entrypoint-initdb.d/20-passwords.sh; runs once, on the first start of an empty
# data volume, on a server that listens on its socket only).
#
# Gives each login role its password from the compose secret /run/secrets/db_<role>_password
# (written by deploy/make_secrets.py), so whatever password init.sql created the role with
# is never usable. psql's :'password' quotes the value as an SQL literal.
set -eu

for file in /run/secrets/db_*_password; do
    role=${file#/run/secrets/db_}
    role=${role%_password}
    password=$(cat "$file")
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v role="$role" -v password="$password" <<'SQL'
ALTER ROLE :"role" WITH LOGIN PASSWORD :'password';
SQL
done
