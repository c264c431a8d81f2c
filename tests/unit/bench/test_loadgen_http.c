/* Unit tests of the load generator's HTTP/1.1 response parser (tests/bench/lg_http.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lg_http.h"

#define ACCEPTED                                                                                   \
    "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 39\r\n"            \
    "Location: /v1/orders/x\r\nRetry-After: 1\r\n\r\n"                                             \
    "{\"id\":\"x\",\"status\":\"PENDING\",\"total\":1}"

static lg_http_resp_t *new_resp(void)
{
    lg_http_resp_t *r = malloc(sizeof(*r));
    assert_non_null(r);
    lg_http_init(r);
    return r;
}

static void drop(lg_http_resp_t *r)
{
    lg_http_free(r);
    free(r);
}

/* Feeds s in pieces of `step` bytes until the response is done; returns the bytes used. */
static size_t feed_in_steps(lg_http_resp_t *r, const char *s, size_t n, size_t step)
{
    size_t off = 0;
    for (;;) {
        size_t piece = n - off < step ? n - off : step;
        size_t used = 0;
        int rc = lg_http_feed(r, s + off, piece, &used);
        assert_true(rc == LG_HTTP_MORE || rc == LG_HTTP_DONE);
        off += used;
        if (rc == LG_HTTP_DONE)
            return off;
        assert_int_equal(used, piece);
        assert_true(off < n);
    }
}

static void test_a_response_with_a_length_parses_whatever_the_read_sizes(void **state)
{
    (void)state;
    const char *s = ACCEPTED;
    size_t n = strlen(s);
    for (size_t step = 1; step <= n; step++) {
        lg_http_resp_t *r = new_resp();
        assert_int_equal(feed_in_steps(r, s, n, step), n);
        assert_int_equal(r->status, 202);
        assert_int_equal(r->content_length, 39);
        assert_int_equal(r->retry_after, 1);
        assert_false(r->close);
        assert_int_equal(r->body_len, 39);
        assert_string_equal(r->body, "{\"id\":\"x\",\"status\":\"PENDING\",\"total\":1}");
        drop(r);
    }
}

static void test_a_chunked_body_is_reassembled_with_extensions_and_trailers(void **state)
{
    (void)state;
    const char *s = "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n"
                    "5;name=value\r\nhello\r\n1B\r\n, the chunked body of a GET\r\n"
                    "0\r\nX-Trailer: yes\r\n\r\n";
    size_t n = strlen(s);
    for (size_t step = 1; step <= n; step++) {
        lg_http_resp_t *r = new_resp();
        assert_int_equal(feed_in_steps(r, s, n, step), n);
        assert_int_equal(r->status, 200);
        assert_true(r->chunked);
        assert_string_equal(r->body, "hello, the chunked body of a GET");
        drop(r);
    }
}

static void test_chunked_overrides_a_content_length(void **state)
{
    (void)state;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n0\r\n\r\n";
    lg_http_resp_t *r = new_resp();
    assert_int_equal(feed_in_steps(r, s, strlen(s), strlen(s)), strlen(s));
    assert_string_equal(r->body, "abc");
    drop(r);
}

static void test_keep_alive_responses_back_to_back_leave_the_next_one_unread(void **state)
{
    (void)state;
    const char *two = ACCEPTED "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    size_t n = strlen(two);
    lg_http_resp_t *r = new_resp();
    size_t used = 0;
    assert_int_equal(lg_http_feed(r, two, n, &used), LG_HTTP_DONE);
    assert_int_equal(used, strlen(ACCEPTED));
    assert_int_equal(r->status, 202);
    /* A finished response consumes nothing more until it is reset. */
    size_t again = 99;
    assert_int_equal(lg_http_feed(r, two + used, n - used, &again), LG_HTTP_DONE);
    assert_int_equal(again, 0);
    lg_http_reset(r);
    size_t used2 = 0;
    assert_int_equal(lg_http_feed(r, two + used, n - used, &used2), LG_HTTP_DONE);
    assert_int_equal(used + used2, n);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "ok");
    assert_int_equal(r->retry_after, -1);
    drop(r);
}

static void test_connection_close_and_http_1_0_are_reported(void **state)
{
    (void)state;
    const char *a = "HTTP/1.1 503 Service Unavailable\r\nConnection: keep-alive, Close\r\n"
                    "Retry-After: 2\r\nContent-Length: 0\r\n\r\n";
    lg_http_resp_t *r = new_resp();
    size_t used = 0;
    assert_int_equal(lg_http_feed(r, a, strlen(a), &used), LG_HTTP_DONE);
    assert_int_equal(r->status, 503);
    assert_int_equal(r->retry_after, 2);
    assert_true(r->close);
    assert_int_equal(r->body_len, 0);
    lg_http_reset(r);
    const char *b = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx";
    assert_int_equal(lg_http_feed(r, b, strlen(b), &used), LG_HTTP_DONE);
    assert_true(r->close);
    lg_http_reset(r);
    const char *c = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx";
    assert_int_equal(lg_http_feed(r, c, strlen(c), &used), LG_HTTP_DONE);
    assert_false(r->close);
    drop(r);
}

static void test_a_body_without_length_ends_with_the_connection(void **state)
{
    (void)state;
    const char *s = "HTTP/1.1 200 OK\r\n\r\nuntil the end";
    lg_http_resp_t *r = new_resp();
    size_t used = 0;
    assert_int_equal(lg_http_feed(r, s, strlen(s), &used), LG_HTTP_MORE);
    assert_int_equal(used, strlen(s));
    assert_true(r->close);
    assert_int_equal(lg_http_eof(r), LG_HTTP_DONE);
    assert_string_equal(r->body, "until the end");
    drop(r);
}

static void test_a_response_cut_short_by_the_close_is_an_error(void **state)
{
    (void)state;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    lg_http_resp_t *r = new_resp();
    size_t used = 0;
    assert_int_equal(lg_http_feed(r, s, strlen(s), &used), LG_HTTP_MORE);
    assert_int_equal(lg_http_eof(r), LG_HTTP_ERROR);
    lg_http_reset(r);
    assert_int_equal(lg_http_eof(r), LG_HTTP_ERROR); /* nothing began */
    drop(r);
}

static void test_interim_responses_and_bodiless_statuses_are_handled(void **state)
{
    (void)state;
    const char *s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1";
    lg_http_resp_t *r = new_resp();
    size_t used = 0;
    assert_int_equal(lg_http_feed(r, s, strlen(s), &used), LG_HTTP_DONE);
    assert_int_equal(r->status, 204);
    assert_int_equal(used, strlen(s) - strlen("HTTP/1.1"));
    drop(r);
}

static void test_malformed_responses_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20x OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lg_http_resp_t *r = new_resp();
        size_t used = 0;
        assert_int_equal(lg_http_feed(r, bad[i], strlen(bad[i]), &used), LG_HTTP_ERROR);
        drop(r);
    }
}

static void test_an_endless_header_line_is_refused(void **state)
{
    (void)state;
    lg_http_resp_t *r = new_resp();
    char big[LG_HTTP_LINE_MAX + 10];
    memset(big, 'a', sizeof(big));
    size_t used = 0;
    assert_int_equal(lg_http_feed(r, "HTTP/1.1 200 OK\r\nX: ", 20, &used), LG_HTTP_MORE);
    assert_int_equal(lg_http_feed(r, big, sizeof(big), &used), LG_HTTP_ERROR);
    drop(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_response_with_a_length_parses_whatever_the_read_sizes),
        cmocka_unit_test(test_a_chunked_body_is_reassembled_with_extensions_and_trailers),
        cmocka_unit_test(test_chunked_overrides_a_content_length),
        cmocka_unit_test(test_keep_alive_responses_back_to_back_leave_the_next_one_unread),
        cmocka_unit_test(test_connection_close_and_http_1_0_are_reported),
        cmocka_unit_test(test_a_body_without_length_ends_with_the_connection),
        cmocka_unit_test(test_a_response_cut_short_by_the_close_is_an_error),
        cmocka_unit_test(test_interim_responses_and_bodiless_statuses_are_handled),
        cmocka_unit_test(test_malformed_responses_are_refused),
        cmocka_unit_test(test_an_endless_header_line_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
