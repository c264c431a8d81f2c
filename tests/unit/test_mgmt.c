/* Unit tests of the management API client's pure pieces (mgmt_internal.h: URL, request text,
 * response parsing with Content-Length, chunked and read-to-EOF bodies) and of its socket
 * errors against real local sockets (a closed port, a listener that never answers). HTTPS
 * exchanges with a real TLS server are in test_mgmt_tls.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mgmt.h"
#include "mgmt_internal.h"

/* ---- URL ------------------------------------------------------------------------------- */

static void url_ok(const char *url, mgmt__url_t *u)
{
    err_t e;
    err_clear(&e);
    int rc = mgmt__url_parse(url, u, &e);
    if (rc != 0)
        print_error("%s: %s\n", url, e.msg);
    assert_int_equal(rc, 0);
}

static void test_url_is_split_into_host_port_and_prefix(void **state)
{
    (void)state;
    mgmt__url_t u;
    url_ok("http://127.0.0.1:15673", &u);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "15673");
    assert_string_equal(u.prefix, "");
    assert_int_equal(u.ipv6, 0);
    url_ok("http://rabbit.local:15672/", &u);
    assert_string_equal(u.host, "rabbit.local");
    assert_string_equal(u.prefix, "");
    url_ok("HTTP://rabbit/rabbitmq//", &u);
    assert_string_equal(u.port, "80");
    assert_string_equal(u.prefix, "/rabbitmq");
    url_ok("http://[::1]:15672/mgmt", &u);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.ipv6, 1);
    assert_string_equal(u.port, "15672");
    assert_string_equal(u.prefix, "/mgmt");
}

static void test_url_scheme_chooses_tls_and_the_default_port(void **state)
{
    (void)state;
    mgmt__url_t u;
    url_ok("http://rabbit", &u);
    assert_int_equal(u.tls, 0);
    assert_string_equal(u.port, "80");
    url_ok("https://rabbit", &u);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.host, "rabbit");
    assert_string_equal(u.port, "443");
    assert_string_equal(u.prefix, "");
    url_ok("HTTPS://127.0.0.1:15671/", &u);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "15671");
    url_ok("https://[::1]/rabbitmq/", &u);
    assert_int_equal(u.tls, 1);
    assert_int_equal(u.ipv6, 1);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "443");
    assert_string_equal(u.prefix, "/rabbitmq");
}

static void test_url_refuses_what_it_cannot_use(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "amqp://127.0.0.1:5672",
        "amqps://127.0.0.1:5671",
        "https://",
        "https:/127.0.0.1",
        "https://admin:secret@127.0.0.1:15671",
        "https://127.0.0.1:0",
        "127.0.0.1:15672",
        "http://",
        "http://:15672",
        "http://admin:secret@127.0.0.1:15672",
        "http://127.0.0.1:0",
        "http://127.0.0.1:65536",
        "http://127.0.0.1:15a72",
        "http://127.0.0.1:15672/?x=1",
        "http://127.0.0.1:15672/#top",
        "http://127.0.0.1 :15672",
        "http://[::1",
        "http://[::1]x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mgmt__url_t u;
        err_t e;
        err_clear(&e);
        int rc = mgmt__url_parse(bad[i], &u, &e);
        if (rc != ERR_CONFIG)
            print_error("accepted: \"%s\"\n", bad[i]);
        assert_int_equal(rc, ERR_CONFIG);
        assert_true(e.msg[0] != '\0');
        assert_null(strstr(e.msg, "secret"));
    }
}

/* ---- request --------------------------------------------------------------------------- */

static void test_request_carries_basic_auth_host_and_connection_close(void **state)
{
    (void)state;
    mgmt__url_t u;
    url_ok("http://[::1]:15673/rabbitmq/", &u);
    buf_t b = BUF_INIT;
    err_t e;
    err_clear(&e);
    assert_int_equal(
        mgmt__request(&u, "audit", "pa:ss", "/api/queues/petstore/audit.events", &b, &e), 0);
    /* base64("audit:pa:ss") = YXVkaXQ6cGE6c3M= */
    assert_string_equal(b.data, "GET /rabbitmq/api/queues/petstore/audit.events HTTP/1.1\r\n"
                                "Host: [::1]:15673\r\n"
                                "Authorization: Basic YXVkaXQ6cGE6c3M=\r\n"
                                "Accept: application/json\r\n"
                                "User-Agent: petstore\r\n"
                                "Connection: close\r\n"
                                "\r\n");
    buf_free(&b);
}

static void test_request_refuses_a_bad_path_or_user(void **state)
{
    (void)state;
    mgmt__url_t u;
    url_ok("http://127.0.0.1:15673", &u);
    buf_t b = BUF_INIT;
    err_t e;
    assert_int_equal(mgmt__request(&u, "u", "p", "api/queues", &b, &e), ERR_INVALID);
    assert_int_equal(mgmt__request(&u, "u", "p", "/api/queues/a b", &b, &e), ERR_INVALID);
    assert_int_equal(mgmt__request(&u, "u", "p", "/api/queues\r\nX: y", &b, &e), ERR_INVALID);
    assert_int_equal(mgmt__request(&u, "u:v", "p", "/api/queues", &b, &e), ERR_INVALID);
    assert_null(b.data);
}

/* ---- response -------------------------------------------------------------------------- */

/* Parses text whole (eof as given); returns the parser's answer, *r filled on 1. */
static int parse(const char *text, int eof, mgmt__response_t *r)
{
    err_t e;
    err_clear(&e);
    memset(r, 0, sizeof(*r));
    int rc = mgmt__response_parse(text, strlen(text), eof, r, &e);
    if (rc < 0)
        assert_true(e.msg[0] != '\0');
    return rc;
}

/* Feeds text one byte more at a time: incomplete until the last byte, complete then. */
static void complete_only_at_the_end(const char *text, int status, const char *body)
{
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i++) {
        mgmt__response_t r;
        err_t e;
        err_clear(&e);
        int rc = mgmt__response_parse(text, i, 0, &r, &e);
        if (rc != 0)
            print_error("complete or failed (%d: %s) after %zu of %zu bytes\n", rc, e.msg, i, n);
        assert_int_equal(rc, 0);
    }
    mgmt__response_t r;
    assert_int_equal(parse(text, 0, &r), 1);
    assert_int_equal(r.status, status);
    assert_int_equal(r.body.len, strlen(body));
    if (r.body.len > 0)
        assert_memory_equal(r.body.data, body, r.body.len);
    mgmt__response_free(&r);
}

static void test_a_content_length_body_is_complete_when_all_of_it_is_in(void **state)
{
    (void)state;
    complete_only_at_the_end("HTTP/1.1 200 OK\r\n"
                             "content-type: application/json\r\n"
                             "Content-Length: 13\r\n"
                             "\r\n"
                             "{\"type\":\"qq\"}",
                             200, "{\"type\":\"qq\"}");
    /* Bytes past the declared length are not part of the body. */
    mgmt__response_t r;
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}garbage", 0, &r), 1);
    assert_int_equal(r.body.len, 2);
    mgmt__response_free(&r);
    /* The reason phrase is kept; bare LF line ends are accepted. */
    assert_int_equal(parse("HTTP/1.0 404 Not Found\nContent-Length: 0\n\n", 0, &r), 1);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.reason, "Not Found");
    assert_int_equal(r.body.len, 0);
    mgmt__response_free(&r);
}

static void test_a_chunked_body_is_decoded_and_complete_after_its_last_chunk(void **state)
{
    (void)state;
    complete_only_at_the_end("HTTP/1.1 200 OK\r\n"
                             "Transfer-Encoding: Chunked\r\n"
                             "Content-Length: 999\r\n" /* chunked wins */
                             "\r\n"
                             "5\r\n{\"a\":\r\n"
                             "A;name=value\r\n[1,2,3,45]\r\n"
                             "1 \r\n}\r\n"
                             "0\r\n"
                             "X-Trailer: yes\r\n"
                             "\r\n",
                             200, "{\"a\":[1,2,3,45]}");
}

static void test_a_body_without_length_ends_at_eof(void **state)
{
    (void)state;
    mgmt__response_t r;
    const char *text = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n[1,2]";
    assert_int_equal(parse(text, 0, &r), 0);
    assert_int_equal(parse(text, 1, &r), 1);
    assert_int_equal(r.body.len, 5);
    assert_memory_equal(r.body.data, "[1,2]", 5);
    mgmt__response_free(&r);
}

static void test_interim_answers_are_skipped_and_204_has_no_body(void **state)
{
    (void)state;
    mgmt__response_t r;
    assert_int_equal(parse("HTTP/1.1 100 Continue\r\n\r\n"
                           "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
                           0, &r),
                     1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 2);
    mgmt__response_free(&r);
    assert_int_equal(parse("HTTP/1.1 100 Continue\r\n\r\n", 0, &r), 0);
    assert_int_equal(parse("HTTP/1.1 204 No Content\r\n\r\n", 0, &r), 1);
    assert_int_equal(r.status, 204);
    assert_null(r.body.data);
}

static void test_malformed_answers_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "AMQP\x00\x00\x09\x01",                         /* the AMQP port answered */
        "HTTP/2 200\r\n\r\n",                           /* not HTTP/1.x */
        "HTTP/1.1 20 OK\r\n\r\n",                       /* status of two digits */
        "HTTP/1.1 999 What\r\n\r\n",                    /* out of range */
        "HTTP/1.1 200OK\r\n\r\n",                       /* no space after the code */
        "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",           /* header without ':' */
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",       /* space in a header name */
        "HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",   /* obsolete line folding */
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", /* not a number */
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", /* over the limit */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",     /* a coding we never asked */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFF\r\n",
        "\x15\x03\x03\x00\x02\x02\x0a", /* a TLS alert: a TLS listener asked in plain HTTP */
    };
    size_t last = sizeof(bad) / sizeof(bad[0]) - 1;
    for (size_t i = 0; i <= last; i++) {
        mgmt__response_t r;
        err_t e;
        err_clear(&e);
        size_t len = i == 0 ? 8 : i == last ? 7 : strlen(bad[i]);
        int rc = mgmt__response_parse(bad[i], len, 1, &r, &e);
        if (rc != ERR_INTERNAL)
            print_error("case %zu: got %d\n", i, rc);
        assert_int_equal(rc, ERR_INTERNAL);
        assert_true(e.msg[0] != '\0');
    }
}

static void test_a_tls_answer_to_plain_http_says_to_use_https(void **state)
{
    (void)state;
    /* What a TLS-only listener sends back to a plain request: an alert record (here
     * unexpected_message, whose code 10 is a '\n' byte), or a handshake record. */
    const char *tls[] = {"\x15\x03\x03\x00\x02\x02\x0a", "\x15\x03\x01\x00\x02\x02\x46",
                         "\x16\x03\x03\x00\x7a\x02"};
    for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++) {
        mgmt__response_t r;
        err_t e;
        err_clear(&e);
        assert_int_equal(mgmt__response_parse(tls[i], 3, 0, &r, &e), ERR_INTERNAL);
        assert_non_null(strstr(e.msg, "https://"));
        err_clear(&e);
        assert_int_equal(mgmt__response_parse(tls[i], 7, 1, &r, &e), ERR_INTERNAL);
        assert_non_null(strstr(e.msg, "https://"));
    }
}

static void test_a_header_section_without_end_is_refused_at_the_limit(void **state)
{
    (void)state;
    size_t n = MGMT_MAX_HEADER_BYTES + 10;
    char *text = malloc(n);
    assert_non_null(text);
    memset(text, 'a', n);
    memcpy(text, "HTTP/1.1 200 OK\r\nX: ", 20);
    mgmt__response_t r;
    err_t e;
    assert_int_equal(mgmt__response_parse(text, MGMT_MAX_HEADER_BYTES - 1, 0, &r, &e), 0);
    assert_int_equal(mgmt__response_parse(text, n, 0, &r, &e), ERR_INTERNAL);
    free(text);
}

static void test_chunked_decode_reports_what_it_used(void **state)
{
    (void)state;
    const char *body = "3\r\nabc\r\n0\r\n\r\nNEXT";
    buf_t b = BUF_INIT;
    size_t used = 0;
    err_t e;
    assert_int_equal(mgmt__chunked_decode(body, strlen(body), NULL, &used, &e), 1);
    assert_int_equal(used, strlen(body) - 4);
    assert_int_equal(mgmt__chunked_decode(body, strlen(body), &b, &used, &e), 1);
    assert_string_equal(b.data, "abc");
    buf_free(&b);
    assert_int_equal(mgmt__chunked_decode(body, 9, NULL, &used, &e), 0);
}

/* ---- path segments --------------------------------------------------------------------- */

static void test_path_segment_escapes_everything_but_unreserved_bytes(void **state)
{
    (void)state;
    char out[64];
    err_t e;
    assert_int_equal(mgmt_path_segment("audit.events", out, sizeof(out), &e), 0);
    assert_string_equal(out, "audit.events");
    assert_int_equal(mgmt_path_segment("/", out, sizeof(out), &e), 0);
    assert_string_equal(out, "%2F");
    assert_int_equal(mgmt_path_segment("a b%/c~d_e-f\xc3\xa9", out, sizeof(out), &e), 0);
    assert_string_equal(out, "a%20b%25%2Fc~d_e-f%C3%A9");
    assert_int_equal(mgmt_path_segment("/", out, 3, &e), ERR_INVALID);
    assert_int_equal(mgmt_path_segment("/", out, 4, &e), 0);
    assert_int_equal(mgmt_path_segment("", out, 1, &e), 0);
    assert_string_equal(out, "");
}

/* ---- the exchange over real sockets ---------------------------------------------------- */

/* A bound TCP socket on 127.0.0.1 (listening or not); its port in *port. */
static int local_socket(int listening, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (listening)
        assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_a_port_nobody_listens_on_is_a_retry(void **state)
{
    (void)state;
    int port = 0;
    int fd = local_socket(0, &port); /* bound, not listening: connections are refused */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    json_t *doc = NULL;
    err_t e;
    err_clear(&e);
    assert_int_equal(mgmt_get_json(url, NULL, "u", "secret", "/api/overview", 2000, &doc, &e),
                     ERR_RETRY);
    assert_null(doc);
    assert_non_null(strstr(e.msg, url + 7));
    assert_null(strstr(e.msg, "secret"));
    close(fd);
}

static void test_a_server_that_never_answers_times_out(void **state)
{
    (void)state;
    int port = 0;
    int fd = local_socket(1, &port); /* the kernel accepts; nobody ever answers */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_t *doc = NULL;
    err_t e;
    err_clear(&e);
    assert_int_equal(mgmt_get_json(url, NULL, "u", "p", "/api/overview", 300, &doc, &e),
                     ERR_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
    assert_true(ms >= 290 && ms < 2000);
    close(fd);
}

static void test_a_malformed_base_url_is_a_configuration_error(void **state)
{
    (void)state;
    json_t *doc = NULL;
    err_t e;
    assert_int_equal(
        mgmt_get_json("localhost:15672", NULL, "u", "p", "/api/overview", 100, &doc, &e),
        ERR_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_is_split_into_host_port_and_prefix),
        cmocka_unit_test(test_url_scheme_chooses_tls_and_the_default_port),
        cmocka_unit_test(test_url_refuses_what_it_cannot_use),
        cmocka_unit_test(test_request_carries_basic_auth_host_and_connection_close),
        cmocka_unit_test(test_request_refuses_a_bad_path_or_user),
        cmocka_unit_test(test_a_content_length_body_is_complete_when_all_of_it_is_in),
        cmocka_unit_test(test_a_chunked_body_is_decoded_and_complete_after_its_last_chunk),
        cmocka_unit_test(test_a_body_without_length_ends_at_eof),
        cmocka_unit_test(test_interim_answers_are_skipped_and_204_has_no_body),
        cmocka_unit_test(test_malformed_answers_are_refused),
        cmocka_unit_test(test_a_tls_answer_to_plain_http_says_to_use_https),
        cmocka_unit_test(test_a_header_section_without_end_is_refused_at_the_limit),
        cmocka_unit_test(test_chunked_decode_reports_what_it_used),
        cmocka_unit_test(test_path_segment_escapes_everything_but_unreserved_bytes),
        cmocka_unit_test(test_a_port_nobody_listens_on_is_a_retry),
        cmocka_unit_test(test_a_server_that_never_answers_times_out),
        cmocka_unit_test(test_a_malformed_base_url_is_a_configuration_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
