/* svc_worker: the supervisor loop (see svc_worker.h).
 *
 * Every wait of a worker goes through one function, wait_slices(), which never sleeps past the
 * next heartbeat or the next tick: it sleeps (or waits for a NOTIFY) in slices and between them
 * sends heartbeats on the broker connections and runs the tick. Heartbeats go out every third
 * of the interval, so one lost or late frame does not cost the connection (the broker closes it
 * after two silent intervals). Reading the broker's own heartbeats is left to rabbitmq-c, which
 * reads whatever waited in the socket before it looks at its receive deadline, so a worker that
 * comes back from a long database outage finds its connection alive. */
#include "svc_worker.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "db_listen.h"
#include "health.h"
#include "log.h"
#include "mq_publish.h"

#define BACKOFF_INITIAL_MS 100
#define BACKOFF_MAX_MS 5000

struct svc_worker {
    svc_t *svc;
    const svc_worker_def_t *def;
    void *ctx;
    db_conn_t *db;
    mq_conn_t *mq;
    mq_conn_t *pub; /* the publisher connection, opened on first use */
    health_flag_t *db_flag;
    health_flag_t *mq_flag;
    daemon_backoff_t backoff;
    int heartbeat_s;
    long keepalive_every_ms;
    long next_keepalive; /* monotonic milliseconds */
    long next_tick;
    char conn_name[160];
    char pub_name[192];
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static json_t *worker_fields(const svc_worker_t *w)
{
    return json_pack("{s:s}", "worker", w->def->name);
}

static void log_failure(const svc_worker_t *w, const char *message, const err_t *e)
{
    log_warn(NULL, message,
             json_pack("{s:s,s:s,s:s}", "worker", w->def->name, "code", err_name(e->code), "error",
                       e->msg));
}

db_conn_t *svc_worker_db(const svc_worker_t *w) { return w->db; }

mq_conn_t *svc_worker_mq(const svc_worker_t *w) { return w->mq; }

svc_t *svc_worker_svc(const svc_worker_t *w) { return w->svc; }

int svc_worker_heartbeat_s(const svc_worker_t *w) { return w->heartbeat_s; }

void svc_worker_db_lost(svc_worker_t *w, const char *why)
{
    int was_open = w->db != NULL;
    db_close(w->db);
    w->db = NULL;
    health_flag_set(w->db_flag, 0, why);
    if (was_open && w->def->on_db_lost != NULL)
        w->def->on_db_lost(w, w->ctx);
}

void svc_worker_mq_lost(svc_worker_t *w, const char *why)
{
    mq_close(w->mq);
    w->mq = NULL;
    health_flag_set(w->mq_flag, 0, why);
}

static void pub_lost(svc_worker_t *w)
{
    mq_close(w->pub);
    w->pub = NULL;
}

/* Heartbeats when due, then the tick when due. Cheap when neither is. */
static void service(svc_worker_t *w)
{
    long now = now_ms();
    if (now >= w->next_keepalive) {
        err_t e;
        err_clear(&e);
        if (w->mq != NULL && mq_keepalive(w->mq, &e) != 0) {
            log_failure(w, "worker.heartbeat_failed", &e);
            svc_worker_mq_lost(w, e.msg);
        }
        if (w->pub != NULL && mq_keepalive(w->pub, &e) != 0)
            pub_lost(w);
        w->next_keepalive = now + w->keepalive_every_ms;
    }
    if (w->def->tick != NULL && now >= w->next_tick) {
        w->def->tick(w, w->ctx);
        w->next_tick = now_ms() + w->def->tick_ms;
    }
}

/* How long the next slice of a wait may last: never past a heartbeat or a tick. */
static long slice_ms(const svc_worker_t *w, long deadline)
{
    long now = now_ms();
    long until = deadline;
    if ((w->mq != NULL || w->pub != NULL) && w->next_keepalive < until)
        until = w->next_keepalive;
    if (w->def->tick != NULL && w->next_tick < until)
        until = w->next_tick;
    long ms = until - now;
    return ms < 1 ? 1 : ms;
}

static void notice(void *ctx, const char *channel, const char *payload)
{
    svc_worker_t *w = ctx;
    w->def->on_notice(w, w->ctx, channel, payload);
}

/* Waits until deadline in slices; with notify, a NOTIFY on the LISTENed channel ends it early.
 * Returns 1 when stopping, else 0. */
static int wait_slices(svc_worker_t *w, long deadline, int notify)
{
    for (;;) {
        service(w);
        if (daemon_stopping())
            return 1;
        if (now_ms() >= deadline)
            return 0;
        long ms = slice_ms(w, deadline);
        if (notify && w->db != NULL) {
            err_t e;
            err_clear(&e);
            int notified = 0;
            if (db_wait_notices(w->db, (int)ms, daemon_stop_fd(),
                                w->def->on_notice != NULL ? notice : NULL, w, &notified, &e) != 0) {
                log_failure(w, "worker.wait_failed", &e);
                svc_worker_db_lost(w, e.msg);
                return daemon_stopping();
            }
            if (notified)
                return daemon_stopping();
        } else if (daemon_sleep_ms((int)ms)) {
            return 1;
        }
    }
}

int svc_worker_sleep(svc_worker_t *w, int ms)
{
    return wait_slices(w, now_ms() + (ms > 0 ? ms : 0), 0);
}

int svc_worker_backoff(svc_worker_t *w)
{
    return svc_worker_sleep(w, daemon_backoff_next_ms(&w->backoff));
}

void svc_worker_backoff_reset(svc_worker_t *w) { daemon_backoff_reset(&w->backoff); }

static int open_db(svc_worker_t *w, err_t *e)
{
    db_conn_t *db = NULL;
    /* Named like its broker connection ("storefront notices"), for pg_stat_activity. */
    db_opts_t opts = {.application_name = w->conn_name};
    int rc = db_open_ex(cfg_str(svc_cfg(w->svc), "DATABASE_URL"), &opts, &db, e);
    if (rc == 0 && w->def->listen != NULL)
        rc = db_listen(db, w->def->listen, e);
    if (rc != 0) {
        db_close(db);
        return rc;
    }
    w->db = db;
    health_flag_set(w->db_flag, 1, "connected");
    if (w->def->on_db_open != NULL)
        w->def->on_db_open(w, w->ctx);
    return 0;
}

int svc_worker_restore_db(svc_worker_t *w, err_t *e)
{
    while (!daemon_stopping()) {
        if (w->db != NULL && db_check(w->db))
            return 0;
        if (w->db != NULL)
            svc_worker_db_lost(w, "connection lost");
        if (open_db(w, e) == 0) {
            log_info(NULL, "worker.db_connected", worker_fields(w));
            return 0;
        }
        health_flag_set(w->db_flag, 0, e->msg);
        log_failure(w, "worker.db_connect_failed", e);
        if (svc_worker_backoff(w))
            break;
    }
    return err_set(e, ERR_RETRY, "stopping");
}

static int open_mq(svc_worker_t *w, mq_conn_t **out, const char *name, err_t *e)
{
    mq_opts_t opts = {.heartbeat_s = w->heartbeat_s,
                      .connection_name = name,
                      .ca_file = cfg_str(svc_cfg(w->svc), "TLS_CA_FILE")};
    return mq_open(cfg_str(svc_cfg(w->svc), "AMQP_URL"), &opts, out, e);
}

static int restore_mq(svc_worker_t *w, err_t *e)
{
    while (!daemon_stopping()) {
        if (w->mq != NULL && mq_ok(w->mq))
            return 0;
        if (w->mq != NULL)
            svc_worker_mq_lost(w, "connection lost");
        int rc = open_mq(w, &w->mq, w->conn_name, e);
        if (rc == 0 && w->def->on_mq_open != NULL)
            rc = w->def->on_mq_open(w, w->ctx, e);
        if (rc == 0) {
            health_flag_set(w->mq_flag, 1, "connected");
            log_info(NULL, "worker.mq_connected", worker_fields(w));
            return 0;
        }
        svc_worker_mq_lost(w, e->msg);
        log_failure(w, "worker.mq_connect_failed", e);
        if (svc_worker_backoff(w))
            break;
    }
    return err_set(e, ERR_RETRY, "stopping");
}

int svc_worker_publisher(svc_worker_t *w, mq_conn_t **out, err_t *e)
{
    if (w->pub != NULL && !mq_ok(w->pub))
        pub_lost(w);
    if (w->pub == NULL) {
        int rc = open_mq(w, &w->pub, w->pub_name, e);
        if (rc == 0)
            rc = mq_confirm_select(w->pub, e);
        if (rc != 0) {
            pub_lost(w);
            return rc;
        }
    }
    *out = w->pub;
    return 0;
}

/* Opens what the worker needs and is missing; 0 when all is up, else the process is stopping. */
static int ensure(svc_worker_t *w)
{
    err_t e;
    err_clear(&e);
    if ((w->def->needs & SVC_WORKER_DB) && svc_worker_restore_db(w, &e) != 0)
        return -1;
    if ((w->def->needs & SVC_WORKER_MQ) && restore_mq(w, &e) != 0)
        return -1;
    return 0;
}

static void flag_name(char *out, size_t n, const char *what, const char *name)
{
    snprintf(out, n, "%s:%s", what, name);
}

int svc_worker_run(svc_t *svc, const svc_worker_def_t *def, void *ctx)
{
    svc_worker_t w;
    memset(&w, 0, sizeof(w));
    w.svc = svc;
    w.def = def;
    w.ctx = ctx;
    w.heartbeat_s = cfg_int(svc_cfg(svc), "AMQP_HEARTBEAT_S");
    w.keepalive_every_ms = w.heartbeat_s * 1000L / 3;
    if (w.keepalive_every_ms < 100)
        w.keepalive_every_ms = 100;
    daemon_backoff_init(&w.backoff, BACKOFF_INITIAL_MS, BACKOFF_MAX_MS);
    snprintf(w.conn_name, sizeof(w.conn_name), "%s %s", svc_name(svc), def->name);
    snprintf(w.pub_name, sizeof(w.pub_name), "%s %s publisher", svc_name(svc), def->name);
    char name[128];
    if (def->needs & SVC_WORKER_DB) {
        flag_name(name, sizeof(name), "database", def->name);
        w.db_flag = health_flag_new(name);
    }
    if (def->needs & SVC_WORKER_MQ) {
        flag_name(name, sizeof(name), "broker", def->name);
        w.mq_flag = health_flag_new(name);
    }
    if (((def->needs & SVC_WORKER_DB) && w.db_flag == NULL) ||
        ((def->needs & SVC_WORKER_MQ) && w.mq_flag == NULL)) {
        log_error(NULL, "worker.out_of_memory", worker_fields(&w));
        daemon_request_stop();
        return ERR_NOMEM;
    }
    w.next_keepalive = now_ms() + w.keepalive_every_ms;
    w.next_tick = now_ms();
    log_info(NULL, "worker.started", worker_fields(&w));

    while (!daemon_stopping()) {
        if (ensure(&w) != 0)
            continue;
        err_t e;
        err_clear(&e);
        int rc = def->step(&w, ctx, &e);
        if (rc >= 0) {
            daemon_backoff_reset(&w.backoff);
            service(&w);
            if (rc == 0 && def->idle_ms > 0)
                (void)wait_slices(&w, now_ms() + def->idle_ms, def->listen != NULL);
            continue;
        }
        log_failure(&w, "worker.step_failed", &e);
        if (w.db != NULL && !db_ok(w.db))
            svc_worker_db_lost(&w, e.msg);
        if (w.mq != NULL && !mq_ok(w.mq))
            svc_worker_mq_lost(&w, e.msg);
        (void)svc_worker_backoff(&w);
    }
    if (def->drain != NULL)
        def->drain(&w, ctx);
    pub_lost(&w);
    svc_worker_mq_lost(&w, "stopped");
    svc_worker_db_lost(&w, "stopped");
    log_info(NULL, "worker.stopped", worker_fields(&w));
    return 0;
}
