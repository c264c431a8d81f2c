/* updates: the order-updates subscriber, the worker that wakes long polls and event streams.
 *
 * Every storefront instance subscribes to the petstore.order-updates fanout with its own
 * exclusive, server-named queue, so each one hears every status change, whichever instance
 * holds the waiting request. On a change the worker first applies it to the read model (the
 * same version-guarded update as the storefront.events consumer: whichever comes first wins,
 * the other changes nothing), then answers the long polls waiting on that order (waiters.c)
 * and sends the order's new state to its event streams (streams.c). It also answers long polls
 * at their deadlines, keeps streams alive every 15 s, and at shutdown answers every waiter and
 * ends every stream before it exits. */
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

static int past(const struct timespec *t, const struct timespec *now)
{
    return now->tv_sec > t->tv_sec || (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
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
    sf_waiters_wake(u->db, order_id, json_string_value(json_object_get(payload, "status")));
    sf_streams_notify(u->db, order_id);
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
            sf_streams_ping(); /* keeps proxies open, finds gone clients */
            next_ping = now;
            next_ping.tv_sec += 15;
        }
        if (connect_all(&u) != 0) {
            sf_waiters_expire(u.db); /* deadlines still pass while reconnecting */
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
        sf_waiters_expire(u.db);
    }
    sf_waiters_close_all(u.db);
    sf_streams_close_all();
    mq_close(u.mq);
    db_close(u.db);
    return NULL;
}
