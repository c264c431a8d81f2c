/* updates: the order-updates consumer, which wakes long polls and event streams.
 *
 * Every storefront instance consumes the petstore.order-updates fanout through a private queue
 * of its own (exclusive and server-named, see svc.h), so each one hears every status change,
 * whichever instance holds the waiting request. It is an ordinary consumer definition run by
 * the shared consumer loop and its worker supervisor:
 *   - the handler applies the change to the read model in the batch's transaction (the same
 *     version-guarded update as the storefront.events consumer: whichever comes first wins,
 *     the other changes nothing), so it needs no inbox;
 *   - after the commit, it answers the long polls waiting on that order (waiters.c) and sends
 *     the order's new state to its event streams (streams.c), reading the order outside any
 *     lock and any transaction;
 *   - its tick answers long polls at their deadlines (also while the consumer reconnects) and
 *     keeps streams alive every 15 s;
 *   - at shutdown it answers every waiter and ends every stream.
 * Poison on this queue is logged and skipped: the storefront.events consumer receives the same
 * message and dead-letters it. */
#include <string.h>
#include <time.h>

#include "storefront.h"

#define TICK_MS 100
#define STREAM_PING_S 15

static const svc_route_t update_routes[] = {
    {MSG_SAGA_ORDER_STATUS_CHANGED_V1, sf_on_order_status},
};

static void after_commit(db_conn_t *db, const svc_msg_t *m, void *app)
{
    (void)app;
    const char *order_id = json_string_value(json_object_get(m->payload, "order_id"));
    const char *status = json_string_value(json_object_get(m->payload, "status"));
    if (order_id == NULL || status == NULL)
        return; /* the contract requires both; nothing to wake */
    sf_waiters_wake(db, order_id, status);
    sf_streams_notify(db, order_id);
}

/* Runs on the consumer's thread only, so the ping schedule needs no lock. */
static void tick(db_conn_t *db, void *app)
{
    (void)app;
    static struct timespec next_ping;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec >= next_ping.tv_sec) {
        sf_streams_ping(); /* keeps proxies open, finds gone clients */
        next_ping = now;
        next_ping.tv_sec += STREAM_PING_S;
    }
    sf_waiters_expire(db);
}

static void drain(db_conn_t *db, void *app)
{
    (void)app;
    sf_waiters_close_all(db);
    sf_streams_close_all();
}

svc_consumer_def_t sf_updates_consumer(void)
{
    svc_consumer_def_t def = {
        .private_exchange = "petstore.order-updates",
        .inbox_name = NULL,
        .routes = update_routes,
        .n_routes = sizeof(update_routes) / sizeof(update_routes[0]),
        .after_commit = after_commit,
        .tick = tick,
        .tick_ms = TICK_MS,
        .drain = drain,
    };
    return def;
}
