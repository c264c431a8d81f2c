/* Unit tests of the message envelope: the CloudEvents header table a producer builds, and the
 * checks a consumer applies to the properties and headers it receives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "msg.h"

#define MESSAGE_ID "0190a3c2-7b1e-7c4d-9f2a-000000000001"
#define ORDER "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f90"
#define CAUSE "0190a3c2-7b1e-7c4d-9f2a-000000000000"
#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TIME "2026-11-23T05:30:12.345Z"

static msg_envelope_t full_envelope(void)
{
    msg_envelope_t env;
    memset(&env, 0, sizeof(env));
    snprintf(env.message_id, sizeof(env.message_id), "%s", MESSAGE_ID);
    snprintf(env.correlation_id, sizeof(env.correlation_id), "%s", ORDER);
    snprintf(env.causation_id, sizeof(env.causation_id), "%s", CAUSE);
    snprintf(env.type, sizeof(env.type), "%s", "payment.charge.v1");
    snprintf(env.app_id, sizeof(env.app_id), "%s", "order-saga");
    snprintf(env.traceparent, sizeof(env.traceparent), "%s", TRACEPARENT);
    snprintf(env.time, sizeof(env.time), "%s", TIME);
    snprintf(env.source, sizeof(env.source), "%s", "/petstore/order-saga");
    return env;
}

/* The headers a well-behaved producer sends, as a new object the test may modify. */
static json_t *full_headers(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "cloudEvents_specversion", "1.0",
                     "cloudEvents_id", MESSAGE_ID, "cloudEvents_source", "/petstore/order-saga",
                     "cloudEvents_type", "payment.charge.v1", "cloudEvents_time", TIME,
                     "traceparent", TRACEPARENT, "causation_id", CAUSE);
}

/* Consumer-side check of headers with the standard properties; returns the code, fills e. */
static int receive(const json_t *headers, msg_envelope_t *out, err_t *e)
{
    return msg_envelope_from_headers(headers, MESSAGE_ID, "payment.charge.v1", ORDER, out, e);
}

/* ---- producer side ---------------------------------------------------------------------- */

static void test_headers_carry_every_cloudevents_attribute(void **state)
{
    msg_envelope_t env = full_envelope();
    json_t *h = NULL;
    json_t *want = full_headers();
    err_t e;
    (void)state;
    err_clear(&e);
    assert_int_equal(msg_envelope_headers(&env, &h, &e), 0);
    assert_true(json_equal(h, want));
    json_decref(want);
    json_decref(h);
}

static void test_headers_omit_empty_members_and_derive_the_source_from_the_app(void **state)
{
    msg_envelope_t env = full_envelope();
    json_t *h = NULL;
    (void)state;
    env.causation_id[0] = '\0';
    env.traceparent[0] = '\0';
    env.time[0] = '\0';
    env.source[0] = '\0';
    env.correlation_id[0] = '\0';
    snprintf(env.app_id, sizeof(env.app_id), "%s", "inventory");
    assert_int_equal(msg_envelope_headers(&env, &h, NULL), 0);
    assert_int_equal(json_object_size(h), 4);
    assert_string_equal(json_string_value(json_object_get(h, "cloudEvents_source")),
                        "/petstore/inventory");
    assert_string_equal(json_string_value(json_object_get(h, "cloudEvents_specversion")), "1.0");
    assert_null(json_object_get(h, "causation_id"));
    assert_null(json_object_get(h, "traceparent"));
    assert_null(json_object_get(h, "cloudEvents_time"));
    json_decref(h);
}

/* Breaks one member of a good envelope and expects msg_envelope_headers to name it. */
static void expect_refused(void (*breaker)(msg_envelope_t *), const char *want)
{
    msg_envelope_t env = full_envelope();
    json_t *h = NULL;
    err_t e;
    err_clear(&e);
    breaker(&env);
    assert_int_equal(msg_envelope_headers(&env, &h, &e), ERR_INVALID);
    assert_null(h);
    if (strstr(e.msg, want) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", e.msg, want);
}

static void bad_message_id(msg_envelope_t *env) { env->message_id[8] = '_'; }
static void empty_message_id(msg_envelope_t *env) { env->message_id[0] = '\0'; }
static void unknown_type(msg_envelope_t *env)
{
    snprintf(env->type, sizeof(env->type), "%s", "payment.charge.v9");
}
static void bad_correlation_id(msg_envelope_t *env)
{
    snprintf(env->correlation_id, sizeof(env->correlation_id), "%s", "order-17");
}
static void bad_causation_id(msg_envelope_t *env)
{
    snprintf(env->causation_id, sizeof(env->causation_id), "%s", "cause");
}
static void bad_time(msg_envelope_t *env)
{
    snprintf(env->time, sizeof(env->time), "%s", "2026-11-23 05:30:12");
}
static void bad_traceparent(msg_envelope_t *env) { env->traceparent[0] = 'f'; }
static void zero_trace_id(msg_envelope_t *env)
{
    snprintf(env->traceparent, sizeof(env->traceparent), "%s",
             "00-00000000000000000000000000000000-00f067aa0ba902b7-01");
}
static void no_source_no_app(msg_envelope_t *env)
{
    env->source[0] = '\0';
    env->app_id[0] = '\0';
}
static void spaced_app_id(msg_envelope_t *env)
{
    snprintf(env->app_id, sizeof(env->app_id), "%s", "order saga");
}
static void unterminated_type(msg_envelope_t *env) { memset(env->type, 'a', sizeof(env->type)); }

static void test_headers_refuse_a_malformed_envelope_naming_the_member(void **state)
{
    (void)state;
    expect_refused(bad_message_id, "envelope.message_id: expected uuid");
    expect_refused(empty_message_id, "envelope.message_id: expected uuid");
    expect_refused(unknown_type, "envelope.type: unknown message type \"payment.charge.v9\"");
    expect_refused(unterminated_type, "envelope.type: unknown message type");
    expect_refused(bad_correlation_id, "envelope.correlation_id");
    expect_refused(bad_causation_id, "envelope.causation_id");
    expect_refused(bad_time, "envelope.time");
    expect_refused(bad_traceparent, "envelope.traceparent");
    expect_refused(zero_trace_id, "envelope.traceparent");
    expect_refused(no_source_no_app, "envelope.source: missing");
    expect_refused(spaced_app_id, "envelope.app_id");
}

static void test_headers_refuse_a_null_envelope(void **state)
{
    json_t *h = NULL;
    (void)state;
    assert_int_equal(msg_envelope_headers(NULL, &h, NULL), ERR_INVALID);
    assert_null(h);
}

/* ---- consumer side ---------------------------------------------------------------------- */

static void test_headers_round_trip_through_the_consumer_side(void **state)
{
    msg_envelope_t sent = full_envelope();
    msg_envelope_t got;
    json_t *h = NULL;
    err_t e;
    (void)state;
    err_clear(&e);
    assert_int_equal(msg_envelope_headers(&sent, &h, &e), 0);
    assert_int_equal(
        msg_envelope_from_headers(h, sent.message_id, sent.type, sent.correlation_id, &got, &e), 0);
    assert_string_equal(got.message_id, sent.message_id);
    assert_string_equal(got.correlation_id, sent.correlation_id);
    assert_string_equal(got.causation_id, sent.causation_id);
    assert_string_equal(got.type, sent.type);
    assert_string_equal(got.app_id, sent.app_id);
    assert_string_equal(got.traceparent, sent.traceparent);
    assert_string_equal(got.time, sent.time);
    assert_string_equal(got.source, sent.source);
    json_decref(h);
}

static void test_consumer_side_accepts_a_message_without_headers_or_order(void **state)
{
    msg_envelope_t got;
    err_t e;
    (void)state;
    err_clear(&e);
    assert_int_equal(
        msg_envelope_from_headers(NULL, MESSAGE_ID, "inventory.list_pet.v1", NULL, &got, &e), 0);
    assert_string_equal(got.message_id, MESSAGE_ID);
    assert_string_equal(got.type, "inventory.list_pet.v1");
    assert_string_equal(got.correlation_id, "");
    assert_string_equal(got.causation_id, "");
    assert_string_equal(got.traceparent, "");
    assert_string_equal(got.source, "");
    assert_string_equal(got.app_id, "");
    assert_int_equal(
        msg_envelope_from_headers(NULL, MESSAGE_ID, "inventory.list_pet.v1", "", &got, &e), 0);
}

static void test_consumer_side_ignores_unknown_headers(void **state)
{
    json_t *h = full_headers();
    msg_envelope_t got;
    (void)state;
    assert_int_equal(json_object_set_new(h, "x-death", json_array()), 0);
    assert_int_equal(json_object_set_new(h, "x-petstore-failure-class", json_string("decode")), 0);
    assert_int_equal(receive(h, &got, NULL), 0);
    json_decref(h);
}

/* Calls the consumer side with the given properties and no headers; expects want in the error
 * and *out untouched. */
static void expect_bad_properties(const char *message_id, const char *type,
                                  const char *correlation_id, const char *want)
{
    msg_envelope_t got;
    err_t e;
    err_clear(&e);
    memset(&got, 0x5a, sizeof(got));
    assert_int_equal(msg_envelope_from_headers(NULL, message_id, type, correlation_id, &got, &e),
                     ERR_INVALID);
    if (strstr(e.msg, want) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", e.msg, want);
    assert_int_equal((unsigned char)got.message_id[0], 0x5a);
}

static void test_consumer_side_refuses_bad_properties(void **state)
{
    (void)state;
    expect_bad_properties(NULL, "payment.voided.v1", ORDER, "envelope.message_id: missing");
    expect_bad_properties("", "payment.voided.v1", ORDER, "envelope.message_id: missing");
    expect_bad_properties("17", "payment.voided.v1", ORDER, "envelope.message_id: expected uuid");
    expect_bad_properties(MESSAGE_ID, NULL, ORDER, "envelope.type: missing");
    expect_bad_properties(MESSAGE_ID, "inventory.teleport.v1", ORDER,
                          "envelope.type: unknown message type \"inventory.teleport.v1\"");
    expect_bad_properties(MESSAGE_ID, "payment.\xc3\xa9\x01.v1", ORDER,
                          "envelope.type: unknown message type \"payment.???.v1\"");
    expect_bad_properties(MESSAGE_ID, "payment.voided.v1", "order-17",
                          "envelope.correlation_id: expected uuid");
}

/* Sets header key to value (stolen; NULL deletes it) in the standard headers and expects the
 * consumer side to refuse them with want in the error. */
static void expect_bad_header(const char *key, json_t *value, const char *want)
{
    json_t *h = full_headers();
    msg_envelope_t got;
    err_t e;
    err_clear(&e);
    if (value != NULL)
        assert_int_equal(json_object_set_new(h, key, value), 0);
    else
        assert_int_equal(json_object_del(h, key), 0);
    assert_int_equal(receive(h, &got, &e), ERR_INVALID);
    if (strstr(e.msg, want) == NULL)
        fail_msg("%s: error \"%s\" lacks \"%s\"", key, e.msg, want);
    json_decref(h);
}

static void test_consumer_side_refuses_headers_that_contradict_or_break_the_rules(void **state)
{
    char long_source[80];
    (void)state;
    memset(long_source, 'a', sizeof(long_source) - 1);
    long_source[sizeof(long_source) - 1] = '\0';
    expect_bad_header("cloudEvents_specversion", json_string("0.3"),
                      "envelope.headers.cloudEvents_specversion: expected \"1.0\"");
    expect_bad_header("cloudEvents_specversion", json_real(1.0),
                      "envelope.headers.cloudEvents_specversion");
    expect_bad_header("cloudEvents_id", json_string(CAUSE),
                      "envelope.headers.cloudEvents_id: differs from message_id");
    expect_bad_header("cloudEvents_type", json_string("payment.voided.v1"),
                      "envelope.headers.cloudEvents_type: differs from type");
    expect_bad_header("cloudEvents_source", json_integer(7), "envelope.headers.cloudEvents_source");
    expect_bad_header("cloudEvents_source", json_string(long_source),
                      "envelope.headers.cloudEvents_source");
    expect_bad_header("cloudEvents_source", json_string("/petstore/order saga"),
                      "envelope.headers.cloudEvents_source");
    expect_bad_header("cloudEvents_time", json_string("yesterday"),
                      "envelope.headers.cloudEvents_time: expected RFC 3339 UTC date-time");
    expect_bad_header("causation_id", json_string("cause"),
                      "envelope.headers.causation_id: expected uuid");
    expect_bad_header("causation_id", json_null(), "envelope.headers.causation_id");
}

static void test_consumer_side_refuses_headers_that_are_not_an_object(void **state)
{
    json_t *h = json_array();
    msg_envelope_t got;
    err_t e;
    (void)state;
    err_clear(&e);
    assert_int_equal(receive(h, &got, &e), ERR_INVALID);
    assert_string_equal(e.msg, "envelope.headers: expected object");
    json_decref(h);
}

static void test_consumer_side_starts_a_new_trace_for_an_unreadable_traceparent(void **state)
{
    const char *bad[] = {"", "garbage", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                         "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                         "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"};
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *h = full_headers();
        msg_envelope_t got;
        err_t e;
        err_clear(&e);
        assert_int_equal(json_object_set_new(h, "traceparent", json_string(bad[i])), 0);
        assert_int_equal(receive(h, &got, &e), 0);
        assert_string_equal(got.traceparent, "");
        json_decref(h);
    }
}

static void test_consumer_side_takes_the_app_only_from_a_petstore_source(void **state)
{
    json_t *h = full_headers();
    msg_envelope_t got;
    (void)state;
    assert_int_equal(receive(h, &got, NULL), 0);
    assert_string_equal(got.app_id, "order-saga");
    assert_int_equal(json_object_set_new(h, "cloudEvents_source", json_string("urn:elsewhere")), 0);
    assert_int_equal(receive(h, &got, NULL), 0);
    assert_string_equal(got.source, "urn:elsewhere");
    assert_string_equal(got.app_id, "");
    json_decref(h);
}

static void test_consumer_side_treats_empty_optional_headers_as_absent(void **state)
{
    json_t *h = full_headers();
    msg_envelope_t got;
    (void)state;
    assert_int_equal(json_object_set_new(h, "causation_id", json_string("")), 0);
    assert_int_equal(json_object_set_new(h, "cloudEvents_time", json_string("")), 0);
    assert_int_equal(receive(h, &got, NULL), 0);
    assert_string_equal(got.causation_id, "");
    assert_string_equal(got.time, "");
    json_decref(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_carry_every_cloudevents_attribute),
        cmocka_unit_test(test_headers_omit_empty_members_and_derive_the_source_from_the_app),
        cmocka_unit_test(test_headers_refuse_a_malformed_envelope_naming_the_member),
        cmocka_unit_test(test_headers_refuse_a_null_envelope),
        cmocka_unit_test(test_headers_round_trip_through_the_consumer_side),
        cmocka_unit_test(test_consumer_side_accepts_a_message_without_headers_or_order),
        cmocka_unit_test(test_consumer_side_ignores_unknown_headers),
        cmocka_unit_test(test_consumer_side_refuses_bad_properties),
        cmocka_unit_test(test_consumer_side_refuses_headers_that_contradict_or_break_the_rules),
        cmocka_unit_test(test_consumer_side_refuses_headers_that_are_not_an_object),
        cmocka_unit_test(test_consumer_side_starts_a_new_trace_for_an_unreadable_traceparent),
        cmocka_unit_test(test_consumer_side_takes_the_app_only_from_a_petstore_source),
        cmocka_unit_test(test_consumer_side_treats_empty_optional_headers_as_absent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
