/* mgmt_queue: whether a queue, as the management API describes it, is fit to be a work queue of
 * this system: a quorum queue with a dead-letter exchange, an explicit delivery limit and
 * at-least-once dead-lettering (which RabbitMQ only honours with overflow reject-publish).
 *
 * Pure: it reads the JSON of GET /api/queues/{vhost}/{name} (fields `type`, `arguments`,
 * `policy`, `operator_policy`, `effective_policy_definition`) and does no I/O, so the daemons'
 * start check (services/common/svc) and the dead-letter tool share one definition of "fit",
 * and the unit tests can hold it to RabbitMQ's own rules (mgmt_queue.c lists them).
 * Threading: none needed; everything is re-entrant. */
#ifndef PETSTORE_MGMT_QUEUE_H
#define PETSTORE_MGMT_QUEUE_H

#include <jansson.h>
#include <stddef.h>

/* There are six settings, so at most six problems. */
#define MGMT_QUEUE_MAX_PROBLEMS 6

typedef struct mgmt_queue_problem {
    /* The setting, as the policy key an operator would set (static string): "x-queue-type",
     * "dead-letter-exchange", "delivery-limit", "dead-letter-strategy", "overflow" or
     * "dead-letter-routing-key". */
    const char *setting;
    /* What was found, where it came from and what is needed, e.g. `not set (no
     * x-delivery-limit argument, none in policy "p")`. */
    char detail[200];
} mgmt_queue_problem_t;

/* Checks queue (borrowed; the management API's JSON object for one queue) and writes one entry
 * per problem into out (room for MGMT_QUEUE_MAX_PROBLEMS), in the order of the settings above.
 * Returns the number of problems: 0 means the queue is fit. A queue that is not a JSON object
 * has every problem. */
size_t mgmt_queue_check(const json_t *queue, mgmt_queue_problem_t out[MGMT_QUEUE_MAX_PROBLEMS]);

/* Joins the problems into one line, "delivery-limit not set (...); overflow is ...", into out
 * (size n, truncated to fit, always NUL-terminated when n > 0). */
void mgmt_queue_problems_line(const mgmt_queue_problem_t *p, size_t count, char *out, size_t n);

#endif
