/* The dead-letter tool's pure parts: the command line, times, what a dead letter
 * says (class, origin, group, authenticity), masking, and selection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dlq.h"

static void times(void **state)
{
    (void)state;
    time_t t;
    err_t e;
    assert_int_equal(dlq_parse_time("2026-12-05T01:00:00Z", 0, &t, &e), 0);
    assert_int_equal((long long)t, 1796432400LL);
    assert_int_equal(dlq_parse_time("2026-12-05T02:00:00.250+01:00", 0, &t, &e), 0);
    assert_int_equal((long long)t, 1796432400LL);
    assert_int_equal(dlq_parse_time("2h", 1796432400, &t, &e), 0);
    assert_int_equal((long long)t, 1796432400LL - 7200);
    assert_int_equal(dlq_parse_time("2026-12-05T01:00:00", 0, &t, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "zone"));
    assert_int_equal(dlq_parse_time("2026-13-05T01:00:00Z", 0, &t, &e), ERR_INVALID);
    assert_int_equal(dlq_parse_time("yesterday", 0, &t, &e), ERR_INVALID);
    int64_t ms;
    assert_int_equal(dlq_parse_time_ms("2026-12-05T01:00:00.25Z", 0, &ms, &e), 0);
    assert_int_equal((long long)ms, 1796432400250LL);
    assert_int_equal(dlq_parse_time_ms("2026-12-05T01:00:00.123456Z", 0, &ms, &e), 0);
    assert_int_equal((long long)ms, 1796432400123LL);
    assert_int_equal(dlq_parse_time_ms("2026-12-05T01:00:00.Z", 0, &ms, &e), ERR_INVALID);
    assert_int_equal(dlq_parse_time("2026-12-05T01:00:00.999Z", 0, &t, &e), 0);
    assert_int_equal((long long)t, 1796432400LL);
    char out[32];
    dlq_format_time(1796432400, out, sizeof(out));
    assert_string_equal(out, "2026-12-05T01:00:00Z");
}

static int parse(dlq_args_t *a, err_t *e, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    return dlq_args_parse(argc, argv, 0, a, e);
}

static void arguments(void **state)
{
    (void)state;
    dlq_args_t a;
    err_t e;
    char *ok[] = {"saga.events",   "--id",   "a,b",  "--id=c",        "--type",
                  "t.v1",          "--rate", "200",  "--canary",      "3",
                  "--canary-wait", "2s",     "--to", ":audit.events", "--json"};
    assert_int_equal(parse(&a, &e, 15, ok), 0);
    assert_int_equal(a.n_pos, 1);
    assert_string_equal(a.pos[0], "saga.events");
    assert_int_equal(a.sel.n_ids, 3);
    assert_string_equal(a.sel.ids[1], "b");
    assert_string_equal(a.sel.ids[2], "c");
    assert_string_equal(a.sel.type, "t.v1");
    assert_true(a.rate == 200.0);
    assert_int_equal(a.canary, 3);
    assert_int_equal(a.canary_wait_ms, 2000);
    assert_string_equal(a.to, ":audit.events");
    assert_true(a.json);
    assert_true(dlq_sel_given(&a.sel));
    dlq_args_free(&a);

    char *unknown[] = {"q", "--frobnicate"};
    assert_int_equal(parse(&a, &e, 2, unknown), ERR_INVALID);
    assert_non_null(strstr(e.msg, "--frobnicate"));
    dlq_args_free(&a);
    char *missing[] = {"q", "--type"};
    assert_int_equal(parse(&a, &e, 2, missing), ERR_INVALID);
    assert_non_null(strstr(e.msg, "needs a value"));
    dlq_args_free(&a);
    char *status[] = {"fp", "--status", "closed"};
    assert_int_equal(parse(&a, &e, 3, status), ERR_INVALID);
    dlq_args_free(&a);
    char *rate[] = {"q", "--rate", "0"};
    assert_int_equal(parse(&a, &e, 3, rate), ERR_INVALID);
    dlq_args_free(&a);
    char *order[] = {"q", "--since", "1h", "--until", "2h"};
    assert_int_equal(parse(&a, &e, 5, order), ERR_INVALID);
    assert_non_null(strstr(e.msg, "--since is after --until"));
    dlq_args_free(&a);
    char *none[] = {"q"};
    assert_int_equal(parse(&a, &e, 1, none), 0);
    assert_false(dlq_sel_given(&a.sel));
    dlq_args_free(&a);
}

/* A consumer's dead letter of payment.charged.v1 from saga.events, as svc_consumer.c writes it. */
static mq_delivery_t consumer_dead_letter(const char *user, const char *sender, const char *klass)
{
    mq_delivery_t d;
    memset(&d, 0, sizeof(d));
    d.message_id = "6f1c1b1e-0000-4000-8000-000000000001";
    d.type = "payment.charged.v1";
    d.user_id = (char *)user;
    d.timestamp = 1796432000;
    d.body = "{\"card\": \"4111 1111 1111 1111\", \"note\": \"ok\"}";
    d.body_len = strlen(d.body);
    d.headers =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s}", "x-petstore-failure-class",
                  klass, "x-petstore-error-code", "ERR_INTERNAL", "x-petstore-error", "boom",
                  "x-petstore-handler", "order-saga", "x-petstore-original-queue", "saga.events",
                  "x-petstore-original-exchange", "petstore.events",
                  "x-petstore-original-routing-key", "payment.charged", "x-petstore-failed-at",
                  "2026-12-05T01:00:00Z", "x-petstore-attempts", 5, "x-petstore-sender", sender,
                  "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    return d;
}

static void a_consumers_dead_letter(void **state)
{
    (void)state;
    mq_delivery_t d = consumer_dead_letter("saga", "payment", "handler");
    dlq_msg_t m = {.d = &d};
    dlq_msg_parse(&m, "saga.events.dlq");
    assert_string_equal(m.klass, "handler");
    assert_string_equal(m.code, "ERR_INTERNAL");
    assert_string_equal(m.handler, "order-saga");
    assert_string_equal(m.original_queue, "saga.events");
    assert_string_equal(m.exchange, "petstore.events");
    assert_string_equal(m.routing_key, "payment.charged");
    assert_string_equal(m.producer, "payment");
    assert_int_equal(m.attempts, 5);
    assert_int_equal((long long)m.dead_at, 1796432400LL);
    assert_int_equal((long long)m.dead_at_ms, 1796432400000LL);
    assert_int_equal((long long)m.first_death, 1796432400LL);
    assert_string_equal(m.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(m.refusal, "");
    char fp[17];
    dlq_fingerprint("handler", "ERR_INTERNAL", "payment.charged.v1", "order-saga", "saga.events",
                    fp);
    assert_string_equal(m.fingerprint, fp);
    assert_int_equal(strlen(fp), 16);
    dlq_fingerprint("contract", "ERR_INTERNAL", "payment.charged.v1", "order-saga", "saga.events",
                    fp);
    assert_string_not_equal(m.fingerprint, fp);

    json_t *j = dlq_msg_json(&m);
    const char *body = json_string_value(json_object_get(j, "body"));
    assert_null(strstr(body, "4111"));
    assert_non_null(strstr(body, "1111"));
    assert_true(json_is_true(json_object_get(j, "verified")));
    json_decref(j);
    json_decref(d.headers);
}

static void refusals(void **state)
{
    (void)state;
    struct {
        const char *user, *sender, *klass, *queue, *expect;
    } cases[] = {
        /* planted by another service user than the queue's consumer */
        {"storefront", "payment", "handler", "saga.events.dlq", "nobody vouches"},
        /* the original was not sent by the producer */
        {"saga", "storefront", "handler", "saga.events.dlq", "producer"},
        /* found forged by the consumer */
        {"saga", "storefront", "forged", "saga.events.dlq", "forged"},
        /* no user_id at all */
        {NULL, "payment", "handler", "saga.events.dlq", "nobody vouches"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mq_delivery_t d = consumer_dead_letter(cases[i].user, cases[i].sender, cases[i].klass);
        dlq_msg_t m = {.d = &d};
        dlq_msg_parse(&m, cases[i].queue);
        assert_non_null(strstr(m.refusal, cases[i].expect));
        json_decref(d.headers);
    }
    mq_delivery_t d = consumer_dead_letter("saga", "payment", "unknown-type");
    d.type = "payment.teleported.v9";
    dlq_msg_t m = {.d = &d};
    dlq_msg_parse(&m, "saga.events.dlq");
    assert_non_null(strstr(m.refusal, "unknown type"));
    json_decref(d.headers);
}

static void a_replay_that_failed_again(void **state)
{
    (void)state;
    /* The consumer received the replay from user dlq speaking for payment and dead-lettered it
     * again: its dead letter names dlq as the sender and keeps the replay header. */
    mq_delivery_t d = consumer_dead_letter("saga", "dlq", "contract");
    json_object_set_new(d.headers, "x-petstore-replay-for", json_string("payment"));
    json_object_set_new(d.headers, "x-petstore-replay-count", json_integer(1));
    dlq_msg_t m = {.d = &d};
    dlq_msg_parse(&m, "saga.events.dlq");
    assert_string_equal(m.refusal, "");
    assert_string_equal(m.sender, "payment");
    assert_int_equal(m.replay_count, 1);
    json_object_set_new(d.headers, "x-petstore-replay-for", json_string("storefront"));
    dlq_msg_parse(&m, "saga.events.dlq");
    assert_non_null(strstr(m.refusal, "producer"));
    json_decref(d.headers);
}

static void moved_by_the_tool(void **state)
{
    (void)state;
    mq_delivery_t d = consumer_dead_letter("dlq", "payment", "handler");
    json_object_set_new(d.headers, "x-petstore-sender-verified", json_true());
    dlq_msg_t m = {.d = &d};
    dlq_msg_parse(&m, "parking.dlq");
    assert_string_equal(m.refusal, "");
    assert_string_equal(m.original_queue, "saga.events");
    json_object_set_new(d.headers, "x-petstore-sender-verified", json_false());
    dlq_msg_parse(&m, "parking.dlq");
    assert_non_null(strstr(m.refusal, "without a proven sender"));
    json_decref(d.headers);
}

static void rabbitmqs_own_dead_letter(void **state)
{
    (void)state;
    mq_delivery_t d;
    memset(&d, 0, sizeof(d));
    d.message_id = "6f1c1b1e-0000-4000-8000-000000000002";
    d.type = "inventory.reserve.v1";
    d.user_id = "saga";
    d.body = "{}";
    d.body_len = 2;
    d.headers = json_pack(
        "{s:[{s:I,s:s,s:s,s:I,s:s,s:[s]},{s:I,s:s,s:s,s:I,s:s,s:[s]}]}", "x-death", "count",
        (json_int_t)5, "reason", "delivery_limit", "queue", "inventory.commands", "time",
        (json_int_t)1796432400, "exchange", "petstore.commands", "routing-keys", "inventory",
        "count", (json_int_t)1, "reason", "rejected", "queue", "inventory.commands", "time",
        (json_int_t)1796430000, "exchange", "petstore.commands", "routing-keys", "inventory");
    dlq_msg_t m = {.d = &d};
    dlq_msg_parse(&m, "inventory.commands.dlq");
    assert_string_equal(m.klass, "delivery-limit");
    assert_string_equal(m.original_queue, "inventory.commands");
    assert_string_equal(m.exchange, "petstore.commands");
    assert_string_equal(m.routing_key, "inventory");
    assert_int_equal(m.attempts, 5);
    assert_int_equal((long long)m.dead_at, 1796432400LL);
    assert_int_equal((long long)m.first_death, 1796430000LL);
    assert_string_equal(m.refusal, "");
    /* A replay that reached the delivery limit: published by dlq speaking for saga. */
    d.user_id = "dlq";
    json_object_set_new(d.headers, "x-petstore-replay-for", json_string("saga"));
    dlq_msg_parse(&m, "inventory.commands.dlq");
    assert_string_equal(m.refusal, "");
    assert_string_equal(m.sender, "saga");
    json_object_set_new(d.headers, "x-petstore-replay-for", json_string("payment"));
    dlq_msg_parse(&m, "inventory.commands.dlq");
    assert_non_null(strstr(m.refusal, "producer"));
    json_object_del(d.headers, "x-petstore-replay-for");
    d.user_id = "storefront"; /* not the producer of inventory.reserve */
    dlq_msg_parse(&m, "inventory.commands.dlq");
    assert_non_null(strstr(m.refusal, "producer"));
    d.user_id = NULL;
    json_decref(d.headers);
    d.headers = json_object();
    dlq_msg_parse(&m, "inventory.commands.dlq");
    assert_non_null(strstr(m.refusal, "not a dead letter"));
    json_decref(d.headers);
}

static void selection(void **state)
{
    (void)state;
    mq_delivery_t d = consumer_dead_letter("saga", "payment", "handler");
    dlq_msg_t m = {.d = &d};
    dlq_msg_parse(&m, "saga.events.dlq");
    const char *ids[] = {"x", "6f1c1b1e-0000-4000-8000-000000000001"};
    dlq_sel_t s = {0};
    assert_true(dlq_sel_match(&s, &m, 1796432400));
    s.ids = ids;
    s.n_ids = 1;
    assert_false(dlq_sel_match(&s, &m, 1796432400));
    s.n_ids = 2;
    assert_true(dlq_sel_match(&s, &m, 1796432400));
    s.type = "payment.charged.v1";
    s.group = m.fingerprint;
    assert_true(dlq_sel_match(&s, &m, 1796432400));
    s.group = "0000000000000000";
    assert_false(dlq_sel_match(&s, &m, 1796432400));
    s.group = NULL;
    s.since = 1796432401;
    assert_false(dlq_sel_match(&s, &m, 1796432400));
    s.since = 1796432400;
    s.until = 1796432400;
    assert_true(dlq_sel_match(&s, &m, 1796432400));
    s.older_than_ms = 60000; /* dead for 0 s at "now": not older than a minute */
    assert_false(dlq_sel_match(&s, &m, 1796432400));
    assert_true(dlq_sel_match(&s, &m, 1796432400 + 61));
    json_decref(d.headers);
}

static void queue_names(void **state)
{
    (void)state;
    char out[64];
    dlq_base_queue("saga.events.dlq", out, sizeof(out));
    assert_string_equal(out, "saga.events");
    dlq_base_queue("saga.events", out, sizeof(out));
    assert_string_equal(out, "saga.events");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(times),
        cmocka_unit_test(arguments),
        cmocka_unit_test(a_consumers_dead_letter),
        cmocka_unit_test(refusals),
        cmocka_unit_test(a_replay_that_failed_again),
        cmocka_unit_test(moved_by_the_tool),
        cmocka_unit_test(rabbitmqs_own_dead_letter),
        cmocka_unit_test(selection),
        cmocka_unit_test(queue_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
