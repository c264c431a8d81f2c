/* http: the HTTP front door of every daemon, over libmicrohttpd.
 *
 * A daemon describes its API as a table of routes ("GET", "/v1/orders/{id}", handler); the
 * server adds GET /livez, /readyz (the health registry: 200 or 503 with the failing checks) and
 * /metrics (Prometheus text), answers unknown paths with 404 and wrong methods with 405 + Allow,
 * caps request bodies (413), and counts every request in petstore_http_requests_total. Errors
 * are RFC 9457 problem details (application/problem+json).
 *
 * Threading: handlers run on the server's worker threads (HTTP_THREADS of them), several at once;
 * a handler that needs the database uses a per-thread connection. A request object belongs to
 * the handler until it responds. A handler that cannot answer yet (a long poll) calls
 * http_defer() and returns; the connection is suspended until some other thread calls one of the
 * http_respond_* functions on it, which resumes it. After that call the responder must not touch
 * the request again. The server stops only after answering every deferred request with 503. */
#ifndef PETSTORE_HTTP_H
#define PETSTORE_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "trace.h"

#define HTTP_DEFAULT_MAX_BODY (64 * 1024)

typedef struct http_server http_server_t;
typedef struct http_request http_request_t;

/* Returns 0; the return value is reserved. A handler that returns without responding (and
 * without deferring) gets a 500 problem. */
typedef int (*http_handler_fn)(http_request_t *req, void *app);

typedef struct http_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/orders/{id}/cancel": {name} matches one path segment */
    http_handler_fn fn;
} http_route_t;

typedef struct http_config {
    const char *addr;  /* IPv4 address to bind; NULL: 127.0.0.1 */
    uint16_t port;     /* 0: an ephemeral port (see http_server_port) */
    unsigned threads;  /* worker threads; 0: 4 */
    size_t max_body;   /* 0: HTTP_DEFAULT_MAX_BODY */
    unsigned timeout_s; /* idle connection timeout; 0: 60 */
} http_config_t;

/* Starts serving. routes (borrowed, must outlive the server) may be NULL when n is 0; app is
 * handed to every handler. *out is owned by the caller: http_server_stop(). */
int http_server_start(const http_config_t *cfg, const http_route_t *routes, size_t n, void *app,
                      http_server_t **out, err_t *e) PETSTORE_NODISCARD;

/* The port actually bound. */
int http_server_port(const http_server_t *s);

/* Answers deferred requests with 503, stops accepting and joins the threads. NULL ok. */
void http_server_stop(http_server_t *s);

/* Request accessors. Strings are borrowed for the request's lifetime; NULL when absent. */
const char *http_method(const http_request_t *req);
const char *http_path(const http_request_t *req);
const char *http_route_pattern(const http_request_t *req); /* the matched pattern */
const char *http_param(const http_request_t *req, const char *name);
const char *http_query(const http_request_t *req, const char *name);
const char *http_header(const http_request_t *req, const char *name);
/* The token of "Authorization: Bearer <token>", or NULL. */
const char *http_bearer_token(const http_request_t *req);
const char *http_body(const http_request_t *req, size_t *len);
void *http_app(const http_request_t *req);
/* The request's span: a child of its traceparent header, or a new trace. Stable per request. */
const trace_ctx_t *http_trace(http_request_t *req);

/* Parses the body as a JSON object into *out (new reference) and returns 0. On failure it has
 * ALREADY responded (415 wrong content type, 400 malformed JSON, 422 not an object) and returns
 * non-zero: the handler just returns. */
int http_read_json_object(http_request_t *req, json_t **out);

/* Adds a response header (copied). Call before responding. */
void http_add_header(http_request_t *req, const char *name, const char *value);

/* Responses. Each may be called once per request; body/extra are STOLEN (may be NULL). */
void http_respond_json(http_request_t *req, int status, json_t *body);
void http_respond_problem(http_request_t *req, int status, const char *type_slug,
                          const char *title, const char *detail, json_t *extra);
void http_respond_text(http_request_t *req, int status, const char *content_type,
                       const char *body, size_t len);
void http_respond_empty(http_request_t *req, int status);

/* Suspends the request until another thread responds (see the threading rule above). */
void http_defer(http_request_t *req);

/* Streaming responses (Server-Sent Events). http_stream_start() answers req with 200 and the
 * content type and returns a stream; from then on any thread may send data with
 * http_stream_send(), which returns -1 once the client has gone. The owner ends the stream with
 * http_stream_close(), which also releases it. While a stream has nothing to send, its
 * connection is suspended (no thread is held). Streams still open when the server stops are
 * ended by it. Returns NULL when out of memory (then it has answered 503). */
typedef struct http_stream http_stream_t;
http_stream_t *http_stream_start(http_request_t *req, const char *content_type);
int http_stream_send(http_stream_t *s, const char *data, size_t len);
void http_stream_close(http_stream_t *s);

/* Pure helpers, exposed for tests. */

/* Matches path against pattern; on a match stores up to max captured {name} segments (names
 * borrowed from pattern, values copied into storage of vsize bytes each) and returns the
 * number captured (>= 0); -1 when it does not match. */
int http_match(const char *pattern, const char *path, const char **names, char (*values)[128],
               int max);

/* Builds the problem object (new reference). */
json_t *http_problem_json(int status, const char *type_slug, const char *title, const char *detail,
                          const char *instance, json_t *extra);

#endif
