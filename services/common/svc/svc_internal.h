/* svc_internal: what the framework's files share; not for services. */
#ifndef PETSTORE_SVC_INTERNAL_H
#define PETSTORE_SVC_INTERNAL_H

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

#endif
