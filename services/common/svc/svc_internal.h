/* svc_internal: what the framework's files share; not for services. */
#ifndef PETSTORE_SVC_INTERNAL_H
#define PETSTORE_SVC_INTERNAL_H

#include "health.h"
#include "svc.h"

/* The one service of the process (svc_main owns it; everything else borrows it). */
struct svc {
    const svc_def_t *def;
    cfg_t *cfg;
    void *app;
};

typedef struct consumer consumer_t;

/* Creates a consumer for def (borrowed, must outlive it); NULL when out of memory. */
consumer_t *svc__consumer_new(svc_t *svc, const svc_consumer_def_t *def, int prefetch,
                              int batch_max);
void svc__consumer_free(consumer_t *c);

/* pthread entry point: runs the consumer under the worker supervisor until the process stops;
 * arg is a consumer_t. */
void *svc__consumer_thread(void *arg);

/* ---- svc_queue_check.c ------------------------------------------------------------------- */

/* True when def has a consumer of a durable work queue (not only private queues). */
int svc__consumes_work_queue(const svc_def_t *def);

/* Checks every work queue the service consumes through the management API (see
 * svc_queue_check.c), waiting with backoff while the API cannot answer, with flag (the
 * "queue-policy" readiness check) failing meanwhile and set ok once every queue is fit.
 * Returns 0 when every queue is fit; ERR_RETRY when the process began stopping before the check
 * ended; any other code when the process must not start: then line (size n) holds the one-line
 * message for the operator (what is wrong and what to do). */
int svc__check_queues(const svc_t *svc, health_flag_t *flag, char *line, size_t n);

#endif
