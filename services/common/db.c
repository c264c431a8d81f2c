/* db: libpq wrapper (see db.h). Every PGresult is checked and cleared on every path, as
 * PostgreSQL's testlibpq.c does: a result either becomes a db_result_t the caller frees or is
 * PQclear'ed before the function returns.
 *
 * Invariants of a db_conn_t: `pg` is never NULL; `prepared` lists, by address, the statements
 * prepared on the current server session (emptied by db_reconnect, whose new session has none);
 * `broken` is set when the transport failed and cleared only by a successful reconnect.
 *
 * The retry on a broken connection (db.h) wraps each public call in with_retry: the call's
 * body runs as an "attempt" that reports into a private err_t, so the rule can look at the
 * server's SQLSTATE even when the caller passed no err_t, and the caller sees only the error of
 * the attempt that counted. Whether the call was outside a transaction is read before the first
 * attempt, from libpq's last known state: a connection that died unseen still says IDLE. */
#include "db.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "daemon.h"
#include "log.h"

struct db_conn {
    PGconn *pg;
    char *conninfo;
    const db_stmt_t **prepared;
    size_t n_prepared, cap_prepared;
    int broken;
    int retry_broken; /* db_opts_t.retry_broken */
};

struct db_result {
    PGresult *res;
};

/* ------------------------------------------------------------------ fault injection */

static atomic_long exec_calls;
static long fail_at;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

static void fault_init(void)
{
    const char *v = getenv("PETSTORE_FAULT_DB_EXEC_FAIL_AT");
    char *end = NULL;
    long n = v != NULL ? strtol(v, &end, 10) : 0;
    fail_at = v != NULL && end != v && *end == '\0' && n > 0 ? n : 0;
    if (v != NULL && fail_at > 0)
        log_warn(NULL, "db.fault_armed", json_pack("{s:i}", "fail_at", (int)fail_at));
}

/* True (and e filled) when this statement is the one the test hook fails. */
static int fault_hit(err_t *e)
{
    pthread_once(&fault_once, fault_init);
    if (fail_at == 0)
        return 0;
    if (atomic_fetch_add(&exec_calls, 1) + 1 != fail_at)
        return 0;
    err_set(e, ERR_RETRY, "injected fault: statement %ld fails", fail_at);
    return 1;
}

/* ------------------------------------------------------------------ error mapping */

int db_sqlstate_to_err(const char *s)
{
    static const struct {
        const char *prefix; /* a class ("08") or a full SQLSTATE */
        int code;
    } table[] = {
        {"08", ERR_RETRY},        /* connection exception */
        {"57P01", ERR_RETRY},     /* admin shutdown */
        {"57P02", ERR_RETRY},     /* crash shutdown */
        {"57P03", ERR_RETRY},     /* cannot connect now (starting up) */
        {"53300", ERR_RETRY},     /* too many connections */
        {"40001", ERR_RETRY},     /* serialization failure */
        {"40P01", ERR_RETRY},     /* deadlock detected */
        {"55P03", ERR_RETRY},     /* lock not available */
        {"23505", ERR_DUPLICATE}, /* unique violation */
        {"23", ERR_CONFLICT},     /* other integrity constraint violations */
        {"22", ERR_INVALID},      /* data exception: the input can never succeed */
    };
    if (s == NULL || s[0] == '\0')
        return ERR_RETRY;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strncmp(s, table[i].prefix, strlen(table[i].prefix)) == 0)
            return table[i].code;
    return ERR_INTERNAL;
}

/* First line of libpq's connection error, without the trailing newline. */
static void conn_message(PGconn *pg, char *out, size_t n)
{
    const char *m = pg != NULL ? PQerrorMessage(pg) : "out of memory";
    size_t len = strcspn(m, "\n");
    snprintf(out, n, "%.*s", (int)len, m);
}

/* Data exceptions (class 22) quote the rejected input: after ": " (invalid input syntax for
 * type uuid: "...") or between double quotes (value "..." is out of range for type integer).
 * The input may be a secret, so the copy in out keeps the text before the first ": " with every
 * quoted part replaced by "...". */
static void redact_input(const char *primary, char *out, size_t n)
{
    size_t len = strlen(primary), w = 0;
    const char *colon = strstr(primary, ": ");
    if (colon != NULL)
        len = (size_t)(colon - primary);
    int quoted = 0;
    for (size_t i = 0; i < len && w + 6 < n; i++) { /* room for "..." and the NUL */
        if (primary[i] == '"') {
            if (!quoted)
                w += (size_t)snprintf(out + w, n - w, "\"...\"");
            quoted = !quoted;
        } else if (!quoted) {
            out[w++] = primary[i];
        }
    }
    out[w] = '\0';
    if (colon != NULL)
        snprintf(out + w, n - w, ": (value withheld)");
}

/* Fills e from a failed result (NULL: none arrived) and returns its code. A lost connection is
 * marked broken and always ERR_RETRY, whatever the result said. Does not clear res. */
static int fail_from(db_conn_t *db, const PGresult *res, const char *what, err_t *e)
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
    char safe[200];
    if (state != NULL && strncmp(state, "22", 2) == 0) {
        redact_input(primary, safe, sizeof(safe));
        primary = safe;
    }
    err_set(e, code, "%s: %s", what, primary);
    if (e != NULL && state != NULL)
        snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", state);
    return code;
}

static int fail(db_conn_t *db, PGresult *res, const char *what, err_t *e)
{
    int code = fail_from(db, res, what, e);
    PQclear(res);
    return code;
}

static int ok_status(const PGresult *res)
{
    ExecStatusType s = PQresultStatus(res);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* Takes ownership of res: hands it to *out (when out is not NULL and it succeeded) or clears
 * it. */
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

/* ------------------------------------------------------------------ connections */

/* Server notices ("relation already exists, skipping") are routine: debug lines, not stderr. */
static void notice(void *arg, const char *message)
{
    (void)arg;
    if (log_enabled(LOG_DEBUG)) {
        size_t len = strcspn(message, "\n");
        log_debug(NULL, "db.notice", json_pack("{s:s%}", "notice", message, len));
    }
}

/* Whether a failed connection attempt will fail the same way until someone changes the
 * configuration (credentials, database name, conninfo syntax) rather than the server's state. */
static int is_config_failure(const char *msg)
{
    static const char *const patterns[] = {
        "authentication failed",  "does not exist",       "invalid connection option",
        "connection info string", "invalid URI",          "invalid integer value",
        "no password supplied",   "no pg_hba.conf entry", "invalid port number",
    };
    for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++)
        if (strstr(msg, patterns[i]) != NULL)
            return 1;
    return 0;
}

int db_open_ex(const char *conninfo, const db_opts_t *opts, db_conn_t **out, err_t *e)
{
    /* Keywords before dbname are defaults the conninfo (expanded from dbname) may override;
     * keywords after it override the conninfo. The encoding is not negotiable. The TCP
     * keepalives and user timeout bound how long a silent network can hold a call (db.h). */
    static const char *const tcp_keys[] = {"keepalives", "keepalives_idle", "keepalives_interval",
                                           "keepalives_count", "tcp_user_timeout"};
    static const char *const tcp_values[] = {"1", DB_KEEPALIVES_IDLE_S, DB_KEEPALIVES_INTERVAL_S,
                                             DB_KEEPALIVES_COUNT, DB_TCP_USER_TIMEOUT_MS};
    enum { N_TCP = sizeof(tcp_keys) / sizeof(tcp_keys[0]) };
    const char *keys[5 + N_TCP];
    const char *values[5 + N_TCP];
    char timeout[16];
    int k = 0;
    snprintf(timeout, sizeof(timeout), "%d",
             opts != NULL && opts->connect_timeout_s > 0 ? opts->connect_timeout_s : 5);
    keys[k] = "connect_timeout";
    values[k++] = timeout;
    for (size_t i = 0; i < N_TCP; i++) {
        keys[k] = tcp_keys[i];
        values[k++] = tcp_values[i];
    }
    if (opts != NULL && opts->application_name != NULL && opts->application_name[0] != '\0') {
        keys[k] = "application_name";
        values[k++] = opts->application_name;
    }
    keys[k] = "dbname";
    values[k++] = conninfo;
    keys[k] = "client_encoding";
    values[k++] = "UTF8";
    keys[k] = NULL;
    values[k] = NULL;

    PGconn *pg = PQconnectdbParams(keys, values, 1);
    if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
        char msg[200];
        conn_message(pg, msg, sizeof(msg));
        PQfinish(pg);
        int code = pg == NULL ? ERR_NOMEM : is_config_failure(msg) ? ERR_CONFIG : ERR_RETRY;
        return err_set(e, code, "database connection failed: %s", msg);
    }
    db_conn_t *db = calloc(1, sizeof(*db));
    if (db == NULL || (db->conninfo = strdup(conninfo)) == NULL) {
        free(db);
        PQfinish(pg);
        return err_set(e, ERR_NOMEM, "out of memory opening a database connection");
    }
    db->pg = pg;
    db->retry_broken = opts != NULL && opts->retry_broken;
    PQsetNoticeProcessor(pg, notice, NULL);
    *out = db;
    return 0;
}

int db_open(const char *conninfo, db_conn_t **out, err_t *e)
{
    return db_open_ex(conninfo, NULL, out, e);
}

static long elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

int db_open_retry_ex(const char *conninfo, const db_opts_t *opts, int max_wait_ms,
                     int (*should_stop)(void), db_conn_t **out, err_t *e)
{
    daemon_backoff_t b;
    struct timespec start;
    daemon_backoff_init(&b, 100, 5000);
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int rc = db_open_ex(conninfo, opts, out, e);
        if (rc == 0 || rc == ERR_NOMEM)
            return rc;
        log_err(LOG_WARN, NULL, "db.connect_failed", e);
        long delay = daemon_backoff_next_ms(&b);
        if (max_wait_ms >= 0) {
            long left = max_wait_ms - elapsed_ms(&start);
            if (left <= 0)
                return rc;
            if (delay > left)
                delay = left; /* one last attempt right at the deadline */
        }
        /* Sleep in short slices so a stop request is noticed quickly. */
        for (long slept = 0; slept < delay; slept += 100) {
            if (should_stop != NULL && should_stop())
                return rc;
            long slice = delay - slept < 100 ? delay - slept : 100;
            struct timespec ts = {0, slice * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (should_stop != NULL && should_stop())
            return rc;
    }
}

int db_open_retry(const char *conninfo, int max_wait_ms, int (*should_stop)(void), db_conn_t **out,
                  err_t *e)
{
    return db_open_retry_ex(conninfo, NULL, max_wait_ms, should_stop, out, e);
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
    /* A terminated session first sends its FATAL message, then closes: one read returns the
     * message (libpq hands it to the notice processor), the next one sees the end of file. So
     * read for as long as the socket has something, a few times at most. */
    for (int i = 0; i < 4; i++) {
        struct pollfd pfd = {.fd = PQsocket(db->pg), .events = POLLIN};
        if (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0)
            break;
        if (!PQconsumeInput(db->pg) || PQstatus(db->pg) != CONNECTION_OK) {
            db__mark_broken(db);
            break;
        }
        (void)PQisBusy(db->pg); /* parses what arrived */
    }
    return db_ok(db);
}

void db__mark_broken(db_conn_t *db) { db->broken = 1; }

struct pg_conn *db__pg(db_conn_t *db) { return db->pg; }

int db_reconnect(db_conn_t *db, err_t *e)
{
    PQreset(db->pg);
    db->n_prepared = 0; /* the new session has none */
    if (PQstatus(db->pg) == CONNECTION_OK && PQpipelineStatus(db->pg) != PQ_PIPELINE_OFF)
        (void)PQexitPipelineMode(db->pg); /* a batch cut short by the failure */
    if (PQstatus(db->pg) != CONNECTION_OK || PQpipelineStatus(db->pg) != PQ_PIPELINE_OFF) {
        char msg[200];
        conn_message(db->pg, msg, sizeof(msg));
        db->broken = 1;
        return err_set(e, ERR_RETRY, "database reconnect failed: %s", msg);
    }
    db->broken = 0;
    return 0;
}

/* ------------------------------------------------------------------ retry on a broken connection
 */

/* One try of a call; reports into e (never NULL) and returns 0 or its code. */
typedef int (*attempt_fn)(db_conn_t *db, void *arg, err_t *e);

/* Whether sql is a read by db.h's rule: its text begins with SELECT. */
static int sql_is_read(const char *sql)
{
    while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '(')
        sql++;
    if (strncasecmp(sql, "SELECT", 6) != 0)
        return 0;
    char next = sql[6]; /* at most the terminating NUL */
    return !((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') ||
             (next >= '0' && next <= '9') || next == '_');
}

/* After a failed first attempt whose error is first: 1, having reconnected, when the call is
 * to run once more by db.h's rule (the connection is broken, and the call is a read or the server
 * answered it with an error). */
static int retry_reconnect(db_conn_t *db, int read, const err_t *first)
{
    if (!db->broken || (!read && first->sqlstate[0] == '\0'))
        return 0;
    err_t e;
    err_clear(&e);
    if (db_reconnect(db, &e) != 0) {
        log_err(LOG_WARN, NULL, "db.reconnect_failed", &e);
        return 0;
    }
    log_warn(
        NULL, "db.reconnected",
        json_pack("{s:s,s:s,s:b}", "cause", first->msg, "sqlstate", first->sqlstate, "read", read));
    return 1;
}

/* Runs attempt, and once more on a fresh connection when db.h's rule allows it. read: running
 * the call twice has no effect twice. */
static int with_retry(db_conn_t *db, int read, attempt_fn attempt, void *arg, err_t *e)
{
    int armed = db->retry_broken && !db->broken && PQtransactionStatus(db->pg) == PQTRANS_IDLE;
    err_t got;
    err_clear(&got);
    int rc = attempt(db, arg, &got);
    if (rc != 0 && armed && retry_reconnect(db, read, &got)) {
        err_clear(&got);
        rc = attempt(db, arg, &got);
    }
    if (rc != 0 && e != NULL)
        *e = got;
    return rc;
}

/* ------------------------------------------------------------------ transactions */

static int command(db_conn_t *db, const char *sql, err_t *e)
{
    if (db->broken)
        return err_set(e, ERR_RETRY, "database connection is broken");
    return wrap(db, PQexec(db->pg, sql), sql, NULL, e);
}

static int begin_attempt(db_conn_t *db, void *arg, err_t *e)
{
    (void)arg;
    return command(db, "BEGIN", e);
}

/* BEGIN starts nothing on the server that a retry could repeat: it counts as a read. */
int db_begin(db_conn_t *db, err_t *e) { return with_retry(db, 1, begin_attempt, NULL, e); }

int db_commit(db_conn_t *db, err_t *e)
{
    if (db->broken)
        return err_set(e, ERR_RETRY, "database connection is broken");
    PGresult *res = PQexec(db->pg, "COMMIT");
    if (res == NULL || !ok_status(res))
        return fail(db, res, "COMMIT", e);
    /* COMMIT of an aborted transaction "succeeds" with the tag ROLLBACK: nothing was written. */
    int rolled_back = strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
    PQclear(res);
    if (rolled_back)
        return err_set(e, ERR_INTERNAL,
                       "COMMIT rolled back: an earlier statement of the transaction failed");
    return 0;
}

void db_rollback(db_conn_t *db)
{
    if (db == NULL || db->broken)
        return;
    PGresult *res = PQexec(db->pg, "ROLLBACK");
    if ((res == NULL || !ok_status(res)) && PQstatus(db->pg) != CONNECTION_OK)
        db__mark_broken(db);
    PQclear(res);
}

int db_in_tx(const db_conn_t *db)
{
    if (db == NULL || db->broken)
        return 0;
    PGTransactionStatusType s = PQtransactionStatus(db->pg);
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR;
}

static int savepoint_cmd(db_conn_t *db, const char *verb, const char *name, err_t *e)
{
    char sql[128];
    /* Savepoint names come from code, never from input; keep them to identifiers anyway. */
    if (name == NULL || name[0] == '\0' || strlen(name) > 63)
        return err_set(e, ERR_INTERNAL, "bad savepoint name");
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

/* ------------------------------------------------------------------ statements */

static int is_prepared(const db_conn_t *db, const db_stmt_t *stmt)
{
    for (size_t i = 0; i < db->n_prepared; i++)
        if (db->prepared[i] == stmt)
            return 1;
    return 0;
}

/* Makes room to remember n more prepared statements. */
static int reserve_prepared(db_conn_t *db, size_t n, err_t *e)
{
    if (db->n_prepared + n <= db->cap_prepared)
        return 0;
    size_t cap = db->cap_prepared ? db->cap_prepared : 16;
    while (cap < db->n_prepared + n)
        cap *= 2;
    const db_stmt_t **grown = realloc(db->prepared, cap * sizeof(*grown));
    if (grown == NULL)
        return err_set(e, ERR_NOMEM, "out of memory preparing a statement");
    db->prepared = grown;
    db->cap_prepared = cap;
    return 0;
}

static int prepare(db_conn_t *db, const db_stmt_t *stmt, err_t *e)
{
    int rc = reserve_prepared(db, 1, e);
    if (rc != 0)
        return rc;
    rc = wrap(db, PQprepare(db->pg, stmt->name, stmt->sql, stmt->nparams, NULL), stmt->name, NULL,
              e);
    if (rc == 0)
        db->prepared[db->n_prepared++] = stmt;
    return rc;
}

/* The arguments of one db_exec or db_exec_sql, for its attempts. */
typedef struct exec_args {
    const db_stmt_t *stmt; /* NULL for db_exec_sql */
    const char *sql;
    int nparams;
    const char *const *params;
    db_result_t **out;
} exec_args_t;

static int exec_attempt(db_conn_t *db, void *arg, err_t *e)
{
    const exec_args_t *a = arg;
    if (db->broken)
        return err_set(e, ERR_RETRY, "database connection is broken");
    if (a->stmt == NULL)
        return wrap(db, PQexecParams(db->pg, a->sql, a->nparams, NULL, a->params, NULL, NULL, 0),
                    "statement", a->out, e);
    if (!is_prepared(db, a->stmt)) {
        int rc = prepare(db, a->stmt, e);
        if (rc != 0)
            return rc;
    }
    return wrap(db, PQexecPrepared(db->pg, a->stmt->name, a->nparams, a->params, NULL, NULL, 0),
                a->stmt->name, a->out, e);
}

/* ------------------------------------------------------------------ SQL at debug level */

#define SQL_LOG_CUT 200 /* bytes of a statement's text or of one parameter in a db.query line */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* The parameters as a JSON array: secret ones hidden by the call site's mark, long ones cut.
 * The log redactor still runs over the result (card digits, blobs). */
static json_t *sql_params(int n, const char *const *params, unsigned secret)
{
    json_t *a = json_array();
    for (int i = 0; a != NULL && i < n; i++) {
        if (i < 32 && (secret & (1u << i)) != 0)
            json_array_append_new(a, json_string("[SECRET]"));
        else if (params == NULL || params[i] == NULL)
            json_array_append_new(a, json_null());
        else
            json_array_append_new(a,
                                  json_stringn_nocheck(params[i], strnlen(params[i], SQL_LOG_CUT)));
    }
    return a;
}

/* Adds rows (or the error) and the duration to f, then writes the db.query line. */
static void sql_log(json_t *f, double started, int rc, const err_t *e, db_result_t *const *out)
{
    if (f == NULL)
        return;
    json_object_set_new(f, "duration_ms", json_real(mono_ms() - started));
    if (rc == 0 && out != NULL && *out != NULL)
        json_object_set_new(f, "rows",
                            json_integer(PQntuples((*out)->res) > 0 ? PQntuples((*out)->res)
                                                                    : db_cmd_tuples(*out)));
    if (rc != 0) {
        json_object_set_new(f, "code", json_string(err_name(rc)));
        if (e != NULL && e->sqlstate[0] != '\0')
            json_object_set_new(f, "sqlstate", json_string(e->sqlstate));
    }
    log_debug(log_ctx_current(), "db.query", f);
}

/* The statement part of a db.query line, or NULL when debug lines are off (nothing built). */
static json_t *sql_fields(const db_stmt_t *stmt, const char *sql, int n, const char *const *params)
{
    if (!log_enabled(LOG_DEBUG))
        return NULL;
    json_t *f = json_object();
    if (f == NULL)
        return NULL;
    if (stmt != NULL)
        json_object_set_new(f, "statement", json_string(stmt->name));
    else
        json_object_set_new(f, "sql", json_stringn_nocheck(sql, strnlen(sql, SQL_LOG_CUT)));
    json_object_set_new(f, "params", sql_params(n, params, stmt != NULL ? stmt->secret : 0));
    return f;
}

static int exec_logged(db_conn_t *db, int read, exec_args_t *a, err_t *e)
{
    json_t *f = sql_fields(a->stmt, a->sql, a->nparams, a->params);
    if (f == NULL)
        return with_retry(db, read, exec_attempt, a, e);
    double started = mono_ms();
    err_t got;
    err_clear(&got);
    int rc = with_retry(db, read, exec_attempt, a, &got);
    sql_log(f, started, rc, &got, a->out);
    if (rc != 0 && e != NULL)
        *e = got;
    return rc;
}

int db_exec(db_conn_t *db, const db_stmt_t *stmt, const char *const *params, db_result_t **out,
            err_t *e)
{
    if (fault_hit(e))
        return ERR_RETRY;
    exec_args_t a = {stmt, stmt->sql, stmt->nparams, params, out};
    return exec_logged(db, sql_is_read(stmt->sql), &a, e);
}

int db_exec_idempotent(db_conn_t *db, const db_stmt_t *stmt, const char *const *params,
                       db_result_t **out, err_t *e)
{
    if (fault_hit(e))
        return ERR_RETRY;
    exec_args_t a = {stmt, stmt->sql, stmt->nparams, params, out};
    return exec_logged(db, 1, &a, e);
}

int db_exec_sql(db_conn_t *db, const char *sql, int nparams, const char *const *params,
                db_result_t **out, err_t *e)
{
    if (fault_hit(e))
        return ERR_RETRY;
    exec_args_t a = {NULL, sql, nparams, params, out};
    return exec_logged(db, sql_is_read(sql), &a, e);
}

int db_exec_script(db_conn_t *db, const char *sql, err_t *e)
{
    if (db->broken)
        return err_set(e, ERR_RETRY, "database connection is broken");
    return wrap(db, PQexec(db->pg, sql), "script", NULL, e);
}

/* ------------------------------------------------------------------ pipelined batches */

/* One message of a pipeline, in the order the server answers. */
typedef struct batch_op {
    const db_stmt_t *stmt;
    int item;      /* index of the batch item, or -1 for a Parse (prepare) */
    PGresult *res; /* the successful result, kept until the whole batch succeeded */
} batch_op_t;

/* The transport failed or libpq answered out of protocol: the session's state is unknown, so
 * the connection is unusable until reconnected. */
static int batch_broken(db_conn_t *db, const char *what, err_t *e)
{
    char msg[200];
    conn_message(db->pg, msg, sizeof(msg));
    db__mark_broken(db);
    return err_set(e, ERR_RETRY, "%s: %s", what, msg);
}

/* Queues the Parse messages and executions of items into ops. Returns 0 or an error before
 * anything was lost (the pipeline is discarded by the caller). */
static int batch_send(db_conn_t *db, const db_batch_item_t *items, size_t n, batch_op_t *ops,
                      size_t *nops, err_t *e)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const db_stmt_t *stmt = items[i].stmt;
        int queued = is_prepared(db, stmt);
        for (size_t j = 0; !queued && j < k; j++)
            queued = ops[j].item < 0 && ops[j].stmt == stmt;
        if (!queued) {
            if (!PQsendPrepare(db->pg, stmt->name, stmt->sql, stmt->nparams, NULL))
                return batch_broken(db, stmt->name, e);
            ops[k++] = (batch_op_t){.stmt = stmt, .item = -1};
        }
        if (!PQsendQueryPrepared(db->pg, stmt->name, stmt->nparams, items[i].params, NULL, NULL, 0))
            return batch_broken(db, stmt->name, e);
        ops[k++] = (batch_op_t){.stmt = stmt, .item = (int)i};
    }
    if (!PQpipelineSync(db->pg))
        return batch_broken(db, "pipeline sync", e);
    *nops = k;
    return 0;
}

/* Reads one result per op and the closing sync. The first error is kept in e and returned;
 * later ops report PGRES_PIPELINE_ABORTED and are skipped. Parses that succeeded are recorded
 * as prepared even when a later statement failed: the server keeps them. */
static int batch_receive(db_conn_t *db, batch_op_t *ops, size_t nops, err_t *e)
{
    int rc = 0;
    for (size_t i = 0; i < nops; i++) {
        PGresult *res = PQgetResult(db->pg);
        if (res == NULL)
            return batch_broken(db, ops[i].stmt->name, e);
        ExecStatusType s = PQresultStatus(res);
        if (ok_status(res) && ops[i].item < 0) {
            db->prepared[db->n_prepared++] = ops[i].stmt; /* room reserved by the caller */
        } else if (ok_status(res)) {
            ops[i].res = res;
            res = NULL;
        } else if (s != PGRES_PIPELINE_ABORTED && rc == 0) {
            rc = fail_from(db, res, ops[i].stmt->name, e);
        }
        PQclear(res);
        /* Each statement's results end with a NULL; one statement has one result. */
        int extra = 0;
        while (!db->broken && (res = PQgetResult(db->pg)) != NULL) {
            PQclear(res);
            if (++extra > 4)
                db__mark_broken(db);
        }
        if (db->broken)
            return rc != 0 ? rc : batch_broken(db, ops[i].stmt->name, e);
    }
    PGresult *sync = PQgetResult(db->pg);
    int synced = sync != NULL && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    if (!synced)
        return batch_broken(db, "pipeline sync", e);
    return rc;
}

/* The arguments of one db_exec_batch, for its attempts. */
typedef struct batch_args {
    const db_batch_item_t *items;
    size_t n;
} batch_args_t;

static int batch_attempt(db_conn_t *db, void *arg, err_t *e)
{
    const batch_args_t *a = arg;
    const db_batch_item_t *items = a->items;
    size_t n = a->n;
    batch_op_t *ops = NULL;
    size_t nops = 0;
    int rc = 0;
    if (db->broken)
        return err_set(e, ERR_RETRY, "database connection is broken");
    ops = calloc(2 * n, sizeof(*ops));
    if (ops == NULL)
        return err_set(e, ERR_NOMEM, "out of memory for a batch of %zu", n);
    rc = reserve_prepared(db, n, e);
    if (rc != 0) {
        free(ops);
        return rc;
    }
    if (!PQenterPipelineMode(db->pg)) {
        free(ops);
        return err_set(e, ERR_INTERNAL, "cannot enter pipeline mode: connection busy");
    }
    rc = batch_send(db, items, n, ops, &nops, e);
    if (rc == 0)
        rc = batch_receive(db, ops, nops, e);
    if (!db->broken && !PQexitPipelineMode(db->pg) && rc == 0)
        rc = batch_broken(db, "pipeline exit", e);
    db_result_t **wrapped = NULL;
    if (rc == 0 && (wrapped = calloc(n, sizeof(*wrapped))) == NULL)
        rc = err_set(e, ERR_NOMEM, "out of memory for batch results");
    for (size_t i = 0; rc == 0 && i < nops; i++) {
        if (ops[i].item < 0 || items[ops[i].item].out == NULL)
            continue;
        db_result_t *r = malloc(sizeof(*r));
        if (r == NULL) {
            rc = err_set(e, ERR_NOMEM, "out of memory for a result");
            break;
        }
        r->res = ops[i].res;
        ops[i].res = NULL;
        wrapped[ops[i].item] = r;
    }
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            if (items[i].out != NULL)
                *items[i].out = wrapped[i];
    } else {
        for (size_t i = 0; wrapped != NULL && i < n; i++)
            db_result_free(wrapped[i]);
    }
    for (size_t i = 0; i < nops; i++)
        PQclear(ops[i].res);
    free(wrapped);
    free(ops);
    return rc;
}

int db_exec_batch(db_conn_t *db, const db_batch_item_t *items, size_t n, err_t *e)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (fault_hit(e))
            return ERR_RETRY;
    int read = 1;
    for (size_t i = 0; i < n; i++)
        read = read && sql_is_read(items[i].stmt->sql);
    batch_args_t a = {items, n};
    if (!log_enabled(LOG_DEBUG))
        return with_retry(db, read, batch_attempt, &a, e);
    /* One db.query line per statement, each with the whole batch's duration (one round trip). */
    double started = mono_ms();
    err_t got;
    err_clear(&got);
    int rc = with_retry(db, read, batch_attempt, &a, &got);
    for (size_t i = 0; i < n; i++) {
        json_t *f = sql_fields(items[i].stmt, NULL, items[i].stmt->nparams, items[i].params);
        if (f != NULL)
            json_object_set_new(f, "batch", json_integer((json_int_t)n));
        sql_log(f, started, rc, &got, rc == 0 ? items[i].out : NULL);
    }
    if (rc != 0 && e != NULL)
        *e = got;
    return rc;
}

/* ------------------------------------------------------------------ results */

int db_rows(const db_result_t *r) { return PQntuples(r->res); }

int db_cols(const db_result_t *r) { return PQnfields(r->res); }

const char *db_value(const db_result_t *r, int row, int col)
{
    return PQgetvalue(r->res, row, col);
}

int db_is_null(const db_result_t *r, int row, int col) { return PQgetisnull(r->res, row, col); }

int db_col_index(const db_result_t *r, const char *name) { return PQfnumber(r->res, name); }

long db_cmd_tuples(const db_result_t *r) { return atol(PQcmdTuples(r->res)); }

int db_value_int64(const db_result_t *r, int row, int col, int64_t *out)
{
    if (PQgetisnull(r->res, row, col))
        return ERR_INVALID;
    const char *text = PQgetvalue(r->res, row, col);
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE)
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
