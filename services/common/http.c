/* http: libmicrohttpd glue (see http.h).
 *
 * MHD calls the access handler several times per request: once when the headers are in (we
 * allocate the request and check Content-Length against the cap), once per chunk of body
 * (accumulated, or dropped once over the cap), and once more with no data, when we dispatch.
 * A response is built by whoever responds (any thread) and stored in the request as "pending";
 * it is queued from the access handler, the only place MHD allows it. For a deferred request the
 * handler returns without a pending response and the connection is suspended; the responder
 * then resumes it and MHD calls the access handler again, which queues the pending response.
 * req->lock orders "respond" against "suspend", so a response that arrives before the suspension
 * is simply queued at once. */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "buf.h"
#include "health.h"
#include "log.h"
#include "metrics.h"

#define MAX_PARAMS 4
#define MAX_HEADERS 8

typedef struct http_stream http_stream_t;

struct http_server {
    struct MHD_Daemon *d;
    http_stream_t *streams; /* open streams, guarded by lock */
    const http_route_t *routes;
    size_t n_routes;
    void *app;
    size_t max_body;
    pthread_mutex_t lock; /* guards the deferred list */
    http_request_t *deferred;
    int stopping;
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
    char *hdr_names[MAX_HEADERS];
    char *hdr_values[MAX_HEADERS];
    int n_hdrs;

    pthread_mutex_t lock;
    int deferred;
    int suspended;
    int responded;
    int status;
    struct MHD_Response *pending;
    http_request_t *next_deferred;
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

/* ---- accessors ---- */

const char *http_method(const http_request_t *req)
{
    return req->method;
}

const char *http_path(const http_request_t *req)
{
    return req->path;
}

const char *http_route_pattern(const http_request_t *req)
{
    return req->pattern;
}

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
    const char *h = http_header(req, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h != '\0' ? h : NULL;
}

const char *http_body(const http_request_t *req, size_t *len)
{
    if (len != NULL)
        *len = req->body.len;
    return req->body.data != NULL ? req->body.data : "";
}

void *http_app(const http_request_t *req)
{
    return req->server->app;
}

const trace_ctx_t *http_trace(http_request_t *req)
{
    if (!req->have_trace) {
        trace_from_header_or_new(http_header(req, "traceparent"), &req->trace);
        req->have_trace = 1;
    }
    return &req->trace;
}

void http_add_header(http_request_t *req, const char *name, const char *value)
{
    if (req->n_hdrs >= MAX_HEADERS)
        return;
    req->hdr_names[req->n_hdrs] = strdup(name);
    req->hdr_values[req->n_hdrs] = strdup(value);
    req->n_hdrs++;
}

/* ---- responding ---- */

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
    pthread_mutex_unlock(&s->lock);
}

/* Takes ownership of data (malloc'd, may be NULL when len is 0). */
static void respond(http_request_t *req, int status, const char *content_type, char *data,
                    size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, data ? data : (char *)"", data ? MHD_RESPMEM_MUST_FREE
                                                                             : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        free(data);
        return;
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
        if (req->hdr_names[i] && req->hdr_values[i])
            MHD_add_response_header(r, req->hdr_names[i], req->hdr_values[i]);
    req->responded = 1;
    req->status = status;
    req->pending = r;
    int resume = req->suspended;
    req->suspended = 0;
    pthread_mutex_unlock(&req->lock);
    if (resume) {
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

void http_respond_problem(http_request_t *req, int status, const char *type_slug,
                          const char *title, const char *detail, json_t *extra)
{
    json_t *p = http_problem_json(status, type_slug, title, detail, req->path, extra);
    char *text = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    respond(req, status, "application/problem+json", text, text ? strlen(text) : 0);
}

void http_respond_text(http_request_t *req, int status, const char *content_type,
                       const char *body, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return;
    memcpy(copy, body, len);
    respond(req, status, content_type, copy, len);
}

void http_respond_empty(http_request_t *req, int status)
{
    respond(req, status, NULL, NULL, 0);
}

void http_defer(http_request_t *req)
{
    pthread_mutex_lock(&req->lock);
    req->deferred = 1;
    pthread_mutex_unlock(&req->lock);
}

int http_read_json_object(http_request_t *req, json_t **out)
{
    const char *ct = http_header(req, "Content-Type");
    if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0 ||
        (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
        http_respond_problem(req, 415, "unsupported-media-type", "Unsupported Media Type",
                             "the request body must be application/json", NULL);
        return -1;
    }
    json_error_t je;
    size_t len = 0;
    const char *body = http_body(req, &len);
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (v == NULL) {
        char detail[256];
        snprintf(detail, sizeof(detail), "malformed JSON at line %d column %d: %s", je.line,
                 je.column, je.text);
        http_respond_problem(req, 400, "malformed-json", "Malformed JSON", detail, NULL);
        return -1;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        http_respond_problem(req, 422, "validation-failed", "Unprocessable Content",
                             "the request body must be a JSON object", NULL);
        return -1;
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
    size_t sent;    /* bytes of pending already handed to MHD */
    int suspended;  /* the reader suspended the connection for lack of data */
    int ended;      /* the producer (or the server) has no more to send */
    int closed;     /* MHD is done with the connection: sends fail */
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
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st,
                                              stream_free);
    }
    if (r == NULL) {
        if (st != NULL) {
            pthread_mutex_destroy(&st->lock);
            free(st);
        }
        http_respond_problem(req, 503, "unavailable", "Service Unavailable", "out of memory",
                             NULL);
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

static int builtin(http_request_t *req)
{
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
        return 0;
    if (strcmp(req->path, "/livez") == 0) {
        req->pattern = "/livez";
        http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
        return 1;
    }
    if (strcmp(req->path, "/readyz") == 0) {
        req->pattern = "/readyz";
        json_t *body = NULL;
        int ready = health_ready_json(&body);
        http_respond_json(req, ready ? 200 : 503, body);
        return 1;
    }
    if (strcmp(req->path, "/metrics") == 0) {
        req->pattern = "/metrics";
        buf_t b = BUF_INIT;
        if (metrics_render(&b) != 0) {
            buf_free(&b);
            http_respond_problem(req, 500, "internal", "Internal Server Error", NULL, NULL);
            return 1;
        }
        respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        return 1;
    }
    return 0;
}

static void dispatch(http_request_t *req)
{
    http_server_t *s = req->server;
    if (req->too_large) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the request body exceeds %zu bytes", s->max_body);
        http_respond_problem(req, 413, "payload-too-large", "Content Too Large", detail, NULL);
        return;
    }
    if (builtin(req))
        return;
    char allow[128] = "";
    for (size_t i = 0; i < s->n_routes; i++) {
        const http_route_t *r = &s->routes[i];
        int n = http_match(r->pattern, req->path, req->param_names, req->param_values, MAX_PARAMS);
        if (n < 0)
            continue;
        if (strcmp(r->method, req->method) != 0) {
            size_t len = strlen(allow);
            snprintf(allow + len, sizeof(allow) - len, "%s%s", len ? ", " : "", r->method);
            continue;
        }
        req->n_params = n;
        req->pattern = r->pattern;
        r->fn(req, s->app);
        return;
    }
    if (allow[0] != '\0') {
        req->pattern = "unmatched";
        http_add_header(req, "Allow", allow);
        http_respond_problem(req, 405, "method-not-allowed", "Method Not Allowed", NULL, NULL);
        return;
    }
    req->pattern = "unmatched";
    http_respond_problem(req, 404, "not-found", "Not Found", "no such resource", NULL);
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    http_server_t *s = cls;
    http_request_t *req = *con_cls;
    if (req == NULL) {
        req = calloc(1, sizeof(*req));
        if (req == NULL)
            return MHD_NO;
        req->server = s;
        req->conn = conn;
        req->method = strdup(method);
        req->path = strdup(url);
        pthread_mutex_init(&req->lock, NULL);
        clock_gettime(CLOCK_MONOTONIC, &req->started);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > s->max_body)
            req->too_large = 1;
        *con_cls = req;
        return req->method && req->path ? MHD_YES : MHD_NO;
    }
    if (*upload_data_size > 0) {
        if (!req->too_large) {
            if (req->body.len + *upload_data_size > s->max_body ||
                buf_append(&req->body, upload_data, *upload_data_size) != 0) {
                req->too_large = 1;
                buf_free(&req->body);
            }
        }
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
            http_respond_problem(req, 503, "unavailable", "Service Unavailable", "shutting down",
                                 NULL);
            pthread_mutex_lock(&req->lock);
            rc = queue_pending(req);
        } else {
            req->suspended = 1;
            MHD_suspend_connection(conn);
        }
    } else if (!req->responded) {
        pthread_mutex_unlock(&req->lock);
        log_error(NULL, "http.no_response", json_pack("{s:s,s:s}", "method", req->method, "route",
                                                      req->pattern ? req->pattern : ""));
        http_respond_problem(req, 500, "internal", "Internal Server Error",
                             "the handler did not respond", NULL);
        pthread_mutex_lock(&req->lock);
        if (req->pending != NULL)
            rc = queue_pending(req);
    }
    pthread_mutex_unlock(&req->lock);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    http_request_t *req = *con_cls;
    if (req == NULL)
        return;
    *con_cls = NULL;
    deferred_remove(req);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (double)(now.tv_sec - req->started.tv_sec) +
                  (double)(now.tv_nsec - req->started.tv_nsec) / 1e9;
    const char *route = req->pattern ? req->pattern : "unmatched";
    char labels[256];
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",status=\"%d\"", route,
             req->method, req->status);
    metrics_counter_add(metrics_counter("petstore_http_requests_total", "HTTP requests answered",
                                        labels),
                        1);
    snprintf(labels, sizeof(labels), "route=\"%s\"", route);
    metrics_histogram_observe(metrics_histogram("petstore_http_request_duration_seconds",
                                                "HTTP request duration", labels, duration_bounds,
                                                sizeof(duration_bounds) / sizeof(duration_bounds[0])),
                              secs);
    log_debug(NULL, "http.request",
              json_pack("{s:s,s:s,s:i,s:f}", "method", req->method, "route", route, "status",
                        req->status, "duration_ms", secs * 1000));
    if (req->pending != NULL)
        MHD_destroy_response(req->pending);
    for (int i = 0; i < req->n_hdrs; i++) {
        free(req->hdr_names[i]);
        free(req->hdr_values[i]);
    }
    buf_free(&req->body);
    free(req->method);
    free(req->path);
    pthread_mutex_destroy(&req->lock);
    free(req);
}

int http_server_start(const http_config_t *cfg, const http_route_t *routes, size_t n, void *app,
                      http_server_t **out, err_t *e)
{
    http_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return err_set(e, ERR_NOMEM, "out of memory starting the HTTP server");
    s->routes = routes;
    s->n_routes = n;
    s->app = app;
    s->max_body = cfg->max_body ? cfg->max_body : HTTP_DEFAULT_MAX_BODY;
    pthread_mutex_init(&s->lock, NULL);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons(cfg->port);
    const char *host = cfg->addr ? cfg->addr : "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return err_set(e, ERR_CONFIG, "HTTP address %s is not an IPv4 address", host);
    }
    unsigned threads = cfg->threads ? cfg->threads : 4;
    s->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                                MHD_USE_ERROR_LOG,
                            cfg->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr,
                            MHD_OPTION_THREAD_POOL_SIZE, threads,
                            MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)(cfg->timeout_s ? cfg->timeout_s : 60),
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    if (s->d == NULL) {
        pthread_mutex_destroy(&s->lock);
        free(s);
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
    /* End every stream (MHD must not be stopped with suspended connections). */
    pthread_mutex_lock(&s->lock);
    for (http_stream_t *st = s->streams; st != NULL; st = st->next) {
        pthread_mutex_lock(&st->lock);
        st->ended = 1;
        stream_wake(st);
        pthread_mutex_unlock(&st->lock);
    }
    pthread_mutex_unlock(&s->lock);
    /* Answer every suspended request so MHD can finish them. */
    for (;;) {
        pthread_mutex_lock(&s->lock);
        s->stopping = 1;
        http_request_t *req = s->deferred;
        pthread_mutex_unlock(&s->lock);
        if (req == NULL)
            break;
        http_respond_problem(req, 503, "unavailable", "Service Unavailable", "shutting down",
                             NULL);
        deferred_remove(req);
    }
    MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
