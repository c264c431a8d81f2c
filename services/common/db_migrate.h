/* db_migrate: numbered SQL migrations, applied once, recorded, embedded in the binaries.
 *
 * Each component (the shared "runtime" tables, then each service) keeps migrations/NNN_name.sql;
 * the CMake function petstore_embed_migrations(TARGET COMPONENT DIR) compiles them into
 * `<ident>_migrations[]` and `<ident>_migrations_count` (ident: the component as a C
 * identifier, "order-saga" -> order_saga), declared in the generated header
 * "<component>_migrations.h", so a daemon carries its schema with it. db_migrate() applies the
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

/* Applies the migrations of list (borrowed, n entries, strictly increasing versions > 0) that
 * schema_migrations does not record for component, creating that table when missing; each in
 * its own transaction with its record (one that fails leaves nothing behind and stops the run).
 * Outside a transaction only. ERR_CONFIG when an applied migration's text changed or the list
 * is out of order; a failing migration's own error (its SQLSTATE kept) otherwise. Statements
 * that cannot run inside a transaction (CREATE INDEX CONCURRENTLY) are not supported. */
int db_migrate(db_conn_t *db, const char *component, const db_migration_t *list, size_t n,
               err_t *e) PETSTORE_NODISCARD;

/* The runtime's own migrations (services/common/migrations: outbox, inbox), embedded into
 * petstore_common under the component name "runtime". */
extern const db_migration_t runtime_migrations[];
extern const size_t runtime_migrations_count;

/* db_migrate(db, "runtime", runtime_migrations, runtime_migrations_count, e). */
int db_migrate_runtime(db_conn_t *db, err_t *e) PETSTORE_NODISCARD;

#endif
