/* metrics: series live in a linked list guarded by a mutex for registration and rendering only;
 * values are atomics (doubles stored as their bit patterns and updated with compare-and-swap,
 * bucket counts as plain atomic integers). Nothing is ever removed, so a handle stays valid
 * without reference counting. */
#include "metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
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
    _Atomic uint64_t value; /* counter/gauge value, or histogram sum (double bits) */
    size_t n_bounds;
    double *bounds;
    _Atomic uint64_t *buckets; /* n_bounds + 1 counts, the last is +Inf (not cumulative); their
                                  sum is the count, so _count always equals the +Inf bucket */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_series *head, *tail;

/* Guarded by lock, like the series; append-only. */
static struct collector {
    metrics_collect_fn fn;
    void *arg;
} collectors[METRICS_MAX_COLLECTORS];
static size_t n_collectors;

/* ---- values ---- */

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

/* The format's spelling of a sample value: integers plainly, other values in the shortest
 * form that reads back exactly, and NaN, +Inf, -Inf by name. */
static void format_double(char *out, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(out, n, "NaN");
    } else if (isinf(v)) {
        snprintf(out, n, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v > -1e15 && v < 1e15 && v == (double)(long long)v) {
        snprintf(out, n, "%.0f", v);
    } else {
        for (int p = 1; p <= 17; p++) {
            snprintf(out, n, "%.*g", p, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

/* ---- validation ---- */

static int valid_name(const char *s)
{
    if (s == NULL || !(isalpha((unsigned char)*s) || *s == '_' || *s == ':'))
        return 0;
    for (s++; *s != '\0'; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == ':'))
            return 0;
    return 1;
}

/* name="value"(,name="value")* with \\, \" and \n the only escapes. */
static int valid_labels(const char *s)
{
    if (s == NULL || *s == '\0')
        return 1;
    for (;;) {
        if (!(isalpha((unsigned char)*s) || *s == '_'))
            return 0;
        while (isalnum((unsigned char)*s) || *s == '_')
            s++;
        if (*s++ != '=' || *s++ != '"')
            return 0;
        while (*s != '"') {
            if (*s == '\0' || *s == '\n')
                return 0;
            if (*s == '\\') {
                s++;
                if (*s != '\\' && *s != '"' && *s != 'n')
                    return 0;
            }
            s++;
        }
        s++;
        if (*s == '\0')
            return 1;
        if (*s++ != ',')
            return 0;
    }
}

static int ascending(const double *bounds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return 0;
    return 1;
}

int metrics_escape_label(const char *value, char *out, size_t n)
{
    size_t o = 0;
    for (const char *p = value; *p != '\0'; p++) {
        const char *rep = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        size_t len = rep != NULL ? 2 : 1;
        if (o + len >= n) {
            if (n > 0)
                out[0] = '\0';
            return ERR_INVALID;
        }
        if (rep != NULL)
            memcpy(out + o, rep, 2);
        else
            out[o] = *p;
        o += len;
    }
    if (n == 0)
        return ERR_INVALID;
    out[o] = '\0';
    return 0;
}

/* ---- registration ---- */

static void series_free(struct metrics_series *s)
{
    if (s == NULL)
        return;
    free(s->name);
    free(s->help);
    free(s->labels);
    free(s->bounds);
    free(s->buckets);
    free(s);
}

static struct metrics_series *series_new(enum kind kind, const char *name, const char *help,
                                         const char *labels, const double *bounds, size_t n)
{
    struct metrics_series *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
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
        series_free(s);
        return NULL;
    }
    atomic_init(&s->value, to_bits(0.0));
    for (size_t i = 0; kind == K_HISTOGRAM && i <= n; i++)
        atomic_init(&s->buckets[i], 0);
    return s;
}

static struct metrics_series *registered(enum kind kind, const char *name, const char *help,
                                         const char *labels, const double *bounds, size_t n)
{
    if (!valid_name(name) || !valid_labels(labels))
        return NULL;
    if (kind == K_HISTOGRAM && (n > 0 && (bounds == NULL || !ascending(bounds, n))))
        return NULL;
    const char *want = labels ? labels : "";
    struct metrics_series *s = NULL;
    pthread_mutex_lock(&lock);
    for (struct metrics_series *p = head; p != NULL; p = p->next) {
        if (strcmp(p->name, name) != 0)
            continue;
        if (p->kind != kind)
            goto out; /* one name, one kind */
        if (strcmp(p->labels, want) == 0) {
            s = p;
            goto out;
        }
    }
    s = series_new(kind, name, help, labels, bounds, n);
    if (s == NULL)
        goto out;
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

int metrics_collector_add(metrics_collect_fn fn, void *arg)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_collectors; i++)
        if (collectors[i].fn == fn && collectors[i].arg == arg)
            goto out;
    if (n_collectors == METRICS_MAX_COLLECTORS) {
        rc = ERR_NOMEM;
        goto out;
    }
    collectors[n_collectors].fn = fn;
    collectors[n_collectors].arg = arg;
    n_collectors++;
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

/* ---- updates ---- */

void metrics_counter_add(metrics_counter_t *c, double v)
{
    if (c != NULL && c->kind == K_COUNTER && v > 0)
        atomic_add_double(&c->value, v, 0);
}

void metrics_gauge_set(metrics_gauge_t *g, double v)
{
    if (g != NULL && g->kind == K_GAUGE)
        atomic_add_double(&g->value, v, 1);
}

void metrics_gauge_add(metrics_gauge_t *g, double v)
{
    if (g != NULL && g->kind == K_GAUGE)
        atomic_add_double(&g->value, v, 0);
}

void metrics_histogram_observe(metrics_histogram_t *h, double v)
{
    if (h == NULL || h->kind != K_HISTOGRAM || isnan(v))
        return;
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    atomic_fetch_add(&h->buckets[i], 1);
    atomic_add_double(&h->value, v, 0);
}

/* ---- rendering ---- */

static int series_line(buf_t *out, const char *name, const char *suffix, const char *labels,
                       const char *extra, double v)
{
    char num[40];
    format_double(num, sizeof(num), v);
    int has = labels[0] != '\0', more = extra != NULL && extra[0] != '\0';
    int rc = buf_printf(out, "%s%s", name, suffix);
    if (rc == 0 && (has || more))
        rc = buf_printf(out, "{%s%s%s}", labels, has && more ? "," : "", more ? extra : "");
    if (rc == 0)
        rc = buf_printf(out, " %s\n", num);
    return rc;
}

static const char *type_name(enum kind k)
{
    return k == K_COUNTER ? "counter" : k == K_GAUGE ? "gauge" : "histogram";
}

static int help_line(buf_t *out, const struct metrics_series *s)
{
    int rc = buf_printf(out, "# HELP %s ", s->name);
    for (const char *p = s->help; rc == 0 && *p != '\0'; p++) {
        if (*p == '\\')
            rc = buf_puts(out, "\\\\");
        else if (*p == '\n')
            rc = buf_puts(out, "\\n");
        else
            rc = buf_append(out, p, 1);
    }
    if (rc == 0)
        rc = buf_printf(out, "\n# TYPE %s %s\n", s->name, type_name(s->kind));
    return rc;
}

static int render_series(buf_t *out, const struct metrics_series *s)
{
    if (s->kind != K_HISTOGRAM)
        return series_line(out, s->name, "", s->labels, NULL, from_bits(atomic_load(&s->value)));
    uint64_t cumulative = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i <= s->n_bounds; i++) {
        char le[64], num[40];
        cumulative += atomic_load(&s->buckets[i]);
        format_double(num, sizeof(num), i < s->n_bounds ? s->bounds[i] : INFINITY);
        snprintf(le, sizeof(le), "le=\"%s\"", num);
        rc = series_line(out, s->name, "_bucket", s->labels, le, (double)cumulative);
    }
    if (rc == 0)
        rc = series_line(out, s->name, "_sum", s->labels, NULL, from_bits(atomic_load(&s->value)));
    if (rc == 0)
        rc = series_line(out, s->name, "_count", s->labels, NULL, (double)cumulative);
    return rc;
}

/* ---- process metrics ---- */

static pthread_once_t start_once = PTHREAD_ONCE_INIT;
static double start_time;

/* The kernel's start time of this process: boot time (/proc/stat btime) plus the start tick
 * (/proc/self/stat field 22); the time of the first call when /proc cannot say. */
static void find_start_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    char line[1024];
    unsigned long long btime = 0, ticks = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "btime %llu", &btime) == 1)
            break;
    fclose(f);
    f = fopen("/proc/self/stat", "r");
    if (f == NULL)
        return;
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')'); /* the command name may contain spaces */
    for (int field = 2; p != NULL && field < 22; field++)
        p = strchr(p + 1, ' ');
    long hz = sysconf(_SC_CLK_TCK);
    if (p != NULL && btime > 0 && hz > 0 && sscanf(p + 1, "%llu", &ticks) == 1)
        start_time = (double)btime + (double)ticks / (double)hz;
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static int render_process(buf_t *out)
{
    pthread_once(&start_once, find_start_time);
    long size = 0, resident = 0, page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            size = resident = 0;
        fclose(f);
    }
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    char start[40], cpu_s[40];
    format_double(start, sizeof(start), start_time);
    format_double(cpu_s, sizeof(cpu_s), (double)cpu.tv_sec + (double)cpu.tv_nsec / 1e9);
    int rc = buf_printf(out,
                        "# HELP process_start_time_seconds Start time of the process since unix "
                        "epoch in seconds.\n"
                        "# TYPE process_start_time_seconds gauge\n"
                        "process_start_time_seconds %s\n"
                        "# HELP process_cpu_seconds_total Total user and system CPU time spent "
                        "in seconds.\n"
                        "# TYPE process_cpu_seconds_total counter\n"
                        "process_cpu_seconds_total %s\n"
                        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                        "# TYPE process_resident_memory_bytes gauge\n"
                        "process_resident_memory_bytes %ld\n"
                        "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                        "# TYPE process_virtual_memory_bytes gauge\n"
                        "process_virtual_memory_bytes %ld\n",
                        start, cpu_s, resident * page, size * page);
    long fds = open_fds();
    if (rc == 0 && fds >= 0)
        rc = buf_printf(out,
                        "# HELP process_open_fds Number of open file descriptors.\n"
                        "# TYPE process_open_fds gauge\n"
                        "process_open_fds %ld\n",
                        fds);
    return rc;
}

/* Runs the collectors from a copy of the table taken under the lock, and without it: a
 * collector registers and updates series, which takes the lock. */
static void run_collectors(void)
{
    struct collector copy[METRICS_MAX_COLLECTORS];
    pthread_mutex_lock(&lock);
    size_t n = n_collectors;
    memcpy(copy, collectors, n * sizeof(copy[0]));
    pthread_mutex_unlock(&lock);
    for (size_t i = 0; i < n; i++)
        copy[i].fn(copy[i].arg);
}

int metrics_render(buf_t *out)
{
    int rc = 0;
    run_collectors();
    pthread_mutex_lock(&lock);
    /* Group by name: HELP and TYPE once, then every series of that name. */
    for (struct metrics_series *s = head; rc == 0 && s != NULL; s = s->next) {
        int first = 1;
        for (struct metrics_series *p = head; first && p != s; p = p->next)
            first = strcmp(p->name, s->name) != 0;
        if (!first)
            continue;
        rc = help_line(out, s);
        for (struct metrics_series *q = s; rc == 0 && q != NULL; q = q->next)
            if (strcmp(q->name, s->name) == 0)
                rc = render_series(out, q);
    }
    pthread_mutex_unlock(&lock);
    if (rc == 0)
        rc = render_process(out);
    return rc == 0 ? 0 : ERR_NOMEM;
}
