/* relay: the claim/publish/mark cycle described in relay.h. */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "mq.h"
#include "mq_publish.h"
#include "outbox.h"
#include "svc_worker.h"

#define SQL_TEXT_(x) #x
#define SQL_TEXT(x) SQL_TEXT_(x)

/* The claim: lock what partitions we can, then take their oldest unsent rows behind the fence.
 * The CTE is materialised once, so each partition's lock is attempted exactly once. */
static const db_stmt_t claim_stmt = {
    .name = "relay_claim",
    .sql =
        "WITH held AS MATERIALIZED ("
        "  SELECT p FROM generate_series(0, " SQL_TEXT(
            OUTBOX_PARTITIONS) " - 1) AS p"
                               "  WHERE pg_try_advisory_xact_lock(" SQL_TEXT(
                                   OUTBOX_LOCK_NAMESPACE) ", p)) "
                                                          "SELECT o.id, o.exchange, o.routing_key, "
                                                          "o.message_id, o.type, o.correlation_id,"
                                                          "       o.app_id, o.headers, o.body,"
                                                          "       extract(epoch FROM "
                                                          "o.created_at)::bigint AS created_epoch, "
                                                          "o.attempts "
                                                          "FROM outbox o "
                                                          "WHERE o.sent_at IS NULL AND o.partition "
                                                          "IN (SELECT p FROM held)"
                                                          "  AND o.available_at <= now()"
                                                          "  AND o.txid < "
                                                          "pg_snapshot_xmin(pg_current_snapshot()) "
                                                          "ORDER BY o.id LIMIT $1 FOR UPDATE OF o "
                                                          "SKIP LOCKED",
    .nparams = 1,
};

static const db_stmt_t mark_sent_stmt = {
    .name = "relay_mark_sent",
    .sql = "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 "
           "WHERE id = ANY($1::bigint[])",
    .nparams = 1,
};

static const db_stmt_t mark_failed_stmt = {
    .name = "relay_mark_failed",
    .sql = "UPDATE outbox SET attempts = attempts + 1, last_error = $2,"
           "  available_at = now() + make_interval(secs => $3::int / 1000.0) "
           "WHERE id = $1",
    .nparams = 3,
};

static const db_stmt_t sweep_stmt = {
    .name = "relay_sweep",
    .sql = "DELETE FROM outbox WHERE id IN ("
           "  SELECT id FROM outbox WHERE sent_at < now() - make_interval(secs => $1::int)"
           "  ORDER BY sent_at LIMIT 10000)",
    .nparams = 1,
};

static const db_stmt_t backlog_stmt = {
    .name = "relay_backlog",
    .sql = "SELECT count(*) AS backlog,"
           "       coalesce(extract(epoch FROM now() - min(created_at)), 0) AS lag_seconds "
           "FROM outbox WHERE sent_at IS NULL",
    .nparams = 0,
};

static const double batch_bounds[] = {1, 5, 10, 50, 100, 250, 500, 1000, 2000};

typedef struct relay {
    int batch_size;
    int poll_ms;
    int retention_s;
    int confirm_timeout_ms;
    int exit_after_publish; /* test hook: simulate a crash between publish and commit */
    db_conn_t *db;          /* the supervisor's connections, borrowed for one step */
    mq_conn_t *mq;
    metrics_counter_t *m_published;
    metrics_counter_t *m_failed;
    metrics_counter_t *m_swept;
    metrics_histogram_t *m_batch;
    metrics_gauge_t *m_backlog;
    metrics_gauge_t *m_lag;
    time_t next_sweep;
    time_t next_backlog;
} relay_t;

int relay_retry_delay_ms(int attempts)
{
    long ms = 1000;
    for (int i = 0; i < attempts && ms < 300000; i++)
        ms *= 2;
    return ms < 300000 ? (int)ms : 300000;
}

/* Rows of one claim, converted for publishing. Strings borrow from the db_result_t. */
typedef struct batch {
    size_t n;
    mq_message_t *msgs;
    json_t **headers;
    int *status;
    const char **ids;
} batch_t;

static void batch_free(batch_t *b)
{
    for (size_t i = 0; b->headers != NULL && i < b->n; i++)
        json_decref(b->headers[i]);
    free(b->msgs);
    free(b->headers);
    free(b->status);
    free(b->ids);
    memset(b, 0, sizeof(*b));
}

static const char *nullable(db_result_t *res, int row, int col)
{
    return db_is_null(res, row, col) ? NULL : db_value(res, row, col);
}

/* Column positions of the claim's result, looked up by name once per claim. */
typedef struct claim_cols {
    int id, exchange, routing_key, message_id, type, correlation_id, app_id, headers, body,
        created_epoch, attempts;
} claim_cols_t;

static int claim_cols(const db_result_t *res, claim_cols_t *c, err_t *e)
{
    *c = (claim_cols_t){
        .id = db_col_index(res, "id"),
        .exchange = db_col_index(res, "exchange"),
        .routing_key = db_col_index(res, "routing_key"),
        .message_id = db_col_index(res, "message_id"),
        .type = db_col_index(res, "type"),
        .correlation_id = db_col_index(res, "correlation_id"),
        .app_id = db_col_index(res, "app_id"),
        .headers = db_col_index(res, "headers"),
        .body = db_col_index(res, "body"),
        .created_epoch = db_col_index(res, "created_epoch"),
        .attempts = db_col_index(res, "attempts"),
    };
    const int *all = &c->id;
    for (size_t i = 0; i < sizeof(*c) / sizeof(int); i++)
        if (all[i] < 0)
            return err_set(e, ERR_INTERNAL, "the claim's result lacks a column");
    return 0;
}

static int batch_from_rows(db_result_t *res, const claim_cols_t *col, batch_t *b, err_t *e)
{
    size_t n = (size_t)db_rows(res);
    b->n = n;
    b->msgs = calloc(n, sizeof(*b->msgs));
    b->headers = calloc(n, sizeof(*b->headers));
    b->status = calloc(n, sizeof(*b->status));
    b->ids = calloc(n, sizeof(*b->ids));
    if (b->msgs == NULL || b->headers == NULL || b->status == NULL || b->ids == NULL)
        return err_set(e, ERR_NOMEM, "out of memory for a batch of %zu", n);
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        json_error_t je;
        b->ids[i] = db_value(res, row, col->id);
        b->headers[i] = json_loads(db_value(res, row, col->headers), 0, &je);
        if (b->headers[i] != NULL && !json_is_object(b->headers[i])) {
            json_decref(b->headers[i]);
            b->headers[i] = NULL;
        }
        const char *body = db_value(res, row, col->body);
        b->msgs[i] = (mq_message_t){
            .exchange = db_value(res, row, col->exchange),
            .routing_key = db_value(res, row, col->routing_key),
            .message_id = db_value(res, row, col->message_id),
            .type = nullable(res, row, col->type),
            .correlation_id = nullable(res, row, col->correlation_id),
            .app_id = nullable(res, row, col->app_id),
            .content_type = "application/json",
            .timestamp = (uint64_t)strtoull(db_value(res, row, col->created_epoch), NULL, 10),
            .headers = b->headers[i],
            .body = body,
            .body_len = strlen(body),
        };
    }
    return 0;
}

/* Builds a PostgreSQL array literal {1,2,3} of the ids whose status is 0. */
static char *confirmed_ids(const batch_t *b, size_t *count)
{
    size_t cap = 2 + b->n * 21, len = 0;
    char *s = malloc(cap);
    if (s == NULL)
        return NULL;
    s[len++] = '{';
    *count = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->status[i] != 0)
            continue;
        int w = snprintf(s + len, cap - len, "%s%s", *count ? "," : "", b->ids[i]);
        if (w < 0 || (size_t)w >= cap - len) {
            free(s);
            return NULL;
        }
        len += (size_t)w;
        (*count)++;
    }
    s[len++] = '}';
    s[len] = '\0';
    return s;
}

/* One claim-publish-mark cycle. Returns the number of rows claimed (>= 0) or a negative error. */
static int relay_cycle(relay_t *r, err_t *e)
{
    db_result_t *res = NULL;
    batch_t b;
    char *ids = NULL;
    char limit[16];
    int rc;
    memset(&b, 0, sizeof(b));

    rc = db_begin(r->db, e);
    if (rc != 0)
        return rc;
    snprintf(limit, sizeof(limit), "%d", r->batch_size);
    const char *claim_params[] = {limit};
    rc = db_exec(r->db, &claim_stmt, claim_params, &res, e);
    if (rc != 0)
        goto fail;
    if (db_rows(res) == 0) {
        db_result_free(res);
        return db_commit(r->db, e);
    }
    claim_cols_t col;
    rc = claim_cols(res, &col, e);
    if (rc == 0)
        rc = batch_from_rows(res, &col, &b, e);
    if (rc != 0)
        goto fail;

    /* On failure some rows may have reached the broker; none is marked, all are published
     * again once the supervisor has reopened the broken connection. */
    rc = mq_publish_batch(r->mq, b.msgs, b.n, b.status, r->confirm_timeout_ms, e);
    if (rc != 0)
        goto fail;
    if (r->exit_after_publish) {
        log_warn(
            NULL, "relay.fault_injected",
            json_pack("{s:s,s:i}", "fault", "exit after publish, before commit", "rows", (int)b.n));
        _exit(137);
    }

    size_t sent = 0;
    ids = confirmed_ids(&b, &sent);
    if (ids == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory marking rows");
        goto fail;
    }
    if (sent > 0) {
        const char *mark_params[] = {ids};
        rc = db_exec(r->db, &mark_sent_stmt, mark_params, NULL, e);
        if (rc != 0)
            goto fail;
    }
    for (size_t i = 0; i < b.n; i++) {
        if (b.status[i] == 0)
            continue;
        int attempts = atoi(db_value(res, (int)i, col.attempts));
        char delay[16];
        char why[160];
        snprintf(delay, sizeof(delay), "%d", relay_retry_delay_ms(attempts));
        snprintf(why, sizeof(why), "%s publishing to exchange %s with routing key %s",
                 b.status[i] == ERR_UNROUTABLE ? "unroutable"
                 : b.status[i] == ERR_INVALID ? "not encodable (nested header or oversize property)"
                                              : "nacked by the broker",
                 b.msgs[i].exchange, b.msgs[i].routing_key);
        const char *fail_params[] = {b.ids[i], why, delay};
        rc = db_exec(r->db, &mark_failed_stmt, fail_params, NULL, e);
        if (rc != 0)
            goto fail;
        log_warn(NULL, "relay.not_published",
                 json_pack("{s:s,s:s,s:s,s:s?,s:i,s:s}", "outbox_id", b.ids[i], "message_id",
                           b.msgs[i].message_id, "error", why, "order_id", b.msgs[i].correlation_id,
                           "attempts", attempts + 1, "retry_in_ms", delay));
    }
    rc = db_commit(r->db, e);
    if (rc != 0)
        goto out;
    metrics_counter_add(r->m_published, (double)sent);
    metrics_counter_add(r->m_failed, (double)(b.n - sent));
    metrics_histogram_observe(r->m_batch, (double)b.n);
    log_debug(NULL, "relay.published", json_pack("{s:i,s:i}", "rows", (int)b.n, "sent", (int)sent));
    rc = (int)b.n;
    goto out;
fail:
    db_rollback(r->db);
out:
    free(ids);
    batch_free(&b);
    db_result_free(res);
    return rc;
}

static void relay_housekeeping(relay_t *r)
{
    time_t now = time(NULL);
    err_t e;
    err_clear(&e);
    if (now >= r->next_backlog) {
        db_result_t *res = NULL;
        if (db_exec(r->db, &backlog_stmt, NULL, &res, &e) == 0 && db_rows(res) == 1) {
            int backlog = db_col_index(res, "backlog"), lag = db_col_index(res, "lag_seconds");
            if (backlog >= 0 && lag >= 0) {
                metrics_gauge_set(r->m_backlog, atof(db_value(res, 0, backlog)));
                metrics_gauge_set(r->m_lag, atof(db_value(res, 0, lag)));
            }
        }
        db_result_free(res);
        r->next_backlog = now + 5;
    }
    if (now >= r->next_sweep) {
        char secs[16];
        snprintf(secs, sizeof(secs), "%d", r->retention_s);
        const char *params[] = {secs};
        db_result_t *res = NULL;
        if (db_exec(r->db, &sweep_stmt, params, &res, &e) == 0) {
            long deleted = db_cmd_tuples(res);
            metrics_counter_add(r->m_swept, (double)deleted);
            if (deleted > 0)
                log_info(NULL, "relay.swept", json_pack("{s:i}", "rows", (int)deleted));
            /* A full sweep means more is waiting: come back soon rather than in a minute. */
            r->next_sweep = now + (deleted >= 10000 ? 1 : 60);
        } else {
            log_err(LOG_WARN, NULL, "relay.sweep_failed", &e);
            r->next_sweep = now + 60;
        }
        db_result_free(res);
    }
}

static void relay_init(relay_t *r, svc_t *svc)
{
    const cfg_t *cfg = svc_cfg(svc);
    memset(r, 0, sizeof(*r));
    r->batch_size = cfg_int(cfg, "RELAY_BATCH_SIZE");
    r->poll_ms = cfg_int(cfg, "RELAY_POLL_MS");
    r->retention_s = cfg_int(cfg, "RELAY_RETENTION_S");
    r->confirm_timeout_ms = cfg_int(cfg, "RELAY_CONFIRM_TIMEOUT_MS");
    const char *fault = getenv("PETSTORE_FAULT_RELAY_EXIT_AFTER_PUBLISH");
    r->exit_after_publish = fault != NULL && strcmp(fault, "1") == 0;
    r->m_published = metrics_counter("petstore_outbox_published_total",
                                     "Outbox rows published and confirmed", NULL);
    r->m_failed = metrics_counter("petstore_outbox_publish_failures_total",
                                  "Outbox rows returned unroutable or nacked", NULL);
    r->m_swept = metrics_counter("petstore_outbox_swept_total",
                                 "Sent outbox rows deleted after the retention period", NULL);
    r->m_batch = metrics_histogram("petstore_outbox_batch_size", "Rows claimed per cycle", NULL,
                                   batch_bounds, sizeof(batch_bounds) / sizeof(batch_bounds[0]));
    r->m_backlog = metrics_gauge("petstore_outbox_backlog", "Unsent outbox rows", NULL);
    r->m_lag = metrics_gauge("petstore_outbox_lag_seconds", "Age of the oldest unsent row", NULL);
}

static int relay_on_mq_open(svc_worker_t *w, void *ctx, err_t *e)
{
    (void)ctx;
    return mq_confirm_select(svc_worker_mq(w), e);
}

/* One step of the supervisor: a cycle, then the housekeeping. More than nothing to do only when
 * the batch came back full: then more is waiting. */
static int relay_step(svc_worker_t *w, void *ctx, err_t *e)
{
    relay_t *r = ctx;
    r->db = svc_worker_db(w);
    r->mq = svc_worker_mq(w);
    int n = relay_cycle(r, e);
    if (n < 0)
        return n;
    relay_housekeeping(r);
    return n >= r->batch_size ? 1 : 0;
}

void *relay_run(void *arg)
{
    svc_t *svc = arg;
    relay_t r;
    relay_init(&r, svc);
    log_info(NULL, "relay.started",
             json_pack("{s:i,s:i,s:i}", "batch_size", r.batch_size, "poll_ms", r.poll_ms,
                       "retention_s", r.retention_s));
    svc_worker_def_t def = {
        .name = "outbox",
        .needs = SVC_WORKER_DB | SVC_WORKER_MQ,
        .listen = OUTBOX_CHANNEL,
        .idle_ms = r.poll_ms,
        .on_mq_open = relay_on_mq_open,
        .step = relay_step,
    };
    (void)svc_worker_run(svc, &def, &r);
    log_info(NULL, "relay.stopped", NULL);
    return NULL;
}
