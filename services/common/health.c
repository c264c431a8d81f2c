/* health: checks are a fixed-size table filled at startup; a flag's state is an atomic int
 * (read without a lock) and its detail text is guarded by the flag's own mutex.
 *
 * petstore_ready is computed when /metrics is rendered, not when a flag changes: flags are set
 * on every loop iteration, and a check may be a function with no event to hook; a scrape runs
 * the checks once, as /readyz does. */
#include "health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

struct health_flag {
    atomic_int ok;
    pthread_mutex_t lock; /* guards detail */
    char detail[128];
};

typedef struct check {
    char name[64];
    health_check_fn fn;
    void *arg;
} check_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static check_t checks[HEALTH_MAX_CHECKS];
static size_t n_checks;

static int flag_check(void *arg, char *detail, size_t n)
{
    health_flag_t *f = arg;
    pthread_mutex_lock(&f->lock);
    snprintf(detail, n, "%s", f->detail);
    pthread_mutex_unlock(&f->lock);
    return atomic_load(&f->ok);
}

static metrics_gauge_t *ready_gauge;
static pthread_once_t ready_once = PTHREAD_ONCE_INIT;

static void collect_ready(void *arg)
{
    (void)arg;
    metrics_gauge_set(ready_gauge, health_ready());
}

/* Once, with the first check: a process without checks has no readiness worth a series. A
 * failed registration costs the metric, never the check. */
static void ready_metric_init(void)
{
    ready_gauge = metrics_gauge("petstore_ready",
                                "1 when every readiness check passes (what GET /readyz answers "
                                "now), else 0",
                                NULL);
    if (ready_gauge != NULL && metrics_collector_add(collect_ready, NULL) != 0)
        ready_gauge = NULL;
}

int health_check_add(const char *name, health_check_fn fn, void *arg)
{
    pthread_once(&ready_once, ready_metric_init);
    int rc = ERR_NOMEM;
    pthread_mutex_lock(&lock);
    if (n_checks < HEALTH_MAX_CHECKS) {
        snprintf(checks[n_checks].name, sizeof(checks[n_checks].name), "%s", name);
        checks[n_checks].fn = fn;
        checks[n_checks].arg = arg;
        n_checks++;
        rc = 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

health_flag_t *health_flag_new(const char *name)
{
    health_flag_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    atomic_init(&f->ok, 0);
    snprintf(f->detail, sizeof(f->detail), "starting");
    if (health_check_add(name, flag_check, f) != 0) {
        pthread_mutex_destroy(&f->lock);
        free(f);
        return NULL;
    }
    return f;
}

void health_flag_set(health_flag_t *f, int ok, const char *detail)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->lock);
    snprintf(f->detail, sizeof(f->detail), "%s", detail ? detail : "");
    pthread_mutex_unlock(&f->lock);
    atomic_store(&f->ok, ok ? 1 : 0);
}

int health_flag_ok(const health_flag_t *f)
{
    return f != NULL && atomic_load(&((health_flag_t *)f)->ok);
}

/* Runs every check; with all non-NULL, also records each name's status and detail in it. */
static int run_checks(json_t *all)
{
    int ready = 1;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_checks; i++) {
        char detail[128] = "";
        int ok = checks[i].fn(checks[i].arg, detail, sizeof(detail)) != 0;
        ready &= ok;
        if (all == NULL)
            continue;
        json_t *seen = json_object_get(all, checks[i].name);
        if (seen != NULL &&
            (ok || strcmp(json_string_value(json_object_get(seen, "status")), "fail") == 0))
            continue; /* a name shared by several checks shows its first failure */
        json_t *entry = json_pack("{s:s,s:s}", "status", ok ? "ok" : "fail", "detail", detail);
        if (entry == NULL) /* a detail that is not UTF-8 */
            entry = json_pack("{s:s,s:s}", "status", ok ? "ok" : "fail", "detail", "?");
        json_object_set_new(all, checks[i].name, entry);
    }
    pthread_mutex_unlock(&lock);
    return ready;
}

int health_ready(void) { return run_checks(NULL); }

int health_ready_json(json_t **out)
{
    json_t *all = json_object();
    int ready = run_checks(all);
    *out = json_pack("{s:s,s:o}", "status", ready ? "ok" : "fail", "checks", all);
    return ready;
}
