/* describe: what a saga is doing, in the operator's words, and whether an operator's action has
 * taken effect. Pure: the callers read the database and the clock. */
#include <stdio.h>
#include <string.h>

#include "sagatool.h"

static const struct {
    const char *verb;
    saga_event_t event;
} verbs[] = {
    {"retry", SAGA_EV_OPERATOR_RETRY},
    {"compensate", SAGA_EV_OPERATOR_COMPENSATE},
    {"resume", SAGA_EV_OPERATOR_RESUME},
};

int sagatool_verb_event(const char *verb, saga_event_t *out)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(verbs[i].verb, verb) == 0) {
            *out = verbs[i].event;
            return 0;
        }
    return -1;
}

void sagatool_waiting_for(const saga_state_t *s, char *out, size_t n)
{
    if (saga_status_terminal(s->status)) {
        snprintf(out, n, "nothing");
        return;
    }
    switch (s->status) {
    case SAGA_PENDING:
        snprintf(out, n, "its first step (order.placed being handled)");
        return;
    case SAGA_RESERVING:
        snprintf(out, n, "inventory.reserved");
        return;
    case SAGA_PAYING:
        snprintf(out, n, "payment.charged");
        return;
    case SAGA_CONFIRMING:
        snprintf(out, n, "inventory.sale_confirmed");
        return;
    case SAGA_NEEDS_OPERATOR:
        snprintf(out, n, "an operator");
        return;
    default:
        break;
    }
    /* COMPENSATING: the acknowledgements still pending. */
    const char *release = (s->pending & SAGA_PENDING_RELEASE) ? "inventory.released" : NULL;
    const char *refund = (s->pending & SAGA_PENDING_REFUND) ? "payment.refunded (or voided)" : NULL;
    if (release && refund)
        snprintf(out, n, "%s and %s", release, refund);
    else if (release || refund)
        snprintf(out, n, "%s", release ? release : refund);
    else
        snprintf(out, n, "nothing (about to be cancelled)");
}

void sagatool_last_line(const sagatool_view_t *v, char *out, size_t n)
{
    const char *status = saga_status_name(v->state.status);
    if (saga_status_terminal(v->state.status)) {
        const char *reason = saga_reason_name(v->state.reason);
        if (reason)
            snprintf(out, n, "finished: %s at %s, reason %s", status, v->since ? v->since : "?",
                     reason);
        else
            snprintf(out, n, "finished: %s at %s", status, v->since ? v->since : "?");
        return;
    }
    if (v->state.status == SAGA_NEEDS_OPERATOR) {
        const char *what = (v->state.pending & SAGA_PENDING_CONFIRM)
                               ? "the sale's confirmation never came"
                               : "its compensations kept failing";
        snprintf(out, n,
                 "parked: needs an operator since %s (%s) — try: petstore-saga resume %s "
                 "--reason \"...\"%s",
                 v->since ? v->since : "?", what, v->order_id,
                 (v->state.pending & SAGA_PENDING_CONFIRM) ? " (or compensate)" : "");
        return;
    }
    char waiting[128];
    sagatool_waiting_for(&v->state, waiting, sizeof(waiting));
    if (v->timer_parked_at != NULL) {
        snprintf(out, n,
                 "parked timer: waiting for %s, but its timer failed too often and was parked at "
                 "%s — try: petstore-saga retry %s --reason \"...\"",
                 waiting, v->timer_parked_at, v->order_id);
    } else if (v->deadline != NULL) {
        snprintf(out, n, "waiting for %s until %s", waiting, v->deadline);
    } else {
        snprintf(out, n,
                 "waiting for %s with no timer armed — try: petstore-saga retry %s --reason "
                 "\"...\"",
                 waiting, v->order_id);
    }
}

int sagatool_confirmed(saga_event_t ev, const sagatool_progress_t *p)
{
    if (p->unsent > 0)
        return 0;
    /* compensate asks for the order to be undone and resume for what was parked to be finished:
     * both have happened once the saga is finished, not at the first acknowledgement while
     * another compensation (a refund) is still pending. */
    if (ev == SAGA_EV_OPERATOR_COMPENSATE || ev == SAGA_EV_OPERATOR_RESUME)
        return saga_status_terminal(p->state.status);
    /* retry re-sends one step: it happened when its reply came (or the saga finished). */
    return p->reply_after || saga_status_terminal(p->state.status);
}

void sagatool_pending_text(const sagatool_progress_t *p, char *out, size_t n)
{
    char waiting[128];
    sagatool_waiting_for(&p->state, waiting, sizeof(waiting));
    int len =
        snprintf(out, n, "saga is %s, waiting for %s", saga_status_name(p->state.status), waiting);
    if (len < 0 || (size_t)len >= n)
        return;
    if (p->deadline[0] != '\0')
        len += snprintf(out + len, n - (size_t)len, " until %s", p->deadline);
    if (len < 0 || (size_t)len >= n)
        return;
    if (p->parked > 0)
        snprintf(out + len, n - (size_t)len,
                 "; the relay parked %d of its messages (outbox/relay.h says how to re-drive them)",
                 p->parked);
    else if (p->unsent > 0)
        snprintf(out + len, n - (size_t)len,
                 "; %d of its messages not yet published (is relay-saga running? ./petstore "
                 "status)",
                 p->unsent);
}
