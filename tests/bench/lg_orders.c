/* lg_orders: `petstore-loadgen orders`, orders placed on the storefront and followed to their end.
 *
 * One thread drives every connection through epoll (edge-triggered; a socket is read and written
 * until EAGAIN). A connection carries one request at a time, keeps alive, and belongs to one
 * customer (a line of --clients, round robin), because an order can only be read by its owner.
 * An order holds its connection from its POST until its end: the long poll
 * (GET /v1/orders/ID?wait=30&status=LAST) parks it on that connection.
 *
 * Design decisions:
 * - Open loop (--rate R): order i is due at start + i/R. Latencies are measured from that due
 *   time, never from when a connection became free, so a slow system cannot hide its queue
 *   (no coordinated omission). A due order takes an idle connection, else opens one (up to
 *   --max-conns), else waits in a FIFO; an order sent more than 100 ms after its due time
 *   counts in late_100ms. Orders due inside the window are all sent, even during the drain.
 * - Closed loop (--closed N): N connections; each places an order when the previous one ended
 *   (or, with --follow none, was accepted); latency counts from when the POST was written.
 * - A POST that fails in transport (reset, close before the answer) is sent again with the same
 *   Idempotency-Key, which is what the key is for; a failed GET is sent again. Both count in
 *   transport_errors; after LG_MAX_RETRIES consecutive failures the order is given up
 *   (abandoned). A 503 on a POST returns its pet to the pool (the order was not created); the
 *   closed-loop connection then pauses for Retry-After (at most 1 s). A 503 on a GET is retried
 *   after 100 ms; any other non-200 answer to a GET abandons the order.
 * - The placing window ends after --duration seconds or when the pets run out
 *   (pets_exhausted); duration_s is the window actually used, and completed_per_s and
 *   post_per_s divide by it. completed_per_s counts COMPLETED orders whose POST was first sent
 *   inside the window. After the window the run waits up to --drain seconds
 *   for the orders in flight; those still open are `unfinished`. An open-loop order due inside
 *   the window but sent after it (no connection was free) still runs, but does not count in
 *   completed_per_s; post_per_s counts the 202s received inside the window.
 * - Times in the report (first_completed_s, completed_by_second) count from the start of the
 *   window. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "lg_hist.h"
#include "lg_http.h"
#include "lg_modes.h"
#include "lg_util.h"
#include "uuid.h"

#define LG_MAX_RETRIES 5
#define LG_LATE_US 100000
#define LG_READ_CHUNK 65536
#define LG_STATUS_MAX 32

enum { REQ_POST, REQ_GET };
enum { C_IDLE, C_CONNECTING, C_SENDING, C_READING, C_PAUSED };
enum { END_COMPLETED, END_CANCELLED, END_NEEDS_OPERATOR, END_COUNT };
static const char *const end_names[END_COUNT] = {"COMPLETED", "CANCELLED", "NEEDS_OPERATOR"};

typedef struct order {
    int64_t due_us; /* latency origin: due time (open loop) or POST written (closed loop) */
    int in_window;  /* its POST was first sent inside the placing window */
    int pet;        /* index in the pet list */
    int requests;   /* requests written for this order */
    int retries;    /* consecutive transport failures */
    int accepted;   /* the POST was answered 202 */
    char key[UUID_STR_LEN];
    char id[UUID_STR_LEN];
    char status[LG_STATUS_MAX];
    struct order *next; /* the FIFO of orders waiting for a connection */
} order_t;

typedef struct conn {
    int fd; /* -1: not connected */
    int state;
    int client; /* index in the client list */
    int req;    /* REQ_POST or REQ_GET while sending or reading */
    order_t *order;
    buf_t out;
    size_t out_off;
    int64_t wake_us; /* C_PAUSED: when to go on */
    lg_http_resp_t resp;
    struct conn *next_idle;
} conn_t;

typedef struct client {
    char *line; /* owned; token and card point into it */
    char *token;
    char *card;
} client_t;

typedef struct opts {
    const char *url, *clients_file, *pets_file, *json_path;
    const char *wait_query;
    long closed;
    double rate;
    double duration_s;
    double drain_s;
    long max_conns;
    int follow;
} opts_t;

typedef struct run {
    opts_t o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[300]; /* Host header */
    char prefix[256];
    client_t *clients;
    size_t nclients;
    char **pets;
    size_t npets, next_pet;
    int *returned; /* pets given back by a 503, used first */
    size_t nreturned;
    int ep;
    conn_t *conns;
    size_t nconns, conns_cap;
    conn_t *idle; /* stack of connections with no order */
    size_t npaused;
    order_t *wait_head, *wait_tail;
    size_t nwaiting;
    int64_t start_us, window_end_us, drain_end_us, placing_end_us;
    int placing;
    uint64_t next_index; /* open loop: the next order's number */
    /* Counts. */
    uint64_t placed, accepted, accepted_in_window, requests, transport_errors, late, abandoned;
    uint64_t inflight; /* orders sent or waiting, not ended */
    uint64_t ended[END_COUNT];
    uint64_t completed_in_window;
    int64_t first_completed_us, last_completed_us;
    int pets_exhausted;
    json_t *post_status, *follow_status, *reasons;
    uint64_t *by_second;
    size_t nseconds;
    lg_hist_t *h_post, *h_completed, *h_ended;
} run_t;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- input ------------------------------------------------------------------------------ */

static int token_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 0;
    return 1;
}

static int digits_ok(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static char *next_field(char **p)
{
    char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '\0')
        return NULL;
    char *e = s;
    while (*e && *e != ' ' && *e != '\t')
        e++;
    if (*e)
        *e++ = '\0';
    *p = e;
    return s;
}

/* Reads FILE's non-empty lines, '\r' and '\n' stripped, into a new array of new strings. */
static int read_lines(const char *path, char ***out, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "petstore-loadgen: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char **v = NULL;
    size_t len = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&line, &lcap, f)) >= 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = '\0';
        if (got == 0)
            continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 1024;
            char **nv = realloc(v, cap * sizeof(*v));
            if (nv == NULL) {
                rc = -1;
                break;
            }
            v = nv;
        }
        v[len] = strdup(line);
        if (v[len] == NULL) {
            rc = -1;
            break;
        }
        len++;
    }
    free(line);
    fclose(f);
    if (rc != 0) {
        fprintf(stderr, "petstore-loadgen: out of memory reading %s\n", path);
        for (size_t i = 0; i < len; i++)
            free(v[i]);
        free(v);
        return -1;
    }
    *out = v;
    *n = len;
    return 0;
}

static int load_inputs(run_t *r)
{
    char **lines = NULL;
    size_t n = 0;
    if (read_lines(r->o.clients_file, &lines, &n) != 0)
        return -1;
    if (n == 0) {
        fprintf(stderr, "petstore-loadgen: %s holds no client line\n", r->o.clients_file);
        free(lines);
        return -1;
    }
    r->clients = calloc(n, sizeof(*r->clients));
    if (r->clients == NULL)
        return -1;
    r->nclients = n;
    for (size_t i = 0; i < n; i++)
        r->clients[i].line = lines[i];
    free(lines); /* the strings now belong to r->clients */
    for (size_t i = 0; i < n; i++) {
        char *p = r->clients[i].line;
        char *tok = next_field(&p);
        char *card = next_field(&p);
        if (tok == NULL || card == NULL || next_field(&p) != NULL || !token_ok(tok) ||
            !digits_ok(card)) {
            fprintf(stderr,
                    "petstore-loadgen: %s line %zu: expected \"TOKEN CARD_NUMBER\" (card in "
                    "digits)\n",
                    r->o.clients_file, i + 1);
            return -1;
        }
        r->clients[i].token = tok;
        r->clients[i].card = card;
    }
    if (read_lines(r->o.pets_file, &r->pets, &r->npets) != 0)
        return -1;
    for (size_t i = 0; i < r->npets; i++) {
        if (!uuid_valid(r->pets[i])) {
            fprintf(stderr, "petstore-loadgen: %s line %zu: not a pet id \"%s\"\n", r->o.pets_file,
                    i + 1, r->pets[i]);
            return -1;
        }
    }
    r->returned = calloc(r->npets + 1, sizeof(*r->returned));
    return r->returned ? 0 : -1;
}

/* "http://HOST[:PORT][/PREFIX]", resolved once. */
static int parse_url(run_t *r)
{
    const char *u = r->o.url;
    if (strncmp(u, "http://", 7) != 0)
        return lg_usage_error("--url must start with http:// (https is not supported): \"%s\"", u);
    const char *h = u + 7;
    const char *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= sizeof(r->host))
        return lg_usage_error("--url has no host: \"%s\"", u);
    memcpy(r->host, h, hl);
    r->host[hl] = '\0';
    snprintf(r->prefix, sizeof(r->prefix), "%s", slash ? slash : "");
    size_t pl = strlen(r->prefix);
    while (pl > 0 && r->prefix[pl - 1] == '/')
        r->prefix[--pl] = '\0';
    char name[300], port[16] = "80";
    snprintf(name, sizeof(name), "%s", r->host);
    char *colon = strrchr(name, ':');
    if (name[0] == '[') {
        char *close = strchr(name, ']');
        if (close == NULL)
            return lg_usage_error("--url has a bad IPv6 host: \"%s\"", u);
        *close = '\0';
        memmove(name, name + 1, strlen(name + 1) + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
        if (colon)
            snprintf(port, sizeof(port), "%s", colon + 1);
    } else if (colon != NULL) {
        *colon = '\0';
        snprintf(port, sizeof(port), "%s", colon + 1);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(name, port, &hints, &res);
    if (g != 0) {
        fprintf(stderr, "petstore-loadgen: cannot resolve %s port %s: %s\n", name, port,
                gai_strerror(g));
        return -1;
    }
    memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
    r->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* ---- connections ------------------------------------------------------------------------ */

static void count_key(json_t *map, const char *key)
{
    json_t *v = json_object_get(map, key);
    json_object_set_new(map, key, json_integer(v ? json_integer_value(v) + 1 : 1));
}

static void count_status(json_t *map, int status)
{
    char k[16];
    snprintf(k, sizeof(k), "%d", status);
    count_key(map, k);
}

static void conn_close(run_t *r, conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    lg_http_reset(&c->resp);
}

static void make_idle(run_t *r, conn_t *c)
{
    c->order = NULL;
    c->state = C_IDLE;
    c->next_idle = r->idle;
    r->idle = c;
}

static void pause_conn(run_t *r, conn_t *c, int64_t until_us)
{
    c->state = C_PAUSED;
    c->wake_us = until_us;
    r->npaused++;
}

static int conn_open(run_t *r, conn_t *c)
{
    int fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&r->addr, r->addrlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    lg_http_reset(&c->resp);
    return 0;
}

static void order_end(run_t *r, conn_t *c, int64_t now);
static void transport_failed(run_t *r, conn_t *c, int64_t now);

/* Writes what is left of c->out; 0 when all is written or the socket is full, -1 on error. */
static int conn_flush(conn_t *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -1;
        }
        c->out_off += (size_t)w;
    }
    c->state = C_READING;
    return 0;
}

/* Builds the request for c's order (POST or GET, after c->req) and starts sending it, connecting
 * first when needed. */
static void conn_send(run_t *r, conn_t *c, int64_t now)
{
    order_t *o = c->order;
    const client_t *cl = &r->clients[c->client];
    buf_reset(&c->out);
    c->out_off = 0;
    int rc = 0;
    if (c->req == REQ_POST) {
        char body[512];
        int bl = snprintf(body, sizeof(body), "{\"card_number\":\"%s\",\"pet_ids\":[\"%s\"]}",
                          cl->card, r->pets[o->pet]);
        rc = buf_printf(&c->out,
                        "POST %s/v1/orders HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                        "Idempotency-Key: %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n\r\n%s",
                        r->prefix, r->host, cl->token, o->key, bl, body);
    } else {
        rc = buf_printf(&c->out, "GET %s/v1/orders/%s?", r->prefix, o->id);
        for (const char *q = r->o.wait_query; rc == 0 && *q; q++) {
            if (strncmp(q, "{status}", 8) == 0) {
                rc = buf_puts(&c->out, o->status);
                q += 7;
            } else {
                rc = buf_append(&c->out, q, 1);
            }
        }
        if (rc == 0)
            rc = buf_printf(&c->out,
                            " HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                            "Accept: application/json\r\n\r\n",
                            r->host, cl->token);
    }
    if (rc != 0) {
        fprintf(stderr, "petstore-loadgen: out of memory\n");
        exit(1);
    }
    o->requests++;
    r->requests++;
    if (c->fd < 0) {
        if (conn_open(r, c) != 0) {
            transport_failed(r, c, now);
            return;
        }
        c->state = C_CONNECTING; /* the first EPOLLOUT says the connect finished */
        return;
    }
    c->state = C_SENDING;
    if (conn_flush(c) != 0)
        transport_failed(r, c, now);
}

/* Starts order o on connection c: its POST. */
static void order_start(run_t *r, conn_t *c, order_t *o, int64_t now)
{
    c->order = o;
    c->req = REQ_POST;
    o->in_window = now < r->window_end_us;
    if (r->o.rate > 0 && now - o->due_us > LG_LATE_US)
        r->late++;
    conn_send(r, c, now);
}

/* A transport failure on c: the connection is closed; its order is retried after a short pause
 * (the same request: an Idempotency-Key makes the POST safe to repeat) or given up. */
static void transport_failed(run_t *r, conn_t *c, int64_t now)
{
    r->transport_errors++;
    conn_close(r, c);
    order_t *o = c->order;
    if (o == NULL)
        return; /* an idle or paused connection: it stays where it is, unconnected */
    if (++o->retries > LG_MAX_RETRIES) {
        r->abandoned++;
        order_end(r, c, now);
        return;
    }
    pause_conn(r, c, now + 100000 * o->retries);
}

/* Takes the next pet, or -1 when none is left. */
static int take_pet(run_t *r)
{
    if (r->nreturned > 0)
        return r->returned[--r->nreturned];
    if (r->next_pet < r->npets)
        return (int)r->next_pet++;
    return -1;
}

static order_t *order_new(run_t *r, int64_t due_us)
{
    int pet = take_pet(r);
    if (pet < 0) {
        if (r->placing) {
            r->pets_exhausted = 1;
            r->placing = 0;
            r->placing_end_us = due_us;
        }
        return NULL;
    }
    order_t *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        fprintf(stderr, "petstore-loadgen: out of memory\n");
        exit(1);
    }
    o->due_us = due_us;
    o->pet = pet;
    uuid_v4(o->key);
    r->placed++;
    r->inflight++;
    return o;
}

/* The order on c is over (ended, given up or refused): count it and free c for the next. */
static void order_end(run_t *r, conn_t *c, int64_t now)
{
    free(c->order);
    c->order = NULL;
    r->inflight--;
    if (c->state == C_PAUSED)
        return; /* the closed loop resumes when the pause is over */
    if (r->o.closed > 0 && r->placing) {
        order_t *o = order_new(r, now);
        if (o != NULL) {
            order_start(r, c, o, now);
            return;
        }
    }
    make_idle(r, c);
}

static int end_kind(const char *status)
{
    for (int i = 0; i < END_COUNT; i++)
        if (strcmp(status, end_names[i]) == 0)
            return i;
    return -1;
}

static void record_end(run_t *r, order_t *o, int kind, const char *reason, int64_t now)
{
    uint64_t lat = now > o->due_us ? (uint64_t)(now - o->due_us) : 0;
    r->ended[kind]++;
    lg_hist_record(r->h_ended, lat);
    if (kind == END_CANCELLED && reason != NULL)
        count_key(r->reasons, reason);
    if (kind != END_COMPLETED)
        return;
    lg_hist_record(r->h_completed, lat);
    if (o->in_window)
        r->completed_in_window++;
    if (r->first_completed_us == 0)
        r->first_completed_us = now;
    r->last_completed_us = now;
    size_t sec = (size_t)((now - r->start_us) / 1000000);
    if (sec < r->nseconds)
        r->by_second[sec]++;
}

/* Reads "id", "status" and "reason" from a JSON body. status is copied only when it is made of
 * A-Z and '_' (it goes into a URL). */
static int parse_order(const lg_http_resp_t *resp, char *id, char *status, char *reason,
                       size_t reason_size)
{
    if (resp->body == NULL)
        return -1;
    json_error_t je;
    json_t *j = json_loadb(resp->body, resp->body_len, 0, &je);
    const char *s = json_string_value(json_object_get(j, "status"));
    const char *i = json_string_value(json_object_get(j, "id"));
    const char *why = json_string_value(json_object_get(j, "reason"));
    int rc = -1;
    if (s == NULL || strlen(s) >= LG_STATUS_MAX ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != strlen(s))
        goto out;
    if (id != NULL) {
        if (i == NULL || !uuid_valid(i))
            goto out;
        memcpy(id, i, UUID_STR_LEN);
    }
    snprintf(status, LG_STATUS_MAX, "%s", s);
    snprintf(reason, reason_size, "%s", why ? why : "");
    rc = 0;
out:
    json_decref(j);
    return rc;
}

/* A whole response arrived on c. */
static void on_response(run_t *r, conn_t *c, int64_t now)
{
    order_t *o = c->order;
    lg_http_resp_t *resp = &c->resp;
    int status = resp->status;
    int will_close = resp->close;
    char reason[64] = "";
    if (o == NULL) { /* an answer nobody asked for */
        conn_close(r, c);
        return;
    }
    o->retries = 0;
    if (c->req == REQ_POST) {
        count_status(r->post_status, status);
        if (status == 202 && parse_order(resp, o->id, o->status, reason, sizeof(reason)) == 0) {
            o->accepted = 1;
            r->accepted++;
            if (r->placing || now < r->placing_end_us)
                r->accepted_in_window++;
            lg_hist_record(r->h_post, (uint64_t)(now - o->due_us));
        } else if (status == 503) {
            r->returned[r->nreturned++] = o->pet; /* not created: the pet goes to another order */
            long ra = resp->retry_after >= 0 ? resp->retry_after : 0;
            if (will_close)
                conn_close(r, c);
            if (r->o.closed > 0)
                pause_conn(r, c, now + (ra > 0 ? 1000000 : 100000));
            order_end(r, c, now);
            return;
        } else {
            if (status == 202)
                r->transport_errors++; /* a 202 whose body we cannot read */
            if (will_close)
                conn_close(r, c);
            order_end(r, c, now);
            return;
        }
    } else {
        count_status(r->follow_status, status);
        if (status == 503) {
            if (will_close)
                conn_close(r, c);
            pause_conn(r, c, now + 100000);
            return;
        }
        if (status != 200 || parse_order(resp, NULL, o->status, reason, sizeof(reason)) != 0) {
            r->abandoned++;
            if (will_close)
                conn_close(r, c);
            order_end(r, c, now);
            return;
        }
    }
    if (will_close)
        conn_close(r, c);
    else
        lg_http_reset(resp);
    int kind = end_kind(o->status);
    if (kind >= 0) {
        record_end(r, o, kind, reason[0] ? reason : NULL, now);
        order_end(r, c, now);
        return;
    }
    if (!r->o.follow) {
        order_end(r, c, now);
        return;
    }
    c->req = REQ_GET;
    conn_send(r, c, now);
}

static void on_readable(run_t *r, conn_t *c, int64_t now)
{
    static char chunk[LG_READ_CHUNK];
    for (;;) {
        ssize_t n = recv(c->fd, chunk, sizeof(chunk), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            transport_failed(r, c, now);
            return;
        }
        if (n == 0) {
            if (c->state == C_READING && lg_http_eof(&c->resp) == LG_HTTP_DONE) {
                c->resp.close = 1;
                on_response(r, c, now);
                return;
            }
            if (c->state == C_IDLE || c->state == C_PAUSED) {
                conn_close(r, c); /* the server closed an idle keep-alive connection */
                return;
            }
            transport_failed(r, c, now);
            return;
        }
        if (c->state != C_READING && c->state != C_SENDING) {
            transport_failed(r, c, now); /* bytes nobody asked for */
            return;
        }
        size_t used = 0;
        int rc = lg_http_feed(&c->resp, chunk, (size_t)n, &used);
        if (rc == LG_HTTP_DONE) {
            if (used != (size_t)n) {
                transport_failed(r, c, now); /* more than the one answer */
                return;
            }
            on_response(r, c, now);
            return; /* a new request may be on its way: its reads come with the next events */
        }
        if (rc != LG_HTTP_MORE) {
            transport_failed(r, c, now);
            return;
        }
    }
}

static void on_event(run_t *r, conn_t *c, uint32_t events, int64_t now)
{
    if (c->fd < 0)
        return;
    if (c->state == C_CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            transport_failed(r, c, now);
            return;
        }
        c->state = C_SENDING;
    }
    if (c->state == C_SENDING && (events & EPOLLOUT)) {
        if (conn_flush(c) != 0) {
            transport_failed(r, c, now);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        on_readable(r, c, now);
}

/* ---- the loop --------------------------------------------------------------------------- */

static conn_t *conn_new(run_t *r)
{
    if (r->nconns == r->conns_cap)
        return NULL;
    conn_t *c = &r->conns[r->nconns];
    c->fd = -1;
    c->client = (int)(r->nconns % r->nclients);
    lg_http_init(&c->resp);
    r->nconns++;
    return c;
}

/* Hands waiting orders (open loop) to idle or new connections. */
static void dispatch(run_t *r, int64_t now)
{
    while (r->wait_head != NULL) {
        conn_t *c = r->idle;
        if (c != NULL)
            r->idle = c->next_idle;
        else
            c = conn_new(r);
        if (c == NULL)
            return;
        order_t *o = r->wait_head;
        r->wait_head = o->next;
        if (r->wait_head == NULL)
            r->wait_tail = NULL;
        r->nwaiting--;
        order_start(r, c, o, now);
    }
}

static void schedule(run_t *r, int64_t now)
{
    if (r->placing && now >= r->window_end_us) {
        r->placing = 0;
        r->placing_end_us = r->window_end_us;
    }
    if (r->o.rate > 0) {
        while (r->placing) {
            int64_t due = r->start_us + (int64_t)((double)r->next_index * 1e6 / r->o.rate);
            if (due > now || due >= r->window_end_us)
                break;
            order_t *o = order_new(r, due);
            if (o == NULL)
                break;
            r->next_index++;
            if (r->wait_tail)
                r->wait_tail->next = o;
            else
                r->wait_head = o;
            r->wait_tail = o;
            r->nwaiting++;
        }
        dispatch(r, now);
    }
    if (r->npaused > 0) {
        for (size_t i = 0; i < r->nconns; i++) {
            conn_t *c = &r->conns[i];
            if (c->state != C_PAUSED || c->wake_us > now)
                continue;
            r->npaused--;
            if (c->order != NULL) {
                c->state = C_IDLE;
                conn_send(r, c, now); /* the same request again */
                continue;
            }
            make_idle(r, c);
        }
    }
    if (r->o.closed > 0) {
        while (r->placing && r->idle != NULL) {
            conn_t *c = r->idle;
            order_t *o = order_new(r, now);
            if (o == NULL)
                break;
            r->idle = c->next_idle;
            order_start(r, c, o, now);
        }
    }
}

/* Milliseconds until the next thing the loop must do on its own. */
static int next_timeout(const run_t *r, int64_t now)
{
    int64_t next = r->drain_end_us;
    if (r->placing) {
        if (r->window_end_us < next)
            next = r->window_end_us;
        if (r->o.rate > 0) {
            int64_t due = r->start_us + (int64_t)((double)r->next_index * 1e6 / r->o.rate);
            if (due < next)
                next = due;
        }
    }
    if (r->npaused > 0)
        for (size_t i = 0; i < r->nconns; i++)
            if (r->conns[i].state == C_PAUSED && r->conns[i].wake_us < next)
                next = r->conns[i].wake_us;
    if (next <= now)
        return 0;
    int64_t ms = (next - now + 999) / 1000;
    return ms > 1000 ? 1000 : (int)ms;
}

static int run_loop(run_t *r)
{
    struct epoll_event evs[256];
    r->start_us = lg_now_us();
    r->window_end_us = r->start_us + (int64_t)(r->o.duration_s * 1e6);
    r->drain_end_us = r->window_end_us + (int64_t)(r->o.drain_s * 1e6);
    r->placing = 1;
    if (r->o.closed > 0)
        for (long i = 0; i < r->o.closed; i++)
            make_idle(r, conn_new(r));
    for (;;) {
        int64_t now = lg_now_us();
        schedule(r, now);
        if (!r->placing && r->inflight == 0)
            break;
        if (now >= r->drain_end_us) {
            if (r->placing) { /* drain 0 and the window just ended */
                r->placing = 0;
                r->placing_end_us = r->window_end_us;
            }
            break;
        }
        if (interrupted) {
            fprintf(stderr, "petstore-loadgen: interrupted, reporting what was measured\n");
            if (r->placing) {
                r->placing = 0;
                r->placing_end_us = now;
            }
            break;
        }
        int n = epoll_wait(r->ep, evs, 256, next_timeout(r, now));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("petstore-loadgen: epoll_wait");
            return -1;
        }
        now = lg_now_us();
        for (int i = 0; i < n; i++)
            on_event(r, evs[i].data.ptr, evs[i].events, now);
    }
    return 0;
}

/* ---- the report ------------------------------------------------------------------------- */

static json_t *report(run_t *r)
{
    double window_s = (double)(r->placing_end_us - r->start_us) / 1e6;
    if (window_s <= 0)
        window_s = 1e-6;
    json_t *j = json_object();
    json_object_set_new(j, "mode", json_string(r->o.closed > 0 ? "closed" : "rate"));
    if (r->o.closed > 0)
        json_object_set_new(j, "connections", json_integer(r->o.closed));
    else
        json_object_set_new(j, "rate", json_real(r->o.rate));
    json_object_set_new(j, "follow", json_string(r->o.follow ? "longpoll" : "none"));
    json_object_set_new(j, "duration_s", json_real(window_s));
    json_object_set_new(j, "duration_requested_s", json_real(r->o.duration_s));
    json_object_set_new(j, "connections_opened", json_integer((json_int_t)r->nconns));
    json_object_set_new(j, "placed", json_integer((json_int_t)r->placed));
    json_object_set_new(j, "accepted", json_integer((json_int_t)r->accepted));
    json_object_set_new(j, "http_status", json_incref(r->post_status));
    json_object_set_new(j, "follow_status", json_incref(r->follow_status));
    json_object_set_new(j, "transport_errors", json_integer((json_int_t)r->transport_errors));
    json_t *ended = json_object();
    for (int i = 0; i < END_COUNT; i++)
        json_object_set_new(ended, end_names[i], json_integer((json_int_t)r->ended[i]));
    json_object_set_new(j, "ended", ended);
    json_object_set_new(j, "cancel_reasons", json_incref(r->reasons));
    json_object_set_new(j, "abandoned", json_integer((json_int_t)r->abandoned));
    uint64_t unfinished = 0, unsent = r->nwaiting;
    for (size_t i = 0; i < r->nconns; i++) {
        const order_t *o = r->conns[i].order;
        if (o == NULL)
            continue;
        if (o->accepted)
            unfinished++;
        else
            unsent++;
    }
    json_object_set_new(j, "unfinished", json_integer((json_int_t)unfinished));
    json_object_set_new(j, "unanswered", json_integer((json_int_t)unsent));
    json_t *secs = json_array();
    size_t last = 0;
    for (size_t i = 0; i < r->nseconds; i++)
        if (r->by_second[i])
            last = i + 1;
    for (size_t i = 0; i < last; i++)
        json_array_append_new(secs, json_integer((json_int_t)r->by_second[i]));
    json_object_set_new(j, "completed_by_second", secs);
    json_object_set_new(j, "requests", json_integer((json_int_t)r->requests));
    json_object_set_new(j, "requests_per_order",
                        json_real(r->accepted ? (double)r->requests / (double)r->accepted : 0));
    if (r->o.rate > 0)
        json_object_set_new(j, "late_100ms", json_integer((json_int_t)r->late));
    json_object_set_new(j, "latency_ms",
                        json_pack("{s:o, s:o, s:o}", "post", lg_hist_json(r->h_post), "completed",
                                  lg_hist_json(r->h_completed), "ended", lg_hist_json(r->h_ended)));
    json_object_set_new(j, "completed_per_s", json_real((double)r->completed_in_window / window_s));
    json_object_set_new(j, "post_per_s", json_real((double)r->accepted_in_window / window_s));
    json_object_set_new(j, "first_completed_s",
                        r->first_completed_us
                            ? json_real((double)(r->first_completed_us - r->start_us) / 1e6)
                            : json_null());
    json_object_set_new(j, "last_completed_s",
                        r->last_completed_us
                            ? json_real((double)(r->last_completed_us - r->start_us) / 1e6)
                            : json_null());
    json_object_set_new(j, "pets_exhausted", json_boolean(r->pets_exhausted));
    json_object_set_new(j, "pets_used", json_integer((json_int_t)(r->next_pet - r->nreturned)));
    lg_add_self_usage(j);
    return j;
}

/* ---- main ------------------------------------------------------------------------------- */

static int parse_opts(int argc, char **argv, opts_t *o)
{
    int have_closed = 0, have_rate = 0, have_duration = 0;
    o->follow = 1;
    o->drain_s = 60;
    o->max_conns = 2000;
    o->wait_query = "wait=30&status={status}";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l = 0;
        if (strcmp(a, "--url") == 0 && v) {
            o->url = v;
        } else if (strcmp(a, "--clients") == 0 && v) {
            o->clients_file = v;
        } else if (strcmp(a, "--pets") == 0 && v) {
            o->pets_file = v;
        } else if (strcmp(a, "--json") == 0 && v) {
            o->json_path = v;
        } else if (strcmp(a, "--wait-query") == 0 && v) {
            o->wait_query = v;
        } else if (strcmp(a, "--closed") == 0) {
            if (lg_arg_long(a, v, 1, 10000, &o->closed) != 0)
                return -1;
            have_closed = 1;
        } else if (strcmp(a, "--rate") == 0) {
            if (lg_arg_double(a, v, 0.001, 1e6, &o->rate) != 0)
                return -1;
            have_rate = 1;
        } else if (strcmp(a, "--duration") == 0) {
            if (lg_arg_double(a, v, 0.001, 86400, &o->duration_s) != 0)
                return -1;
            have_duration = 1;
        } else if (strcmp(a, "--drain") == 0) {
            if (lg_arg_double(a, v, 0, 86400, &o->drain_s) != 0)
                return -1;
        } else if (strcmp(a, "--max-conns") == 0) {
            if (lg_arg_long(a, v, 1, 60000, &l) != 0)
                return -1;
            o->max_conns = l;
        } else if (strcmp(a, "--follow") == 0 && v) {
            if (strcmp(v, "longpoll") == 0)
                o->follow = 1;
            else if (strcmp(v, "none") == 0)
                o->follow = 0;
            else
                return lg_usage_error("--follow is longpoll or none, not \"%s\"", v);
        } else if (strncmp(a, "--", 2) == 0 && v == NULL) {
            return lg_usage_error("%s needs a value", a);
        } else {
            return lg_usage_error("orders: unknown argument \"%s\"", a);
        }
        i++;
    }
    if (o->url == NULL || o->clients_file == NULL || o->pets_file == NULL)
        return lg_usage_error("orders needs --url, --clients and --pets");
    if (have_closed == have_rate)
        return lg_usage_error("orders needs exactly one of --closed N and --rate R");
    if (!have_duration)
        return lg_usage_error("orders needs --duration S");
    if (strchr(o->wait_query, ' ') || strchr(o->wait_query, '\r') || strchr(o->wait_query, '\n'))
        return lg_usage_error("--wait-query must not contain spaces or line breaks");
    return 0;
}

static void run_free(run_t *r)
{
    for (size_t i = 0; i < r->nconns; i++) {
        conn_t *c = &r->conns[i];
        if (c->fd >= 0)
            close(c->fd);
        free(c->order);
        buf_free(&c->out);
        lg_http_free(&c->resp);
    }
    while (r->wait_head) {
        order_t *o = r->wait_head;
        r->wait_head = o->next;
        free(o);
    }
    free(r->conns);
    for (size_t i = 0; i < r->nclients; i++)
        free(r->clients[i].line);
    free(r->clients);
    for (size_t i = 0; i < r->npets; i++)
        free(r->pets[i]);
    free(r->pets);
    free(r->returned);
    free(r->by_second);
    free(r->h_post);
    free(r->h_completed);
    free(r->h_ended);
    json_decref(r->post_status);
    json_decref(r->follow_status);
    json_decref(r->reasons);
    if (r->ep >= 0)
        close(r->ep);
}

int lg_orders_main(int argc, char **argv)
{
    run_t r;
    memset(&r, 0, sizeof(r));
    r.ep = -1;
    if (parse_opts(argc, argv, &r.o) != 0)
        return LG_EXIT_USAGE;
    int status = 1;
    json_t *rep = NULL;
    if (parse_url(&r) != 0 || load_inputs(&r) != 0)
        goto out;
    r.conns_cap = r.o.closed > 0 ? (size_t)r.o.closed : (size_t)r.o.max_conns;
    r.conns = calloc(r.conns_cap, sizeof(*r.conns));
    r.nseconds = (size_t)(r.o.duration_s + r.o.drain_s) + 2;
    r.by_second = calloc(r.nseconds, sizeof(*r.by_second));
    r.h_post = malloc(sizeof(lg_hist_t));
    r.h_completed = malloc(sizeof(lg_hist_t));
    r.h_ended = malloc(sizeof(lg_hist_t));
    r.post_status = json_object();
    r.follow_status = json_object();
    r.reasons = json_object();
    r.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!r.conns || !r.by_second || !r.h_post || !r.h_completed || !r.h_ended || !r.post_status ||
        !r.follow_status || !r.reasons || r.ep < 0) {
        fprintf(stderr, "petstore-loadgen: cannot set up: %s\n", strerror(errno));
        goto out;
    }
    lg_hist_init(r.h_post);
    lg_hist_init(r.h_completed);
    lg_hist_init(r.h_ended);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (run_loop(&r) != 0)
        goto out;
    rep = report(&r);
    if (rep != NULL && lg_write_report(rep, r.o.json_path) == 0)
        status = 0;
out:
    json_decref(rep);
    run_free(&r);
    return status;
}
