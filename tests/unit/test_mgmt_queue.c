/* Unit tests of the work-queue fitness check (mgmt_queue_check): queue descriptions shaped like
 * the management API's GET /api/queues/{vhost}/{name}, and RabbitMQ 3.10's precedence rules
 * between queue arguments and the effective policy, written out case by case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "mgmt_queue.h"

/* Whether queue() gives the queue its dead-letter routing key as an argument, as the cases
 * about the other settings want; the routing key's own case turns it off. */
static int routing_key_argument = 1;

/* A queue as the API shows it: args and policy are JSON texts (policy NULL: none applies). */
static json_t *queue(const char *type, const char *args, const char *policy_name,
                     const char *policy)
{
    json_error_t je;
    json_t *q = json_pack("{s:s, s:s}", "name", "audit.events", "vhost", "petstore");
    assert_non_null(q);
    if (type != NULL)
        json_object_set_new(q, "type", json_string(type));
    json_t *a = json_loads(args, 0, &je);
    assert_non_null(a);
    if (routing_key_argument && json_object_get(a, "x-dead-letter-routing-key") == NULL)
        json_object_set_new(a, "x-dead-letter-routing-key", json_string("audit.events"));
    json_object_set_new(q, "arguments", a);
    json_object_set_new(q, "policy", policy_name ? json_string(policy_name) : json_null());
    json_object_set_new(q, "operator_policy", json_null());
    /* The API shows an empty definition as [] when no policy applies. */
    json_t *p = json_loads(policy ? policy : "[]", 0, &je);
    assert_non_null(p);
    json_object_set_new(q, "effective_policy_definition", p);
    return q;
}

#define FULL_POLICY                                                                                \
    "{\"dead-letter-exchange\":\"petstore.dlx\",\"dead-letter-routing-key\":\"audit.events\","     \
    "\"dead-letter-strategy\":\"at-least-once\",\"overflow\":\"reject-publish\","                  \
    "\"delivery-limit\":5}"

static size_t check(json_t *q, mgmt_queue_problem_t *p)
{
    memset(p, 0, sizeof(mgmt_queue_problem_t) * MGMT_QUEUE_MAX_PROBLEMS);
    size_t n = mgmt_queue_check(q, p);
    json_decref(q);
    return n;
}

static void print_problems(const mgmt_queue_problem_t *p, size_t n)
{
    char line[1024];
    mgmt_queue_problems_line(p, n, line, sizeof(line));
    print_message("%s\n", line);
}

/* Exactly one problem, about setting, whose detail contains each of the words. */
static void one_problem(json_t *q, const char *setting, const char *w1, const char *w2)
{
    mgmt_queue_problem_t p[MGMT_QUEUE_MAX_PROBLEMS];
    size_t n = check(q, p);
    if (n != 1)
        print_problems(p, n);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].setting, setting);
    if (w1 != NULL && strstr(p[0].detail, w1) == NULL)
        print_error("\"%s\" lacks \"%s\"\n", p[0].detail, w1);
    assert_true(w1 == NULL || strstr(p[0].detail, w1) != NULL);
    if (w2 != NULL && strstr(p[0].detail, w2) == NULL)
        print_error("\"%s\" lacks \"%s\"\n", p[0].detail, w2);
    assert_true(w2 == NULL || strstr(p[0].detail, w2) != NULL);
}

static void fit(json_t *q)
{
    mgmt_queue_problem_t p[MGMT_QUEUE_MAX_PROBLEMS];
    size_t n = check(q, p);
    if (n != 0)
        print_problems(p, n);
    assert_int_equal(n, 0);
}

static void test_the_systems_own_queue_set_by_policy_is_fit(void **state)
{
    (void)state;
    fit(queue("quorum", "{\"x-queue-type\":\"quorum\"}", "dead-letter-audit.events", FULL_POLICY));
}

static void test_a_queue_set_by_its_arguments_alone_is_fit(void **state)
{
    (void)state;
    fit(queue("quorum",
              "{\"x-queue-type\":\"quorum\",\"x-dead-letter-exchange\":\"petstore.dlx\","
              "\"x-delivery-limit\":3,\"x-dead-letter-strategy\":\"at-least-once\","
              "\"x-overflow\":\"reject-publish\",\"x-dead-letter-routing-key\":\"audit.events\"}",
              NULL, NULL));
}

static void test_a_bare_classic_queue_has_every_problem_in_order(void **state)
{
    (void)state;
    mgmt_queue_problem_t p[MGMT_QUEUE_MAX_PROBLEMS];
    routing_key_argument = 0;
    size_t n = check(queue("classic", "{}", NULL, NULL), p);
    routing_key_argument = 1;
    assert_int_equal(n, 6);
    assert_string_equal(p[0].setting, "x-queue-type");
    assert_non_null(strstr(p[0].detail, "\"classic\""));
    assert_string_equal(p[1].setting, "dead-letter-exchange");
    assert_string_equal(p[2].setting, "delivery-limit");
    assert_string_equal(p[3].setting, "dead-letter-strategy");
    assert_string_equal(p[4].setting, "overflow");
    assert_string_equal(p[5].setting, "dead-letter-routing-key");
    for (size_t i = 1; i < 6; i++) {
        assert_non_null(strstr(p[i].detail, "not set"));
        assert_non_null(strstr(p[i].detail, "no policy"));
    }
    /* Without `type`, the argument tells; without either, a queue is classic. */
    one_problem(queue(NULL, "{\"x-queue-type\":\"stream\"}", "p", FULL_POLICY), "x-queue-type",
                "\"stream\"", NULL);
    one_problem(queue(NULL, "{}", "p", FULL_POLICY), "x-queue-type", "\"classic\"", NULL);
    fit(queue(NULL, "{\"x-queue-type\":\"quorum\"}", "p", FULL_POLICY));
}

static void test_a_policy_without_delivery_limit_is_named(void **state)
{
    (void)state;
    one_problem(
        queue("quorum", "{\"x-queue-type\":\"quorum\"}", "test-no-limit",
              "{\"dead-letter-exchange\":\"petstore.dlx\","
              "\"dead-letter-strategy\":\"at-least-once\",\"overflow\":\"reject-publish\"}"),
        "delivery-limit", "not set", "policy \"test-no-limit\"");
}

static void test_at_most_once_dead_lettering_is_refused(void **state)
{
    (void)state;
    one_problem(queue("quorum", "{\"x-queue-type\":\"quorum\"}", "test-at-most-once",
                      "{\"dead-letter-exchange\":\"petstore.dlx\","
                      "\"dead-letter-strategy\":\"at-most-once\",\"overflow\":\"reject-publish\","
                      "\"delivery-limit\":5}"),
                "dead-letter-strategy", "\"at-most-once\"", "policy \"test-at-most-once\"");
}

static void test_overflow_other_than_reject_publish_is_refused(void **state)
{
    (void)state;
    one_problem(queue("quorum", "{\"x-queue-type\":\"quorum\"}", "p",
                      "{\"dead-letter-exchange\":\"petstore.dlx\","
                      "\"dead-letter-strategy\":\"at-least-once\",\"overflow\":\"drop-head\","
                      "\"delivery-limit\":5}"),
                "overflow", "\"drop-head\"", "reject-publish");
}

/* RabbitMQ 3.10.8, rabbit_quorum_queue: the queue argument wins for the dead-letter exchange
 * and strategy, the policy wins for overflow, the smaller wins for the delivery limit. */
static void test_precedence_follows_rabbitmq(void **state)
{
    (void)state;
    const char *amo = "{\"dead-letter-exchange\":\"petstore.dlx\",\"dead-letter-strategy\":"
                      "\"at-most-once\",\"overflow\":\"reject-publish\",\"delivery-limit\":5}";
    fit(queue("quorum", "{\"x-dead-letter-strategy\":\"at-least-once\"}", "p", amo));
    one_problem(queue("quorum", "{\"x-dead-letter-strategy\":\"at-most-once\"}", "p", FULL_POLICY),
                "dead-letter-strategy", "argument x-dead-letter-strategy", NULL);

    const char *drop = "{\"dead-letter-exchange\":\"petstore.dlx\",\"dead-letter-strategy\":"
                       "\"at-least-once\",\"overflow\":\"drop-head\",\"delivery-limit\":5}";
    one_problem(queue("quorum", "{\"x-overflow\":\"reject-publish\"}", "p", drop), "overflow",
                "policy \"p\"", NULL);
    fit(queue("quorum", "{\"x-overflow\":\"drop-head\"}", "p", FULL_POLICY));

    const char *unlimited = "{\"dead-letter-exchange\":\"petstore.dlx\",\"dead-letter-strategy\":"
                            "\"at-least-once\",\"overflow\":\"reject-publish\","
                            "\"delivery-limit\":-1}";
    one_problem(queue("quorum", "{\"x-delivery-limit\":5}", "p", unlimited), "delivery-limit", "-1",
                "policy \"p\"");
    fit(queue("quorum", "{\"x-delivery-limit\":50}", "p", FULL_POLICY));
    fit(queue("quorum", "{\"x-delivery-limit\":0}", "p", FULL_POLICY));

    /* The argument's exchange wins, so a bad one is reported even under a good policy. */
    one_problem(queue("quorum", "{\"x-dead-letter-exchange\":7}", "p", FULL_POLICY),
                "dead-letter-exchange", "argument x-dead-letter-exchange", NULL);
}

static void test_values_of_the_wrong_type_are_problems(void **state)
{
    (void)state;
    one_problem(queue("quorum", "{\"x-delivery-limit\":\"5\"}", NULL,
                      "{\"dead-letter-exchange\":\"petstore.dlx\",\"dead-letter-strategy\":"
                      "\"at-least-once\",\"overflow\":\"reject-publish\"}"),
                "delivery-limit", "\"5\"", NULL);
    one_problem(queue("quorum", "{}", "p",
                      "{\"dead-letter-exchange\":\"petstore.dlx\",\"dead-letter-strategy\":true,"
                      "\"overflow\":\"reject-publish\",\"delivery-limit\":5}"),
                "dead-letter-strategy", "true", NULL);
}

static void test_an_operator_policy_is_named_where_it_applies(void **state)
{
    (void)state;
    json_t *q = queue("quorum", "{}", "",
                      "{\"dead-letter-exchange\":\"petstore.dlx\","
                      "\"dead-letter-strategy\":\"at-least-once\","
                      "\"overflow\":\"drop-head\",\"delivery-limit\":5}");
    json_object_set_new(q, "operator_policy", json_string("ops-limits"));
    one_problem(q, "overflow", "operator policy \"ops-limits\"", NULL);
}

/* RabbitMQ's own dead letters (delivery limit) go to the dead-letter exchange with the queue's
 * dead-letter routing key, and X.dlq is bound with key X: without it, or with another key, they
 * find no queue and at-least-once dead-lettering keeps them stuck in the work queue. */
static void test_the_dead_letter_routing_key_must_be_the_queues_name(void **state)
{
    (void)state;
    routing_key_argument = 0;
    one_problem(queue("quorum", "{\"x-queue-type\":\"quorum\"}", "p",
                      "{\"dead-letter-exchange\":\"petstore.dlx\","
                      "\"dead-letter-strategy\":\"at-least-once\",\"overflow\":\"reject-publish\","
                      "\"delivery-limit\":5}"),
                "dead-letter-routing-key", "not set", "policy \"p\"");
    one_problem(queue("quorum", "{\"x-queue-type\":\"quorum\"}", "p",
                      "{\"dead-letter-exchange\":\"petstore.dlx\","
                      "\"dead-letter-routing-key\":\"saga.events\","
                      "\"dead-letter-strategy\":\"at-least-once\",\"overflow\":\"reject-publish\","
                      "\"delivery-limit\":5}"),
                "dead-letter-routing-key", "\"saga.events\"", "\"audit.events\"");
    fit(queue("quorum", "{\"x-queue-type\":\"quorum\"}", "p", FULL_POLICY));
    routing_key_argument = 1;
}

static void test_something_that_is_not_a_queue_has_every_problem(void **state)
{
    (void)state;
    mgmt_queue_problem_t p[MGMT_QUEUE_MAX_PROBLEMS];
    assert_int_equal(mgmt_queue_check(NULL, p), 6);
    json_t *a = json_array();
    assert_int_equal(mgmt_queue_check(a, p), 6);
    json_decref(a);
}

static void test_problems_line_joins_and_truncates(void **state)
{
    (void)state;
    mgmt_queue_problem_t p[MGMT_QUEUE_MAX_PROBLEMS];
    size_t n = check(queue("quorum", "{}", "p",
                           "{\"dead-letter-exchange\":\"x\",\"overflow\":\"reject-publish\"}"),
                     p);
    assert_int_equal(n, 2);
    char line[512];
    mgmt_queue_problems_line(p, n, line, sizeof(line));
    assert_non_null(strstr(line, "delivery-limit not set"));
    assert_non_null(strstr(line, "; dead-letter-strategy not set"));
    char small[20];
    mgmt_queue_problems_line(p, n, small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, "delivery-limit not ", 19);
    mgmt_queue_problems_line(p, 0, small, sizeof(small));
    assert_string_equal(small, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_systems_own_queue_set_by_policy_is_fit),
        cmocka_unit_test(test_a_queue_set_by_its_arguments_alone_is_fit),
        cmocka_unit_test(test_a_bare_classic_queue_has_every_problem_in_order),
        cmocka_unit_test(test_a_policy_without_delivery_limit_is_named),
        cmocka_unit_test(test_at_most_once_dead_lettering_is_refused),
        cmocka_unit_test(test_overflow_other_than_reject_publish_is_refused),
        cmocka_unit_test(test_precedence_follows_rabbitmq),
        cmocka_unit_test(test_values_of_the_wrong_type_are_problems),
        cmocka_unit_test(test_an_operator_policy_is_named_where_it_applies),
        cmocka_unit_test(test_the_dead_letter_routing_key_must_be_the_queues_name),
        cmocka_unit_test(test_something_that_is_not_a_queue_has_every_problem),
        cmocka_unit_test(test_problems_line_joins_and_truncates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
