/* Unit tests of the Prometheus registry: golden renderings of the text format, refusal of
 * malformed registrations, and lock-free updates from several threads. The registry is
 * process-wide, so each test uses metric names of its own. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "metrics.h"

/* The rendering of the registry up to the process metrics (caller frees). */
static char *render_registry(void)
{
    buf_t b = BUF_INIT;
    assert_int_equal(metrics_render(&b), 0);
    char *cut = strstr(b.data, "# HELP process_start_time_seconds");
    assert_non_null(cut);
    *cut = '\0';
    return b.data;
}

/* The value of the sample line that starts with prefix, or NAN. */
static double sample(const char *text, const char *prefix)
{
    const char *p = strstr(text, prefix);
    return p != NULL ? strtod(p + strlen(prefix), NULL) : NAN;
}

/* Runs first: the golden text is the whole registry. */
static void test_the_registry_renders_the_text_format_exactly(void **state)
{
    (void)state;
    metrics_counter_t *a = metrics_counter("g_jobs_total", "Jobs done, by queue", "queue=\"a\"");
    metrics_counter_add(a, 2);
    metrics_counter_add(a, 1);
    metrics_counter_add(a, -5); /* ignored: counters only go up */
    metrics_counter_add(a, NAN);
    assert_non_null(metrics_counter("g_jobs_total", "other help is ignored", "queue=\"b\""));
    metrics_gauge_t *g = metrics_gauge("g_backlog", "Rows waiting\nsecond line \\ backslash", NULL);
    metrics_gauge_set(g, 7.5);
    metrics_gauge_add(g, -2);
    static const double bounds[] = {0.1, 0.25, 0.5, 2.5};
    metrics_histogram_t *h =
        metrics_histogram("g_latency_seconds", "Latency", "route=\"/v1/orders/{id}\"", bounds, 4);
    metrics_histogram_observe(h, 0.125);
    metrics_histogram_observe(h, 0.25); /* a bound is inclusive */
    metrics_histogram_observe(h, 0.5);
    metrics_histogram_observe(h, 3);
    metrics_histogram_observe(h, NAN); /* ignored */
    /* Registered after the histogram, rendered with its own name. */
    metrics_counter_add(metrics_counter("g_jobs_total", NULL, "queue=\"c\""), 1);

    char *text = render_registry();
    assert_string_equal(text, "# HELP g_jobs_total Jobs done, by queue\n"
                              "# TYPE g_jobs_total counter\n"
                              "g_jobs_total{queue=\"a\"} 3\n"
                              "g_jobs_total{queue=\"b\"} 0\n"
                              "g_jobs_total{queue=\"c\"} 1\n"
                              "# HELP g_backlog Rows waiting\\nsecond line \\\\ backslash\n"
                              "# TYPE g_backlog gauge\n"
                              "g_backlog 5.5\n"
                              "# HELP g_latency_seconds Latency\n"
                              "# TYPE g_latency_seconds histogram\n"
                              "g_latency_seconds_bucket{route=\"/v1/orders/{id}\",le=\"0.1\"} 0\n"
                              "g_latency_seconds_bucket{route=\"/v1/orders/{id}\",le=\"0.25\"} 2\n"
                              "g_latency_seconds_bucket{route=\"/v1/orders/{id}\",le=\"0.5\"} 3\n"
                              "g_latency_seconds_bucket{route=\"/v1/orders/{id}\",le=\"2.5\"} 3\n"
                              "g_latency_seconds_bucket{route=\"/v1/orders/{id}\",le=\"+Inf\"} 4\n"
                              "g_latency_seconds_sum{route=\"/v1/orders/{id}\"} 3.875\n"
                              "g_latency_seconds_count{route=\"/v1/orders/{id}\"} 4\n");
    free(text);
}

static void test_the_same_name_and_labels_give_the_same_handle(void **state)
{
    (void)state;
    metrics_counter_t *c = metrics_counter("h_total", "A counter", "k=\"v\"");
    assert_non_null(c);
    assert_ptr_equal(c, metrics_counter("h_total", "A counter", "k=\"v\""));
    assert_ptr_not_equal(c, metrics_counter("h_total", "A counter", "k=\"w\""));
    assert_ptr_equal(metrics_gauge("h_gauge", "g", NULL), metrics_gauge("h_gauge", "g", ""));
    static const double b1[] = {1}, b2[] = {5, 6};
    metrics_histogram_t *h = metrics_histogram("h_seconds", "h", NULL, b1, 1);
    assert_ptr_equal(h, metrics_histogram("h_seconds", "h", NULL, b2, 2));
}

static void test_a_name_keeps_its_first_kind(void **state)
{
    (void)state;
    assert_non_null(metrics_counter("k_things", "c", NULL));
    assert_null(metrics_gauge("k_things", "g", NULL));
    assert_null(metrics_gauge("k_things", "g", "x=\"1\""));
    static const double b[] = {1};
    assert_null(metrics_histogram("k_things", "h", NULL, b, 1));
    /* Updates accept the NULL a failed registration returns. */
    metrics_gauge_set(NULL, 1);
    metrics_gauge_add(NULL, 1);
    metrics_counter_add(NULL, 1);
    metrics_histogram_observe(NULL, 1);
    char *text = render_registry();
    assert_non_null(strstr(text, "# TYPE k_things counter\nk_things 0\n"));
    assert_null(strstr(text, "# TYPE k_things gauge"));
    free(text);
}

static void test_malformed_names_labels_and_bounds_are_refused(void **state)
{
    (void)state;
    const char *names[] = {"", "9lives", "bad-name", "bad name", "é_total"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (metrics_counter(names[i], "x", NULL) != NULL)
            fail_msg("accepted name \"%s\"", names[i]);
    assert_null(metrics_counter(NULL, "x", NULL));
    assert_non_null(metrics_counter("m_ok:sub_total", "x", NULL));
    const char *labels[] = {"queue=a",   "queue=\"a",      "=\"x\"",           "a=\"x\",",
                            "a=\"\\q\"", "a=\"x\"b=\"y\"", "a=\"x\",9b=\"y\"", "a = \"x\""};
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (metrics_counter("m_labels_total", "x", labels[i]) != NULL)
            fail_msg("accepted labels %s", labels[i]);
    assert_non_null(metrics_counter("m_labels_total", "x", "a=\"x \\\"y\\\" \\\\ \\n\",b=\"\""));
    static const double down[] = {1, 0.5}, same[] = {1, 1};
    const double inf[] = {1, INFINITY};
    assert_null(metrics_histogram("m_seconds", "x", NULL, down, 2));
    assert_null(metrics_histogram("m_seconds", "x", NULL, same, 2));
    assert_null(metrics_histogram("m_seconds", "x", NULL, inf, 2));
    assert_null(metrics_histogram("m_seconds", "x", NULL, NULL, 2));
    metrics_histogram_t *only_inf = metrics_histogram("m_seconds", "x", NULL, NULL, 0);
    assert_non_null(only_inf);
    metrics_histogram_observe(only_inf, 42);
    char *text = render_registry();
    assert_non_null(strstr(text, "m_seconds_bucket{le=\"+Inf\"} 1\nm_seconds_sum 42\n"
                                 "m_seconds_count 1\n"));
    free(text);
}

static void test_label_values_are_escaped_for_the_format(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(metrics_escape_label("a\"b\\c\nd", out, sizeof(out)), 0);
    assert_string_equal(out, "a\\\"b\\\\c\\nd");
    assert_int_equal(metrics_escape_label("", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(metrics_escape_label("abcd", out, 4), ERR_INVALID);
    assert_string_equal(out, "");
    assert_int_equal(metrics_escape_label("\"", out, 2), ERR_INVALID);
    assert_int_equal(metrics_escape_label("abc", out, 4), 0);
}

static void test_sample_values_use_the_formats_spellings(void **state)
{
    (void)state;
    metrics_gauge_set(metrics_gauge("v_tenth", "x", NULL), 0.1);
    metrics_gauge_set(metrics_gauge("v_huge", "x", NULL), 1e20);
    metrics_gauge_set(metrics_gauge("v_negative", "x", NULL), -3);
    metrics_gauge_set(metrics_gauge("v_nan", "x", NULL), NAN);
    metrics_gauge_set(metrics_gauge("v_inf", "x", NULL), INFINITY);
    metrics_gauge_set(metrics_gauge("v_big_integer", "x", NULL), 123456789012.0);
    char *text = render_registry();
    assert_non_null(strstr(text, "\nv_tenth 0.1\n"));
    assert_non_null(strstr(text, "\nv_huge 1e+20\n"));
    assert_non_null(strstr(text, "\nv_negative -3\n"));
    assert_non_null(strstr(text, "\nv_nan NaN\n"));
    assert_non_null(strstr(text, "\nv_inf +Inf\n"));
    assert_non_null(strstr(text, "\nv_big_integer 123456789012\n"));
    free(text);
}

static void test_process_metrics_are_rendered_after_the_registry(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(metrics_render(&b), 0);
    double now = (double)time(NULL);
    double start = sample(b.data, "\nprocess_start_time_seconds ");
    assert_true(start > now - 3600 && start <= now + 1);
    assert_true(sample(b.data, "\nprocess_resident_memory_bytes ") > 0);
    assert_true(sample(b.data, "\nprocess_virtual_memory_bytes ") > 0);
    assert_true(sample(b.data, "\nprocess_cpu_seconds_total ") >= 0);
    assert_true(sample(b.data, "\nprocess_open_fds ") >= 3);
    assert_non_null(strstr(b.data, "# TYPE process_cpu_seconds_total counter\n"));
    /* Every line is a comment or "name[{labels}] value". */
    for (char *line = b.data, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        if (line[0] != '#') {
            char *space = strrchr(line, ' ');
            assert_non_null(space);
            char *end = NULL;
            double v = strtod(space + 1, &end);
            (void)v;
            assert_true(*end == '\0');
        }
    }
    buf_free(&b);
}

#define ADDERS 4
#define ADDS 20000

static void *add_many(void *arg)
{
    metrics_counter_t *c = metrics_counter("t_concurrent_total", "x", NULL);
    metrics_histogram_t *h = arg;
    for (int i = 0; i < ADDS; i++) {
        metrics_counter_add(c, 1);
        metrics_histogram_observe(h, 1);
    }
    return NULL;
}

static void test_concurrent_updates_are_never_lost(void **state)
{
    (void)state;
    static const double b[] = {0.5, 2};
    metrics_histogram_t *h = metrics_histogram("t_concurrent_seconds", "x", NULL, b, 2);
    pthread_t t[ADDERS];
    for (int i = 0; i < ADDERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, add_many, h), 0);
    for (int i = 0; i < ADDERS; i++)
        pthread_join(t[i], NULL);
    char *text = render_registry();
    assert_true(sample(text, "\nt_concurrent_total ") == ADDERS * ADDS);
    assert_true(sample(text, "\nt_concurrent_seconds_bucket{le=\"2\"} ") == ADDERS * ADDS);
    assert_true(sample(text, "\nt_concurrent_seconds_sum ") == ADDERS * ADDS);
    assert_true(sample(text, "\nt_concurrent_seconds_count ") == ADDERS * ADDS);
    free(text);
}

static int collected;

static void collect_calls(void *arg) { metrics_gauge_set(arg, ++collected); }

static void collect_nothing(void *arg) { (void)arg; }

static void test_collectors_set_their_series_at_each_rendering(void **state)
{
    (void)state;
    metrics_gauge_t *g = metrics_gauge("c_scrapes", "Renderings seen by the collector", NULL);
    assert_int_equal(metrics_collector_add(collect_calls, g), 0);
    assert_int_equal(metrics_collector_add(collect_calls, g), 0); /* the same one: no-op */
    char *text = render_registry();
    assert_true(sample(text, "\nc_scrapes ") == 1);
    free(text);
    text = render_registry();
    assert_true(sample(text, "\nc_scrapes ") == 2);
    free(text);
    assert_int_equal(collected, 2);
}

static void test_the_collector_table_is_bounded(void **state)
{
    (void)state;
    static int args[METRICS_MAX_COLLECTORS];
    size_t added = 0;
    while (added < METRICS_MAX_COLLECTORS &&
           metrics_collector_add(collect_nothing, &args[added]) == 0)
        added++;
    assert_true(added > 0 && added < METRICS_MAX_COLLECTORS);
    assert_int_equal(metrics_collector_add(collect_nothing, &args[added]), ERR_NOMEM);
    char *text = render_registry(); /* the registered ones still run */
    free(text);
    assert_int_equal(collected, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_registry_renders_the_text_format_exactly),
        cmocka_unit_test(test_the_same_name_and_labels_give_the_same_handle),
        cmocka_unit_test(test_a_name_keeps_its_first_kind),
        cmocka_unit_test(test_malformed_names_labels_and_bounds_are_refused),
        cmocka_unit_test(test_label_values_are_escaped_for_the_format),
        cmocka_unit_test(test_sample_values_use_the_formats_spellings),
        cmocka_unit_test(test_process_metrics_are_rendered_after_the_registry),
        cmocka_unit_test(test_concurrent_updates_are_never_lost),
        cmocka_unit_test(test_collectors_set_their_series_at_each_rendering),
        cmocka_unit_test(test_the_collector_table_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
