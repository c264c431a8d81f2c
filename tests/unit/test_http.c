/* Unit tests of the HTTP layer: route matching, problem documents, and a real server on an
 * ephemeral loopback port answering a raw-socket client (no database or broker involved). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "health.h"
#include "http.h"
#include "metrics.h"
#include "raw_http.h"

static void test_patterns_match_literal_segments_and_capture_parameters(void **state)
{
    (void)state;
    const char *names[4];
    char values[4][128];
    assert_int_equal(
        http_match("/v1/orders/{id}/cancel", "/v1/orders/abc/cancel", names, values, 4), 1);
    assert_string_equal(values[0], "abc");
    assert_int_equal(strncmp(names[0], "{id}", 4), 0);
    assert_int_equal(http_match("/v1/orders", "/v1/orders", names, values, 4), 0);
    assert_int_equal(http_match("/v1/orders/{id}", "/v1/orders/", names, values, 4), -1);
    assert_int_equal(http_match("/v1/orders/{id}", "/v1/orders/a/b", names, values, 4), -1);
    assert_int_equal(http_match("/v1/orders", "/v1/orderz", names, values, 4), -1);
    assert_int_equal(http_match("/v1/a/{x}/b/{y}", "/v1/a/1/b/2", names, values, 4), 2);
    assert_string_equal(values[1], "2");
}

static void test_a_problem_document_follows_rfc_9457(void **state)
{
    (void)state;
    json_t *p =
        http_problem_json(422, "validation-failed", "Unprocessable Content", "bad fields",
                          "/v1/orders", json_pack("{s:[{s:s}]}", "errors", "field", "pet_ids"));
    assert_string_equal(json_string_value(json_object_get(p, "type")),
                        "https://petstore.example/problems/validation-failed");
    assert_string_equal(json_string_value(json_object_get(p, "title")), "Unprocessable Content");
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 422);
    assert_string_equal(json_string_value(json_object_get(p, "detail")), "bad fields");
    assert_string_equal(json_string_value(json_object_get(p, "instance")), "/v1/orders");
    assert_true(json_is_array(json_object_get(p, "errors")));
    json_decref(p);
}

/* ---- a live server ---- */

static http_request_t *parked;
static pthread_mutex_t parked_lock = PTHREAD_MUTEX_INITIALIZER;

static int echo(http_request_t *req, void *app)
{
    (void)app;
    json_t *body = NULL;
    if (http_read_json_object(req, &body) != 0)
        return 0;
    json_object_set_new(body, "id", json_string(http_param(req, "id")));
    const char *q = http_query(req, "q");
    if (q != NULL)
        json_object_set_new(body, "q", json_string(q));
    const char *tok = http_bearer_token(req);
    if (tok != NULL)
        json_object_set_new(body, "token", json_string(tok));
    http_add_header(req, "Location", "/v1/things/1");
    http_respond_json(req, 201, body);
    return 0;
}

static int silent(http_request_t *req, void *app)
{
    (void)req;
    (void)app;
    return 0;
}

static int later(http_request_t *req, void *app)
{
    (void)app;
    http_defer(req);
    pthread_mutex_lock(&parked_lock);
    parked = req;
    pthread_mutex_unlock(&parked_lock);
    return 0;
}

static void *answer_parked(void *arg)
{
    (void)arg;
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&parked_lock);
        http_request_t *req = parked;
        parked = NULL;
        pthread_mutex_unlock(&parked_lock);
        if (req != NULL) {
            http_respond_json(req, 200, json_pack("{s:s}", "woken", "yes"));
            return NULL;
        }
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static const http_route_t routes[] = {
    {"POST", "/v1/things/{id}", echo},
    {"GET", "/v1/silent", silent},
    {"GET", "/v1/later", later},
};

static char *req(int port, const char *method, const char *path, const char *headers,
                 const char *body)
{
    char text[4096];
    int n = snprintf(
        text, sizeof(text),
        "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n%s", method,
        path, headers ? headers : "", body ? strlen(body) : 0, body ? body : "");
    return raw_http_roundtrip(port, text, (size_t)n);
}

static int status_of(const char *resp) { return atoi(resp + 9); }

/* Writes text to a new temporary file; its path goes to out (size n). */
static void temp_file(const char *text, char *out, size_t n)
{
    snprintf(out, n, "/tmp/petstore-test-http-XXXXXX");
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_bad_tls_settings_stop_the_start_with_a_clear_message(void **state)
{
    (void)state;
    char garbage[64], empty[64];
    temp_file("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
              garbage, sizeof(garbage));
    temp_file("", empty, sizeof(empty));
    struct {
        const char *cert, *key, *says;
    } cases[] = {
        {garbage, NULL, "only one is set"},
        {NULL, garbage, "only one is set"},
        {"/nonexistent/cert.pem", garbage, "HTTP_TLS_CERT_FILE /nonexistent/cert.pem"},
        {garbage, "/nonexistent/key.pem", "HTTP_TLS_KEY_FILE /nonexistent/key.pem"},
        {empty, garbage, "HTTP_TLS_CERT_FILE"},
        {garbage, garbage, "not a matching PEM certificate and key"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        http_config_t cfg = {.addr = "127.0.0.1",
                             .port = 0,
                             .threads = 1,
                             .tls_cert_file = cases[i].cert,
                             .tls_key_file = cases[i].key};
        http_server_t *s = NULL;
        err_t e;
        err_clear(&e);
        assert_int_equal(http_server_start(&cfg, routes, 3, NULL, &s, &e), ERR_CONFIG);
        assert_null(s);
        if (strstr(e.msg, cases[i].says) == NULL)
            print_error("case %zu: \"%s\" lacks \"%s\"\n", i, e.msg, cases[i].says);
        assert_non_null(strstr(e.msg, cases[i].says));
    }
    /* Empty strings are unset: plain HTTP. */
    http_config_t plain = {.addr = "127.0.0.1", .port = 0, .tls_cert_file = "", .tls_key_file = ""};
    http_server_t *s = NULL;
    err_t e;
    assert_int_equal(http_server_start(&plain, routes, 3, NULL, &s, &e), 0);
    http_server_stop(s);
    unlink(garbage);
    unlink(empty);
}

static void test_a_live_server_routes_validates_and_answers_problems(void **state)
{
    (void)state;
    http_config_t cfg = {.addr = "127.0.0.1", .port = 0, .threads = 2, .max_body = 1024};
    http_server_t *s = NULL;
    err_t e;
    health_flag_t *flag = health_flag_new("test-dependency");
    assert_int_equal(http_server_start(&cfg, routes, 3, NULL, &s, &e), 0);
    int port = http_server_port(s);
    assert_true(port > 0);

    const char *json = "Content-Type: application/json\r\nAuthorization: Bearer t0k\r\n";
    char *r = req(port, "POST", "/v1/things/42?q=hi", json, "{\"a\":1}");
    assert_int_equal(status_of(r), 201);
    assert_non_null(strstr(r, "Location: /v1/things/1"));
    assert_non_null(strstr(r, "\"id\":\"42\""));
    assert_non_null(strstr(r, "\"q\":\"hi\""));
    assert_non_null(strstr(r, "\"token\":\"t0k\""));
    free(r);

    r = req(port, "GET", "/v1/nothing", NULL, NULL);
    assert_int_equal(status_of(r), 404);
    assert_non_null(strstr(r, "application/problem+json"));
    free(r);
    r = req(port, "DELETE", "/v1/things/1", NULL, NULL);
    assert_int_equal(status_of(r), 405);
    assert_non_null(strstr(r, "Allow: POST"));
    free(r);
    r = req(port, "POST", "/v1/things/1", "Content-Type: text/plain\r\n", "{}");
    assert_int_equal(status_of(r), 415);
    free(r);
    r = req(port, "POST", "/v1/things/1", "Content-Type: application/json\r\n", "{\"a\":");
    assert_int_equal(status_of(r), 400);
    assert_non_null(strstr(r, "malformed-json"));
    free(r);
    r = req(port, "POST", "/v1/things/1", "Content-Type: application/json\r\n", "[1,2]");
    assert_int_equal(status_of(r), 422);
    free(r);
    char big[2048];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    r = req(port, "POST", "/v1/things/1", "Content-Type: application/json\r\n", big);
    assert_int_equal(status_of(r), 413);
    free(r);
    r = req(port, "GET", "/v1/silent", NULL, NULL);
    assert_int_equal(status_of(r), 500);
    free(r);

    r = req(port, "GET", "/livez", NULL, NULL);
    assert_int_equal(status_of(r), 200);
    free(r);
    health_flag_set(flag, 0, "down for the test");
    r = req(port, "GET", "/readyz", NULL, NULL);
    assert_int_equal(status_of(r), 503);
    assert_non_null(strstr(r, "down for the test"));
    free(r);
    health_flag_set(flag, 1, "up");
    r = req(port, "GET", "/readyz", NULL, NULL);
    assert_int_equal(status_of(r), 200);
    free(r);
    r = req(port, "GET", "/metrics", NULL, NULL);
    assert_int_equal(status_of(r), 200);
    assert_non_null(strstr(r, "petstore_http_requests_total{route=\"/v1/things/{id}\""));
    assert_non_null(strstr(r, "process_resident_memory_bytes"));
    free(r);

    pthread_t t;
    pthread_create(&t, NULL, answer_parked, NULL);
    r = req(port, "GET", "/v1/later", NULL, NULL);
    pthread_join(t, NULL);
    assert_int_equal(status_of(r), 200);
    assert_non_null(strstr(r, "\"woken\":\"yes\""));
    free(r);

    http_server_stop(s);
}

static void test_metrics_render_counters_gauges_and_histograms(void **state)
{
    (void)state;
    metrics_counter_t *c = metrics_counter("t_total", "A counter", "k=\"v\"");
    assert_ptr_equal(c, metrics_counter("t_total", "A counter", "k=\"v\""));
    metrics_counter_add(c, 2);
    metrics_counter_add(c, 1);
    metrics_gauge_set(metrics_gauge("t_gauge", "A gauge", NULL), 7.5);
    static const double bounds[] = {1, 10};
    metrics_histogram_t *h = metrics_histogram("t_seconds", "A histogram", "r=\"x\"", bounds, 2);
    metrics_histogram_observe(h, 0.5);
    metrics_histogram_observe(h, 5);
    metrics_histogram_observe(h, 50);
    buf_t b = BUF_INIT;
    assert_int_equal(metrics_render(&b), 0);
    assert_non_null(strstr(b.data, "# TYPE t_total counter\nt_total{k=\"v\"} 3\n"));
    assert_non_null(strstr(b.data, "t_gauge 7.5\n"));
    assert_non_null(strstr(b.data, "t_seconds_bucket{r=\"x\",le=\"1\"} 1\n"));
    assert_non_null(strstr(b.data, "t_seconds_bucket{r=\"x\",le=\"10\"} 2\n"));
    assert_non_null(strstr(b.data, "t_seconds_bucket{r=\"x\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(b.data, "t_seconds_sum{r=\"x\"} 55.5\n"));
    assert_non_null(strstr(b.data, "t_seconds_count{r=\"x\"} 3\n"));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns_match_literal_segments_and_capture_parameters),
        cmocka_unit_test(test_a_problem_document_follows_rfc_9457),
        cmocka_unit_test(test_a_live_server_routes_validates_and_answers_problems),
        cmocka_unit_test(test_bad_tls_settings_stop_the_start_with_a_clear_message),
        cmocka_unit_test(test_metrics_render_counters_gauges_and_histograms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
