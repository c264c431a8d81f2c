/* http: libmicrohttpd glue (see http.h).
 *
 * MHD calls the access handler several times per request: once when the headers are in (we
 * allocate the request and check Content-Length against the cap: a body declared too large is
 * refused at once with 413, and MHD discards the rest and closes), once per chunk of body
 * (accumulated, or dropped once over the cap, for bodies without a declared length), and once
 * more with no data, when we dispatch. A response is built by whoever responds (any thread) and
 * stored in the request as "pending"; it is queued from the access handler, the only place MHD
 * allows it. For a deferred request the handler returns without a pending response and the
 * connection is suspended; the responder then resumes it and MHD calls the access handler again,
 * which queues the pending response. req->lock orders "respond" against "suspend", so a response
 * that arrives before the suspension is simply queued at once.
 *
 * Lifetimes: MHD owns a request from its first call until the completion callback. The only
 * other party that may hold one is http_server_stop() while it answers a deferred request, so
 * a request carries a reference count (guarded by the server lock): MHD's, plus one while stop
 * holds it. Lock order: a request's lock before the server's.
 *
 * Request bodies can carry secrets (the card number of POST /v1/orders and of the payment
 * admin's POST /v1/cards), so no copy of a body is left behind in memory: each chunk is wiped
 * from MHD's read buffer once copied (MHD has consumed it: it never reads those bytes again), our
 * buffer wipes the old block when it grows, and the body is wiped before it is freed. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "health.h"
#include "log.h"
#include "metrics.h"

#define MAX_PARAMS 4
#define MAX_HEADERS 8
#define DEFAULT_THREADS 4
#define DEFAULT_TIMEOUT_S 60
#define DEFAULT_DRAIN_MS 5000

struct http_server {
    struct MHD_Daemon *d;
    const http_route_t *routes;
    size_t n_routes;
    void *app;
    size_t max_body;
    unsigned drain_ms;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t idle;  /* signalled whenever active drops */
    http_request_t *deferred;
    http_stream_t *streams;
    size_t active; /* requests MHD has handed us and not yet completed */
    int stopping;
    char *tls_cert; /* PEM text of the certificate and key while MHD runs; NULL: plain HTTP */
    char *tls_key;
};

struct http_request {
    http_server_t *server;
    struct MHD_Connection *conn;
    char *method;
    char *path;
    const char *pattern;
    const char *param_names[MAX_PARAMS];
    char param_values[MAX_PARAMS][128];
    int n_params;
    buf_t body;
    int too_large;
    int dispatched;
    struct timespec started;
    trace_ctx_t trace;
    int have_trace;
    int quiet;         /* a health or metrics route: its lines are debug, not info */
    char order_id[37]; /* named by the handler (http_log_order) for the access line */
    char *hdr_names[MAX_HEADERS];
    char *hdr_values[MAX_HEADERS];
    int n_hdrs;
    int refs; /* guarded by server->lock */

    pthread_mutex_t lock; /* guards the members below */
    int deferred;
    int suspended;
    int responded;
    int status;
    struct MHD_Response *pending;
    http_request_t *next_deferred; /* in server->deferred; guarded by server->lock */
};

static const double duration_bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,   1,    2.5,   5,    10};

/* ---- pure helpers ---- */

int http_match(const char *pattern, const char *path, const char **names, char (*values)[128],
               int max)
{
    int n = 0;
    const char *p = pattern, *u = path;
    while (*p != '\0' || *u != '\0') {
        if (*p != '/' || *u != '/')
            return -1;
        p++;
        u++;
        const char *pe = strchr(p, '/'), *ue = strchr(u, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t ul = ue ? (size_t)(ue - u) : strlen(u);
        if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (ul == 0 || ul >= 128 || n >= max)
                return -1;
            names[n] = p; /* the caller reads up to the closing brace */
            memcpy(values[n], u, ul);
            values[n][ul] = '\0';
            n++;
        } else if (pl != ul || strncmp(p, u, pl) != 0) {
            return -1;
        }
        p += pl;
        u += ul;
    }
    return n;
}

const char *http_parse_bearer(const char *authorization)
{
    const char *h = authorization;
    if (h == NULL)
        return NULL;
    while (*h == ' ' || *h == '\t')
        h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return NULL;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    /* One run of visible ASCII (RFC 6750's b64token is a subset), then nothing but blanks. */
    const char *t = h;
    while (*t > ' ' && *t < 0x7f)
        t++;
    if (t == h)
        return NULL;
    for (const char *r = t; *r != '\0'; r++)
        if (*r != ' ' && *r != '\t')
            return NULL;
    return *t == '\0' ? h : NULL;
}

static const http_problem_t problems[] = {
#define X(name, status, slug, title) [name] = {status, slug, title},
#include "http_problems.def"
#undef X
};

const http_problem_t *http_problem(http_problem_kind_t kind)
{
    if ((unsigned)kind >= HTTP_PROBLEM_KIND_COUNT)
        kind = HTTP_PROBLEM_INTERNAL;
    return &problems[kind];
}

json_t *http_problem_json(int status, const char *type_slug, const char *title, const char *detail,
                          const char *instance, json_t *extra)
{
    char type[160];
    snprintf(type, sizeof(type), "https://petstore.example/problems/%s", type_slug);
    json_t *p = json_pack("{s:s,s:s,s:i}", "type", type, "title", title, "status", status);
    if (p == NULL) {
        json_decref(extra);
        return NULL;
    }
    if (detail != NULL)
        json_object_set_new(p, "detail", json_string(detail));
    if (instance != NULL)
        json_object_set_new(p, "instance", json_string(instance));
    if (json_is_object(extra))
        json_object_update_missing(p, extra);
    json_decref(extra);
    return p;
}

int http_content_type_is_json(const char *content_type)
{
    const char *ct = content_type;
    if (ct == NULL)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, "application/json", 16) != 0)
        return 0;
    ct += 16;
    /* Parameters: only a UTF-8 charset is accepted (JSON has no other encoding, RFC 8259). */
    for (;;) {
        while (*ct == ' ' || *ct == '\t')
            ct++;
        if (*ct == '\0')
            return 1;
        if (*ct++ != ';')
            return 0;
        while (*ct == ' ' || *ct == '\t')
            ct++;
        const char *end = ct + strcspn(ct, ";");
        if (strncasecmp(ct, "charset=", 8) == 0) {
            const char *v = ct + 8;
            size_t n = (size_t)(end - v);
            while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
            if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
                v++;
                n -= 2;
            }
            if (!((n == 5 && strncasecmp(v, "utf-8", 5) == 0) ||
                  (n == 4 && strncasecmp(v, "utf8", 4) == 0)))
                return 0;
        }
        ct = end;
    }
}

const char *http_metrics_method(const char *method)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; method != NULL && i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return "other";
}

/* ---- accessors ---- */

const char *http_method(const http_request_t *req) { return req->method; }

const char *http_path(const http_request_t *req) { return req->path; }

const char *http_route_pattern(const http_request_t *req) { return req->pattern; }

const char *http_param(const http_request_t *req, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < req->n_params; i++) {
        const char *n = req->param_names[i] + 1; /* skip '{' */
        if (strncmp(n, name, len) == 0 && n[len] == '}')
            return req->param_values[i];
    }
    return NULL;
}

const char *http_query(const http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_header(const http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_bearer_token(const http_request_t *req)
{
    return http_parse_bearer(http_header(req, MHD_HTTP_HEADER_AUTHORIZATION));
}

const char *http_body(const http_request_t *req, size_t *len)
{
    if (len != NULL)
        *len = req->body.len;
    return req->body.data != NULL ? req->body.data : "";
}

/* Appends n bytes to a request body without leaving a copy behind: when the block must grow,
 * the old one is wiped before it is freed (realloc would leave it as it was). Returns 0 or
 * ERR_NOMEM (body unchanged). */
static int body_append(buf_t *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = malloc(cap);
        if (grown == NULL)
            return ERR_NOMEM;
        if (b->len > 0)
            memcpy(grown, b->data, b->len);
        if (b->data != NULL)
            sodium_memzero(b->data, b->cap);
        free(b->data);
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* Wipes and frees a body; it is empty (BUF_INIT) afterwards. */
static void body_free(buf_t *b)
{
    if (b->data != NULL)
        sodium_memzero(b->data, b->cap);
    buf_free(b);
}

void http_body_wipe(http_request_t *req) { body_free(&req->body); }

void *http_app(const http_request_t *req) { return req->server->app; }

const trace_ctx_t *http_trace(http_request_t *req)
{
    if (!req->have_trace) {
        trace_from_header_or_new(http_header(req, "traceparent"), &req->trace);
        req->have_trace = 1;
    }
    return &req->trace;
}

int http_add_header(http_request_t *req, const char *name, const char *value)
{
    if (req->n_hdrs >= MAX_HEADERS)
        return ERR_NOMEM;
    if (strpbrk(name, "\r\n:") != NULL || strpbrk(value, "\r\n") != NULL)
        return ERR_INVALID; /* no header splitting */
    char *n = strdup(name), *v = strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return ERR_NOMEM;
    }
    req->hdr_names[req->n_hdrs] = n;
    req->hdr_values[req->n_hdrs] = v;
    req->n_hdrs++;
    return 0;
}

/* ---- request lifetime ---- */

static void request_free(http_request_t *req)
{
    if (req->pending != NULL)
        MHD_destroy_response(req->pending);
    for (int i = 0; i < req->n_hdrs; i++) {
        free(req->hdr_names[i]);
        free(req->hdr_values[i]);
    }
    body_free(&req->body);
    free(req->method);
    free(req->path);
    pthread_mutex_destroy(&req->lock);
    free(req);
}

/* Drops one reference; the last one frees. */
static void request_release(http_request_t *req)
{
    http_server_t *s = req->server;
    pthread_mutex_lock(&s->lock);
    int last = --req->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last)
        request_free(req);
}

static void deferred_remove(http_request_t *req)
{
    http_server_t *s = req->server;
    pthread_mutex_lock(&s->lock);
    for (http_request_t **p = &s->deferred; *p != NULL; p = &(*p)->next_deferred) {
        if (*p == req) {
            *p = req->next_deferred;
            break;
        }
    }
    req->next_deferred = NULL;
    pthread_mutex_unlock(&s->lock);
}

/* ---- responding ---- */

/* Takes ownership of data (malloc'd; may be NULL when len is 0). */
static void respond(http_request_t *req, int status, const char *content_type, char *data,
                    size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, data ? data : (char *)"", data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        free(data);
        return; /* the access handler answers 500 for a request left without a response */
    }
    if (content_type != NULL) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    }
    pthread_mutex_lock(&req->lock);
    if (req->responded) {
        pthread_mutex_unlock(&req->lock);
        MHD_destroy_response(r);
        return;
    }
    for (int i = 0; i < req->n_hdrs; i++)
        MHD_add_response_header(r, req->hdr_names[i], req->hdr_values[i]);
    req->responded = 1;
    req->status = status;
    req->pending = r;
    int resume = req->suspended;
    req->suspended = 0;
    pthread_mutex_unlock(&req->lock);
    if (resume) {
        /* Still ours: a suspended connection cannot complete until it is resumed. */
        deferred_remove(req);
        MHD_resume_connection(req->conn);
    }
}

void http_respond_json(http_request_t *req, int status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    respond(req, status, "application/json", text, text ? strlen(text) : 0);
}

void http_respond_problem(http_request_t *req, int status, const char *type_slug, const char *title,
                          const char *detail, json_t *extra)
{
    json_t *p = http_problem_json(status, type_slug, title, detail, req->path, extra);
    char *text = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    respond(req, status, "application/problem+json", text, text ? strlen(text) : 0);
}

void http_respond_kind(http_request_t *req, http_problem_kind_t kind, const char *detail,
                       json_t *extra)
{
    const http_problem_t *p = http_problem(kind);
    http_respond_problem(req, p->status, p->slug, p->title, detail, extra);
}

void http_respond_text(http_request_t *req, int status, const char *content_type, const char *body,
                       size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return;
    if (len > 0)
        memcpy(copy, body, len);
    respond(req, status, content_type, copy, len);
}

void http_respond_empty(http_request_t *req, int status) { respond(req, status, NULL, NULL, 0); }

void http_defer(http_request_t *req)
{
    pthread_mutex_lock(&req->lock);
    req->deferred = 1;
    pthread_mutex_unlock(&req->lock);
}

int http_read_json_object(http_request_t *req, json_t **out)
{
    if (!http_content_type_is_json(http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE))) {
        http_respond_kind(req, HTTP_PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                          "the request body must be application/json", NULL);
        return ERR_INVALID;
    }
    json_error_t je;
    size_t len = 0;
    const char *body = http_body(req, &len);
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (v == NULL) {
        char detail[256];
        snprintf(detail, sizeof(detail), "malformed JSON at line %d column %d: %s", je.line,
                 je.column, je.text);
        http_respond_kind(req, HTTP_PROBLEM_MALFORMED_JSON, detail, NULL);
        return ERR_INVALID;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        http_respond_kind(req, HTTP_PROBLEM_VALIDATION_FAILED,
                          "the request body must be a JSON object", NULL);
        return ERR_INVALID;
    }
    *out = v;
    return 0;
}
/* ---- streams ---- */

/* A stream has two owners, the MHD response (released by its free callback when the
 * connection is done) and the producer (released by http_stream_close); `refs` counts them and
 * `lock` guards everything below it. */
struct http_stream {
    pthread_mutex_t lock;
    int refs;
    http_server_t *server;
    struct MHD_Connection *conn;
    buf_t pending;
    size_t sent;         /* bytes of pending already handed to MHD */
    int suspended;       /* the reader suspended the connection for lack of data */
    int ended;           /* the producer (or the server) has no more to send */
    int closed;          /* MHD is done with the connection: sends fail */
    http_stream_t *next; /* in server->streams */
};

static void stream_unref(http_stream_t *st)
{
    pthread_mutex_lock(&st->lock);
    int last = --st->refs == 0;
    pthread_mutex_unlock(&st->lock);
    if (!last)
        return;
    pthread_mutex_destroy(&st->lock);
    buf_free(&st->pending);
    free(st);
}

static void stream_unlist(http_stream_t *st)
{
    http_server_t *s = st->server;
    pthread_mutex_lock(&s->lock);
    for (http_stream_t **p = &s->streams; *p != NULL; p = &(*p)->next) {
        if (*p == st) {
            *p = st->next;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* MHD's content reader: hand over what is pending; with nothing pending, suspend until
 * http_stream_send (or the end) resumes the connection. */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    http_stream_t *st = cls;
    ssize_t n = 0;
    pthread_mutex_lock(&st->lock);
    size_t avail = st->pending.len - st->sent;
    if (avail > 0) {
        n = (ssize_t)(avail < max ? avail : max);
        memcpy(out, st->pending.data + st->sent, (size_t)n);
        st->sent += (size_t)n;
        if (st->sent == st->pending.len) {
            buf_reset(&st->pending);
            st->sent = 0;
        }
    } else if (st->ended) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        st->suspended = 1;
        MHD_suspend_connection(st->conn);
    }
    pthread_mutex_unlock(&st->lock);
    return n;
}

static void stream_free(void *cls)
{
    http_stream_t *st = cls;
    pthread_mutex_lock(&st->lock);
    st->closed = 1;
    pthread_mutex_unlock(&st->lock);
    stream_unlist(st);
    stream_unref(st);
}

/* Wakes the connection if the reader suspended it; called with st->lock held. */
static void stream_wake(http_stream_t *st)
{
    if (st->suspended && !st->closed) {
        st->suspended = 0;
        MHD_resume_connection(st->conn);
    }
}

http_stream_t *http_stream_start(http_request_t *req, const char *content_type)
{
    http_stream_t *st = calloc(1, sizeof(*st));
    struct MHD_Response *r = NULL;
    if (st != NULL) {
        pthread_mutex_init(&st->lock, NULL);
        st->refs = 2;
        st->server = req->server;
        st->conn = req->conn;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    }
    if (r == NULL) {
        if (st != NULL) {
            pthread_mutex_destroy(&st->lock);
            free(st);
        }
        http_respond_kind(req, HTTP_PROBLEM_UNAVAILABLE, "out of memory", NULL);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    pthread_mutex_lock(&req->server->lock);
    st->next = req->server->streams;
    req->server->streams = st;
    pthread_mutex_unlock(&req->server->lock);
    pthread_mutex_lock(&req->lock);
    req->responded = 1;
    req->status = 200;
    req->pending = r;
    pthread_mutex_unlock(&req->lock);
    return st;
}

int http_stream_send(http_stream_t *st, const char *data, size_t len)
{
    int rc = 0;
    pthread_mutex_lock(&st->lock);
    if (st->closed || st->ended || buf_append(&st->pending, data, len) != 0)
        rc = -1;
    else
        stream_wake(st);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void http_stream_close(http_stream_t *st)
{
    if (st == NULL)
        return;
    pthread_mutex_lock(&st->lock);
    st->ended = 1;
    stream_wake(st);
    pthread_mutex_unlock(&st->lock);
    stream_unref(st);
}

/* ---- built-in routes ---- */

static int livez(http_request_t *req, void *app)
{
    (void)app;
    http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
    return 0;
}

static int readyz(http_request_t *req, void *app)
{
    (void)app;
    json_t *body = NULL;
    int ready = health_ready_json(&body);
    http_respond_json(req, ready ? 200 : 503, body);
    return 0;
}

static int metrics_page(http_request_t *req, void *app)
{
    (void)app;
    buf_t b = BUF_INIT;
    if (metrics_render(&b) != 0) {
        buf_free(&b);
        http_respond_kind(req, HTTP_PROBLEM_INTERNAL, NULL, NULL);
        return 0;
    }
    respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    return 0;
}

static const http_route_t builtin_routes[] = {
    {"GET", "/livez", livez},
    {"GET", "/readyz", readyz},
    {"GET", "/metrics", metrics_page},
};

/* ---- dispatching ---- */

/* True if method is already in the comma-separated Allow list. */
static int allow_has(const char *allow, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = allow; p != NULL && *p != '\0';) {
        if (strncmp(p, method, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return 1;
        p = strchr(p, ',');
        if (p != NULL)
            p += 2; /* ", " */
    }
    return 0;
}

/* Adds method to the Allow list once (GET brings HEAD, which MHD answers without a body). */
static void allow_add(char *allow, size_t n, const char *method)
{
    const char *add[2] = {method, strcmp(method, "GET") == 0 ? "HEAD" : NULL};
    for (int k = 0; k < 2 && add[k] != NULL; k++) {
        if (allow_has(allow, add[k]))
            continue;
        size_t len = strlen(allow);
        snprintf(allow + len, n - len, "%s%s", len ? ", " : "", add[k]);
    }
}

/* The route of table that matches req's path and method (a GET route also serves HEAD), with
 * req's parameters filled in; else NULL, having added the methods the path allows to allow. */
static const http_route_t *table_find(http_request_t *req, const http_route_t *table, size_t n,
                                      char *allow, size_t allow_n)
{
    int head = strcmp(req->method, "HEAD") == 0;
    for (size_t i = 0; i < n; i++) {
        const http_route_t *r = &table[i];
        int got =
            http_match(r->pattern, req->path, req->param_names, req->param_values, MAX_PARAMS);
        if (got < 0)
            continue;
        if (strcmp(r->method, req->method) == 0 || (head && strcmp(r->method, "GET") == 0)) {
            req->n_params = got;
            return r;
        }
        allow_add(allow, allow_n, r->method);
    }
    return NULL;
}

/* The entry line of a routed request, in its trace (created here when the client sent none,
 * so the handler's lines and the messages it emits share it). */
static void log_received(http_request_t *req)
{
    log_level_t level = req->quiet ? LOG_DEBUG : LOG_INFO;
    if (!log_enabled(level))
        return;
    const trace_ctx_t *t = http_trace(req);
    log_ctx_t ctx = {t->trace_id, t->span_id, NULL};
    log_write(
        level, &ctx, "http.received",
        json_pack("{s:s,s:s}", "method", http_metrics_method(req->method), "route", req->pattern));
}

void http_log_order(http_request_t *req, const char *order_id)
{
    if (order_id != NULL && strlen(order_id) < sizeof(req->order_id))
        memcpy(req->order_id, order_id, strlen(order_id) + 1);
}

static void dispatch(http_request_t *req)
{
    http_server_t *s = req->server;
    if (req->too_large) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the request body exceeds %zu bytes", s->max_body);
        http_respond_kind(req, HTTP_PROBLEM_PAYLOAD_TOO_LARGE, detail, NULL);
        return;
    }
    /* Built-in routes first: an application route cannot shadow /livez. */
    char allow[128] = "";
    const http_route_t *r =
        table_find(req, builtin_routes, sizeof(builtin_routes) / sizeof(builtin_routes[0]), allow,
                   sizeof(allow));
    if (r != NULL)
        req->quiet = 1; /* probes and scrapes: every few seconds, nothing to follow */
    else
        r = table_find(req, s->routes, s->n_routes, allow, sizeof(allow));
    if (r != NULL) {
        req->pattern = r->pattern;
        log_received(req);
        r->fn(req, s->app);
        return;
    }
    if (allow[0] != '\0') {
        (void)http_add_header(req, "Allow", allow);
        http_respond_kind(req, HTTP_PROBLEM_METHOD_NOT_ALLOWED, NULL, NULL);
        return;
    }
    http_respond_kind(req, HTTP_PROBLEM_NOT_FOUND, "no such resource", NULL);
}

/* Queues the pending response; called with req->lock held. */
static enum MHD_Result queue_pending(http_request_t *req)
{
    struct MHD_Response *r = req->pending;
    req->pending = NULL;
    enum MHD_Result rc = MHD_queue_response(req->conn, (unsigned)req->status, r);
    MHD_destroy_response(r);
    return rc;
}

static http_request_t *request_new(http_server_t *s, struct MHD_Connection *conn, const char *url,
                                   const char *method)
{
    http_request_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->server = s;
    req->conn = conn;
    req->method = strdup(method);
    req->path = strdup(url);
    req->refs = 1; /* MHD's, dropped in on_completed */
    pthread_mutex_init(&req->lock, NULL);
    clock_gettime(CLOCK_MONOTONIC, &req->started);
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL) {
        errno = 0;
        unsigned long long declared = strtoull(cl, NULL, 10);
        req->too_large = errno == ERANGE || declared > s->max_body;
    }
    pthread_mutex_lock(&s->lock);
    s->active++;
    pthread_mutex_unlock(&s->lock);
    return req;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    http_server_t *s = cls;
    http_request_t *req = *con_cls;
    if (req == NULL) {
        req = request_new(s, conn, url, method);
        if (req == NULL)
            return MHD_NO;
        *con_cls = req;
        if (req->method == NULL || req->path == NULL)
            return MHD_NO;
        if (!req->too_large)
            return MHD_YES; /* the body, if any, comes next */
        /* A body declared too large is refused before it is read. */
    } else if (*upload_data_size > 0) {
        if (!req->too_large) {
            if (req->body.len + *upload_data_size > s->max_body ||
                body_append(&req->body, upload_data, *upload_data_size) != 0) {
                req->too_large = 1;
                body_free(&req->body);
            }
        }
        /* Consumed: MHD never reads these bytes again, so the copy in its read buffer goes. */
        sodium_memzero((void *)upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!req->dispatched) {
        req->dispatched = 1;
        dispatch(req);
    }
    pthread_mutex_lock(&req->lock);
    enum MHD_Result rc = MHD_YES;
    if (req->pending != NULL) {
        rc = queue_pending(req);
    } else if (req->deferred && !req->responded) {
        pthread_mutex_lock(&s->lock);
        int stopping = s->stopping;
        if (!stopping) {
            req->next_deferred = s->deferred;
            s->deferred = req;
        }
        pthread_mutex_unlock(&s->lock);
        if (stopping) {
            pthread_mutex_unlock(&req->lock);
            http_respond_kind(req, HTTP_PROBLEM_UNAVAILABLE, "shutting down", NULL);
            pthread_mutex_lock(&req->lock);
            if (req->pending != NULL)
                rc = queue_pending(req);
        } else {
            req->suspended = 1;
            MHD_suspend_connection(conn);
        }
    } else if (!req->responded) {
        pthread_mutex_unlock(&req->lock);
        log_error(NULL, "http.no_response",
                  json_pack("{s:s,s:s}", "method", req->method, "route",
                            req->pattern ? req->pattern : ""));
        http_respond_kind(req, HTTP_PROBLEM_INTERNAL, "the handler did not respond", NULL);
        pthread_mutex_lock(&req->lock);
        if (req->pending != NULL)
            rc = queue_pending(req);
    }
    pthread_mutex_unlock(&req->lock);
    return rc;
}

/* Counts the request in petstore_http_requests_total and its duration histogram, labelled by
 * route pattern (bounded), a known method (or "other") and status, and logs its access line. */
static void request_account(http_request_t *req)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (double)(now.tv_sec - req->started.tv_sec) +
                  (double)(now.tv_nsec - req->started.tv_nsec) / 1e9;
    const char *route = req->pattern ? req->pattern : "unmatched";
    const char *method = http_metrics_method(req->method);
    char escaped[160], labels[256];
    if (metrics_escape_label(route, escaped, sizeof(escaped)) != 0)
        snprintf(escaped, sizeof(escaped), "unmatched");
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",status=\"%d\"", escaped, method,
             req->status);
    metrics_counter_add(
        metrics_counter("petstore_http_requests_total", "HTTP requests answered", labels), 1);
    snprintf(labels, sizeof(labels), "route=\"%s\"", escaped);
    metrics_histogram_observe(
        metrics_histogram("petstore_http_request_duration_seconds", "HTTP request duration", labels,
                          duration_bounds, sizeof(duration_bounds) / sizeof(duration_bounds[0])),
        secs);
    log_level_t level = req->quiet ? LOG_DEBUG : LOG_INFO;
    if (log_enabled(level)) {
        log_ctx_t ctx = {req->have_trace ? req->trace.trace_id : NULL,
                         req->have_trace ? req->trace.span_id : NULL,
                         req->order_id[0] != '\0' ? req->order_id : NULL};
        log_write(level, &ctx, "http.request",
                  json_pack("{s:s,s:s,s:i,s:f}", "method", method, "route", route, "status",
                            req->status, "duration_ms", secs * 1000));
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    http_server_t *s = cls;
    http_request_t *req = *con_cls;
    if (req == NULL)
        return;
    *con_cls = NULL;
    deferred_remove(req);
    request_account(req);
    pthread_mutex_lock(&s->lock);
    s->active--;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->lock);
    request_release(req);
}

/* MHD's own messages (bind failures, protocol errors) as log lines. */
static void mhd_log(void *cls, const char *fmt, va_list ap) PETSTORE_PRINTF(2, 0);
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char text[512];
    vsnprintf(text, sizeof(text), fmt, ap);
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    log_warn(NULL, "http.server_message", json_pack("{s:s}", "detail", text));
}

/* ---- the server ---- */

/* Reads a whole PEM file (at most 1 MiB) into a new NUL-terminated string (buf_t keeps one). */
static int read_pem(const char *path, const char *what, char **out, err_t *e)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return err_set(e, ERR_CONFIG, "%s %s: %s", what, path, strerror(errno));
    buf_t b = {0};
    char chunk[4096];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && rc == 0)
        rc = b.len + n > (1u << 20) ? ERR_CONFIG : buf_append(&b, chunk, n);
    if (rc == 0 && ferror(f))
        rc = ERR_CONFIG;
    fclose(f);
    if (rc == 0 && b.len == 0)
        rc = ERR_CONFIG;
    if (rc != 0) {
        if (b.data != NULL)
            sodium_memzero(b.data, b.cap);
        buf_free(&b);
        if (rc == ERR_NOMEM)
            return err_set(e, ERR_NOMEM, "out of memory reading %s", what);
        return err_set(e, ERR_CONFIG, "%s %s: empty, unreadable or larger than 1 MiB", what, path);
    }
    *out = b.data;
    return 0;
}

static void free_tls(http_server_t *s)
{
    if (s->tls_key != NULL)
        sodium_memzero(s->tls_key, strlen(s->tls_key));
    free(s->tls_key);
    free(s->tls_cert);
    s->tls_key = s->tls_cert = NULL;
}

static int is_set(const char *v) { return v != NULL && v[0] != '\0'; }

int http_server_start(const http_config_t *cfg, const http_route_t *routes, size_t n, void *app,
                      http_server_t **out, err_t *e)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons(cfg->port);
    const char *host = cfg->addr ? cfg->addr : "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return err_set(e, ERR_CONFIG, "HTTP address %s is not an IPv4 address", host);
    for (size_t i = 0; i < n; i++)
        if (routes[i].method == NULL || routes[i].pattern == NULL || routes[i].fn == NULL ||
            routes[i].pattern[0] != '/')
            return err_set(e, ERR_CONFIG, "HTTP route %zu is incomplete", i);
    http_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return err_set(e, ERR_NOMEM, "out of memory starting the HTTP server");
    s->routes = routes;
    s->n_routes = n;
    s->app = app;
    s->max_body = cfg->max_body ? cfg->max_body : HTTP_DEFAULT_MAX_BODY;
    s->drain_ms = cfg->drain_ms ? cfg->drain_ms : DEFAULT_DRAIN_MS;

    /* TLS: MHD (GnuTLS) takes the PEM text itself; a plain-text client gets no answer but a
     * failed handshake. Only TLS 1.2 and 1.3 are offered. */
    if (is_set(cfg->tls_cert_file) != is_set(cfg->tls_key_file)) {
        free(s);
        return err_set(e, ERR_CONFIG,
                       "HTTPS needs both a certificate and its key (HTTP_TLS_CERT_FILE and "
                       "HTTP_TLS_KEY_FILE); only one is set");
    }
    int rc = 0;
    if (is_set(cfg->tls_cert_file) &&
        ((rc = read_pem(cfg->tls_cert_file, "HTTP_TLS_CERT_FILE", &s->tls_cert, e)) != 0 ||
         (rc = read_pem(cfg->tls_key_file, "HTTP_TLS_KEY_FILE", &s->tls_key, e)) != 0)) {
        free_tls(s);
        free(s);
        return rc;
    }
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem no_opts[] = {{MHD_OPTION_END, 0, NULL}};

    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->idle, NULL);

    /* MHD_USE_AUTO picks epoll on Linux; ALLOW_SUSPEND_RESUME brings the inter-thread channel
     * that resuming and quiescing need. No SO_REUSEPORT: a second process on our port must
     * fail to start, not silently share it. */
    unsigned threads = cfg->threads ? cfg->threads : DEFAULT_THREADS;
    s->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                                MHD_USE_ERROR_LOG | (s->tls_cert != NULL ? MHD_USE_TLS : 0),
                            cfg->port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                            (MHD_LogCallback)mhd_log, NULL, MHD_OPTION_SOCK_ADDR, &addr,
                            MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)(cfg->timeout_s ? cfg->timeout_s : DEFAULT_TIMEOUT_S),
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_ARRAY,
                            s->tls_cert != NULL ? tls_opts : no_opts, MHD_OPTION_END);
    if (s->d == NULL) {
        int tls = s->tls_cert != NULL;
        pthread_cond_destroy(&s->idle);
        pthread_mutex_destroy(&s->lock);
        free_tls(s);
        free(s);
        if (tls)
            return err_set(e, ERR_CONFIG,
                           "cannot serve HTTPS on %s:%u: the port is in use, or "
                           "HTTP_TLS_CERT_FILE and HTTP_TLS_KEY_FILE are not a matching PEM "
                           "certificate and key (the log line before says which)",
                           host, (unsigned)cfg->port);
        return err_set(e, ERR_CONFIG, "cannot listen on %s:%u (port in use?)", host,
                       (unsigned)cfg->port);
    }
    *out = s;
    return 0;
}

int http_server_port(const http_server_t *s)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    return info != NULL ? (int)info->port : -1;
}

void http_server_stop(http_server_t *s)
{
    if (s == NULL)
        return;
    /* 1. No new deferrals (they get 503 at once) and no new connections. */
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_mutex_unlock(&s->lock);
    MHD_socket listener = MHD_quiesce_daemon(s->d);

    /* 2. End every stream (MHD must not be stopped with suspended connections). */
    pthread_mutex_lock(&s->lock);
    for (http_stream_t *st = s->streams; st != NULL; st = st->next) {
        pthread_mutex_lock(&st->lock);
        st->ended = 1;
        stream_wake(st);
        pthread_mutex_unlock(&st->lock);
    }
    pthread_mutex_unlock(&s->lock);

    /* 3. Answer every deferred request. Each is taken off the list with a reference of our own,
     * so that a responder racing us cannot complete and free it under our feet. */
    for (;;) {
        pthread_mutex_lock(&s->lock);
        http_request_t *req = s->deferred;
        if (req != NULL) {
            s->deferred = req->next_deferred;
            req->next_deferred = NULL;
            req->refs++;
        }
        pthread_mutex_unlock(&s->lock);
        if (req == NULL)
            break;
        http_respond_kind(req, HTTP_PROBLEM_UNAVAILABLE, "shutting down", NULL);
        request_release(req);
    }

    /* 4. Let requests in flight finish, for a bounded time. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += s->drain_ms / 1000;
    deadline.tv_nsec += (long)(s->drain_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    while (s->active > 0 && pthread_cond_timedwait(&s->idle, &s->lock, &deadline) != ETIMEDOUT)
        ;
    size_t left = s->active;
    pthread_mutex_unlock(&s->lock);
    if (left > 0)
        log_warn(NULL, "http.stop_unfinished", json_pack("{s:I}", "requests", (json_int_t)left));

    MHD_stop_daemon(s->d);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->lock);
    free_tls(s);
    free(s);
}
