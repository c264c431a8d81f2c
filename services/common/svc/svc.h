/* svc: what every service daemon shares on top of the runtime: the standard startup sequence,
 * the idempotent consumer loop, and emitting messages through the outbox.
 *
 * A service's main.c fills an svc_def_t (its name, extra configuration, migrations, message
 * routes, HTTP routes, hooks) and calls svc_main(). svc_main loads the configuration (every bad
 * variable reported at once, exit 78), initialises logging and signals, migrates the database
 * (`--migrate` does only that and exits), starts the HTTP server with /livez, /readyz and
 * /metrics, checks through the management API that every work queue it consumes is a quorum
 * queue with a dead-letter exchange, a delivery limit and at-least-once dead-lettering (waiting
 * while the API cannot answer; exit 78 naming the missing setting when a queue is not), starts
 * one consumer thread per consumer definition and any extra worker threads,
 * waits for SIGTERM/SIGINT, then drains: consumers finish the batch in hand, commit, ack, and
 * close their connections; the HTTP server stops; the process exits 0. Every consumer and worker
 * loop runs under the one worker supervisor (svc_worker.h): connections, reconnect backoff,
 * broker heartbeats while waiting, readiness flags and drain are its business.
 *
 * The consumer loop (svc_consumer.c) takes deliveries in batches and handles a whole batch in
 * ONE database transaction:
 *   - the message is decoded and validated against its contract; an unknown type, a body that
 *     breaks its schema or an invalid envelope is poison;
 *   - its id is recorded in the inbox (consumer, message_id); a duplicate is acknowledged and
 *     skipped;
 *   - its handler runs and writes the effects and the outgoing messages (svc_emit) in the same
 *     transaction;
 *   - handler result 0 keeps the work; ERR_INVALID rolls the transaction back, marks the message
 *     poison and runs the batch again without it (poison is rare: cheaper than a savepoint per
 *     message); any other error rolls the whole batch back and retries it after a backoff
 *     without acknowledging anything. A database or broker outage is waited out as long as it
 *     lasts (it burns no delivery attempts); other failures are retried CONSUMER_MAX_ATTEMPTS
 *     times, then each message of the batch runs alone, and one that still fails is poison of
 *     class `handler` (svc_consumer.c explains why this order).
 * After COMMIT, poison messages are published to petstore.dlx (routing key = the queue, with
 * confirms and x-petstore-failure-* headers; the original headers trimmed if they would not fit
 * a frame) and the batch is acknowledged with one multiple ack. The first consumer with an inbox
 * also purges inbox rows older than INBOX_RETENTION_S.
 * A private queue has no dead-letter twin: there, poison is logged and acknowledged, since the
 * same message also reaches a work queue whose consumer dead-letters it.
 * A crash anywhere before the ack redelivers the batch; the inbox makes that harmless.
 *
 * Threading: each consumer thread owns one PostgreSQL and one AMQP connection (plus a second AMQP
 * connection for dead-lettering, opened on first need), all held by its supervisor. Handlers
 * run on that thread. */
#ifndef PETSTORE_SVC_H
#define PETSTORE_SVC_H

#include <jansson.h>
#include <stddef.h>

#include "cfg.h"
#include "db.h"
#include "db_migrate.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "msg.h"
#include "trace.h"

/* An incoming message, already validated. Everything is borrowed for the handler's duration. */
typedef struct svc_msg {
    msg_type_t type;
    const json_t *payload;     /* the validated JSON body */
    const msg_envelope_t *env; /* message_id, correlation_id (the order id), traceparent, ... */
    const trace_ctx_t *trace;  /* this hop's span: child of the message's traceparent */
    const log_ctx_t *log;      /* trace_id, span_id and order_id for log lines */
    const char *queue;
    const char *exchange; /* where it was published */
    const char *routing_key;
    int redelivered;
} svc_msg_t;

/* Runs inside the batch transaction (no savepoint of its own: on ERR_INVALID the whole batch is
 * rolled back and run again without this message, so a handler must not depend on state outside
 * the transaction). Returns 0, ERR_INVALID (dead-letter this message) or any other code (retry
 * the batch later; after CONSUMER_MAX_ATTEMPTS such failures, alone, the message is
 * dead-lettered). e is filled on failure. */
typedef int (*svc_handler_fn)(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);

/* type MSG_NONE makes a catch-all route: it receives every valid message no other route takes
 * (the audit log uses it). */
typedef struct svc_route {
    msg_type_t type;
    svc_handler_fn fn;
} svc_route_t;

/* A consumer reads a durable work queue; instances of a service compete for its messages. */
typedef struct svc_consumer_def {
    const char *queue; /* e.g. "inventory.commands" */
    /* The inbox's consumer column, e.g. "inventory"; NULL: no inbox, for handlers that are
     * idempotent by themselves (version-guarded). */
    const char *inbox_name;
    const svc_route_t *routes; /* message types this consumer handles; others are acked */
    size_t n_routes;
    /* Optional, for handlers that gather rows to write together (one statement per batch
     * instead of one per message; the audit log). Called in the batch's transaction after its
     * last handler, before the commit, to write what they gathered; called with db NULL when
     * the transaction ends any other way (a handler failed, poison, a retry): forget it.
     * Returns 0, ERR_INVALID (the database refused a row, and which message's is not known: the
     * messages are then run each alone, and the one refused alone is dead-lettered, without the
     * retries of a failing handler) or any other code (as a handler's). Handlers and flush run
     * on the consumer's own thread: gathered rows may live in thread-local storage. */
    int (*flush)(db_conn_t *db, void *app, err_t *e);
    /* Optional, for effects that must follow only work that is durable (the storefront counts
     * finished orders in its metrics here, so that a batch rolled back and run again counts
     * them once). Called on the consumer's thread when each of its transactions ends:
     * committed 1 right after a successful COMMIT (before the acknowledgement), 0 when the
     * transaction was rolled back or its COMMIT failed. Handlers gather what it needs in
     * thread-local storage; it acts on the gathered state (committed) or forgets it (not). */
    void (*settled)(void *app, int committed);
} svc_consumer_def_t;

/* Who caused what is emitted: the service, the message being handled (if any) and its trace. */
typedef struct svc_cause {
    const char *app_id;         /* the emitting service, e.g. "inventory" */
    const char *causation_id;   /* id of the message being handled, or NULL */
    const char *correlation_id; /* the order id, or NULL */
    const trace_ctx_t *trace;   /* the current span; the emitted message gets a child span */
} svc_cause_t;

/* Writes one outgoing message into the outbox inside the caller's transaction: a new UUIDv7
 * message id, the contract's exchange and routing key, CloudEvents headers, traceparent and
 * causation id. payload is borrowed and validated against the type's contract first
 * (ERR_INTERNAL if it does not conform: a programming error, never poison). */
int svc_emit(db_conn_t *db, const svc_cause_t *cause, msg_type_t type, const json_t *payload,
             err_t *e) PETSTORE_NODISCARD;

/* One message of svc_emit_many: its type and its payload (borrowed). */
typedef struct svc_emit_item {
    msg_type_t type;
    const json_t *payload;
} svc_emit_item_t;

/* svc_emit for several messages of one cause, written with one statement in the order given
 * (outbox_enqueue_many): all of them or none. At most SVC_EMIT_MAX. */
#define SVC_EMIT_MAX 16
int svc_emit_many(db_conn_t *db, const svc_cause_t *cause, const svc_emit_item_t *items, size_t n,
                  err_t *e) PETSTORE_NODISCARD;

/* The cause for a message handled by a consumer: app_id plus the message's ids and span. */
svc_cause_t svc_cause_of(const char *app_id, const svc_msg_t *m);

/* Per-process context handed to hooks. */
typedef struct svc svc_t;

typedef struct svc_def {
    const char *name;          /* service name: logs, app_id, connection names */
    const cfg_var_t *cfg_vars; /* extra configuration beyond the standard set */
    size_t n_cfg_vars;
    const db_migration_t *migrations; /* the service's own migrations (component = name) */
    size_t n_migrations;
    const svc_consumer_def_t *consumers;
    size_t n_consumers;
    const http_route_t *http_routes; /* the service's own routes (health routes are added) */
    size_t n_http_routes;
    /* Called after configuration and migration, before threads start; returns 0 or an error
     * (the process exits 1). Sets *app, handed to every handler. May be NULL. */
    int (*init)(svc_t *svc, void **app, err_t *e);
    /* Extra worker threads (the saga's timers, an outbox relay): each calls svc_worker_run
     * (svc_worker.h) with its own definition and returns when it does. */
    void *(*workers[4])(void *svc);
    /* Called after every thread has stopped, to free the app. May be NULL. */
    void (*fini)(void *app);
} svc_def_t;

/* The whole life of a service process; returns the process exit status. */
int svc_main(int argc, char **argv, const svc_def_t *def);

/* Accessors for hooks and workers; all borrowed. */
const cfg_t *svc_cfg(const svc_t *svc);
const char *svc_name(const svc_t *svc);
void *svc_app(const svc_t *svc);
int svc_stopping(void);

/* The calling HTTP thread's own database connection, opened on first use and reopened after a
 * failure; closed when the thread ends. Borrowed. ERR_RETRY if the database is unreachable. */
int svc_thread_db(const svc_t *svc, db_conn_t **out, err_t *e) PETSTORE_NODISCARD;

#endif
