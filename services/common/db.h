/* db: PostgreSQL access for the whole project, over libpq.
 *
 * Every statement is parameterised. Hot statements are declared once as `static const
 * db_stmt_t` and prepared lazily, once per connection, the first time they run (and again after
 * a reconnect), so a steady-state call is one PQexecPrepared round trip. Every result status is
 * checked and mapped to the err.h vocabulary by SQLSTATE class:
 *   08xxx, 57P01-03, 40001, 40P01, 55P03 and a broken connection -> ERR_RETRY
 *   23505 -> ERR_DUPLICATE, other 23xxx -> ERR_CONFLICT, 22xxx -> ERR_INVALID,
 *   anything else -> ERR_INTERNAL.
 * Messages carry the server's primary message, never parameter values (they may be secrets).
 *
 * Test hook: PETSTORE_FAULT_DB_EXEC_FAIL_AT=N makes the Nth db_exec/db_exec_sql call of the
 * process fail with ERR_RETRY (before sending anything).
 *
 * Threading: a connection belongs to one thread at a time. */
#ifndef PETSTORE_DB_H
#define PETSTORE_DB_H

#include <stdint.h>

#include "err.h"

typedef struct db_conn db_conn_t;
typedef struct db_result db_result_t;

/* A statement prepared on first use. Declare as `static const`; name must be unique per
 * connection. */
typedef struct db_stmt {
    const char *name;
    const char *sql;
    int nparams;
} db_stmt_t;

/* Connects (conninfo: "host=... dbname=..." or a postgres:// URI). *out is the caller's to
 * db_close(). ERR_RETRY when the server is unreachable, ERR_CONFIG for bad credentials or a
 * missing database. */
int db_open(const char *conninfo, db_conn_t **out, err_t *e) PETSTORE_NODISCARD;

/* db_open with exponential backoff and jitter (100 ms doubling to 5 s) until it succeeds,
 * max_wait_ms passes (< 0: never), or should_stop() (may be NULL) returns non-zero. Each failure
 * is logged at warn level. Returns the last error when it gives up. */
int db_open_retry(const char *conninfo, int max_wait_ms, int (*should_stop)(void),
                  db_conn_t **out, err_t *e) PETSTORE_NODISCARD;

/* Closes and frees. NULL ok. */
void db_close(db_conn_t *db);

/* True while the connection is usable (not NULL, not broken). */
int db_ok(const db_conn_t *db);

/* Reads, without blocking, whatever the server sent while the connection sat idle, so a
 * connection the server has closed (a restart, an administrator's termination) is seen as
 * broken before it is used. Returns db_ok() afterwards. */
int db_check(db_conn_t *db);

/* Reconnects in place with the same conninfo; prepared statements are forgotten. */
int db_reconnect(db_conn_t *db, err_t *e) PETSTORE_NODISCARD;

/* Transactions. db_rollback never fails loudly: on a broken connection it just marks it. */
int db_begin(db_conn_t *db, err_t *e) PETSTORE_NODISCARD;
int db_commit(db_conn_t *db, err_t *e) PETSTORE_NODISCARD;
void db_rollback(db_conn_t *db);
int db_in_tx(const db_conn_t *db);
int db_savepoint(db_conn_t *db, const char *name, err_t *e) PETSTORE_NODISCARD;
int db_rollback_to(db_conn_t *db, const char *name, err_t *e) PETSTORE_NODISCARD;
int db_release(db_conn_t *db, const char *name, err_t *e) PETSTORE_NODISCARD;

/* Runs stmt with params (stmt->nparams text values; NULL entries are SQL NULL). *out (may be
 * NULL when the rows are not wanted) receives a result the caller frees with db_result_free. */
int db_exec(db_conn_t *db, const db_stmt_t *stmt, const char *const *params, db_result_t **out,
            err_t *e) PETSTORE_NODISCARD;

/* A one-off parameterised statement (PQexecParams); same contract as db_exec. */
int db_exec_sql(db_conn_t *db, const char *sql, int nparams, const char *const *params,
                db_result_t **out, err_t *e) PETSTORE_NODISCARD;

/* Runs a script of several statements without parameters (simple query protocol), for
 * migrations only. */
int db_exec_script(db_conn_t *db, const char *sql, err_t *e) PETSTORE_NODISCARD;

/* Results. Values are borrowed from the result ("" for SQL NULL). */
int db_rows(const db_result_t *r);
int db_cols(const db_result_t *r);
const char *db_value(const db_result_t *r, int row, int col);
int db_is_null(const db_result_t *r, int row, int col);
int db_col_index(const db_result_t *r, const char *name); /* -1 when absent */
long db_cmd_tuples(const db_result_t *r);                 /* rows affected */
int db_value_int64(const db_result_t *r, int row, int col, int64_t *out) PETSTORE_NODISCARD;
void db_result_free(db_result_t *r);

/* The err.h code of a SQLSTATE (NULL: ERR_RETRY, a lost connection). */
int db_sqlstate_to_err(const char *sqlstate);

/* For db_listen.c: the libpq connection. Borrowed. */
struct pg_conn *db__pg(db_conn_t *db);
void db__mark_broken(db_conn_t *db);

#endif
