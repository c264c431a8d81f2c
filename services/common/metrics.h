/* metrics: a small Prometheus registry (text exposition format 0.0.4).
 *
 * Series are registered once (name + fixed label string) and live for the whole process; the
 * returned handles are updated lock-free with C11 atomics from any thread. Registering the same
 * name and labels again returns the same handle, so code may register where it is convenient.
 * metrics_render() writes every series, plus process_start_time_seconds and
 * process_resident_memory_bytes. */
#ifndef PETSTORE_METRICS_H
#define PETSTORE_METRICS_H

#include <stddef.h>

#include "buf.h"

typedef struct metrics_series metrics_counter_t;
typedef struct metrics_series metrics_gauge_t;
typedef struct metrics_series metrics_histogram_t;

/* labels: the inside of the braces, e.g. "queue=\"saga.events\"", or NULL. All strings are
 * copied. Returns a process-lifetime handle, or NULL when out of memory (updates then accept
 * NULL and do nothing). */
metrics_counter_t *metrics_counter(const char *name, const char *help, const char *labels);
metrics_gauge_t *metrics_gauge(const char *name, const char *help, const char *labels);
/* bounds: ascending upper bounds (copied); +Inf is implicit. */
metrics_histogram_t *metrics_histogram(const char *name, const char *help, const char *labels,
                                       const double *bounds, size_t n);

void metrics_counter_add(metrics_counter_t *c, double v);
void metrics_gauge_set(metrics_gauge_t *g, double v);
void metrics_gauge_add(metrics_gauge_t *g, double v);
void metrics_histogram_observe(metrics_histogram_t *h, double v);

/* Appends the whole exposition to out. */
int metrics_render(buf_t *out) PETSTORE_NODISCARD;

#endif
