/* finished: the service-level metrics of orders, counted where the customer sees the outcome.
 *
 *   petstore_orders_finished_total{status,reason}  orders that reached their outcome: COMPLETED,
 *       CANCELLED with its reason, or NEEDS_OPERATOR; reason "none" when there is none
 *   petstore_order_completion_seconds{status}      the time from the order's creation at the door
 *       (POST /v1/orders) to that outcome, a histogram for 0.05 to 30 s
 *
 * Why the storefront and not the saga. The saga knows when a saga ends but not when the
 * customer placed the order: order.placed carries no creation time, and the saga's own
 * created_at is when order.placed reached it, after the outbox, the relay and the queue, which
 * would hide the front half of the wait. The storefront wrote the order at the door and applies
 * the outcome to the read model the customer reads (GET /v1/orders/{id}, long polls, streams):
 * the time between the two, by one clock (its database's), is what the customer waited.
 *
 * Counted once per order, and only for work that is durable:
 *   - the first outcome only: the statement that applies a status change sets the order's
 *     finished_version the first time the status is an outcome, under the row lock
 *     (order_view.c), so a parked order (NEEDS_OPERATOR) that later ends CANCELLED or COMPLETED
 *     counts once, as NEEDS_OPERATOR: that is what its customer got from the shop;
 *   - after the commit: the consumer's handler notes the outcome (sf_finished_note) in a list
 *     of its thread, and the consumer's settled hook (svc.h) counts the list when the
 *     transaction committed and forgets it when it did not, so a batch rolled back and run again
 *     counts nothing twice; a redelivery after the commit is a duplicate in the inbox, never
 *     handled again.
 * The counters are per process: with several storefront instances, sum them.
 *
 * Threading: the handles are registered by sf_finished_init before the threads start and read
 * only afterwards; the pending list is thread-local (each consumer runs on its own thread). */
#include <stdio.h>
#include <stdlib.h>

#include "metrics.h"
#include "storefront.h"

/* Suited to 0.05 to 30 s: an order takes about 0.15 s at 10 orders/s and 0.7 s (p99) at 100
 * orders/s on the reference machine; 2.5 s is the latency objective's threshold
 * (runbook/slo.md), a saga timeout is 5 s. */
static const double completion_bounds[] = {0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1,  1.5,
                                           2,    2.5, 3,    4,   5,   7.5, 10,  15,   20, 30};
#define N_BOUNDS (sizeof(completion_bounds) / sizeof(completion_bounds[0]))

#define FINISHED_HELP                                                                              \
    "Orders that reached their outcome (their first COMPLETED, CANCELLED or"                       \
    " NEEDS_OPERATOR), by status and reason"
#define COMPLETION_HELP "Seconds from the order's creation at the door to its outcome"

/* By status and reason; reason ORDER_REASON_COUNT is "other" (a reason this build does not
 * know). NULL for the pairs registered on first use (those the saga does not produce). */
static metrics_counter_t *finished[ORDER_STATUS_COUNT][ORDER_REASON_COUNT + 1];
static metrics_histogram_t *completion[ORDER_STATUS_COUNT];

/* The outcomes noted in the transaction in hand. */
static _Thread_local struct pending {
    sf_outcome_t *items;
    size_t n, cap;
} pending;

static const char *reason_label(order_reason_t r)
{
    if (r == ORDER_REASON_NONE)
        return "none";
    return r < ORDER_REASON_COUNT ? order_reason_name(r) : "other";
}

static metrics_counter_t *register_finished(order_status_t s, order_reason_t r)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "status=\"%s\",reason=\"%s\"", order_status_name(s),
             reason_label(r));
    return metrics_counter("petstore_orders_finished_total", FINISHED_HELP, labels);
}

void sf_finished_init(void)
{
    /* The series the saga produces exist from the start, at 0, so that rates and ratios over
     * them are defined before the first order of each kind. */
    for (int s = 0; s < ORDER_STATUS_COUNT; s++) {
        if (!sf_status_is_outcome((order_status_t)s))
            continue;
        for (int r = ORDER_REASON_NONE; r < ORDER_REASON_COUNT; r++) {
            int plausible = s == ORDER_NEEDS_OPERATOR ||
                            (s == ORDER_COMPLETED && r == ORDER_REASON_NONE) ||
                            (s == ORDER_CANCELLED && r != ORDER_REASON_NONE);
            if (plausible)
                finished[s][r] = register_finished((order_status_t)s, (order_reason_t)r);
        }
        char labels[64];
        snprintf(labels, sizeof(labels), "status=\"%s\"", order_status_name((order_status_t)s));
        completion[s] = metrics_histogram("petstore_order_completion_seconds", COMPLETION_HELP,
                                          labels, completion_bounds, N_BOUNDS);
    }
}

void sf_finished_note(const sf_outcome_t *o)
{
    if (!o->first || (unsigned)o->status >= ORDER_STATUS_COUNT)
        return;
    if (pending.n == pending.cap) {
        size_t cap = pending.cap ? pending.cap * 2 : 16;
        sf_outcome_t *items = realloc(pending.items, cap * sizeof(*items));
        if (items == NULL)
            return; /* out of memory: one order uncounted, nothing else lost */
        pending.items = items;
        pending.cap = cap;
    }
    pending.items[pending.n++] = *o;
}

void sf_finished_settled(void *app, int committed)
{
    (void)app;
    for (size_t i = 0; committed && i < pending.n; i++) {
        const sf_outcome_t *o = &pending.items[i];
        order_reason_t r = o->reason <= ORDER_REASON_COUNT ? o->reason : ORDER_REASON_COUNT;
        metrics_counter_t *c = finished[o->status][r];
        metrics_counter_add(c != NULL ? c : register_finished(o->status, r), 1);
        metrics_histogram_observe(completion[o->status], o->seconds);
    }
    free(pending.items); /* a fresh list per transaction: none is left behind at exit */
    pending.items = NULL;
    pending.n = pending.cap = 0;
}
