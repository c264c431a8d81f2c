/* db_migrate: see db_migrate.h. The checksum is a SHA-256 of the migration text (libsodium).
 * Every transaction here first takes the same transaction-level advisory lock, so concurrent
 * migrators queue behind each other and each one re-reads schema_migrations under the lock:
 * whoever comes second finds the record and skips. */
#include "db_migrate.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "hex.h"
#include "log.h"

#define MIGRATE_LOCK_KEY 730100

static void checksum(const char *sql, char out[65])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)sql, strlen(sql));
    hex_encode(h, sizeof(h), out);
}

static int apply_one(db_conn_t *db, const char *component, const db_migration_t *m, err_t *e)
{
    char version[16], sum[65], lock[16];
    snprintf(version, sizeof(version), "%d", m->version);
    snprintf(lock, sizeof(lock), "%d", MIGRATE_LOCK_KEY);
    checksum(m->sql, sum);
    db_result_t *res = NULL;
    int rc = db_begin(db, e);
    if (rc != 0)
        return rc;
    const char *lp[] = {lock};
    rc = db_exec_sql(db, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lp, NULL, e);
    if (rc != 0)
        goto fail;
    const char *qp[] = {component, version};
    rc = db_exec_sql(db,
                     "SELECT checksum FROM schema_migrations WHERE component = $1 AND "
                     "version = $2::int",
                     2, qp, &res, e);
    if (rc != 0)
        goto fail;
    if (db_rows(res) == 1) {
        int same = strcmp(db_value(res, 0, 0), sum) == 0;
        db_result_free(res);
        db_rollback(db);
        if (!same)
            return err_set(e, ERR_CONFIG,
                           "migration %s %03d_%s was changed after it was applied; add a new "
                           "migration instead",
                           component, m->version, m->name);
        return 0;
    }
    db_result_free(res);
    res = NULL;
    err_t inner;
    err_clear(&inner);
    rc = db_exec_script(db, m->sql, &inner);
    if (rc != 0) {
        err_set(e, rc, "migration %s %03d_%s: %s", component, m->version, m->name, inner.msg);
        if (e != NULL)
            memcpy(e->sqlstate, inner.sqlstate, sizeof(e->sqlstate));
        goto fail;
    }
    const char *ip[] = {component, version, m->name, sum};
    rc = db_exec_sql(db,
                     "INSERT INTO schema_migrations (component, version, name, checksum) "
                     "VALUES ($1, $2::int, $3, $4)",
                     4, ip, NULL, e);
    if (rc != 0)
        goto fail;
    rc = db_commit(db, e);
    if (rc == 0)
        log_info(NULL, "db.migrated",
                 json_pack("{s:s,s:i,s:s}", "component", component, "version", m->version, "name",
                           m->name));
    return rc;
fail:
    db_result_free(res);
    db_rollback(db);
    return rc;
}

int db_migrate(db_conn_t *db, const char *component, const db_migration_t *list, size_t n, err_t *e)
{
    char lock[16];
    snprintf(lock, sizeof(lock), "%d", MIGRATE_LOCK_KEY);
    const char *lp[] = {lock};
    for (size_t i = 0; i < n; i++)
        if (list[i].sql == NULL || list[i].name == NULL || list[i].version <= 0 ||
            (i > 0 && list[i].version <= list[i - 1].version))
            return err_set(e, ERR_CONFIG, "migrations of %s: entry %zu is not in version order",
                           component, i);
    /* The bookkeeping table itself, created under the same lock as the migrations. */
    int rc = db_begin(db, e);
    if (rc == 0)
        rc = db_exec_sql(db, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lp, NULL, e);
    if (rc == 0)
        rc = db_exec_sql(db,
                         "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " component text NOT NULL, version int NOT NULL, name text NOT NULL,"
                         " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
                         " PRIMARY KEY (component, version))",
                         0, NULL, NULL, e);
    if (rc == 0)
        rc = db_commit(db, e);
    else
        db_rollback(db);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = apply_one(db, component, &list[i], e);
    return rc;
}

int db_migrate_runtime(db_conn_t *db, err_t *e)
{
    return db_migrate(db, "runtime", runtime_migrations, runtime_migrations_count, e);
}
