/* handlers: the saga's reaction to messages and timers.
 *
 * Every input, whatever brought it (a reply on saga.events, a customer's cancellation, a due
 * timer), goes through saga_apply: ask the machine, persist the step with the optimistic version
 * check (store.h), emit the commands it asks for and, when the status changed, a
 * saga.order_status_changed.v1 carrying the new version. All of it lands in the caller's
 * transaction, so a transition is written, sent and (for messages) recorded in the inbox
 * together or not at all.
 *
 * Replies for an unknown saga and inputs the machine ignores (duplicates with a new message id,
 * late replies, anything after the end) are logged and acknowledged: they change nothing. The
 * customer's cancellation is the exception: one that finds no saga is recorded, and the order's
 * order.placed, when it comes, starts the saga cancelled (handlers.c explains the locking).
 *
 * A version conflict (another consumer or the timer worker changed the saga between our load
 * and our save) is retried in place: reload, ask the machine again, save. It is never an error
 * of the message, so it never reaches the consumer's bounded retries that end in a dead letter
 * (svc_consumer.c); only after five conflicts in a row on one saga, within one transaction,
 * does the handler answer ERR_RETRY, and the consumer retries the batch, which reloads again.
 *
 * Threading: saga_app_t is created once before the threads start and is read-only afterwards
 * (its metrics are thread-safe); saga_apply runs on the caller's thread and connection. */
#ifndef PETSTORE_SAGA_HANDLERS_H
#define PETSTORE_SAGA_HANDLERS_H

#include <stddef.h>

#include "cfg.h"
#include "map.h"
#include "metrics.h"
#include "svc.h"

#define SAGA_APP_ID "order-saga"

/* Process-wide settings and metrics. */
typedef struct saga_app {
    saga_limits_t limits;
    int timer_poll_ms;
    int timer_batch;
    metrics_counter_t *m_transitions[SAGA_STATUS_COUNT]; /* entries into each status */
    metrics_counter_t *m_ignored;                        /* inputs the machine ignored */
    metrics_counter_t *m_unknown;                        /* replies for no known saga */
    metrics_counter_t *m_timeouts;                       /* timers fired */
    metrics_counter_t *m_conflicts;                      /* version conflicts retried in place */
    metrics_counter_t *m_early_cancels;  /* cancellations recorded before their order */
    metrics_counter_t *m_timer_failures; /* failed attempts at a timer, each set aside */
    metrics_counter_t *m_timers_parked;  /* timers parked after failing too often */
    metrics_gauge_t *m_parked;           /* sagas in NEEDS_OPERATOR */
    metrics_gauge_t *m_parked_timers;    /* timers parked now */
} saga_app_t;

/* The saga's SAGA_* variables (timeouts, retry bounds, timer poll), for cfg_load: the
 * orchestrator's and the saga tool's, which must arm timers as the orchestrator would. Static. */
extern const cfg_var_t saga_cfg_vars[];
extern const size_t saga_n_cfg_vars;

/* Reads the SAGA_* variables of cfg (borrowed) and registers the metrics. *out is new (caller
 * frees with saga_app_free). ERR_NOMEM. */
int saga_app_new(const cfg_t *cfg, saga_app_t **out, err_t *e) PETSTORE_NODISCARD;

/* Frees app; accepts NULL. */
void saga_app_free(saga_app_t *app);

/* Where an input came from. Borrowed. */
typedef struct saga_origin {
    const char *source;       /* the message type name, or "timer" */
    const char *message_id;   /* the message handled (step log, causation), or NULL */
    const trace_ctx_t *trace; /* the current span, or NULL to start a trace */
    const log_ctx_t *log;     /* trace ids for log lines, or NULL */
    const char *note; /* appended to the machine's why in the step log ("by alice: ..."), or NULL */
} saga_origin_t;

/* Applies in to row inside the caller's transaction: on success row holds the saga as saved
 * and *applied (if not NULL) says whether the machine applied the input (0: ignored, logged,
 * nothing written). ERR_CONFLICT when the saga changed since row was loaded (roll back and
 * retry); other codes from the store and svc_emit. A charge of nothing (a total of 0) is not
 * sent: the saga moves on as if the card had been charged. */
int saga_apply(db_conn_t *db, const saga_app_t *app, saga_row_t *row, const saga_input_t *in,
               const saga_origin_t *origin, int *applied, err_t *e) PETSTORE_NODISCARD;

/* The message routes of the saga.events consumer. Static. */
extern const svc_route_t saga_routes[];
extern const size_t saga_n_routes;

#endif
