/* Unit tests of the readiness registry. The registry is process-wide and append-only, so the
 * tests run in order and each one accounts for the checks registered before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "health.h"
#include "metrics.h"

static const char *status_of(json_t *report, const char *name)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get(report, "checks"), name), "status"));
}

static const char *detail_of(json_t *report, const char *name)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get(report, "checks"), name), "detail"));
}

static void test_an_empty_registry_is_ready(void **state)
{
    (void)state;
    json_t *r = NULL;
    assert_int_equal(health_ready_json(&r), 1);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "ok");
    assert_int_equal(json_object_size(json_object_get(r, "checks")), 0);
    json_decref(r);
}

static void test_a_new_flag_fails_as_starting_until_its_owner_sets_it(void **state)
{
    (void)state;
    health_flag_t *db = health_flag_new("database");
    assert_non_null(db);
    assert_false(health_flag_ok(db));
    json_t *r = NULL;
    assert_int_equal(health_ready_json(&r), 0);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "fail");
    assert_string_equal(status_of(r, "database"), "fail");
    assert_string_equal(detail_of(r, "database"), "starting");
    json_decref(r);

    health_flag_set(db, 1, "connected");
    assert_true(health_flag_ok(db));
    assert_int_equal(health_ready_json(&r), 1);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "ok");
    assert_string_equal(status_of(r, "database"), "ok");
    assert_string_equal(detail_of(r, "database"), "connected");
    json_decref(r);

    health_flag_set(db, 0, NULL);
    assert_int_equal(health_ready_json(&r), 0);
    assert_string_equal(detail_of(r, "database"), "");
    json_decref(r);
    health_flag_set(db, 1, "connected");
}

/* The value of petstore_ready in a rendering of /metrics, or -1 when it is absent. */
static double ready_metric(void)
{
    buf_t b = BUF_INIT;
    assert_int_equal(metrics_render(&b), 0);
    const char *p = strstr(b.data, "\npetstore_ready ");
    double v = p != NULL ? strtod(p + strlen("\npetstore_ready "), NULL) : -1;
    buf_free(&b);
    return v;
}

static void test_petstore_ready_says_what_readyz_answers_at_each_scrape(void **state)
{
    (void)state;
    health_flag_t *f = health_flag_new("scraped");
    assert_true(ready_metric() == 0); /* a new flag is "starting" */
    health_flag_set(f, 1, "up");
    assert_int_equal(health_ready(), 1);
    assert_true(ready_metric() == 1);
    health_flag_set(f, 0, "down");
    assert_int_equal(health_ready(), 0);
    assert_true(ready_metric() == 0);
    health_flag_set(f, 1, "up");
}

static int broker_up;

static int broker_check(void *arg, char *detail, size_t n)
{
    int *up = arg;
    if (!*up)
        snprintf(detail, n, "no channel");
    return *up;
}

static void test_a_custom_check_reports_its_state_and_detail(void **state)
{
    (void)state;
    assert_int_equal(health_check_add("broker", broker_check, &broker_up), 0);
    json_t *r = NULL;
    assert_int_equal(health_ready_json(&r), 0);
    assert_string_equal(status_of(r, "broker"), "fail");
    assert_string_equal(detail_of(r, "broker"), "no channel");
    assert_string_equal(status_of(r, "database"), "ok");
    json_decref(r);
    broker_up = 1;
    assert_int_equal(health_ready_json(&r), 1);
    assert_string_equal(detail_of(r, "broker"), "");
    json_decref(r);
}

static void test_a_shared_name_fails_when_any_of_its_checks_fails(void **state)
{
    (void)state;
    health_flag_t *second = health_flag_new("database");
    health_flag_set(second, 0, "connection lost");
    json_t *r = NULL;
    assert_int_equal(health_ready_json(&r), 0);
    assert_string_equal(status_of(r, "database"), "fail");
    assert_string_equal(detail_of(r, "database"), "connection lost");
    json_decref(r);
    health_flag_set(second, 1, "connected");
    assert_int_equal(health_ready_json(&r), 1);
    json_decref(r);
}

static void test_long_details_are_truncated_and_null_flags_are_ignored(void **state)
{
    (void)state;
    health_flag_t *f = health_flag_new("verbose");
    char longer[300];
    memset(longer, 'd', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    health_flag_set(f, 1, longer);
    json_t *r = NULL;
    assert_int_equal(health_ready_json(&r), 1);
    assert_int_equal(strlen(detail_of(r, "verbose")), 127);
    json_decref(r);
    health_flag_set(NULL, 1, "ignored");
    assert_false(health_flag_ok(NULL));
}

static int always_ok(void *arg, char *detail, size_t n)
{
    (void)arg;
    (void)detail;
    (void)n;
    return 1;
}

/* Last: fills the registry. */
static void test_the_registry_refuses_checks_beyond_its_capacity(void **state)
{
    (void)state;
    int added = 0;
    while (health_check_add("filler", always_ok, NULL) == 0)
        added++;
    assert_true(added > 0 && added < HEALTH_MAX_CHECKS);
    assert_int_equal(health_check_add("one-more", always_ok, NULL), ERR_NOMEM);
    assert_null(health_flag_new("too-late"));
    json_t *r = NULL;
    assert_int_equal(health_ready_json(&r), 1);
    assert_null(json_object_get(json_object_get(r, "checks"), "one-more"));
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_empty_registry_is_ready),
        cmocka_unit_test(test_a_new_flag_fails_as_starting_until_its_owner_sets_it),
        cmocka_unit_test(test_petstore_ready_says_what_readyz_answers_at_each_scrape),
        cmocka_unit_test(test_a_custom_check_reports_its_state_and_detail),
        cmocka_unit_test(test_a_shared_name_fails_when_any_of_its_checks_fails),
        cmocka_unit_test(test_long_details_are_truncated_and_null_flags_are_ignored),
        cmocka_unit_test(test_the_registry_refuses_checks_beyond_its_capacity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
