/* updates: long polls on orders, woken by the petstore.order-updates fanout.
 *
 * Every storefront instance subscribes with its own exclusive, server-named queue, so each one
 * hears every status change, whichever instance holds the waiting request. On a change the
 * worker first applies it to the read model (the same version-guarded update as the
 * storefront.events consumer: whichever comes first wins, the other changes nothing), then
 * answers the requests waiting on that order with the order as it now is.
 *
 * Waiting requests are deferred HTTP requests in a list guarded by one mutex. A waiter is
 * answered exactly once: whoever removes it from the list (the worker on a change or at its
 * deadline, or the parking handler when the order changed before it was parked) owns it and
 * responds. At shutdown the worker answers every waiter before it exits.
 *
 * Event streams (Server-Sent Events) are subscribers in a second list: each change sends the
 * order's new state to the subscribers of that order, a finished order ends its streams, and a
 * comment every 15 s keeps connections open and finds clients that have gone. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "health.h"
#include "mq.h"
#include "mq_consume.h"
#include "msg.h"
#include "storefront.h"

typedef struct waiter {
    struct waiter *next;
    char order_id[37];
    char user_id[37];
    char leave[24];
    struct timespec deadline;
    http_request_t *req;
} waiter_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static waiter_t *waiters;

static int past(const struct timespec *t, const struct timespec *now)
{
    return now->tv_sec > t->tv_sec || (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
}

/* Removes and returns the waiters matching: all (order NULL, expired_only 0), those of an order
 * whose status is no longer their `leave`, or those whose deadline passed. */
static waiter_t *take(const char *order_id, const char *status, int expired_only)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    waiter_t *taken = NULL;
    pthread_mutex_lock(&lock);
    for (waiter_t **p = &waiters; *p != NULL;) {
        waiter_t *w = *p;
        int match = expired_only ? past(&w->deadline, &now)
                    : order_id != NULL
                        ? strcmp(w->order_id, order_id) == 0 && strcmp(w->leave, status) != 0
                        : 1;
        if (match) {
            *p = w->next;
            w->next = taken;
            taken = w;
        } else {
            p = &w->next;
        }
    }
    pthread_mutex_unlock(&lock);
    return taken;
}

/* Takes one specific waiter back; 1 if it was still in the list. */
static int take_back(waiter_t *target)
{
    int found = 0;
    pthread_mutex_lock(&lock);
    for (waiter_t **p = &waiters; *p != NULL; p = &(*p)->next) {
        if (*p == target) {
            *p = target->next;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return found;
}

/* Answers and frees a list of waiters with each order as it is now. */
static void answer(waiter_t *list, db_conn_t *db)
{
    while (list != NULL) {
        waiter_t *w = list;
        list = w->next;
        json_t *order = NULL;
        err_t e;
        err_clear(&e);
        if (db != NULL && sf_order_load(db, w->order_id, w->user_id, &order, &e) == 0) {
            http_respond_json(w->req, 200, order);
        } else {
            http_add_header(w->req, "Retry-After", "1");
            http_respond_problem(w->req, 503, "unavailable", "Service Unavailable",
                                 "the order could not be read; poll again", NULL);
        }
        free(w);
    }
}

void sf_waiters_park(http_request_t *req, db_conn_t *db, const char *order_id,
                     const char *user_id, const char *leave, int seconds)
{
    waiter_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        http_respond_problem(req, 503, "unavailable", "Service Unavailable", "out of memory",
                             NULL);
        return;
    }
    snprintf(w->order_id, sizeof(w->order_id), "%s", order_id);
    snprintf(w->user_id, sizeof(w->user_id), "%s", user_id);
    snprintf(w->leave, sizeof(w->leave), "%s", leave);
    clock_gettime(CLOCK_MONOTONIC, &w->deadline);
    w->deadline.tv_sec += seconds;
    w->req = req;
    http_defer(req);
    pthread_mutex_lock(&lock);
    w->next = waiters;
    waiters = w;
    pthread_mutex_unlock(&lock);

    /* A change applied between the first read and the parking would wake no one: look again. */
    json_t *order = NULL;
    err_t e;
    err_clear(&e);
    if (sf_order_load(db, order_id, user_id, &order, &e) != 0)
        return; /* the worker answers at the deadline */
    const char *now = json_string_value(json_object_get(order, "status"));
    if (strcmp(now, leave) != 0 && take_back(w)) {
        http_respond_json(req, 200, order);
        free(w);
        return;
    }
    json_decref(order);
}

/* ---- Server-Sent Events: GET /v1/orders/{id}/events ---- */

typedef struct subscriber {
    struct subscriber *next;
    char order_id[37];
    char user_id[37];
    int last_version;
    http_stream_t *stream;
} subscriber_t;

static subscriber_t *subscribers; /* guarded by lock */

/* Writes one SSE event "status" with the order; returns -1 when the client has gone. */
static int send_order(http_stream_t *st, const json_t *order)
{
    char *data = json_dumps(order, JSON_COMPACT);
    if (data == NULL)
        return -1;
    char head[64];
    snprintf(head, sizeof(head), "id: %lld\nevent: status\ndata: ",
             (long long)json_integer_value(json_object_get(order, "version")));
    int rc = http_stream_send(st, head, strlen(head));
    if (rc == 0)
        rc = http_stream_send(st, data, strlen(data));
    if (rc == 0)
        rc = http_stream_send(st, "\n\n", 2);
    free(data);
    return rc;
}

static int terminal(const json_t *order)
{
    const char *s = json_string_value(json_object_get(order, "status"));
    return s != NULL && (strcmp(s, "COMPLETED") == 0 || strcmp(s, "CANCELLED") == 0);
}

int sf_get_order_events(http_request_t *req, void *svc)
{
    (void)svc;
    db_conn_t *db = NULL;
    char user_id[37];
    if (!sf_db(req, &db) || !sf_user(req, db, user_id))
        return 0;
    const char *id = http_param(req, "id");
    json_t *order = NULL;
    err_t e;
    err_clear(&e);
    int rc = msg_is_uuid(id) ? sf_order_load(db, id, user_id, &order, &e) : ERR_NOTFOUND;
    if (rc == ERR_NOTFOUND) {
        http_respond_problem(req, 404, "not-found", "Not Found", "no such order", NULL);
        return 0;
    }
    if (rc != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    http_stream_t *st = http_stream_start(req, "text/event-stream");
    if (st == NULL) {
        json_decref(order);
        return 0;
    }
    /* The current state first; a finished order ends the stream at once. */
    if (send_order(st, order) != 0 || terminal(order)) {
        json_decref(order);
        http_stream_close(st);
        return 0;
    }
    subscriber_t *sub = calloc(1, sizeof(*sub));
    if (sub == NULL) {
        json_decref(order);
        http_stream_close(st);
        return 0;
    }
    snprintf(sub->order_id, sizeof(sub->order_id), "%s", id);
    snprintf(sub->user_id, sizeof(sub->user_id), "%s", user_id);
    sub->last_version = (int)json_integer_value(json_object_get(order, "version"));
    sub->stream = st;
    json_decref(order);
    pthread_mutex_lock(&lock);
    sub->next = subscribers;
    subscribers = sub;
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Sends the order's new state to its subscribers (all orders when order_id is NULL: a
 * keep-alive comment instead); drops the gone and the finished. */
static void notify_subscribers(db_conn_t *db, const char *order_id)
{
    subscriber_t *done = NULL;
    pthread_mutex_lock(&lock);
    for (subscriber_t **p = &subscribers; *p != NULL;) {
        subscriber_t *sub = *p;
        int drop = 0;
        if (order_id == NULL) {
            drop = http_stream_send(sub->stream, ":\n\n", 3) != 0;
        } else if (strcmp(sub->order_id, order_id) == 0) {
            json_t *order = NULL;
            err_t e;
            err_clear(&e);
            if (db != NULL && sf_order_load(db, order_id, sub->user_id, &order, &e) == 0) {
                int version = (int)json_integer_value(json_object_get(order, "version"));
                if (version > sub->last_version) {
                    sub->last_version = version;
                    drop = send_order(sub->stream, order) != 0;
                }
                drop = drop || terminal(order);
                json_decref(order);
            }
        }
        if (drop) {
            *p = sub->next;
            sub->next = done;
            done = sub;
        } else {
            p = &sub->next;
        }
    }
    pthread_mutex_unlock(&lock);
    while (done != NULL) {
        subscriber_t *sub = done;
        done = sub->next;
        http_stream_close(sub->stream);
        free(sub);
    }
}

static void close_subscribers(void)
{
    pthread_mutex_lock(&lock);
    subscriber_t *all = subscribers;
    subscribers = NULL;
    pthread_mutex_unlock(&lock);
    while (all != NULL) {
        subscriber_t *sub = all;
        all = sub->next;
        http_stream_close(sub->stream);
        free(sub);
    }
}

typedef struct updates {
    svc_t *svc;
    db_conn_t *db;
    mq_conn_t *mq;
    health_flag_t *flag;
} updates_t;

static void handle(updates_t *u, const mq_delivery_t *d)
{
    msg_type_t type;
    json_t *payload = NULL;
    err_t e;
    err_clear(&e);
    if (d->type == NULL || msg_type_from_name(d->type, &type) != 0 ||
        type != MSG_SAGA_ORDER_STATUS_CHANGED_V1 ||
        msg_decode(type, d->body, d->body_len, &payload, &e) != 0) {
        /* Not ours to dead-letter: the storefront.events consumer sees the same message. */
        log_warn(NULL, "updates.skipped", json_pack("{s:s?}", "type", d->type));
        return;
    }
    if (sf_apply_order_status(u->db, payload, &e) != 0)
        log_err(LOG_WARN, NULL, "updates.apply_failed", &e);
    const char *order_id = json_string_value(json_object_get(payload, "order_id"));
    waiter_t *woken = take(order_id, json_string_value(json_object_get(payload, "status")), 0);
    answer(woken, u->db);
    notify_subscribers(u->db, order_id);
    json_decref(payload);
}

static int connect_all(updates_t *u)
{
    err_t e;
    err_clear(&e);
    if (u->db == NULL || !db_ok(u->db)) {
        db_close(u->db);
        u->db = NULL;
        if (db_open(cfg_str(svc_cfg(u->svc), "DATABASE_URL"), &u->db, &e) != 0)
            goto fail;
    }
    if (u->mq == NULL || !mq_ok(u->mq)) {
        mq_close(u->mq);
        u->mq = NULL;
        char queue[256];
        mq_opts_t opts = {.connection_name = "storefront order-updates"};
        if (mq_open(cfg_str(svc_cfg(u->svc), "AMQP_URL"), &opts, &u->mq, &e) != 0 ||
            mq_declare_private_queue(u->mq, "petstore.order-updates", "", queue, sizeof(queue),
                                     &e) != 0 ||
            mq_consume_start(u->mq, queue, 256, &e) != 0)
            goto fail;
        log_info(NULL, "updates.subscribed", json_pack("{s:s}", "queue", queue));
    }
    health_flag_set(u->flag, 1, "subscribed");
    return 0;
fail:
    health_flag_set(u->flag, 0, e.msg);
    log_err(LOG_WARN, NULL, "updates.connect_failed", &e);
    mq_close(u->mq);
    u->mq = NULL;
    return -1;
}

void *sf_updates_run(void *svc)
{
    updates_t u = {.svc = svc, .flag = health_flag_new("order-updates")};
    struct timespec next_ping = {0, 0};
    while (!svc_stopping()) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (past(&next_ping, &now)) {
            notify_subscribers(NULL, NULL); /* keeps proxies open, finds gone clients */
            next_ping = now;
            next_ping.tv_sec += 15;
        }
        if (connect_all(&u) != 0) {
            answer(take(NULL, NULL, 1), u.db); /* deadlines still pass while reconnecting */
            daemon_sleep_ms(500);
            continue;
        }
        mq_delivery_t *d = NULL;
        err_t e;
        err_clear(&e);
        int rc = mq_next(u.mq, 100, &d, &e);
        if (rc == 0) {
            handle(&u, d);
            if (mq_ack(u.mq, d->delivery_tag, 0, &e) != 0)
                log_err(LOG_WARN, NULL, "updates.ack_failed", &e);
            mq_delivery_free(d);
        } else if (rc != ERR_TIMEOUT) {
            log_err(LOG_WARN, NULL, "updates.connection_lost", &e);
            mq_close(u.mq);
            u.mq = NULL;
        }
        answer(take(NULL, NULL, 1), u.db);
    }
    answer(take(NULL, NULL, 0), u.db);
    close_subscribers();
    mq_close(u.mq);
    db_close(u.db);
    return NULL;
}
