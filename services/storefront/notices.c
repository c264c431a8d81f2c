/* notices: what every storefront instance hears from its database, so that it wakes its long
 * polls and event streams and forgets deleted sessions.
 *
 * One path for status changes: the storefront.events consumer (a durable queue, competing
 * consumers) applies each change to the read model, and the commit notifies every instance
 * (triggers of migration 005: "order <id> <status>" on channel storefront). Whichever instance
 * holds a waiting request hears it, reads the order as committed and answers. So the broker
 * carries a status change once, to the one queue that keeps the read model, and no instance
 * writes the same change twice.
 *
 * A worker of its own (svc_worker.h) with a database connection and no broker connection:
 *   - a notification "order ID STATUS" answers the long polls on ID that are done at STATUS
 *     (waiters.c) and sends the order to its streams (streams.c); "session HASH" drops the
 *     session from this instance's cache (session_cache.h);
 *   - notifications sent while the worker had no connection are lost: on each new connection
 *     it looks at every parked long poll and stream again and empties the session cache; while
 *     it has none, the cache is not used (every request asks the database);
 *   - its tick answers long polls at their deadlines (also while it reconnects) and keeps
 *     streams alive every 15 s; at shutdown it answers every waiter and ends every stream;
 *   - it also purges idempotency keys older than IDEMPOTENCY_RETENTION_S, at its start and
 *     every minute, PURGE_ROWS at a time (again at once while batches come back full), so the
 *     table holds a retention's worth of orders and not every order ever placed. Every
 *     instance purges; the batches skip rows another instance is deleting. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "session_cache.h"
#include "storefront.h"
#include "svc_worker.h"
#include "uuid.h"

#define TICK_MS 100
#define IDLE_MS 1000
#define STREAM_PING_S 15
#define PURGE_EVERY_S 60
#define PURGE_ROWS 1000 /* the LIMIT of purge_keys_stmt */

/* Oldest first through a BRIN index on created_at (migration 006: keys are written in time
 * order, so the index is tiny and costs an order nothing). */
static const db_stmt_t purge_keys_stmt = {
    .name = "sf_purge_idempotency_keys",
    .sql = "DELETE FROM idempotency_keys WHERE ctid IN ("
           "  SELECT ctid FROM idempotency_keys"
           "  WHERE created_at < now() - make_interval(secs => $1::int)"
           "  LIMIT 1000 FOR UPDATE SKIP LOCKED)",
    .nparams = 1,
};

/* One batch when due; the next one at once after a full batch, else in a minute. */
static void purge_keys(svc_worker_t *w)
{
    static struct timespec next;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    db_conn_t *db = svc_worker_db(w);
    if (db == NULL || now.tv_sec < next.tv_sec)
        return;
    const storefront_app_t *app = svc_app(svc_worker_svc(w));
    char secs[16];
    snprintf(secs, sizeof(secs), "%d", app->idempotency_retention_s);
    const char *params[] = {secs};
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    next = now;
    next.tv_sec += PURGE_EVERY_S;
    if (db_exec(db, &purge_keys_stmt, params, &res, &e) != 0) {
        log_err(LOG_WARN, NULL, "storefront.idempotency_purge_failed", &e);
        return;
    }
    long deleted = db_cmd_tuples(res);
    db_result_free(res);
    if (deleted > 0)
        log_info(NULL, "storefront.idempotency_purged",
                 json_pack("{s:I,s:i}", "deleted", (json_int_t)deleted, "retention_s",
                           app->idempotency_retention_s));
    if (deleted >= PURGE_ROWS)
        next = now; /* more is waiting */
}

static void on_notice(svc_worker_t *w, void *ctx, const char *channel, const char *payload)
{
    (void)ctx;
    (void)channel; /* the only one LISTENed */
    db_conn_t *db = svc_worker_db(w);
    if (strncmp(payload, "order ", 6) == 0) {
        char id[UUID_STR_LEN];
        const char *rest = payload + 6;
        size_t n = strcspn(rest, " ");
        if (n != UUID_STR_LEN - 1 || rest[n] != ' ')
            return;
        memcpy(id, rest, n);
        id[n] = '\0';
        sf_waiters_wake(db, id, rest + n + 1);
        sf_streams_notify(db, id);
    } else if (strncmp(payload, "session ", 8) == 0) {
        unsigned char h[SESSION_HASH_BYTES];
        size_t len = 0;
        const char *hex = payload + 8;
        if (sodium_hex2bin(h, sizeof(h), hex, strlen(hex), NULL, &len, NULL) == 0 &&
            len == sizeof(h))
            session_cache_forget(h);
    }
}

static void on_db_open(svc_worker_t *w, void *ctx)
{
    (void)ctx;
    db_conn_t *db = svc_worker_db(w);
    session_cache_listening(1);
    sf_waiters_recheck(db);
    sf_streams_refresh_all(db);
}

static void on_db_lost(svc_worker_t *w, void *ctx)
{
    (void)w;
    (void)ctx;
    session_cache_listening(0);
}

/* Runs on the worker's thread only, so the ping schedule needs no lock. */
static void tick(svc_worker_t *w, void *ctx)
{
    (void)ctx;
    static struct timespec next_ping;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec >= next_ping.tv_sec) {
        sf_streams_ping(); /* keeps proxies open, finds gone clients */
        next_ping = now;
        next_ping.tv_sec += STREAM_PING_S;
    }
    sf_waiters_expire(svc_worker_db(w));
    purge_keys(w);
}

/* Everything happens in on_notice during the worker's waits. */
static int step(svc_worker_t *w, void *ctx, err_t *e)
{
    (void)w;
    (void)ctx;
    (void)e;
    return 0;
}

static void drain(svc_worker_t *w, void *ctx)
{
    (void)ctx;
    sf_waiters_close_all(svc_worker_db(w));
    sf_streams_close_all();
}

void *sf_notices_worker(void *svc)
{
    static const svc_worker_def_t def = {
        .name = "notices",
        .needs = SVC_WORKER_DB,
        .listen = SF_NOTICES_CHANNEL,
        .idle_ms = IDLE_MS,
        .tick_ms = TICK_MS,
        .step = step,
        .tick = tick,
        .drain = drain,
        .on_notice = on_notice,
        .on_db_open = on_db_open,
        .on_db_lost = on_db_lost,
    };
    svc_worker_run(svc, &def, NULL);
    return NULL;
}
