/* http: the HTTP front door of every daemon, over libmicrohttpd.
 *
 * A daemon describes its API as a table of routes ("GET", "/v1/orders/{id}", handler). The
 * server adds GET /livez (200 {"status":"ok"}), GET /readyz (the health registry: 200, or 503
 * with the failing checks) and GET /metrics (Prometheus text); answers an unknown path with 404
 * and a known path with the wrong method with 405 and an Allow header (a GET route also serves
 * HEAD); refuses request bodies over the cap with 413 (before reading them when Content-Length
 * says so); and counts every request in petstore_http_requests_total{route,method,status} and
 * petstore_http_request_duration_seconds{route}, labelled by route pattern, never the raw path.
 * Each routed request logs http.received on entry (method, route, trace) and every request
 * http.request when answered (method, route, status, duration_ms, and the order the handler
 * named with http_log_order); at info level, except /livez, /readyz and /metrics (probes and
 * scrapes), which log at debug. Never headers or bodies. Errors are RFC 9457 problem details
 * (application/problem+json) whose type is https://petstore.example/problems/<slug>. Every response
 * with a body carries Cache-Control: no-store.
 *
 * Threading: handlers run on the server's worker threads (cfg.threads of them), several at
 * once; a handler that needs the database uses a per-thread connection. A request belongs to the
 * thread that holds it: the handler, until it responds. Each request gets exactly one response
 * (later calls are ignored); after responding, the responder must not touch the request again.
 *
 * Deferred responses (long polls): a handler that cannot answer yet calls http_defer(req) and
 * returns; it may hand req to another thread before or after returning (but must not touch it
 * after handing it over). The connection is suspended, holding no thread, until that thread
 * calls one of the http_respond_* functions, which resumes it. A deferred request that nobody
 * answers stays open: the application bounds the wait (e.g. a timer answering at a deadline).
 * http_server_stop() answers every still-deferred request with 503.
 *
 * Streams (Server-Sent Events and the like): see http_stream_start() below. */
#ifndef PETSTORE_HTTP_H
#define PETSTORE_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "trace.h"

#define HTTP_DEFAULT_MAX_BODY (64 * 1024)

/* The kinds of problem the daemons answer, one per row of http_problems.def. */
typedef enum http_problem_kind {
#define X(name, status, slug, title) name,
#include "http_problems.def"
#undef X
    HTTP_PROBLEM_KIND_COUNT
} http_problem_kind_t;

/* A kind's row: status, slug and title (static strings). */
typedef struct http_problem {
    int status;
    const char *slug;
    const char *title;
} http_problem_t;

typedef struct http_server http_server_t;
typedef struct http_request http_request_t;

/* A route handler. It must respond (or defer, or start a stream) before returning; one that
 * returns without doing any of these gets a 500 problem and an error log line. The return
 * value is reserved: return 0. */
typedef int (*http_handler_fn)(http_request_t *req, void *app);

typedef struct http_route {
    const char *method;  /* "GET", "POST", ... (exact, upper case) */
    const char *pattern; /* "/v1/orders/{id}/cancel": {name} matches one non-empty path segment
                            of up to 127 bytes; at most 4 per pattern */
    http_handler_fn fn;
} http_route_t;

typedef struct http_config {
    const char *addr;          /* IPv4 address to bind; NULL: 127.0.0.1 */
    uint16_t port;             /* 0: an ephemeral port (see http_server_port) */
    unsigned threads;          /* worker threads; 0: 4 */
    size_t max_body;           /* request body cap in bytes; 0: HTTP_DEFAULT_MAX_BODY */
    unsigned timeout_s;        /* idle connection timeout; 0: 60 */
    unsigned drain_ms;         /* how long http_server_stop waits for requests in flight; 0: 5000 */
    const char *tls_cert_file; /* PEM certificate chain: with tls_key_file, the port speaks TLS
                                  1.2+ only; both NULL or "": plain HTTP */
    const char *tls_key_file;  /* PEM private key of tls_cert_file */
} http_config_t;

/* Starts serving. routes (borrowed: must outlive the server) may be NULL when n is 0; app is
 * handed to every handler. On success *out is owned by the caller, who ends it with
 * http_server_stop(). ERR_CONFIG: bad address, incomplete route, the port cannot be bound, only
 * one of the TLS files given, or a TLS file that cannot be read or does not hold a matching
 * certificate and key. */
int http_server_start(const http_config_t *cfg, const http_route_t *routes, size_t n, void *app,
                      http_server_t **out, err_t *e) PETSTORE_NODISCARD;

/* The port actually bound (useful with port 0), or -1. */
int http_server_port(const http_server_t *s);

/* Stops accepting connections, ends every stream, answers deferred requests with 503, waits up
 * to cfg.drain_ms for requests in flight to finish, then stops the threads and frees s.
 * Accepts NULL. Call it once, from a thread that is not one of the server's. */
void http_server_stop(http_server_t *s);

/* ---- request accessors: strings are borrowed for the request's lifetime; NULL when absent */

const char *http_method(const http_request_t *req);
const char *http_path(const http_request_t *req);          /* percent-decoded, without the query */
const char *http_route_pattern(const http_request_t *req); /* the matched pattern */
const char *http_param(const http_request_t *req, const char *name);  /* {name} of the pattern */
const char *http_query(const http_request_t *req, const char *name);  /* decoded ?name= */
const char *http_header(const http_request_t *req, const char *name); /* case-insensitive */
/* The token of "Authorization: Bearer <token>" (see http_parse_bearer), or NULL. */
const char *http_bearer_token(const http_request_t *req);
/* The body (NUL-terminated, "" when empty); *len gets its length when len is not NULL.
 * A body may hold a secret (a card number), so no copy of it outlives the request: the bytes
 * are wiped from libmicrohttpd's read buffer as they are taken, from our buffer whenever it grows
 * and when the request is freed. */
const char *http_body(const http_request_t *req, size_t *len);
/* Wipes the body now (it reads as empty afterwards), for a handler that is done with a secret
 * in it before the request ends. */
void http_body_wipe(http_request_t *req);
void *http_app(const http_request_t *req);
/* The request's span: a child of its valid traceparent header, or a new root. Computed on
 * first call, then stable for the request. */
const trace_ctx_t *http_trace(http_request_t *req);
/* Names the order the request concerns (copied; a UUID), for its access line (http.request). */
void http_log_order(http_request_t *req, const char *order_id);

/* Parses the body as a JSON object into *out (new reference, caller owns) and returns 0. On
 * failure it has ALREADY responded and returns ERR_INVALID; the handler just returns:
 *   415 unsupported-media-type  Content-Type is not application/json (a charset other than
 *                               UTF-8 counts as not JSON);
 *   400 malformed-json          the body does not parse (or repeats a key);
 *   422 validation-failed       the body is JSON but not an object. */
int http_read_json_object(http_request_t *req, json_t **out);

/* ---- responses: each request takes one; body/extra are STOLEN (may be NULL) ---- */

/* Adds a response header (both strings copied) for whichever response comes next: Location,
 * Retry-After, WWW-Authenticate... Returns 0, ERR_INVALID (CR or LF in it, or ':' in the name)
 * or ERR_NOMEM (more than 8 headers). */
int http_add_header(http_request_t *req, const char *name, const char *value);

/* application/json; body NULL sends an empty body. */
void http_respond_json(http_request_t *req, int status, json_t *body);
/* application/problem+json: {type, title, status, detail (when not NULL), instance (the request
 * path)} plus extra's members (an object, e.g. {"errors":[{"field":...,"message":...}]}). */
void http_respond_problem(http_request_t *req, int status, const char *type_slug, const char *title,
                          const char *detail, json_t *extra);
/* The same answer for a kind from http_problems.def, which gives its status, slug and title:
 * http_respond_kind(req, HTTP_PROBLEM_NOT_FOUND, "no such order", NULL). */
void http_respond_kind(http_request_t *req, http_problem_kind_t kind, const char *detail,
                       json_t *extra);
/* Any content type; body (len bytes) is copied. */
void http_respond_text(http_request_t *req, int status, const char *content_type, const char *body,
                       size_t len);
/* No body and no content type (204, 202 without a representation...). */
void http_respond_empty(http_request_t *req, int status);

/* Suspends the request until some thread responds (see "Deferred responses" above). */
void http_defer(http_request_t *req);

/* ---- streaming responses ----
 * http_stream_start() answers req with 200 and the content type (no-store) and returns a
 * stream; from then on any thread may send data with http_stream_send(), which copies it and
 * returns 0, or -1 once the client has gone or the stream has ended. The owner ends the stream
 * with http_stream_close(), which also releases it (accepts NULL). While a stream has nothing to
 * send its connection is suspended: no thread is held. Streams still open when the server stops
 * are ended by it (their owner must still close them). Returns NULL when out of memory, having
 * answered 503. */
typedef struct http_stream http_stream_t;
http_stream_t *http_stream_start(http_request_t *req, const char *content_type);
int http_stream_send(http_stream_t *s, const char *data, size_t len);
void http_stream_close(http_stream_t *s);

/* ---- pure helpers, exposed for tests ---- */

/* Matches path against pattern; on a match stores the captured {name} segments (names borrowed
 * from pattern, pointing at the '{'; values copied into values, 128 bytes each), at most max,
 * and returns how many (>= 0); -1 when it does not match. */
int http_match(const char *pattern, const char *path, const char **names, char (*values)[128],
               int max);

/* The token of an Authorization header value "Bearer <token>" (scheme case-insensitive; blanks
 * around the token allowed; the token is one run of visible ASCII), borrowed from the argument;
 * NULL for anything else (another scheme, no token, two words, NULL). */
const char *http_parse_bearer(const char *authorization);

/* True for "application/json" with optional parameters, whose charset (if any) is UTF-8. */
int http_content_type_is_json(const char *content_type);

/* The method as a metrics label: one of GET HEAD POST PUT PATCH DELETE OPTIONS, else "other"
 * (a client chooses the method: it must not create series). Static string. */
const char *http_metrics_method(const char *method);

/* The row of kind (static); a kind outside the table gets HTTP_PROBLEM_INTERNAL's. */
const http_problem_t *http_problem(http_problem_kind_t kind);

/* Builds the problem object (new reference; extra is STOLEN); NULL when out of memory. */
json_t *http_problem_json(int status, const char *type_slug, const char *title, const char *detail,
                          const char *instance, json_t *extra);

#endif
