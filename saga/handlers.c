/* handlers: saga_apply and the message routes (see handlers.h).
 *
 * The order of writes inside one transition is fixed: the saga row first (its UPDATE takes the
 * row lock and checks the version, so a concurrent writer makes us fail before anything else is
 * written), then the outgoing commands, then the status change. Everything shares the caller's
 * transaction; nothing here commits.
 *
 * Version conflicts are retried in place (apply_fresh). That is safe inside the consumer's
 * transaction because a conflicting save wrote nothing (its UPDATE matched no row, and every
 * other write of the step hangs off that UPDATE), and under READ COMMITTED the reload is a new
 * statement that sees the version the other writer committed. CONFLICT_TRIES conflicts in a
 * row become ERR_RETRY: a batch retry, never a dead letter, since no message is at fault.
 *
 * A cancellation before its order. The storefront accepts a cancel while the order is PENDING,
 * and its order.cancel_requested can overtake the order.placed on the way (two outbox rows, a
 * redelivery, a relay that holds one row back). Acknowledging it as "unknown order" would let
 * the order complete although the customer was told 202. So a cancellation that finds no saga
 * is recorded in saga_early_cancels, and order.placed, which creates the saga, takes that record
 * in the same transaction and feeds CANCEL instead of PLACED to the new PENDING saga: the
 * machine's PENDING --cancel--> CANCELLED row (nothing reserved, nothing charged; the
 * storefront hears CANCELLED / CANCELLED_BY_USER through saga.order_status_changed as for any
 * cancellation). A recorded cancellation whose user is not the order's is not applied (logged).
 *
 * Two consumers (or two instances) may handle the order.placed and the cancellation at the same
 * moment, and under READ COMMITTED neither would see the other's uncommitted row: the order
 * would start normally and the record would stay behind, the cancel lost. Both paths therefore
 * take one transaction-scoped advisory lock per order (saga_store_lock_order) before deciding:
 * order.placed takes it before creating the saga and taking the record; the cancellation takes
 * it after its first load found nothing, then loads again. Whoever comes second waits for the
 * first's commit and sees its row: either the saga (apply CANCEL to it as usual) or the record
 * (start cancelled).
 *
 * Metrics are counted when a step is applied, inside the transaction: a batch rolled back and
 * retried (a version conflict, a lost connection) can count a transition twice. That is rare
 * and the counters are for trends; the step log is the record. */
#include "handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

const cfg_var_t saga_cfg_vars[] = {
    {.name = "SAGA_RESERVE_TIMEOUT_MS",
     .kind = CFG_MS,
     .default_value = "5000",
     .min = 10,
     .max = 86400000,
     .help = "how long the saga waits for the reservation"},
    {.name = "SAGA_PAY_TIMEOUT_MS",
     .kind = CFG_MS,
     .default_value = "5000",
     .min = 10,
     .max = 86400000,
     .help = "how long the saga waits for the payment (also the charge's expires_at)"},
    {.name = "SAGA_CONFIRM_TIMEOUT_MS",
     .kind = CFG_MS,
     .default_value = "5000",
     .min = 10,
     .max = 86400000,
     .help = "first wait for the sale confirmation before sending it again"},
    {.name = "SAGA_COMPENSATE_TIMEOUT_MS",
     .kind = CFG_MS,
     .default_value = "5000",
     .min = 10,
     .max = 86400000,
     .help = "first wait for compensations before sending them again"},
    {.name = "SAGA_RETRY_MAX_MS",
     .kind = CFG_MS,
     .default_value = "60000",
     .min = 10,
     .max = 86400000,
     .help = "cap of the exponential backoff between retries"},
    {.name = "SAGA_MAX_COMPENSATION_TRIES",
     .kind = CFG_INT,
     .default_value = "5",
     .min = 1,
     .max = 1000,
     .help = "compensation timeouts before the saga parks in NEEDS_OPERATOR"},
    {.name = "SAGA_MAX_CONFIRM_TRIES",
     .kind = CFG_INT,
     .default_value = "10",
     .min = 1,
     .max = 1000,
     .help = "sale confirmation timeouts before the saga parks in NEEDS_OPERATOR"},
    {.name = "SAGA_TIMER_POLL_MS",
     .kind = CFG_MS,
     .default_value = "200",
     .min = 10,
     .max = 60000,
     .help = "how often the timer worker looks for due timers"},
};

const size_t saga_n_cfg_vars = sizeof(saga_cfg_vars) / sizeof(saga_cfg_vars[0]);

int saga_app_new(const cfg_t *cfg, saga_app_t **out, err_t *e)
{
    saga_app_t *app = calloc(1, sizeof(*app));
    if (app == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    saga_limits_default(&app->limits);
    app->limits.reserve_timeout_ms = cfg_int(cfg, "SAGA_RESERVE_TIMEOUT_MS");
    app->limits.pay_timeout_ms = cfg_int(cfg, "SAGA_PAY_TIMEOUT_MS");
    app->limits.confirm_timeout_ms = cfg_int(cfg, "SAGA_CONFIRM_TIMEOUT_MS");
    app->limits.compensate_timeout_ms = cfg_int(cfg, "SAGA_COMPENSATE_TIMEOUT_MS");
    app->limits.retry_max_ms = cfg_int(cfg, "SAGA_RETRY_MAX_MS");
    app->limits.max_compensation_tries = cfg_int(cfg, "SAGA_MAX_COMPENSATION_TRIES");
    app->limits.max_confirm_tries = cfg_int(cfg, "SAGA_MAX_CONFIRM_TRIES");
    app->timer_poll_ms = cfg_int(cfg, "SAGA_TIMER_POLL_MS");
    app->timer_batch = 100;

    const char *help = "Saga steps that moved an order into this status";
    for (int s = 0; s < SAGA_STATUS_COUNT; s++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "status=\"%s\"", saga_status_name((saga_status_t)s));
        app->m_transitions[s] = metrics_counter("petstore_saga_transitions_total", help, labels);
    }
    app->m_ignored = metrics_counter("petstore_saga_ignored_total",
                                     "Inputs that did not apply to the saga's state", NULL);
    app->m_unknown = metrics_counter("petstore_saga_unknown_order_total",
                                     "Replies for an order the saga does not know", NULL);
    app->m_timeouts = metrics_counter("petstore_saga_timeouts_total", "Saga timers fired", NULL);
    app->m_conflicts = metrics_counter(
        "petstore_saga_version_conflicts_total",
        "Saga steps applied again because the saga changed since it was loaded", NULL);
    app->m_early_cancels =
        metrics_counter("petstore_saga_early_cancels_total",
                        "Cancellations recorded before their order reached the saga", NULL);
    app->m_timer_failures = metrics_counter(
        "petstore_saga_timer_failures_total",
        "Failed attempts at handling a saga timer (each set aside with a backoff)", NULL);
    app->m_timers_parked = metrics_counter("petstore_saga_timers_parked_total",
                                           "Saga timers parked after failing too often", NULL);
    app->m_parked = metrics_gauge("petstore_saga_needs_operator",
                                  "Sagas parked in NEEDS_OPERATOR, waiting for an operator", NULL);
    app->m_parked_timers = metrics_gauge("petstore_saga_timers_parked",
                                         "Saga timers parked now, waiting for an operator", NULL);
    *out = app;
    return 0;
}

void saga_app_free(saga_app_t *app) { free(app); }

/* Sends the commands (SAGA_CMD_* bits, in bit order) and the status change of an applied step,
 * in one statement. */
static int send_step(db_conn_t *db, const saga_row_t *row, unsigned commands, int status_changed,
                     const saga_saved_t *saved, const svc_cause_t *cause, err_t *e)
{
    svc_emit_item_t items[SVC_EMIT_MAX];
    json_t *payloads[SVC_EMIT_MAX];
    size_t n = 0;
    int rc = 0;
    for (unsigned bit = 1; rc == 0 && bit != 0 && bit <= commands; bit <<= 1) {
        if ((commands & bit) == 0)
            continue;
        if (n + 1 >= SVC_EMIT_MAX) {
            rc = err_set(e, ERR_INTERNAL, "a saga step with more commands than %d", SVC_EMIT_MAX);
            break;
        }
        payloads[n] = NULL;
        rc = saga_command_payload(bit, row, saved->expires_at, &payloads[n], e);
        items[n] = (svc_emit_item_t){saga_command_type(bit), payloads[n]};
        n++;
    }
    if (rc == 0 && status_changed) {
        payloads[n] = NULL;
        rc = saga_status_payload(row, saved->now, &payloads[n], e);
        items[n] = (svc_emit_item_t){MSG_SAGA_ORDER_STATUS_CHANGED_V1, payloads[n]};
        n++;
    }
    if (rc == 0)
        rc = svc_emit_many(db, cause, items, n, e);
    for (size_t i = 0; i < n; i++)
        json_decref(payloads[i]);
    return rc;
}

static json_t *command_names(unsigned commands)
{
    json_t *names = json_array();
    for (unsigned bit = 1; names != NULL && bit != 0 && bit <= commands; bit <<= 1) {
        if (commands & bit)
            json_array_append_new(names, json_string(msg_type_info(saga_command_type(bit))->name));
    }
    return names;
}

int saga_apply(db_conn_t *db, const saga_app_t *app, saga_row_t *row, const saga_input_t *in,
               const saga_origin_t *origin, int *applied, err_t *e)
{
    log_ctx_t lc = {0};
    if (origin->log != NULL)
        lc = *origin->log;
    lc.order_id = row->order_id;
    svc_cause_t cause = {
        .app_id = SAGA_APP_ID,
        .causation_id = origin->message_id,
        .correlation_id = row->order_id,
        .trace = origin->trace,
    };
    saga_input_t input = *in;
    if (applied != NULL)
        *applied = 0;

    /* At most two rounds: the second only for an order with nothing to pay. */
    for (int round = 0; round < 2; round++) {
        saga_output_t out;
        saga_step(&row->state, &input, &app->limits, &out);
        if (out.outcome == SAGA_IGNORED) {
            metrics_counter_add(app->m_ignored, 1);
            log_info(&lc, "saga.ignored",
                     json_pack("{s:s,s:s,s:s,s:i,s:s}", "source", origin->source, "event",
                               saga_event_name(input.event), "status",
                               saga_status_name(row->state.status), "version", row->version, "why",
                               out.why));
            return 0;
        }

        unsigned commands = out.commands;
        int free_order = (commands & SAGA_CMD_CHARGE) != 0 && row->total_cents == 0;
        if (free_order)
            commands &= ~(unsigned)SAGA_CMD_CHARGE;

        char why[512];
        if (origin->note != NULL)
            snprintf(why, sizeof(why), "%s (%s)", out.why, origin->note);
        else
            snprintf(why, sizeof(why), "%s", out.why);
        saga_save_t s = {
            .before = row,
            .next = &out.next,
            .event = saga_event_name(input.event),
            .message_id = origin->message_id,
            .why = why,
            .timer = out.timer,
            .timer_ms = out.timer_ms,
            .expires_ms = app->limits.pay_timeout_ms,
        };
        saga_saved_t saved;
        int rc = saga_store_save(db, &s, &saved, e);
        if (rc != 0)
            return rc;

        saga_status_t from = row->state.status;
        row->state = out.next;
        row->version = saved.version;
        if (saga_status_terminal(row->state.status)) {
            free(row->card_sealed); /* the store cleared it too */
            row->card_sealed = NULL;
        }
        rc = send_step(db, row, commands, out.status_changed, &saved, &cause, e);
        if (rc != 0)
            return rc;
        if (applied != NULL)
            *applied = 1;

        if (out.status_changed)
            metrics_counter_add(app->m_transitions[row->state.status], 1);
        const char *reason = saga_reason_name(row->state.reason);
        json_t *fields = json_pack(
            "{s:s,s:s,s:s,s:s,s:i,s:s?,s:i,s:o,s:s,s:s}", "source", origin->source, "event",
            saga_event_name(input.event), "from", saga_status_name(from), "to",
            saga_status_name(row->state.status), "version", row->version, "reason", reason,
            "attempts", row->state.attempts, "commands", command_names(commands), "timer",
            out.timer == SAGA_TIMER_SET     ? "set"
            : out.timer == SAGA_TIMER_CLEAR ? "clear"
                                            : "keep",
            "why", out.why);
        if (out.status_changed && row->state.status == SAGA_NEEDS_OPERATOR)
            log_error(&lc, "saga.needs_operator", fields);
        else
            log_info(&lc, "saga.step", fields);

        if (!free_order)
            return 0;
        log_info(&lc, "saga.nothing_to_charge", json_pack("{s:I}", "total_cents", (json_int_t)0));
        input = (saga_input_t){SAGA_EV_CHARGED, SAGA_REASON_NONE};
    }
    return 0;
}

/* Version conflicts in a row before the handler gives the batch back (ERR_RETRY). */
#define CONFLICT_TRIES 5

static saga_origin_t origin_of(const svc_msg_t *m)
{
    saga_origin_t o = {
        .source = msg_type_info(m->type)->name,
        .message_id = m->env->message_id,
        .trace = m->trace,
        .log = m->log,
    };
    return o;
}

/* saga_apply, reloading row and applying again after a version conflict (see the top). */
static int apply_fresh(db_conn_t *db, const saga_app_t *app, saga_row_t *row,
                       const saga_input_t *in, const saga_origin_t *o, err_t *e)
{
    char order_id[SAGA_UUID_LEN + 1];
    memcpy(order_id, row->order_id, sizeof(order_id));
    for (int tries = 1;; tries++) {
        int rc = saga_apply(db, app, row, in, o, NULL, e);
        if (!saga_store_stale(rc, e))
            return rc;
        metrics_counter_add(app->m_conflicts, 1);
        log_ctx_t lc = {0};
        if (o->log != NULL)
            lc = *o->log;
        lc.order_id = order_id;
        log_info(&lc, "saga.version_conflict",
                 json_pack("{s:s,s:s,s:i,s:i}", "source", o->source, "event",
                           saga_event_name(in->event), "version", row->version, "try", tries));
        if (tries >= CONFLICT_TRIES)
            return err_set(e, ERR_RETRY, "saga %s changed %d times while being applied", order_id,
                           tries);
        saga_row_clear(row);
        rc = saga_store_load(db, order_id, row, e);
        if (rc != 0)
            return rc;
    }
}

/* order.placed: create the saga (version 1, PENDING) and apply PLACED, or CANCEL when the
 * customer's cancellation arrived first (see the top). A saga that exists already (the same
 * order placed again under a new message id) only sees PLACED ignored. */
static int on_placed(db_conn_t *db, const svc_msg_t *m, void *arg, err_t *e)
{
    const saga_app_t *app = arg;
    saga_row_t row;
    saga_early_cancel_t cancel;
    int created = 0, cancelled = 0;
    memset(&row, 0, sizeof(row));
    memset(&cancel, 0, sizeof(cancel));
    int rc = saga_row_from_placed(m->payload, &row, e);
    if (rc != 0)
        return rc;
    rc = saga_store_create(db, &row, m->env->message_id, &created, &cancelled, &cancel, e);
    if (rc == 0 && created)
        metrics_counter_add(app->m_transitions[SAGA_PENDING], 1);
    if (rc == 0 && !created) {
        char order_id[SAGA_UUID_LEN + 1];
        memcpy(order_id, row.order_id, sizeof(order_id));
        saga_row_clear(&row);
        rc = saga_store_load(db, order_id, &row, e);
    }
    if (rc == 0) {
        saga_origin_t o = origin_of(m);
        saga_input_t in = {SAGA_EV_PLACED, SAGA_REASON_NONE};
        log_ctx_t lc = *m->log;
        lc.order_id = row.order_id;
        if (cancelled && strcmp(cancel.user_id, row.user_id) == 0) {
            in.event = SAGA_EV_CANCEL;
            o.source = msg_type_info(MSG_ORDER_CANCEL_REQUESTED_V1)->name;
            o.message_id = cancel.message_id;
            log_info(&lc, "saga.early_cancel_applied",
                     json_pack("{s:s}", "cancel_message_id", cancel.message_id));
        } else if (cancelled) {
            log_warn(&lc, "saga.early_cancel_refused",
                     json_pack("{s:s,s:s}", "cancel_message_id", cancel.message_id, "why",
                               "the cancellation names another user than the order"));
        }
        rc = apply_fresh(db, app, &row, &in, &o, e);
    }
    saga_row_clear(&row);
    return rc;
}

/* A cancellation that found no saga: record it for the order.placed still on its way, unless
 * that order.placed was being handled at the same moment and its saga exists now (then *loaded
 * is 1 and row holds the saga, to cancel as usual). */
static int cancel_before_order(db_conn_t *db, const saga_app_t *app, const svc_msg_t *m,
                               const char *order_id, saga_row_t *row, int *loaded, err_t *e)
{
    *loaded = 0;
    int rc = saga_store_lock_order(db, order_id, e);
    if (rc == 0)
        rc = saga_store_load(db, order_id, row, e); /* a new statement: sees what we waited for */
    if (rc == 0)
        *loaded = 1;
    if (rc != ERR_NOTFOUND)
        return rc;
    const char *user_id = json_string_value(json_object_get(m->payload, "user_id"));
    if (user_id == NULL)
        return err_set(e, ERR_INVALID, "order.cancel_requested without user_id");
    int recorded = 0;
    rc = saga_store_note_early_cancel(db, order_id, user_id, m->env->message_id, &recorded, e);
    if (rc != 0)
        return rc;
    metrics_counter_add(app->m_early_cancels, (double)recorded);
    log_ctx_t lc = *m->log;
    lc.order_id = order_id;
    log_info(&lc, "saga.cancel_before_order",
             json_pack("{s:s,s:b}", "message_id", m->env->message_id, "recorded", recorded));
    return 0;
}

/* Every other input: a reply from inventory or payment, or the customer's cancellation. */
static int on_reply(db_conn_t *db, const svc_msg_t *m, void *arg, err_t *e)
{
    const saga_app_t *app = arg;
    saga_input_t in = {SAGA_EV_PLACED, SAGA_REASON_NONE};
    const char *type = msg_type_info(m->type)->name;
    if (saga_event_for_type(m->type, &in.event) != 0)
        return err_set(e, ERR_INTERNAL, "no saga input for %s", type);
    if (in.event == SAGA_EV_DECLINED)
        in.reason =
            saga_reason_from_decline(json_string_value(json_object_get(m->payload, "reason")));

    const char *order_id = json_string_value(json_object_get(m->payload, "order_id"));
    saga_row_t row;
    memset(&row, 0, sizeof(row));
    int rc = saga_store_load(db, order_id, &row, e);
    if (rc == ERR_NOTFOUND && in.event == SAGA_EV_CANCEL) {
        int loaded = 0;
        rc = cancel_before_order(db, app, m, order_id, &row, &loaded, e);
        if (rc != 0 || !loaded)
            return rc;
    }
    if (rc == ERR_NOTFOUND) {
        metrics_counter_add(app->m_unknown, 1);
        log_ctx_t lc = *m->log;
        lc.order_id = order_id;
        log_warn(&lc, "saga.unknown_order",
                 json_pack("{s:s,s:s}", "source", type, "message_id", m->env->message_id));
        return 0;
    }
    if (rc != 0)
        return rc;

    if (in.event == SAGA_EV_CHARGED) {
        json_int_t amount = json_integer_value(json_object_get(m->payload, "amount_cents"));
        if (amount != (json_int_t)row.total_cents)
            log_warn(m->log, "saga.charge_amount_mismatch",
                     json_pack("{s:I,s:I}", "charged_cents", amount, "total_cents",
                               (json_int_t)row.total_cents));
    }
    saga_origin_t o = origin_of(m);
    rc = apply_fresh(db, app, &row, &in, &o, e);
    saga_row_clear(&row);
    return rc;
}

const svc_route_t saga_routes[] = {
    {MSG_ORDER_PLACED_V1, on_placed},      {MSG_ORDER_CANCEL_REQUESTED_V1, on_reply},
    {MSG_INVENTORY_RESERVED_V1, on_reply}, {MSG_INVENTORY_RESERVATION_REJECTED_V1, on_reply},
    {MSG_INVENTORY_RELEASED_V1, on_reply}, {MSG_INVENTORY_SALE_CONFIRMED_V1, on_reply},
    {MSG_PAYMENT_CHARGED_V1, on_reply},    {MSG_PAYMENT_DECLINED_V1, on_reply},
    {MSG_PAYMENT_REFUNDED_V1, on_reply},   {MSG_PAYMENT_VOIDED_V1, on_reply},
};

const size_t saga_n_routes = sizeof(saga_routes) / sizeof(saga_routes[0]);
