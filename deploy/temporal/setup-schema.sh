#!/bin/sh
# Creates Temporal's two PostgreSQL databases and brings their schemas up to this server
# version. Safe to run on every `docker-compose up`: existing databases are kept and only
# missing schema versions are applied. Runs in the temporalio/admin-tools image.
set -eu

sql() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" \
        -u "$POSTGRES_USER" --pw "$POSTGRES_PWD" "$@"
}

for db in temporal temporal_visibility; do
    case $db in
        temporal) versioned=/etc/temporal/schema/postgresql/v12/temporal/versioned ;;
        *) versioned=/etc/temporal/schema/postgresql/v12/visibility/versioned ;;
    esac
    echo "schema: $db"
    sql --db "$db" create-database || echo "schema: $db already exists"
    sql --db "$db" setup-schema -v 0.0
    sql --db "$db" update-schema -d "$versioned"
done
echo "schema: up to date"
