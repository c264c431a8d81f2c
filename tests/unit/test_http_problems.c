/* Unit tests of the problem kinds (http_problems.def). The expected rows are written out by
 * hand from the answers the APIs published before the table existed (openapi.yaml, the e2e
 * suite), independently of the table: a changed status, slug or title is a changed HTTP
 * contract and must fail here. A live server checks that http_respond_kind answers exactly
 * what http_respond_problem answers with the same triple. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"
#include "raw_http.h"

typedef struct expected {
    http_problem_kind_t kind;
    int status;
    const char *slug;
    const char *title;
} expected_t;

static const expected_t published[] = {
    {HTTP_PROBLEM_NOT_FOUND, 404, "not-found", "Not Found"},
    {HTTP_PROBLEM_METHOD_NOT_ALLOWED, 405, "method-not-allowed", "Method Not Allowed"},
    {HTTP_PROBLEM_PAYLOAD_TOO_LARGE, 413, "payload-too-large", "Content Too Large"},
    {HTTP_PROBLEM_UNSUPPORTED_MEDIA_TYPE, 415, "unsupported-media-type", "Unsupported Media Type"},
    {HTTP_PROBLEM_MALFORMED_JSON, 400, "malformed-json", "Malformed JSON"},
    {HTTP_PROBLEM_VALIDATION_FAILED, 422, "validation-failed", "Unprocessable Content"},
    {HTTP_PROBLEM_UNAUTHORIZED, 401, "unauthorized", "Unauthorized"},
    {HTTP_PROBLEM_INTERNAL, 500, "internal", "Internal Server Error"},
    {HTTP_PROBLEM_UNAVAILABLE, 503, "unavailable", "Service Unavailable"},
    {HTTP_PROBLEM_USERNAME_TAKEN, 409, "username-taken", "Conflict"},
    {HTTP_PROBLEM_PET_NOT_FOUND, 404, "pet-not-found", "Not Found"},
    {HTTP_PROBLEM_PET_NOT_AVAILABLE, 409, "pet-not-available", "Conflict"},
    {HTTP_PROBLEM_IDEMPOTENCY_KEY_REQUIRED, 400, "idempotency-key-required", "Bad Request"},
    {HTTP_PROBLEM_IDEMPOTENCY_KEY_REUSED, 422, "idempotency-key-reused", "Unprocessable Content"},
    {HTTP_PROBLEM_REQUEST_IN_PROGRESS, 409, "request-in-progress", "Conflict"},
    {HTTP_PROBLEM_CANNOT_CANCEL, 409, "cannot-cancel", "Conflict"},
    {HTTP_PROBLEM_CARD_EXISTS, 409, "card-exists", "Conflict"},
};

#define N_PUBLISHED (sizeof(published) / sizeof(published[0]))

static void test_every_kind_answers_its_published_status_slug_and_title(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_PUBLISHED; i++) {
        const http_problem_t *p = http_problem(published[i].kind);
        assert_non_null(p);
        assert_int_equal(p->status, published[i].status);
        assert_string_equal(p->slug, published[i].slug);
        assert_string_equal(p->title, published[i].title);
    }
}

static void test_the_table_holds_exactly_the_published_kinds_with_distinct_slugs(void **state)
{
    (void)state;
    assert_int_equal(HTTP_PROBLEM_KIND_COUNT, N_PUBLISHED);
    for (int a = 0; a < HTTP_PROBLEM_KIND_COUNT; a++)
        for (int b = a + 1; b < HTTP_PROBLEM_KIND_COUNT; b++)
            assert_string_not_equal(http_problem((http_problem_kind_t)a)->slug,
                                    http_problem((http_problem_kind_t)b)->slug);
}

static void test_a_kind_outside_the_table_answers_as_internal(void **state)
{
    (void)state;
    const http_problem_t *p = http_problem(HTTP_PROBLEM_KIND_COUNT);
    assert_int_equal(p->status, 500);
    assert_string_equal(p->slug, "internal");
    assert_ptr_equal(http_problem((http_problem_kind_t)-1), p);
}

/* ---- a live server: the same bytes as the literal triple ---- */

static int by_kind(http_request_t *req, void *app)
{
    (void)app;
    http_respond_kind(req, HTTP_PROBLEM_CANNOT_CANCEL, "the order can no longer be cancelled",
                      json_pack("{s:s}", "order_status", "CONFIRMING"));
    return 0;
}

static int by_triple(http_request_t *req, void *app)
{
    (void)app;
    http_respond_problem(req, 409, "cannot-cancel", "Conflict",
                         "the order can no longer be cancelled",
                         json_pack("{s:s}", "order_status", "CONFIRMING"));
    return 0;
}

static const http_route_t routes[] = {
    {"GET", "/v1/orders/{id}", by_kind},
    {"GET", "/v2/orders/{id}", by_triple},
};

/* GETs path and returns the whole response (malloc'd). */
static char *get(int port, const char *path)
{
    char request[256];
    int len = snprintf(request, sizeof(request),
                       "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    return raw_http_roundtrip(port, request, (size_t)len);
}

/* The body of a response (borrowed from it). */
static const char *body_of(const char *response)
{
    const char *b = strstr(response, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

static void test_a_kind_answers_the_same_bytes_as_its_literal_triple(void **state)
{
    (void)state;
    http_config_t cfg = {.port = 0, .threads = 1};
    http_server_t *s = NULL;
    err_t e;
    err_clear(&e);
    assert_int_equal(http_server_start(&cfg, routes, 2, NULL, &s, &e), 0);
    int port = http_server_port(s);
    char *kind = get(port, "/v1/orders/42");
    char *triple = get(port, "/v2/orders/42");
    assert_non_null(strstr(kind, "HTTP/1.1 409"));
    assert_non_null(strstr(kind, "application/problem+json"));
    assert_string_equal(body_of(kind),
                        "{\"type\":\"https://petstore.example/problems/cannot-cancel\","
                        "\"title\":\"Conflict\",\"status\":409,"
                        "\"detail\":\"the order can no longer be cancelled\","
                        "\"instance\":\"/v1/orders/42\",\"order_status\":\"CONFIRMING\"}");
    /* The literal answer differs only in the instance (its own path). */
    const char *t = body_of(triple);
    const char *at = strstr(t, "/v2/orders/42");
    assert_non_null(at);
    assert_int_equal(strlen(t), strlen(body_of(kind)));
    assert_memory_equal(t, body_of(kind), (size_t)(at - t));
    assert_string_equal(at + 3, strstr(body_of(kind), "/v1/orders/42") + 3);
    free(kind);
    free(triple);
    http_server_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_answers_its_published_status_slug_and_title),
        cmocka_unit_test(test_the_table_holds_exactly_the_published_kinds_with_distinct_slugs),
        cmocka_unit_test(test_a_kind_outside_the_table_answers_as_internal),
        cmocka_unit_test(test_a_kind_answers_the_same_bytes_as_its_literal_triple),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
