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
 * responds. At shutdown the worker answers every waiter before it exits. */
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
    waiter_t *woken = take(json_string_value(json_object_get(payload, "order_id")),
                           json_string_value(json_object_get(payload, "status")), 0);
    answer(woken, u->db);
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
    while (!svc_stopping()) {
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
    mq_close(u.mq);
    db_close(u.db);
    return NULL;
}
