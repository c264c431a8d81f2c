/* timer: the worker loop described in timer.h.
 *
 * Why the claim locks the saga row as well as the timer: a consumer changing the same saga takes
 * the saga row first (its UPDATE) and the timer row second (its upsert or delete). If the worker
 * locked only the timer and then waited for the saga row, the two would deadlock. Claiming both
 * with SKIP LOCKED means the worker never waits: a saga a consumer holds is simply left for the
 * next poll, and a consumer that comes second waits for the worker's commit, finds the version
 * moved on and retries its batch. */
#include "timer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handlers.h"
#include "store.h"
#include "svc_worker.h"
#include "trace.h"

typedef struct worker {
    const saga_app_t *app;
    db_conn_t *db; /* the supervisor's connection, borrowed for one step */
    struct timespec next_gauge;
} worker_t;

static int transient(int rc)
{
    return rc == ERR_RETRY || rc == ERR_CONFLICT || rc == ERR_TIMEOUT || rc == ERR_NOMEM;
}

/* One batch in one transaction. Returns the number of timers fired (>= 0) or an error; on an
 * error caused by one saga, failed (SAGA_UUID_LEN + 1 bytes) names it. */
static int fire_due(worker_t *w, char *failed, err_t *e)
{
    saga_row_t *rows = NULL;
    size_t n = 0, i = 0;
    int fired = 0;
    int rc = db_begin(w->db, e);
    if (rc != 0)
        return rc;
    rc = saga_store_claim_due(w->db, w->app->timer_batch, &rows, &n, e);
    for (i = 0; rc == 0 && i < n; i++) {
        saga_row_t *row = &rows[i];
        saga_input_t in = {SAGA_EV_TIMEOUT, SAGA_REASON_NONE};
        /* A timeout starts a trace of its own: what it sends and logs shares it. */
        trace_ctx_t trace;
        trace_new_root(&trace);
        log_ctx_t lc = {.trace_id = trace.trace_id, .span_id = trace.span_id};
        saga_origin_t origin = {.source = "timer", .trace = &trace, .log = &lc};
        int applied = 0;
        rc = saga_apply(w->db, w->app, row, &in, &origin, &applied, e);
        if (rc == 0 && !applied)
            rc = saga_store_drop_timer(w->db, row->order_id, e); /* it meant nothing any more */
        if (rc != 0)
            memcpy(failed, row->order_id, SAGA_UUID_LEN + 1);
        else
            fired += applied;
    }
    for (size_t k = 0; k < n; k++)
        saga_row_clear(&rows[k]);
    free(rows);
    if (rc == 0)
        rc = db_commit(w->db, e);
    else
        db_rollback(w->db);
    if (rc != 0)
        return rc;
    metrics_counter_add(w->app->m_timeouts, (double)fired);
    return (int)n;
}

static void refresh_gauge(worker_t *w)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec < w->next_gauge.tv_sec ||
        (now.tv_sec == w->next_gauge.tv_sec && now.tv_nsec < w->next_gauge.tv_nsec))
        return;
    w->next_gauge = now;
    w->next_gauge.tv_sec += 1;
    long parked = 0;
    err_t e;
    err_clear(&e);
    if (saga_store_count_parked(w->db, &parked, &e) == 0)
        metrics_gauge_set(w->app->m_parked, (double)parked);
    else
        log_err(LOG_WARN, NULL, "saga.count_parked_failed", &e);
}

/* One step of the supervisor: fire what is due. A failure caused by one saga that a retry in a
 * moment does not cure postpones that saga's timer, so the others keep moving. */
static int timer_step(svc_worker_t *sw, void *ctx, err_t *e)
{
    worker_t *w = ctx;
    w->db = svc_worker_db(sw);
    char failed[SAGA_UUID_LEN + 1] = "";
    int n = fire_due(w, failed, e);
    if (n < 0) {
        log_ctx_t lc = {.order_id = failed[0] ? failed : NULL};
        log_err(LOG_WARN, &lc, "saga.timers_failed", e);
        if (db_ok(w->db) && failed[0] != '\0' && !transient(n)) {
            err_t pe;
            err_clear(&pe);
            int ms = w->app->limits.retry_max_ms;
            if (saga_store_postpone_timer(w->db, failed, ms, &pe) == 0)
                log_error(&lc, "saga.timer_postponed",
                          json_pack("{s:i,s:s}", "delay_ms", ms, "error", e->msg));
            else
                log_err(LOG_WARN, &lc, "saga.timer_postpone_failed", &pe);
        }
        return n;
    }
    refresh_gauge(w);
    return n >= w->app->timer_batch ? 1 : 0; /* a full batch: more may be due */
}

void *saga_timer_run(void *arg)
{
    svc_t *svc = arg;
    worker_t w;
    memset(&w, 0, sizeof(w));
    w.app = svc_app(svc);
    log_info(NULL, "saga.timers_started",
             json_pack("{s:i,s:i}", "poll_ms", w.app->timer_poll_ms, "batch", w.app->timer_batch));
    svc_worker_def_t def = {
        .name = "timers",
        .needs = SVC_WORKER_DB,
        .idle_ms = w.app->timer_poll_ms,
        .step = timer_step,
    };
    (void)svc_worker_run(svc, &def, &w);
    log_info(NULL, "saga.timers_stopped", NULL);
    return NULL;
}
