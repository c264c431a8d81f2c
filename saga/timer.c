/* timer: the worker loop described in timer.h.
 *
 * Why the claim locks the saga row as well as the timer: a consumer changing the same saga takes
 * the saga row first (its UPDATE) and the timer row second (its upsert or delete). If the worker
 * locked only the timer and then waited for the saga row, the two would deadlock. Claiming both
 * with SKIP LOCKED means the worker never waits: a saga a consumer holds is simply left for the
 * next poll, and a consumer that comes second waits for the worker's commit, finds the version
 * moved on and applies its input again to the saga as the worker left it (handlers.c).
 *
 * Why one savepoint per timer rather than one transaction per timer: the claim's locks must
 * outlive each timer's work (another instance would otherwise claim the next timers while we
 * handle the first), and a savepoint costs two short statements where a transaction per timer
 * would cost a claim per timer. A savepoint rolled back keeps the locks taken before it, so the
 * failure of one timer is recorded on its still-locked row in the same transaction.
 *
 * Why every failure counts, whatever its class: a timer handled under our own lock cannot meet
 * a version conflict, so a failure with the connection still up belongs to this timer (its row,
 * its step, the database's verdict on them). A deadlock or a serialization failure can be such
 * a failure too; it costs that timer one attempt and a short backoff, never a park, since the
 * bound is several attempts in a row. A lost connection is not the timer's fault: the batch is
 * abandoned and nothing is counted. */
#include "timer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handlers.h"
#include "store.h"
#include "svc_worker.h"
#include "trace.h"

/* The first postponement of a failing timer (doubled per failure, capped by retry_max_ms) and
 * the failures in a row after which it is parked. */
#define TIMER_FAILURE_BASE_MS 1000
#define TIMER_MAX_FAILURES 5
#define TIMER_SAVEPOINT "saga_timer"

typedef struct worker {
    const saga_app_t *app;
    db_conn_t *db; /* the supervisor's connection, borrowed for one step */
    struct timespec next_gauge;
} worker_t;

/* Applies the timeout to one claimed saga. 0 when fired (*fired = 1) or when the timer meant
 * nothing any more (dropped, *fired = 0). */
static int fire_one(worker_t *w, const char *order_id, int *fired, err_t *e)
{
    saga_row_t row;
    memset(&row, 0, sizeof(row));
    *fired = 0;
    int rc = saga_store_load(w->db, order_id, &row, e);
    if (rc == ERR_NOTFOUND)
        return saga_store_drop_timer(w->db, order_id, e);
    if (rc != 0)
        return rc;
    saga_input_t in = {SAGA_EV_TIMEOUT, SAGA_REASON_NONE};
    /* A timeout starts a trace of its own: what it sends and logs shares it. */
    trace_ctx_t trace;
    trace_new_root(&trace);
    log_ctx_t lc = {.trace_id = trace.trace_id, .span_id = trace.span_id};
    saga_origin_t origin = {.source = "timer", .trace = &trace, .log = &lc};
    int applied = 0;
    rc = saga_apply(w->db, w->app, &row, &in, &origin, &applied, e);
    if (rc == 0 && !applied)
        rc = saga_store_drop_timer(w->db, order_id, e); /* it meant nothing any more */
    if (rc == 0)
        *fired = applied;
    saga_row_clear(&row);
    return rc;
}

/* Sets one failed timer aside (timer.h), after its work was rolled back to the savepoint. */
static int set_aside(worker_t *w, const char *order_id, const err_t *cause, err_t *e)
{
    int failures = 0, parked = 0;
    int cap = w->app->limits.retry_max_ms;
    int rc = saga_store_timer_failed(w->db, order_id, cause->msg, TIMER_FAILURE_BASE_MS, cap,
                                     TIMER_MAX_FAILURES, &failures, &parked, e);
    if (rc != 0)
        return rc;
    metrics_counter_add(w->app->m_timer_failures, 1);
    log_ctx_t lc = {.order_id = order_id};
    json_t *fields =
        json_pack("{s:s,s:s,s:i,s:i}", "code", err_name(cause->code), "error", cause->msg,
                  "failures", failures, "max_failures", TIMER_MAX_FAILURES);
    if (parked) {
        metrics_counter_add(w->app->m_timers_parked, 1);
        log_error(&lc, "saga.timer_parked", fields);
    } else {
        log_warn(&lc, "saga.timer_failed", fields);
    }
    return 0;
}

/* One batch in one transaction. Returns the number of timers claimed (>= 0) or an error that
 * is not one timer's: the connection was lost, or the claim or a savepoint failed. */
static int fire_due(worker_t *w, err_t *e)
{
    char(*ids)[SAGA_UUID_LEN + 1] = NULL;
    size_t n = 0;
    int fired = 0;
    int rc = db_begin(w->db, e);
    if (rc != 0)
        return rc;
    rc = saga_store_claim_due(w->db, w->app->timer_batch, &ids, &n, e);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = db_savepoint(w->db, TIMER_SAVEPOINT, e);
        if (rc != 0)
            break;
        err_t te;
        err_clear(&te);
        int one = 0;
        int trc = fire_one(w, ids[i], &one, &te);
        if (trc == 0) {
            fired += one;
            rc = db_release(w->db, TIMER_SAVEPOINT, e);
        } else if (!db_ok(w->db)) {
            *e = te;
            rc = trc;
        } else {
            rc = db_rollback_to(w->db, TIMER_SAVEPOINT, e);
            if (rc == 0)
                rc = set_aside(w, ids[i], &te, e);
        }
    }
    free(ids);
    if (rc == 0)
        rc = db_commit(w->db, e);
    else
        db_rollback(w->db);
    if (rc != 0)
        return rc;
    metrics_counter_add(w->app->m_timeouts, (double)fired);
    return (int)n;
}

static void refresh_gauges(worker_t *w)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec < w->next_gauge.tv_sec ||
        (now.tv_sec == w->next_gauge.tv_sec && now.tv_nsec < w->next_gauge.tv_nsec))
        return;
    w->next_gauge = now;
    w->next_gauge.tv_sec += 1;
    long sagas = 0, timers = 0;
    err_t e;
    err_clear(&e);
    if (saga_store_count_parked(w->db, &sagas, &timers, &e) == 0) {
        metrics_gauge_set(w->app->m_parked, (double)sagas);
        metrics_gauge_set(w->app->m_parked_timers, (double)timers);
    } else {
        log_err(LOG_WARN, NULL, "saga.count_parked_failed", &e);
    }
}

/* One step of the supervisor: fire what is due. */
static int timer_step(svc_worker_t *sw, void *ctx, err_t *e)
{
    worker_t *w = ctx;
    w->db = svc_worker_db(sw);
    int n = fire_due(w, e);
    if (n < 0) {
        log_err(LOG_WARN, NULL, "saga.timers_failed", e);
        return n;
    }
    refresh_gauges(w);
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
