/* lg_util: clock, argument values and the JSON report of the load generator; see lg_util.h. */
#include "lg_util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

int64_t lg_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int lg_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("petstore-loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(petstore-loadgen --help shows the usage)\n", stderr);
    va_end(ap);
    return -1;
}

int lg_arg_long(const char *name, const char *value, long min, long max, long *out)
{
    if (value == NULL)
        return lg_usage_error("%s needs a value", name);
    char *end = NULL;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v < min || v > max)
        return lg_usage_error("%s must be an integer from %ld to %ld, not \"%s\"", name, min, max,
                              value);
    *out = v;
    return 0;
}

int lg_arg_double(const char *name, const char *value, double min, double max, double *out)
{
    if (value == NULL)
        return lg_usage_error("%s needs a value", name);
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (errno != 0 || end == value || *end != '\0' || !isfinite(v) || v < min || v > max)
        return lg_usage_error("%s must be a number from %g to %g, not \"%s\"", name, min, max,
                              value);
    *out = v;
    return 0;
}

json_t *lg_ms_json(uint64_t us) { return json_real(round((double)us) / 1000.0); }

json_t *lg_hist_json(const lg_hist_t *h)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:f, s:I}", "p50",
                     lg_ms_json(lg_hist_percentile(h, 50.0)), "p90",
                     lg_ms_json(lg_hist_percentile(h, 90.0)), "p99",
                     lg_ms_json(lg_hist_percentile(h, 99.0)), "p99.9",
                     lg_ms_json(lg_hist_percentile(h, 99.9)), "max", lg_ms_json(h->max), "mean",
                     round(lg_hist_mean(h)) / 1000.0, "count", (json_int_t)h->count);
}

void lg_add_self_usage(json_t *report)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return;
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    json_object_set_new(report, "cpu_user_s", json_real(round(user * 1000.0) / 1000.0));
    json_object_set_new(report, "cpu_sys_s", json_real(round(sys * 1000.0) / 1000.0));
    json_object_set_new(report, "max_rss_kb", json_integer(ru.ru_maxrss));
}

int lg_write_report(const json_t *report, const char *path)
{
    int flags = JSON_INDENT(2) | JSON_REAL_PRECISION(10);
    if (path == NULL || (path[0] == '-' && path[1] == '\0')) {
        if (json_dumpf(report, stdout, flags) != 0 || fputc('\n', stdout) == EOF ||
            fflush(stdout) != 0) {
            fprintf(stderr, "petstore-loadgen: cannot write the report to stdout\n");
            return -1;
        }
        return 0;
    }
    if (json_dump_file(report, path, flags) != 0) {
        fprintf(stderr, "petstore-loadgen: cannot write the report to %s\n", path);
        return -1;
    }
    return 0;
}
