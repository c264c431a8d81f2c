/* db: libpq wrapper (see db.h). Every PGresult is checked and cleared on every path. */
#include "db.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "log.h"

struct db_conn {
    PGconn *pg;
    char *conninfo;
    const db_stmt_t **prepared; /* statements prepared on this connection (by address) */
    size_t n_prepared, cap_prepared;
    int broken;
    int in_tx;
};

struct db_result {
    PGresult *res;
};

static atomic_long exec_calls;
static long fail_at = -1;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

static void fault_init(void)
{
    const char *v = getenv("PETSTORE_FAULT_DB_EXEC_FAIL_AT");
    fail_at = v != NULL ? atol(v) : -1;
}

static int fault_hit(err_t *e)
{
    pthread_once(&fault_once, fault_init);
    if (fail_at <= 0)
        return 0;
    if (atomic_fetch_add(&exec_calls, 1) + 1 != fail_at)
        return 0;
    err_set(e, ERR_RETRY, "injected fault: db_exec call %ld fails", fail_at);
    return 1;
}

int db_sqlstate_to_err(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return ERR_RETRY;
    if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
        strcmp(s, "57P03") == 0 || strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 ||
        strcmp(s, "55P03") == 0 || strcmp(s, "53300") == 0)
        return ERR_RETRY;
    if (strcmp(s, "23505") == 0)
        return ERR_DUPLICATE;
    if (strncmp(s, "23", 2) == 0)
        return ERR_CONFLICT;
    if (strncmp(s, "22", 2) == 0)
        return ERR_INVALID;
    return ERR_INTERNAL;
}

/* First line of libpq's connection error, without the trailing newline. */
static void conn_message(PGconn *pg, char *out, size_t n)
{
    const char *m = pg != NULL ? PQerrorMessage(pg) : "out of memory";
    size_t len = strcspn(m, "\n");
    snprintf(out, n, "%.*s", (int)len, m);
}

/* Server notices ("relation already exists, skipping") are routine: debug lines, not stderr. */
static void notice(void *arg, const char *message)
{
    (void)arg;
    if (log_enabled(LOG_DEBUG)) {
        size_t len = strcspn(message, "\n");
        log_debug(NULL, "db.notice", json_pack("{s:s%}", "notice", message, len));
    }
}

int db_open(const char *conninfo, db_conn_t **out, err_t *e)
{
    static const char *const keys[] = {"connect_timeout", "client_encoding", "dbname", NULL};
    const char *values[] = {"5", "UTF8", conninfo, NULL};
    PGconn *pg = PQconnectdbParams(keys, values, 1);
    if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
        char msg[200];
        conn_message(pg, msg, sizeof(msg));
        PQfinish(pg);
        int code = strstr(msg, "authentication failed") || strstr(msg, "does not exist") ||
                           strstr(msg, "invalid connection option")
                       ? ERR_CONFIG
                       : ERR_RETRY;
        return err_set(e, code, "database connection failed: %s", msg);
    }
    db_conn_t *db = calloc(1, sizeof(*db));
    if (db == NULL || (db->conninfo = strdup(conninfo)) == NULL) {
        free(db);
        PQfinish(pg);
        return err_set(e, ERR_NOMEM, "out of memory opening a database connection");
    }
    db->pg = pg;
    PQsetNoticeProcessor(pg, notice, NULL);
    *out = db;
    return 0;
}

int db_open_retry(const char *conninfo, int max_wait_ms, int (*should_stop)(void),
                  db_conn_t **out, err_t *e)
{
    daemon_backoff_t b;
    daemon_backoff_init(&b, 100, 5000);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int rc = db_open(conninfo, out, e);
        if (rc == 0 || rc == ERR_NOMEM)
            return rc;
        log_err(LOG_WARN, NULL, "db.connect_failed", e);
        int delay = daemon_backoff_next_ms(&b);
        clock_gettime(CLOCK_MONOTONIC, &now);
        long waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (max_wait_ms >= 0 && waited + delay > max_wait_ms)
            return rc;
        /* Sleep in short slices so a stop request is noticed quickly. */
        for (int slept = 0; slept < delay; slept += 100) {
            if (should_stop != NULL && should_stop())
                return rc;
            struct timespec ts = {0, (long)(delay - slept < 100 ? delay - slept : 100) * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (should_stop != NULL && should_stop())
            return rc;
    }
}

void db_close(db_conn_t *db)
{
    if (db == NULL)
        return;
    PQfinish(db->pg);
    free(db->prepared);
    free(db->conninfo);
    free(db);
}

int db_ok(const db_conn_t *db)
{
    return db != NULL && !db->broken && PQstatus(db->pg) == CONNECTION_OK;
}

int db_check(db_conn_t *db)
{
    if (db == NULL || db->broken)
        return 0;
    if (!PQconsumeInput(db->pg) || PQstatus(db->pg) != CONNECTION_OK)
        db__mark_broken(db);
    return db_ok(db);
}

void db__mark_broken(db_conn_t *db)
{
    db->broken = 1;
    db->in_tx = 0;
}

struct pg_conn *db__pg(db_conn_t *db)
{
    return db->pg;
}

int db_reconnect(db_conn_t *db, err_t *e)
{
    PQreset(db->pg);
    db->n_prepared = 0;
    db->in_tx = 0;
    if (PQstatus(db->pg) != CONNECTION_OK) {
        char msg[200];
        conn_message(db->pg, msg, sizeof(msg));
        db->broken = 1;
        return err_set(e, ERR_RETRY, "database reconnect failed: %s", msg);
    }
    db->broken = 0;
    return 0;
}

/* Maps a failed (or NULL) result into e, marks a lost connection broken, clears res. */
static int fail(db_conn_t *db, PGresult *res, const char *what, err_t *e)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char msg[200];
    if (primary == NULL) {
        conn_message(db->pg, msg, sizeof(msg));
        primary = msg;
    }
    int code = db_sqlstate_to_err(state);
    if (PQstatus(db->pg) != CONNECTION_OK) {
        db__mark_broken(db);
        code = ERR_RETRY;
    }
    err_set(e, code, "%s: %s", what, primary);
    if (e != NULL && state != NULL)
        snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", state);
    PQclear(res);
    return code;
}

static int ok_status(PGresult *res)
{
    ExecStatusType s = PQresultStatus(res);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

static int wrap(db_conn_t *db, PGresult *res, const char *what, db_result_t **out, err_t *e)
{
    if (res == NULL || !ok_status(res))
        return fail(db, res, what, e);
    if (out == NULL) {
        PQclear(res);
        return 0;
    }
    db_result_t *r = malloc(sizeof(*r));
    if (r == NULL) {
        PQclear(res);
        return err_set(e, ERR_NOMEM, "out of memory for a result");
    }
    r->res = res;
    *out = r;
    return 0;
}

static int command(db_conn_t *db, const char *sql, err_t *e)
{
    if (db->broken)
        return err_set(e, ERR_RETRY, "database connection is broken");
    return wrap(db, PQexec(db->pg, sql), sql, NULL, e);
}

int db_begin(db_conn_t *db, err_t *e)
{
    int rc = command(db, "BEGIN", e);
    db->in_tx = rc == 0;
    return rc;
}

int db_commit(db_conn_t *db, err_t *e)
{
    int rc = command(db, "COMMIT", e);
    db->in_tx = 0;
    return rc;
}

void db_rollback(db_conn_t *db)
{
    if (db == NULL)
        return;
    db->in_tx = 0;
    if (db->broken)
        return;
    PGresult *res = PQexec(db->pg, "ROLLBACK");
    if (res == NULL || !ok_status(res)) {
        if (PQstatus(db->pg) != CONNECTION_OK)
            db__mark_broken(db);
    }
    PQclear(res);
}

int db_in_tx(const db_conn_t *db)
{
    return db->in_tx;
}

static int savepoint_cmd(db_conn_t *db, const char *verb, const char *name, err_t *e)
{
    char sql[128];
    /* Savepoint names come from code, never from input; keep them to identifiers anyway. */
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return err_set(e, ERR_INTERNAL, "bad savepoint name");
    snprintf(sql, sizeof(sql), "%s %s", verb, name);
    return command(db, sql, e);
}

int db_savepoint(db_conn_t *db, const char *name, err_t *e)
{
    return savepoint_cmd(db, "SAVEPOINT", name, e);
}

int db_rollback_to(db_conn_t *db, const char *name, err_t *e)
{
    return savepoint_cmd(db, "ROLLBACK TO SAVEPOINT", name, e);
}

int db_release(db_conn_t *db, const char *name, err_t *e)
{
    return savepoint_cmd(db, "RELEASE SAVEPOINT", name, e);
}

static int is_prepared(const db_conn_t *db, const db_stmt_t *stmt)
{
    for (size_t i = 0; i < db->n_prepared; i++)
        if (db->prepared[i] == stmt)
            return 1;
    return 0;
}

static int prepare(db_conn_t *db, const db_stmt_t *stmt, err_t *e)
{
    if (db->n_prepared == db->cap_prepared) {
        size_t cap = db->cap_prepared ? db->cap_prepared * 2 : 16;
        const db_stmt_t **grown = realloc(db->prepared, cap * sizeof(*grown));
        if (grown == NULL)
            return err_set(e, ERR_NOMEM, "out of memory preparing %s", stmt->name);
        db->prepared = grown;
        db->cap_prepared = cap;
    }
    int rc = wrap(db, PQprepare(db->pg, stmt->name, stmt->sql, stmt->nparams, NULL), stmt->name,
                  NULL, e);
    if (rc == 0)
        db->prepared[db->n_prepared++] = stmt;
    return rc;
}

int db_exec(db_conn_t *db, const db_stmt_t *stmt, const char *const *params, db_result_t **out,
            err_t *e)
{
    if (fault_hit(e))
        return ERR_RETRY;
    if (db->broken)
        return err_set(e, ERR_RETRY, "database connection is broken");
    if (!is_prepared(db, stmt)) {
        int rc = prepare(db, stmt, e);
        if (rc != 0)
            return rc;
    }
    return wrap(db, PQexecPrepared(db->pg, stmt->name, stmt->nparams, params, NULL, NULL, 0),
                stmt->name, out, e);
}

int db_exec_sql(db_conn_t *db, const char *sql, int nparams, const char *const *params,
                db_result_t **out, err_t *e)
{
    if (fault_hit(e))
        return ERR_RETRY;
    if (db->broken)
        return err_set(e, ERR_RETRY, "database connection is broken");
    return wrap(db, PQexecParams(db->pg, sql, nparams, NULL, params, NULL, NULL, 0), "statement",
                out, e);
}

int db_exec_script(db_conn_t *db, const char *sql, err_t *e)
{
    if (db->broken)
        return err_set(e, ERR_RETRY, "database connection is broken");
    return wrap(db, PQexec(db->pg, sql), "script", NULL, e);
}

int db_rows(const db_result_t *r)
{
    return PQntuples(r->res);
}

int db_cols(const db_result_t *r)
{
    return PQnfields(r->res);
}

const char *db_value(const db_result_t *r, int row, int col)
{
    return PQgetvalue(r->res, row, col);
}

int db_is_null(const db_result_t *r, int row, int col)
{
    return PQgetisnull(r->res, row, col);
}

int db_col_index(const db_result_t *r, const char *name)
{
    return PQfnumber(r->res, name);
}

long db_cmd_tuples(const db_result_t *r)
{
    return atol(PQcmdTuples(r->res));
}

int db_value_int64(const db_result_t *r, int row, int col, int64_t *out)
{
    if (PQgetisnull(r->res, row, col))
        return ERR_INVALID;
    char *end = NULL;
    long long v = strtoll(PQgetvalue(r->res, row, col), &end, 10);
    if (end == NULL || *end != '\0')
        return ERR_INVALID;
    *out = (int64_t)v;
    return 0;
}

void db_result_free(db_result_t *r)
{
    if (r == NULL)
        return;
    PQclear(r->res);
    free(r);
}
