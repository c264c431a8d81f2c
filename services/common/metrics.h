/* metrics: a small Prometheus registry, rendered in the text exposition format 0.0.4.
 *
 * A series is a metric name plus a fixed label string chosen at registration
 * (`queue="saga.events",outcome="ok"`); it lives for the whole process. Registering the same
 * name and labels again returns the same handle, so code may register where convenient (but
 * registration takes a lock and scans the registry: keep handles for hot paths). A name is one
 * kind only: registering it as another kind fails. Label values are fixed at registration, so
 * label by something bounded (a route pattern, never a raw path or a client-chosen string).
 *
 * metrics_render() first runs the collectors (functions that set series computed on demand,
 * see metrics_collector_add), then writes every series grouped by name (HELP and TYPE once per
 * name, in registration order), then the process metrics: process_start_time_seconds,
 * process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes and
 * process_open_fds (from /proc/self).
 *
 * Threading: everything is thread-safe. Updates are lock-free (C11 atomics; a histogram's
 * buckets, sum and count are updated one after another, so a scrape racing an observation may
 * see them one observation apart, as with other Prometheus clients). */
#ifndef PETSTORE_METRICS_H
#define PETSTORE_METRICS_H

#include <stddef.h>

#include "buf.h"
#include "err.h"

typedef struct metrics_series metrics_counter_t;
typedef struct metrics_series metrics_gauge_t;
typedef struct metrics_series metrics_histogram_t;

/* Registers (or finds) a series. name: [a-zA-Z_:][a-zA-Z0-9_:]*. help: one line (first
 * registration wins; backslashes and newlines are escaped on output). labels: NULL, "", or the
 * inside of the braces, name="value" pairs separated by commas with values escaped as the
 * format requires (see metrics_escape_label). All strings are copied.
 * Returns a process-lifetime handle (never freed), or NULL when the name or labels are
 * malformed, the name is registered as another kind, or memory runs out. Every update accepts
 * NULL and does nothing, so a failed registration costs a metric, not a crash. */
metrics_counter_t *metrics_counter(const char *name, const char *help, const char *labels);
metrics_gauge_t *metrics_gauge(const char *name, const char *help, const char *labels);

/* bounds: n strictly ascending finite upper bounds (copied); +Inf is implicit. NULL when they
 * are not ascending. Registering an existing name and labels returns the existing histogram,
 * whatever bounds are passed. */
metrics_histogram_t *metrics_histogram(const char *name, const char *help, const char *labels,
                                       const double *bounds, size_t n);

/* Adds v to a counter; negative and NaN values are ignored (a counter only goes up). */
void metrics_counter_add(metrics_counter_t *c, double v);
void metrics_gauge_set(metrics_gauge_t *g, double v);
void metrics_gauge_add(metrics_gauge_t *g, double v);
void metrics_histogram_observe(metrics_histogram_t *h, double v);

/* Escapes a label value (\ " and newline) into out (caller's storage, NUL-terminated).
 * Returns 0, or ERR_INVALID when out is too small (out then holds ""). */
int metrics_escape_label(const char *value, char *out, size_t n) PETSTORE_NODISCARD;

/* A collector brings series up to date that are computed on demand rather than kept current by
 * their owner: readiness (health.c sets petstore_ready from the health checks), a value read
 * from the system. metrics_render() calls every collector, in registration order, before it
 * writes anything, on the rendering thread and outside the registry lock (so a collector may
 * register and update series). It must be cheap and must not block: it runs on every scrape. */
typedef void (*metrics_collect_fn)(void *arg);

#define METRICS_MAX_COLLECTORS 8

/* Registers a collector; arg is borrowed for the process lifetime. Registering the same fn and
 * arg again does nothing. Returns 0, or ERR_NOMEM when METRICS_MAX_COLLECTORS are registered. */
int metrics_collector_add(metrics_collect_fn fn, void *arg) PETSTORE_NODISCARD;

/* Runs the collectors, then appends the whole exposition to out. Returns 0 or ERR_NOMEM. */
int metrics_render(buf_t *out) PETSTORE_NODISCARD;

#endif
