/* Unit tests of AMQP URL parsing (mq__url_parse): no broker needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "mq_internal.h"

static void parse_ok(const char *url, mq__url_t *u)
{
    err_t e;
    err_clear(&e);
    int rc = mq__url_parse(url, u, &e);
    if (rc != 0)
        print_error("%s: %s\n", url, e.msg);
    assert_int_equal(rc, 0);
}

static void test_full_url_is_split_into_its_parts(void **state)
{
    (void)state;
    mq__url_t u;
    parse_ok("amqp://payment:s3cret@rabbit.local:5673/petstore", &u);
    assert_string_equal(u.user, "payment");
    assert_string_equal(u.password, "s3cret");
    assert_string_equal(u.host, "rabbit.local");
    assert_int_equal(u.port, 5673);
    assert_string_equal(u.vhost, "petstore");
    assert_int_equal(u.heartbeat_s, -1);
    assert_int_equal(u.connect_timeout_ms, -1);
    assert_int_equal(u.frame_max, -1);
    mq__url_free(&u);
}

static void test_escaped_user_password_and_vhost_are_decoded(void **state)
{
    (void)state;
    mq__url_t u;
    parse_ok("amqp://us%40er:p%3Aa%2Fss%20w%25rd@host/pet%2Fstore", &u);
    assert_string_equal(u.user, "us@er");
    assert_string_equal(u.password, "p:a/ss w%rd");
    assert_string_equal(u.vhost, "pet/store");
    mq__url_free(&u);
    parse_ok("amqp://host/%2F", &u);
    assert_string_equal(u.vhost, "/");
    mq__url_free(&u);
    /* A raw '@' in the password: the last '@' ends the user info. */
    parse_ok("amqp://u:p@ss@host", &u);
    assert_string_equal(u.password, "p@ss");
    assert_string_equal(u.host, "host");
    mq__url_free(&u);
}

static void test_missing_parts_take_the_defaults(void **state)
{
    (void)state;
    mq__url_t u;
    parse_ok("amqp://", &u);
    assert_string_equal(u.user, "guest");
    assert_string_equal(u.password, "guest");
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 5672);
    assert_string_equal(u.vhost, "/");
    mq__url_free(&u);
    parse_ok("amqp://host:1234/", &u);
    assert_string_equal(u.vhost, "/");
    assert_int_equal(u.port, 1234);
    mq__url_free(&u);
    parse_ok("amqp://onlyuser@host", &u);
    assert_string_equal(u.user, "onlyuser");
    assert_string_equal(u.password, "guest");
    mq__url_free(&u);
    parse_ok("amqp://u:@host", &u);
    assert_string_equal(u.password, "");
    mq__url_free(&u);
}

static void test_ipv6_host_in_brackets_is_accepted(void **state)
{
    (void)state;
    mq__url_t u;
    parse_ok("amqp://u:p@[::1]:5673/v", &u);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 5673);
    mq__url_free(&u);
    parse_ok("amqp://[fe80::1]", &u);
    assert_string_equal(u.host, "fe80::1");
    assert_int_equal(u.port, 5672);
    mq__url_free(&u);
}

static void test_known_query_parameters_are_read(void **state)
{
    (void)state;
    mq__url_t u;
    parse_ok("amqp://h/v?heartbeat=10&connection_timeout=2500&frame_max=65536", &u);
    assert_int_equal(u.heartbeat_s, 10);
    assert_int_equal(u.connect_timeout_ms, 2500);
    assert_int_equal(u.frame_max, 65536);
    assert_string_equal(u.vhost, "v");
    mq__url_free(&u);
    parse_ok("amqp://h?heartbeat=0", &u);
    assert_int_equal(u.heartbeat_s, 0);
    assert_string_equal(u.vhost, "/");
    mq__url_free(&u);
}

static void test_amqps_means_tls_with_its_own_default_port(void **state)
{
    (void)state;
    mq__url_t u;
    parse_ok("amqps://u:p@broker.example/petstore", &u);
    assert_int_equal(u.tls, 1);
    assert_int_equal(u.port, 5671);
    assert_string_equal(u.host, "broker.example");
    assert_string_equal(u.user, "u");
    assert_string_equal(u.vhost, "petstore");
    mq__url_free(&u);
    parse_ok("amqps://localhost:25673/petstore?heartbeat=5", &u);
    assert_int_equal(u.tls, 1);
    assert_int_equal(u.port, 25673);
    assert_int_equal(u.heartbeat_s, 5);
    mq__url_free(&u);
    parse_ok("amqp://localhost/", &u);
    assert_int_equal(u.tls, 0);
    assert_int_equal(u.port, 5672);
    mq__url_free(&u);
}

static void test_invalid_urls_are_config_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "http://host/",
        "amqpss://host/",
        "amqps:/host/",
        "amqp:/host",
        "host:5672",
        "amqp://host:0/",
        "amqp://host:65536/",
        "amqp://host:12x/",
        "amqp://host:/",
        "amqp://u:p%zz@host/",
        "amqp://u:p%2@host/",
        "amqp://u%00:p@host/",
        "amqp://host/a/b",
        "amqp://host/v%",
        "amqp://[::1/v",
        "amqp://[::1]x/v",
        "amqp://host/v#frag",
        "amqp://host/v?heartbeat=abc",
        "amqp://host/v?heartbeat=70000",
        "amqp://host/v?frame_max=100",
        "amqp://host/v?channel_max=10",
        "amqp://host/v?heartbeat",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mq__url_t u;
        memset(&u, 0, sizeof(u));
        err_t e;
        err_clear(&e);
        int rc = mq__url_parse(bad[i], &u, &e);
        if (rc != ERR_CONFIG)
            print_error("accepted or misclassified: \"%s\" (%d)\n", bad[i], rc);
        assert_int_equal(rc, ERR_CONFIG);
        assert_true(e.msg[0] != '\0');
    }
    mq__url_t u;
    err_t e;
    err_clear(&e);
    assert_int_equal(mq__url_parse(NULL, &u, &e), ERR_CONFIG);
}

static void test_error_messages_never_contain_the_password(void **state)
{
    (void)state;
    mq__url_t u;
    err_t e;
    err_clear(&e);
    assert_int_equal(mq__url_parse("amqp://user:hunter2%zz@host/", &u, &e), ERR_CONFIG);
    assert_null(strstr(e.msg, "hunter2"));
    assert_non_null(strstr(e.msg, "password"));
    assert_int_equal(mq__url_parse("amqp://user:hunter2@host:99999/", &u, &e), ERR_CONFIG);
    assert_null(strstr(e.msg, "hunter2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_url_is_split_into_its_parts),
        cmocka_unit_test(test_escaped_user_password_and_vhost_are_decoded),
        cmocka_unit_test(test_missing_parts_take_the_defaults),
        cmocka_unit_test(test_ipv6_host_in_brackets_is_accepted),
        cmocka_unit_test(test_known_query_parameters_are_read),
        cmocka_unit_test(test_amqps_means_tls_with_its_own_default_port),
        cmocka_unit_test(test_invalid_urls_are_config_errors),
        cmocka_unit_test(test_error_messages_never_contain_the_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
