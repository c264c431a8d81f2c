/* db: PostgreSQL access for the whole project, over libpq.
 *
 * Every statement is parameterised. Hot statements are declared once as `static const
 * db_stmt_t` and prepared lazily, once per connection, the first time they run (and again after
 * a reconnect), so a steady-state call is one PQexecPrepared round trip; db_exec_batch sends
 * several in one round trip (libpq pipeline mode). Parameters and results travel in text
 * format. Every result status is checked, every PGresult cleared, and failures are mapped to the
 * err.h vocabulary by SQLSTATE (the table is db_sqlstate_to_err):
 *   class 08, 57P01-03, 53300, 40001, 40P01, 55P03 and a broken connection -> ERR_RETRY
 *   23505 -> ERR_DUPLICATE, other 23xxx -> ERR_CONFLICT, 22xxx -> ERR_INVALID,
 *   anything else -> ERR_INTERNAL.
 * err_t.sqlstate receives the SQLSTATE. Messages carry the server's primary message, never
 * parameter values (they may be secrets): for data exceptions (22xxx), whose primary message
 * can quote the offending input, everything after the first ": " is replaced.
 *
 * A connection that failed at the transport level is marked broken: every later call fails
 * fast with ERR_RETRY until db_reconnect() (or db_close + db_open). A COMMIT whose outcome was
 * lost with the connection is reported as ERR_RETRY: the work must be idempotent (inbox).
 *
 * Retry on a broken connection (opt-in, db_opts_t.retry_broken; the HTTP threads' pooled
 * connections use it). A pooled connection can die unseen between two requests: the server
 * restarted, or a load balancer or NAT between us forgot the connection, so nothing arrives that
 * db_check could read. The first statement then fails with the transport. With retry_broken, a
 * call that was made OUTSIDE a transaction (or BEGIN itself), and that failed because the
 * connection is broken (libpq reports CONNECTION_BAD afterwards), reconnects in place (the
 * prepared statements are prepared again on first use) and runs once more, provided running it
 * twice cannot do anything twice:
 *   - BEGIN, statements whose text begins with SELECT (reads: none of ours writes through a
 *     function) and statements run with db_exec_idempotent (their author made a second run
 *     harmless, e.g. an insert that finds the row its first run committed) are always repeated;
 *   - any other statement only when the server answered it with an error carrying a SQLSTATE
 *     (a failed autocommit statement committed nothing). A write that got no such answer may
 *     have committed before the connection died, so it stays ERR_RETRY for the caller to decide
 *     (the 503 tells the client to retry, with its idempotency key). libpq reports a session the
 *     server terminated while idle as a connection error without a SQLSTATE, so a write on it is
 *     left to the caller too;
 *   - a batch counts as a read when every statement in it is one.
 * A failure inside an open transaction is never retried: the transaction died with the
 * connection, and only the caller can run it again from its start. The connection stays marked
 * broken, so a caller that carries on regardless fails fast. The retry is done in db.c rather than
 * by each request handler because the handlers are not written to be re-run, and the rule above
 * needs what only db.c sees (the transaction state before the call, the server's answer). A
 * reconnect is logged (warn, "db.reconnected") and costs at most one connect_timeout.
 * Connections that carry session state of their own (LISTEN, session SETs: the workers') must not
 * use it: the new session would silently lack that state; they reconnect through their owner.
 *
 * A silent network. Every connection is opened with TCP keepalives and a TCP user timeout, as
 * defaults that the conninfo's own keywords (key=value or postgresql:// URI parameters) override,
 * like connect_timeout (5 s, db_opts_t):
 *   keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3
 *   tcp_user_timeout=10000 (milliseconds)
 * Without them a network that silently drops packets (a partition, a firewall, a dead middlebox
 * between a daemon and a database on another server) holds a call for as long as the kernel
 * retransmits (about 15 minutes with tcp_retries2=15), and an idle connection never notices:
 * the worker stays blocked, /readyz keeps saying ready and SIGTERM's drain cannot finish. With
 * them, the kernel aborts a connection whose sent data (a statement, a COMMIT, a keepalive probe)
 * stays unacknowledged for 10 s: the call in flight fails within about 10 s, an idle connection
 * about 11 s after it last heard from the server (probes at 5, 7, 9 and 11 s; Linux ends it at
 * the first unanswered probe past the user timeout), with ERR_RETRY and no SQLSTATE (a lost
 * connection, which the workers treat as transient), and the connection is marked broken. A
 * long-running statement is not affected: the server's kernel acknowledges the statement and
 * answers the keepalive probes while the backend works, and libpq sends nothing while it waits for
 * the result. The values are fixed here rather than configured: a DATABASE_URL that needs others
 * says so itself, e.g. "host=db1 ... tcp_user_timeout=30000" or
 * "postgresql://db1/payment?tcp_user_timeout=30000". Over a Unix-domain socket they are ignored
 * (nothing can drop packets there).
 *
 * SQL at debug level. When debug lines are enabled (log_enabled(LOG_DEBUG), checked before
 * anything is built, so the cost at info level is one branch), every db_exec, db_exec_idempotent,
 * db_exec_sql and db_exec_batch writes one "db.query" line: the statement's name (or, for a
 * one-off statement, its text cut to 200 bytes), its parameters (each cut to 200 bytes, SQL NULL
 * as null, a parameter marked in db_stmt_t.secret as "[SECRET]"), rows returned or affected,
 * duration_ms, and on failure code and sqlstate. The line carries the calling thread's log
 * context (log_ctx_current(): the consumer sets the message's order and trace around a
 * handler). The log redactor then masks what a call site forgot to mark: card-like digit runs
 * and long encoded blobs (log.h). One-off statements (db_exec_sql) have no secret mask: never
 * pass a secret through them. Transaction commands (BEGIN, COMMIT, savepoints) are not logged.
 *
 * Test hook: PETSTORE_FAULT_DB_EXEC_FAIL_AT=N (N >= 1) makes the Nth statement run through
 * db_exec, db_exec_sql or db_exec_batch in this process (counted from 1, all threads) fail with
 * ERR_RETRY before anything is sent. The variable is read once, at the first statement; unset
 * or 0 costs one predictable branch per statement.
 *
 * Threading: a connection belongs to one thread at a time; different connections are
 * independent. */
#ifndef PETSTORE_DB_H
#define PETSTORE_DB_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct db_conn db_conn_t;
typedef struct db_result db_result_t;

/* A statement prepared on first use. Declare as `static const`; the name must be unique in the
 * process (a second statement under the same name fails to prepare, loudly). secret marks the
 * parameters that must never be logged, even at debug level (DB_SECRET(1) | DB_SECRET(3): the
 * first and third): passwords and their hashes, token hashes, card hashes, sealed cards, message
 * bodies that may carry one. */
typedef struct db_stmt {
    const char *name;
    const char *sql;
    int nparams;
    unsigned secret; /* bit n-1: parameter $n is secret */
} db_stmt_t;

#define DB_SECRET(n) (1u << ((n)-1))

/* The TCP defaults of every connection (see "A silent network" above), as libpq keyword
 * values. */
#define DB_KEEPALIVES_IDLE_S "5"
#define DB_KEEPALIVES_INTERVAL_S "2"
#define DB_KEEPALIVES_COUNT "3"
#define DB_TCP_USER_TIMEOUT_MS "10000"

/* Connection options; a zeroed struct (or NULL) means the defaults. */
typedef struct db_opts {
    const char *application_name; /* shown in pg_stat_activity; the conninfo's own wins */
    int connect_timeout_s;        /* 0: 5 s; the conninfo's own wins */
    int retry_broken;             /* reconnect and retry once, outside transactions (above) */
} db_opts_t;

/* Connects (conninfo: "host=... dbname=..." or a postgres:// URI) with client_encoding UTF8.
 * *out (set only on success) is the caller's to db_close(). ERR_RETRY when the server is
 * unreachable or refuses for now, ERR_CONFIG for bad credentials, a missing database or a bad
 * conninfo. */
int db_open(const char *conninfo, db_conn_t **out, err_t *e) PETSTORE_NODISCARD;
int db_open_ex(const char *conninfo, const db_opts_t *opts, db_conn_t **out,
               err_t *e) PETSTORE_NODISCARD;

/* db_open with exponential backoff and jitter (100 ms doubling to 5 s) until it succeeds,
 * max_wait_ms passes (< 0: never), or should_stop() (may be NULL) returns non-zero, which is
 * checked at least every 100 ms. Each failure is logged at warn level. Returns the last error
 * when it gives up. */
int db_open_retry(const char *conninfo, int max_wait_ms, int (*should_stop)(void), db_conn_t **out,
                  err_t *e) PETSTORE_NODISCARD;
int db_open_retry_ex(const char *conninfo, const db_opts_t *opts, int max_wait_ms,
                     int (*should_stop)(void), db_conn_t **out, err_t *e) PETSTORE_NODISCARD;

/* Closes and frees; an open transaction is rolled back by the server. NULL ok. */
void db_close(db_conn_t *db);

/* True while the connection is usable (not NULL, not marked broken, libpq says OK). Local: no
 * round trip. */
int db_ok(const db_conn_t *db);

/* Reads, without blocking, whatever the server sent while the connection sat idle, so a
 * connection the server has closed (a restart, an administrator's termination) is seen as
 * broken before it is used. Returns db_ok() afterwards. */
int db_check(db_conn_t *db);

/* Reconnects in place with the same conninfo and options (PQreset). Prepared statements,
 * LISTEN registrations and any open transaction are gone: callers LISTEN again. */
int db_reconnect(db_conn_t *db, err_t *e) PETSTORE_NODISCARD;

/* Transactions. db_commit of a transaction that an earlier error aborted does not commit:
 * it returns ERR_INTERNAL ("rolled back"), since the caller ignored that error. db_rollback
 * never fails loudly: on a broken connection it just marks it (NULL ok). db_in_tx is true inside
 * a transaction block, including an aborted one (local: no round trip). Savepoint names are
 * identifiers chosen by code ([a-z0-9_]). */
int db_begin(db_conn_t *db, err_t *e) PETSTORE_NODISCARD;
int db_commit(db_conn_t *db, err_t *e) PETSTORE_NODISCARD;
void db_rollback(db_conn_t *db);
int db_in_tx(const db_conn_t *db);
int db_savepoint(db_conn_t *db, const char *name, err_t *e) PETSTORE_NODISCARD;
int db_rollback_to(db_conn_t *db, const char *name, err_t *e) PETSTORE_NODISCARD;
int db_release(db_conn_t *db, const char *name, err_t *e) PETSTORE_NODISCARD;

/* Runs stmt with params (stmt->nparams text values, borrowed; NULL entries are SQL NULL).
 * *out (out may be NULL when the rows are not wanted) receives, on success only, a result the
 * caller frees with db_result_free. */
int db_exec(db_conn_t *db, const db_stmt_t *stmt, const char *const *params, db_result_t **out,
            err_t *e) PETSTORE_NODISCARD;

/* db_exec for a write whose second run does what its first did, so that a connection with
 * retry_broken may repeat it after the connection broke (see the retry rule above). */
int db_exec_idempotent(db_conn_t *db, const db_stmt_t *stmt, const char *const *params,
                       db_result_t **out, err_t *e) PETSTORE_NODISCARD;

/* A one-off parameterised statement (PQexecParams, not prepared); same contract as db_exec. */
int db_exec_sql(db_conn_t *db, const char *sql, int nparams, const char *const *params,
                db_result_t **out, err_t *e) PETSTORE_NODISCARD;

/* One statement of a batch: out (may be NULL) as for db_exec. */
typedef struct db_batch_item {
    const db_stmt_t *stmt;
    const char *const *params;
    db_result_t **out;
} db_batch_item_t;

/* Runs items in order in ONE round trip (pipeline mode; statements not yet prepared on this
 * connection are prepared in the same trip). Outside a transaction the batch is one implicit
 * transaction: all of it commits or none. Inside one, it behaves like the same db_exec calls.
 * The first failing statement's error is returned, the statements after it are skipped, and no
 * *out is set (results of the statements before it are freed). For a handful of statements
 * with small results, not bulk loads (the connection stays in blocking mode). */
int db_exec_batch(db_conn_t *db, const db_batch_item_t *items, size_t n,
                  err_t *e) PETSTORE_NODISCARD;

/* Runs a script of several statements without parameters (simple query protocol), for
 * migrations only. Not counted by the fault hook. */
int db_exec_script(db_conn_t *db, const char *sql, err_t *e) PETSTORE_NODISCARD;

/* Results. row and col must be in range. Values are borrowed from the result ("" for SQL
 * NULL) and live until db_result_free. */
int db_rows(const db_result_t *r);
int db_cols(const db_result_t *r);
const char *db_value(const db_result_t *r, int row, int col);
int db_is_null(const db_result_t *r, int row, int col);
int db_col_index(const db_result_t *r, const char *name); /* -1 when absent */
long db_cmd_tuples(const db_result_t *r);                 /* rows affected */
/* Parses a bigint; ERR_INVALID (no err_t) for NULL, junk or out of range; *out set on success. */
int db_value_int64(const db_result_t *r, int row, int col, int64_t *out) PETSTORE_NODISCARD;
void db_result_free(db_result_t *r); /* NULL ok */

/* The err.h code of a SQLSTATE (NULL or "": ERR_RETRY, the connection was lost). Pure. */
int db_sqlstate_to_err(const char *sqlstate);

/* For db_listen.c only: the libpq connection (borrowed) and marking it broken. */
struct pg_conn *db__pg(db_conn_t *db);
void db__mark_broken(db_conn_t *db);

#endif
