/* db_migrate: numbered SQL migrations, applied once, recorded, embedded in the binaries.
 *
 * Each component (the shared "runtime" tables, then each service) keeps migrations/NNN_name.sql;
 * the CMake function petstore_embed_migrations(TARGET COMPONENT DIR) compiles them into
 * `<component>_migrations[]`, so a daemon carries its schema with it. db_migrate() applies the
 * missing ones in order, each in its own transaction together with its record in
 * schema_migrations, under a transaction-level advisory lock so that several instances starting
 * at once migrate exactly once. An applied migration whose text changed is refused (ERR_CONFIG):
 * write a new migration instead. */
#ifndef PETSTORE_DB_MIGRATE_H
#define PETSTORE_DB_MIGRATE_H

#include <stddef.h>

#include "db.h"

typedef struct db_migration {
    int version;
    const char *name;
    const char *sql;
} db_migration_t;

/* list (borrowed) sorted by version. */
int db_migrate(db_conn_t *db, const char *component, const db_migration_t *list, size_t n,
               err_t *e) PETSTORE_NODISCARD;

/* The runtime's own tables (outbox, inbox). */
int db_migrate_runtime(db_conn_t *db, err_t *e) PETSTORE_NODISCARD;

#endif
