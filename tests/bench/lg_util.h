/* lg_util: what both modes of the load generator share: the clock, command-line values and the
 * JSON report.
 *
 * Bad command-line values are usage errors: the helpers print "petstore-loadgen: ..." to stderr
 * and return -1, and the caller exits with status 2. Threading: none. */
#ifndef PETSTORE_LG_UTIL_H
#define PETSTORE_LG_UTIL_H

#include <jansson.h>
#include <stdint.h>

#include "lg_hist.h"

#define LG_EXIT_USAGE 2

/* Microseconds of the monotonic clock. */
int64_t lg_now_us(void);

/* Prints "petstore-loadgen: <message>" and a hint to --help on stderr; returns -1. */
int lg_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses the value of option `name` as an integer in [min, max] / a number in [min, max]. */
int lg_arg_long(const char *name, const char *value, long min, long max, long *out);
int lg_arg_double(const char *name, const char *value, double min, double max, double *out);

/* {"p50", "p90", "p99", "p99.9", "max", "mean" (milliseconds, 3 decimals), "count"} of h: a new
 * reference (NULL when out of memory). */
json_t *lg_hist_json(const lg_hist_t *h);

/* Milliseconds with microsecond precision, as a JSON real. */
json_t *lg_ms_json(uint64_t us);

/* Adds the generator's own CPU use (cpu_user_s, cpu_sys_s, max_rss_kb) to report. */
void lg_add_self_usage(json_t *report);

/* Writes report, indented, to path (NULL or "-": stdout). Returns 0, or -1 with a message on
 * stderr. */
int lg_write_report(const json_t *report, const char *path);

#endif
