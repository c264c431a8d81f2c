/* svc_worker: the one supervisor of every long-running loop of a daemon.
 *
 * A worker is a loop that needs a PostgreSQL connection, an AMQP connection, or both: each
 * message consumer (svc_consumer.c), an outbox relay (outbox/relay.c), the saga's timers
 * (saga/timer.c). The worker's own code is a step function that does one unit of work; the
 * supervisor owns everything around it, the same way for all of them:
 *   - connections: opened before the first step and reopened after a loss, the database first,
 *     each retried with the shared backoff (daemon_backoff_*), 100 ms doubling to 5 s;
 *   - broker heartbeats (AMQP_HEARTBEAT_S, one setting for the process) whenever the worker
 *     waits for anything but the broker: while the database reconnects, during a retry delay,
 *     while idle waiting for a NOTIFY or the next poll. rabbitmq-c only sends heartbeats from
 *     inside its own calls, so without this a worker waiting on PostgreSQL loses its broker
 *     connection after two intervals, and the broker hands its unacknowledged deliveries back,
 *     each return counting towards the queue's delivery limit;
 *   - readiness: the flags "database:NAME" and "broker:NAME" behind /readyz, true exactly while
 *     the connection is up;
 *   - a tick: a callback run at least every tick_ms whatever the worker is doing, even while
 *     it reconnects (long polls must still be answered at their deadline);
 *   - drain: once a stop is requested the step in hand finishes, the drain callback runs with
 *     the connections still open, then they are closed.
 *
 * The step's answer drives the loop: > 0 it did work and more may be waiting (run again at
 * once); 0 it found nothing to do (wait idle_ms, or less if a NOTIFY on `listen` or a stop
 * arrives); < 0 it failed (logged; a connection that broke is reopened; the step runs again
 * after the next backoff delay). A step that must hold on to work while it waits (a consumer's
 * batch, which may not be acknowledged yet) waits inside the step with svc_worker_sleep and
 * svc_worker_restore_db, which keep the same promises.
 *
 * Threading: svc_worker_run blocks its thread until the process stops; a worker's connections
 * belong to that thread. Every other function is for the step's thread only. */
#ifndef PETSTORE_SVC_WORKER_H
#define PETSTORE_SVC_WORKER_H

#include "db.h"
#include "err.h"
#include "mq.h"
#include "svc.h"

/* What a worker needs; the supervisor opens exactly these. */
#define SVC_WORKER_DB 1u
#define SVC_WORKER_MQ 2u

typedef struct svc_worker svc_worker_t;

typedef struct svc_worker_def {
    const char *name;   /* logs, health checks ("database:NAME") and the broker connection name
                           ("<service> NAME"); borrowed for the worker's life */
    unsigned needs;     /* SVC_WORKER_DB | SVC_WORKER_MQ */
    const char *listen; /* LISTEN on this channel on every new database connection (NULL:
                           none); a notification ends an idle wait early */
    int idle_ms;        /* the wait after a step that found nothing to do (0: none) */
    int tick_ms;        /* how often tick runs at least (0: no tick) */
    /* After the broker connection opened: confirm mode, declarations, starting a consumer. An
     * error closes the connection and it is opened again after a backoff. May be NULL. */
    int (*on_mq_open)(svc_worker_t *w, void *ctx, err_t *e);
    /* One unit of work (see above). e is filled when it returns < 0. */
    int (*step)(svc_worker_t *w, void *ctx, err_t *e);
    /* Periodic work independent of the connections (either may be NULL when it runs). May be
     * NULL. */
    void (*tick)(svc_worker_t *w, void *ctx);
    /* Once, when stopping, before the connections close (either may be NULL). May be NULL. */
    void (*drain)(svc_worker_t *w, void *ctx);
    /* With listen: each notification's channel and payload (borrowed for the call), as they
     * arrive during the worker's idle waits; the database connection may be used. NULL: a
     * notification only ends the wait. */
    void (*on_notice)(svc_worker_t *w, void *ctx, const char *channel, const char *payload);
    /* After each new database connection, LISTEN included. Notifications sent while there was
     * none are lost: whatever they keep fresh is refreshed here. May be NULL. */
    void (*on_db_open)(svc_worker_t *w, void *ctx);
    /* When the database connection is lost or closed (from then on no notification arrives
     * until on_db_open). May be NULL. */
    void (*on_db_lost)(svc_worker_t *w, void *ctx);
} svc_worker_def_t;

/* Runs the worker until the process stops, then drains and closes. def and ctx are borrowed
 * for the call. Returns 0, or ERR_NOMEM when it could not start at all (logged). */
int svc_worker_run(svc_t *svc, const svc_worker_def_t *def, void *ctx);

/* The worker's connections (borrowed; NULL while down or when not needed). */
db_conn_t *svc_worker_db(const svc_worker_t *w);
mq_conn_t *svc_worker_mq(const svc_worker_t *w);
svc_t *svc_worker_svc(const svc_worker_t *w);

/* A second broker connection in confirm mode for publishing from a worker whose own
 * connection consumes (mq.h: one connection never does both), opened on first use and kept
 * alive by the same heartbeats. *out is borrowed. ERR_RETRY when the broker is unreachable
 * (one attempt: the caller's retry path decides). */
int svc_worker_publisher(svc_worker_t *w, mq_conn_t **out, err_t *e) PETSTORE_NODISCARD;

/* Waits ms milliseconds, sending heartbeats and running the tick meanwhile. Returns 1 when the
 * process is stopping (the wait ends early), else 0. */
int svc_worker_sleep(svc_worker_t *w, int ms);

/* svc_worker_sleep for the worker's next backoff delay (doubling from 100 ms to 5 s). */
int svc_worker_backoff(svc_worker_t *w);

/* After a success: the next backoff delay starts from the beginning again. */
void svc_worker_backoff_reset(svc_worker_t *w);

/* If the database connection is missing or broken, opens a new one, retrying with backoff while
 * keeping the broker connection alive, until it succeeds or the process stops (ERR_RETRY). 0
 * when the connection is up. */
int svc_worker_restore_db(svc_worker_t *w, err_t *e) PETSTORE_NODISCARD;

/* Closes a broken connection and marks it down; it is reopened before the next step. why is
 * the readiness detail. */
void svc_worker_db_lost(svc_worker_t *w, const char *why);
void svc_worker_mq_lost(svc_worker_t *w, const char *why);

/* The heartbeat interval the process uses (AMQP_HEARTBEAT_S), in seconds. */
int svc_worker_heartbeat_s(const svc_worker_t *w);

#endif
