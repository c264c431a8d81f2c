/* metrics: series live in a linked list guarded by a mutex for registration and rendering only;
 * values are atomics (doubles stored as their bit patterns, updated with compare-and-swap). */
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM };

struct metrics_series {
    struct metrics_series *next;
    enum kind kind;
    char *name;
    char *help;
    char *labels;
    _Atomic uint64_t value; /* counter/gauge value, or histogram sum */
    size_t n_bounds;
    double *bounds;
    _Atomic uint64_t *buckets; /* n_bounds + 1, the last is +Inf (not cumulative) */
    _Atomic uint64_t count;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_series *head, *tail;
static double start_time;

static uint64_t to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void atomic_add_double(_Atomic uint64_t *a, double v, int set)
{
    uint64_t old = atomic_load(a), want;
    do {
        want = to_bits(set ? v : from_bits(old) + v);
    } while (!atomic_compare_exchange_weak(a, &old, want));
}

static int same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static struct metrics_series *registered(enum kind kind, const char *name, const char *help,
                                         const char *labels, const double *bounds, size_t n)
{
    pthread_mutex_lock(&lock);
    if (start_time == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        start_time = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    }
    struct metrics_series *s;
    for (s = head; s != NULL; s = s->next)
        if (s->kind == kind && strcmp(s->name, name) == 0 && same(s->labels, labels))
            goto out;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto out;
    s->kind = kind;
    s->name = strdup(name);
    s->help = strdup(help ? help : "");
    s->labels = strdup(labels ? labels : "");
    if (kind == K_HISTOGRAM) {
        s->n_bounds = n;
        s->bounds = calloc(n ? n : 1, sizeof(double));
        s->buckets = calloc(n + 1, sizeof(*s->buckets));
        if (s->bounds != NULL && n > 0)
            memcpy(s->bounds, bounds, n * sizeof(double));
    }
    if (s->name == NULL || s->help == NULL || s->labels == NULL ||
        (kind == K_HISTOGRAM && (s->bounds == NULL || s->buckets == NULL))) {
        free(s->name);
        free(s->help);
        free(s->labels);
        free(s->bounds);
        free(s->buckets);
        free(s);
        s = NULL;
        goto out;
    }
    atomic_init(&s->value, to_bits(0.0));
    if (tail != NULL)
        tail->next = s;
    else
        head = s;
    tail = s;
out:
    pthread_mutex_unlock(&lock);
    return s;
}

metrics_counter_t *metrics_counter(const char *name, const char *help, const char *labels)
{
    return registered(K_COUNTER, name, help, labels, NULL, 0);
}

metrics_gauge_t *metrics_gauge(const char *name, const char *help, const char *labels)
{
    return registered(K_GAUGE, name, help, labels, NULL, 0);
}

metrics_histogram_t *metrics_histogram(const char *name, const char *help, const char *labels,
                                       const double *bounds, size_t n)
{
    return registered(K_HISTOGRAM, name, help, labels, bounds, n);
}

void metrics_counter_add(metrics_counter_t *c, double v)
{
    if (c != NULL && v > 0)
        atomic_add_double(&c->value, v, 0);
}

void metrics_gauge_set(metrics_gauge_t *g, double v)
{
    if (g != NULL)
        atomic_add_double(&g->value, v, 1);
}

void metrics_gauge_add(metrics_gauge_t *g, double v)
{
    if (g != NULL)
        atomic_add_double(&g->value, v, 0);
}

void metrics_histogram_observe(metrics_histogram_t *h, double v)
{
    if (h == NULL)
        return;
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    atomic_fetch_add(&h->buckets[i], 1);
    atomic_fetch_add(&h->count, 1);
    atomic_add_double(&h->value, v, 0);
}

static int fmt_value(buf_t *out, double v)
{
    if (v == (double)(long long)v && v < 1e15 && v > -1e15)
        return buf_printf(out, "%lld", (long long)v);
    return buf_printf(out, "%.17g", v);
}

static int series_line(buf_t *out, const char *name, const char *suffix, const char *labels,
                       const char *extra, double v)
{
    int rc = buf_printf(out, "%s%s", name, suffix);
    int has = labels[0] != '\0', more = extra != NULL && extra[0] != '\0';
    if (rc == 0 && (has || more))
        rc = buf_printf(out, "{%s%s%s}", labels, has && more ? "," : "", more ? extra : "");
    if (rc == 0)
        rc = buf_puts(out, " ");
    if (rc == 0)
        rc = fmt_value(out, v);
    if (rc == 0)
        rc = buf_puts(out, "\n");
    return rc;
}

static const char *type_name(enum kind k)
{
    return k == K_COUNTER ? "counter" : k == K_GAUGE ? "gauge" : "histogram";
}

static int render_series(buf_t *out, const struct metrics_series *s)
{
    if (s->kind != K_HISTOGRAM)
        return series_line(out, s->name, "", s->labels, NULL, from_bits(atomic_load(&s->value)));
    uint64_t cumulative = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i <= s->n_bounds; i++) {
        char le[64];
        cumulative += atomic_load(&s->buckets[i]);
        if (i < s->n_bounds)
            snprintf(le, sizeof(le), "le=\"%g\"", s->bounds[i]);
        else
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        rc = series_line(out, s->name, "_bucket", s->labels, le, (double)cumulative);
    }
    if (rc == 0)
        rc = series_line(out, s->name, "_sum", s->labels, NULL,
                         from_bits(atomic_load(&s->value)));
    if (rc == 0)
        rc = series_line(out, s->name, "_count", s->labels, NULL,
                         (double)atomic_load(&s->count));
    return rc;
}

int metrics_render(buf_t *out)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    /* Group by name: HELP and TYPE once, then every series of that name. */
    for (struct metrics_series *s = head; rc == 0 && s != NULL; s = s->next) {
        int first = 1;
        for (struct metrics_series *p = head; p != s; p = p->next)
            if (strcmp(p->name, s->name) == 0)
                first = 0;
        if (!first)
            continue;
        rc = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help, s->name,
                        type_name(s->kind));
        for (struct metrics_series *q = s; rc == 0 && q != NULL; q = q->next)
            if (strcmp(q->name, s->name) == 0)
                rc = render_series(out, q);
    }
    double started = start_time;
    pthread_mutex_unlock(&lock);

    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    if (rc == 0)
        rc = buf_printf(out,
                        "# HELP process_start_time_seconds Start time of the process\n"
                        "# TYPE process_start_time_seconds gauge\n"
                        "process_start_time_seconds %.3f\n"
                        "# HELP process_resident_memory_bytes Resident memory size\n"
                        "# TYPE process_resident_memory_bytes gauge\n"
                        "process_resident_memory_bytes %ld\n",
                        started, resident * sysconf(_SC_PAGESIZE));
    return rc;
}
