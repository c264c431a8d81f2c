/* machine: the transition table and the few rules a table row cannot say on its own.
 *
 * Each row reads "in state FROM, input EVENT leads to TO, sends these commands, marks or clears
 * these pending compensations, sets the reason this way and does this with the timer". Pairs
 * without a row are ignored. Three rules sit outside the table because they depend on the
 * saga's data (its pending bits, its attempts) and the limits rather than its state:
 *   - a compensating (or parked) saga with nothing left pending is CANCELLED, timer cleared;
 *   - a compensation timeout re-sends exactly what is still pending;
 *   - a retry (a T_RETRY row: CONFIRMING or COMPENSATING timing out) whose attempts reach the
 *     step's bound (max_confirm_tries, max_compensation_tries) parks the saga in NEEDS_OPERATOR
 *     instead: nothing is sent, the timer is cleared, and what the saga still waits for stays
 *     in pending (the compensations, or SAGA_PENDING_CONFIRM for the sale), so that the
 *     acknowledgement, if it ever comes, finishes the saga through an ordinary table row.
 * A row may send SEND_PENDING: the compensations still pending after the step (a compensation
 * timing out, an operator's retry or resume). A row whose timer starts a step's first wait
 * (T_RESERVE, T_PAY, T_CONFIRM, T_COMPENSATE) starts its attempts at 0: that is how an
 * operator's input re-arms a step in place; every other row that keeps the status keeps them.
 * need_pending guards a row (one of its bits must be pending) and clear_pending says which bits
 * the step clears; for the acknowledgements they are the same bits (ROW), the operator's rows
 * of NEEDS_OPERATOR tell a parked confirmation from parked compensations by need_pending alone
 * (OROW). Rows of one state and input are tried in order; the first whose guard holds wins. */
#include "machine.h"

#include <stddef.h>
#include <string.h>

typedef enum timer_rule {
    T_KEEP = 0,
    T_CLEAR,
    T_RESERVE,
    T_PAY,
    T_CONFIRM,
    T_COMPENSATE,
    T_RETRY, /* exponential backoff from the step's base delay, by attempts */
} timer_rule_t;

typedef enum reason_rule {
    R_KEEP = 0,
    R_INPUT, /* the reason carried by the input (payment's decline reason) */
    R_PET_UNAVAILABLE,
    R_CANCELLED_BY_USER,
    R_TIMEOUT,
} reason_rule_t;

/* A command bit no SAGA_CMD_* uses: "the compensations still pending after the step". */
#define SEND_PENDING (1u << 31)

typedef struct row {
    saga_status_t from;
    saga_event_t event;
    saga_status_t to;
    unsigned send;
    unsigned set_pending;
    /* The row applies only if one of these bits is pending (0: always). */
    unsigned need_pending;
    unsigned clear_pending; /* bits the step clears */
    reason_rule_t reason;
    timer_rule_t timer;
    const char *why;
} row_t;

#define ROW(from, ev, to, send, setp, needp, reason, timer, why)                                   \
    {                                                                                              \
        SAGA_##from, SAGA_EV_##ev, SAGA_##to, send, setp, needp, needp, reason, timer, why         \
    }

/* An operator's row: guard and cleared bits apart. */
#define OROW(from, ev, to, send, setp, needp, clearp, reason, timer, why)                          \
    {                                                                                              \
        SAGA_##from, SAGA_EV_OPERATOR_##ev, SAGA_##to, send, setp, needp, clearp, reason, timer,   \
            why                                                                                    \
    }

static const row_t table[] = {
    ROW(PENDING, PLACED, RESERVING, SAGA_CMD_RESERVE, 0, 0, R_KEEP, T_RESERVE,
        "order placed: reserve the pets"),
    ROW(PENDING, CANCEL, CANCELLED, 0, 0, 0, R_CANCELLED_BY_USER, T_CLEAR,
        "cancelled before the order reached the saga: nothing to reserve or undo"),

    ROW(RESERVING, RESERVED, PAYING, SAGA_CMD_CHARGE, 0, 0, R_KEEP, T_PAY,
        "pets reserved: charge the card"),
    ROW(RESERVING, REJECTED, CANCELLED, 0, 0, 0, R_PET_UNAVAILABLE, T_CLEAR,
        "reservation rejected: nothing was reserved"),
    ROW(RESERVING, TIMEOUT, COMPENSATING, SAGA_CMD_RELEASE, SAGA_PENDING_RELEASE, 0, R_TIMEOUT,
        T_COMPENSATE, "reservation timed out: release whatever may have been reserved"),
    ROW(RESERVING, CANCEL, COMPENSATING, SAGA_CMD_RELEASE, SAGA_PENDING_RELEASE, 0,
        R_CANCELLED_BY_USER, T_COMPENSATE, "cancelled while reserving: release"),

    ROW(PAYING, CHARGED, CONFIRMING, SAGA_CMD_CONFIRM, 0, 0, R_KEEP, T_CONFIRM,
        "card charged: confirm the sale"),
    ROW(PAYING, DECLINED, COMPENSATING, SAGA_CMD_RELEASE, SAGA_PENDING_RELEASE, 0, R_INPUT,
        T_COMPENSATE, "payment declined: release the pets"),
    ROW(PAYING, TIMEOUT, COMPENSATING, SAGA_CMD_REFUND_OR_VOID | SAGA_CMD_RELEASE,
        SAGA_PENDING_REFUND | SAGA_PENDING_RELEASE, 0, R_TIMEOUT, T_COMPENSATE,
        "payment timed out: refund or void, release"),
    ROW(PAYING, CANCEL, COMPENSATING, SAGA_CMD_REFUND_OR_VOID | SAGA_CMD_RELEASE,
        SAGA_PENDING_REFUND | SAGA_PENDING_RELEASE, 0, R_CANCELLED_BY_USER, T_COMPENSATE,
        "cancelled while paying: refund or void, release"),

    ROW(CONFIRMING, SALE_CONFIRMED, COMPLETED, 0, 0, 0, R_KEEP, T_CLEAR, "sale confirmed"),
    ROW(CONFIRMING, TIMEOUT, CONFIRMING, SAGA_CMD_CONFIRM, 0, 0, R_KEEP, T_RETRY,
        "confirmation timed out: confirm again"),

    ROW(COMPENSATING, RELEASED, COMPENSATING, 0, 0, SAGA_PENDING_RELEASE, R_KEEP, T_KEEP,
        "pets released"),
    ROW(COMPENSATING, REFUNDED, COMPENSATING, 0, 0, SAGA_PENDING_REFUND, R_KEEP, T_KEEP,
        "payment refunded or voided"),
    ROW(COMPENSATING, TIMEOUT, COMPENSATING, SEND_PENDING, 0, 0, R_KEEP, T_RETRY,
        "compensation timed out: send what is still pending again"),

    ROW(NEEDS_OPERATOR, RELEASED, NEEDS_OPERATOR, 0, 0, SAGA_PENDING_RELEASE, R_KEEP, T_KEEP,
        "pets released after the saga was parked"),
    ROW(NEEDS_OPERATOR, REFUNDED, NEEDS_OPERATOR, 0, 0, SAGA_PENDING_REFUND, R_KEEP, T_KEEP,
        "payment refunded or voided after the saga was parked"),
    ROW(NEEDS_OPERATOR, SALE_CONFIRMED, COMPLETED, 0, 0, SAGA_PENDING_CONFIRM, R_KEEP, T_CLEAR,
        "sale confirmed after the saga was parked"),

    OROW(RESERVING, RETRY, RESERVING, SAGA_CMD_RESERVE, 0, 0, 0, R_KEEP, T_RESERVE,
         "operator retry: reserve again"),
    OROW(PAYING, RETRY, PAYING, SAGA_CMD_CHARGE, 0, 0, 0, R_KEEP, T_PAY,
         "operator retry: charge again"),
    OROW(CONFIRMING, RETRY, CONFIRMING, SAGA_CMD_CONFIRM, 0, 0, 0, R_KEEP, T_CONFIRM,
         "operator retry: confirm again"),
    OROW(COMPENSATING, RETRY, COMPENSATING, SEND_PENDING, 0, 0, 0, R_KEEP, T_COMPENSATE,
         "operator retry: send what is still pending again"),

    OROW(RESERVING, COMPENSATE, COMPENSATING, SAGA_CMD_RELEASE, SAGA_PENDING_RELEASE, 0, 0,
         R_TIMEOUT, T_COMPENSATE, "operator compensate: release whatever may have been reserved"),
    OROW(PAYING, COMPENSATE, COMPENSATING, SAGA_CMD_REFUND_OR_VOID | SAGA_CMD_RELEASE,
         SAGA_PENDING_REFUND | SAGA_PENDING_RELEASE, 0, 0, R_TIMEOUT, T_COMPENSATE,
         "operator compensate: refund or void, release"),
    OROW(NEEDS_OPERATOR, COMPENSATE, COMPENSATING, SAGA_CMD_REFUND_OR_VOID | SAGA_CMD_RELEASE,
         SAGA_PENDING_REFUND | SAGA_PENDING_RELEASE, SAGA_PENDING_CONFIRM, SAGA_PENDING_CONFIRM,
         R_TIMEOUT, T_COMPENSATE,
         "operator compensate: the sale was never confirmed; refund or void, release"),

    OROW(NEEDS_OPERATOR, RESUME, CONFIRMING, SAGA_CMD_CONFIRM, 0, SAGA_PENDING_CONFIRM,
         SAGA_PENDING_CONFIRM, R_KEEP, T_CONFIRM, "operator resume: confirm the sale again"),
    OROW(NEEDS_OPERATOR, RESUME, COMPENSATING, SEND_PENDING, 0,
         SAGA_PENDING_RELEASE | SAGA_PENDING_REFUND, 0, R_KEEP, T_COMPENSATE,
         "operator resume: send the pending compensations again"),
};

/* The machine's spelling of the order's vocabulary keeps the table's values, so a status or
 * reason converts to the table's enum by a cast. */
#define ORDER_STATUS(name, terminal, cancellable)                                                  \
    _Static_assert((int)SAGA_##name == (int)ORDER_##name, "SAGA_" #name " is ORDER_" #name);
#define ORDER_REASON(name)                                                                         \
    _Static_assert((int)SAGA_REASON_##name == (int)ORDER_REASON_##name,                            \
                   "SAGA_REASON_" #name " is ORDER_REASON_" #name);
#include "order_status.def"
_Static_assert((int)SAGA_STATUS_COUNT == (int)ORDER_STATUS_COUNT, "one status list");
_Static_assert((int)SAGA_REASON_NONE == (int)ORDER_REASON_NONE, "no reason is no reason");
_Static_assert((int)SAGA_REASON_COUNT == (int)ORDER_REASON_COUNT, "one reason list");

static const char *const event_names[SAGA_EVENT_COUNT] = {
    "placed",          "reserved", "rejected", "charged", "declined",       "sale_confirmed",
    "released",        "refunded", "cancel",   "timeout", "operator_retry", "operator_compensate",
    "operator_resume",
};

void saga_limits_default(saga_limits_t *out)
{
    out->reserve_timeout_ms = 5000;
    out->pay_timeout_ms = 5000;
    out->confirm_timeout_ms = 5000;
    out->compensate_timeout_ms = 5000;
    out->retry_max_ms = 60000;
    out->max_compensation_tries = 5;
    out->max_confirm_tries = 10;
}

int saga_status_terminal(saga_status_t s) { return order_status_is_terminal((order_status_t)s); }

const char *saga_status_name(saga_status_t s) { return order_status_name((order_status_t)s); }

const char *saga_reason_name(saga_reason_t r) { return order_reason_name((order_reason_t)r); }

const char *saga_event_name(saga_event_t ev)
{
    return (unsigned)ev < SAGA_EVENT_COUNT ? event_names[ev] : "unknown";
}

int saga_status_parse(const char *name, saga_status_t *out)
{
    order_status_t s;
    if (order_status_parse(name, &s) != 0)
        return -1;
    *out = (saga_status_t)s;
    return 0;
}

int saga_reason_parse(const char *name, saga_reason_t *out)
{
    order_reason_t r;
    if (order_reason_parse(name, &r) != 0)
        return -1;
    *out = (saga_reason_t)r;
    return 0;
}

static const row_t *find_row(const saga_state_t *cur, saga_event_t ev)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const row_t *r = &table[i];
        if (r->from != cur->status || r->event != ev)
            continue;
        if (r->need_pending != 0 && (cur->pending & r->need_pending) == 0)
            continue; /* e.g. an acknowledgement we are not (or no longer) waiting for */
        return r;
    }
    return NULL;
}

/* Whether a row's timer starts the first wait of a step (rather than keep, clear or back off). */
static int fresh_wait(timer_rule_t t)
{
    return t == T_RESERVE || t == T_PAY || t == T_CONFIRM || t == T_COMPENSATE;
}

/* The step's base delay doubled per attempt, capped; computed without overflow. */
static int backoff_ms(int base, int attempts, int cap)
{
    long ms = base > 0 ? base : 1;
    for (int i = 0; i < attempts && ms < cap; i++)
        ms *= 2;
    return ms < cap ? (int)ms : cap;
}

static int timer_ms(timer_rule_t rule, const saga_state_t *next, const saga_limits_t *lim)
{
    switch (rule) {
    case T_RESERVE:
        return lim->reserve_timeout_ms;
    case T_PAY:
        return lim->pay_timeout_ms;
    case T_CONFIRM:
        return lim->confirm_timeout_ms;
    case T_COMPENSATE:
        return lim->compensate_timeout_ms;
    case T_RETRY:
        return backoff_ms(next->status == SAGA_CONFIRMING ? lim->confirm_timeout_ms
                                                          : lim->compensate_timeout_ms,
                          next->attempts, lim->retry_max_ms);
    case T_KEEP:
    case T_CLEAR:
        break;
    }
    return 0;
}

/* Timeouts a retried step may see before the saga parks; the table's T_RETRY rows are in
 * CONFIRMING and COMPENSATING only. */
static int retry_bound(saga_status_t s, const saga_limits_t *lim)
{
    return s == SAGA_CONFIRMING ? lim->max_confirm_tries : lim->max_compensation_tries;
}

static unsigned pending_commands(unsigned pending)
{
    unsigned cmds = 0;
    if (pending & SAGA_PENDING_REFUND)
        cmds |= SAGA_CMD_REFUND_OR_VOID;
    if (pending & SAGA_PENDING_RELEASE)
        cmds |= SAGA_CMD_RELEASE;
    return cmds;
}

void saga_step(const saga_state_t *cur, const saga_input_t *in, const saga_limits_t *limits,
               saga_output_t *out)
{
    memset(out, 0, sizeof(*out));
    out->next = *cur;
    out->outcome = SAGA_IGNORED;

    if (saga_status_terminal(cur->status)) {
        out->why = "the saga has finished";
        return;
    }
    const row_t *r = find_row(cur, in->event);
    if (r == NULL) {
        out->why = "the input does not apply in this state";
        return;
    }

    saga_state_t next = *cur;
    next.status = r->to;
    next.pending = (cur->pending | r->set_pending) & ~r->clear_pending;
    switch (r->reason) {
    case R_KEEP:
        break;
    case R_INPUT:
        next.reason = in->reason != SAGA_REASON_NONE ? in->reason : SAGA_REASON_TIMEOUT;
        break;
    case R_PET_UNAVAILABLE:
        next.reason = SAGA_REASON_PET_UNAVAILABLE;
        break;
    case R_CANCELLED_BY_USER:
        next.reason = SAGA_REASON_CANCELLED_BY_USER;
        break;
    case R_TIMEOUT:
        next.reason = SAGA_REASON_TIMEOUT;
        break;
    }
    next.attempts = r->timer == T_RETRY                            ? cur->attempts + 1
                    : r->to != cur->status || fresh_wait(r->timer) ? 0
                                                                   : cur->attempts;

    unsigned send = r->send;
    timer_rule_t timer = r->timer;
    out->why = r->why;

    if (r->timer == T_RETRY && next.attempts >= retry_bound(cur->status, limits)) {
        next.status = SAGA_NEEDS_OPERATOR;
        send = 0;
        timer = T_CLEAR;
        if (cur->status == SAGA_CONFIRMING) {
            next.pending |= SAGA_PENDING_CONFIRM;
            out->why = "the sale confirmation was never acknowledged: an operator must act";
        } else {
            out->why = "compensation kept failing: an operator must act";
        }
    } else if (send & SEND_PENDING) {
        send = (send & ~SEND_PENDING) | pending_commands(next.pending);
    }
    if ((next.status == SAGA_COMPENSATING || next.status == SAGA_NEEDS_OPERATOR) &&
        next.pending == 0) {
        next.status = SAGA_CANCELLED;
        timer = T_CLEAR;
    }

    out->outcome = SAGA_APPLIED;
    out->next = next;
    out->commands = send;
    out->status_changed = next.status != cur->status;
    if (timer == T_CLEAR) {
        out->timer = SAGA_TIMER_CLEAR;
    } else if (timer != T_KEEP) {
        out->timer = SAGA_TIMER_SET;
        out->timer_ms = timer_ms(timer, &next, limits);
    }
}
