/* svc_consumer: the idempotent, batching consumer loop (see svc.h for the contract).
 *
 * A batch is every delivery that is already waiting when the first one arrives, up to
 * CONSUMER_BATCH. It is handled optimistically in one transaction WITHOUT per-message
 * savepoints: poison is rare, so when a handler says ERR_INVALID the whole transaction is rolled
 * back, that message is marked poison, and the batch is run again without it. Decoding and
 * validation happen before the transaction, so a malformed message never touches the database.
 *
 * Failures of a batch fall in two classes, and only one of them is counted:
 *   - transient: the database or the broker is unreachable (the connection is gone, or the
 *     server announced its shutdown: SQLSTATE classes 08 and 57P). The batch is held in place,
 *     the database reconnected with backoff, and the batch run again, as often as it takes: an
 *     outage says nothing about the messages, so it neither uses their delivery attempts nor
 *     counts towards the bound below;
 *   - anything else (ERR_INTERNAL, ERR_CONFLICT, a serialization failure or deadlock that keeps
 *     coming back, a failed COMMIT on a live connection, ...) is retried with backoff up to
 *     CONSUMER_MAX_ATTEMPTS times. Then the batch is split: every message still pending is run
 *     alone, in its own transaction, with the same bound each, in delivery order. A message
 *     that fails alone that many times is poison of class `handler` (its error code and text go
 *     in the dead letter's headers); the others commit. Splitting one by one, rather than
 *     bisecting, is deliberate: the failure may come from the combination of two messages (a
 *     conflict between them), which a message alone does not reproduce, and a split happens
 *     only when a batch keeps failing, so its cost does not matter.
 * One message therefore cannot wedge a queue, and a database outage cannot dead-letter anything.
 *
 * Senders. Every message type has one producing service (contracts/codec/msg_types.def), and
 * each service publishes with its own broker user, which the relay puts in the AMQP user_id
 * property; RabbitMQ refuses a publish whose user_id is not the connection's login (only a user
 * tagged impersonator may), so user_id is the one property a consumer can trust. A message of
 * type T is accepted when its user_id is msg_type_producer(T), or when its user_id is
 * MSG_REPLAY_USER (the dead-letter tool, "dlq") and its header MSG_REPLAY_FOR_HEADER is a string
 * equal to msg_type_producer(T): the tool replays a dead letter as itself, speaking for the
 * producer (contracts/codec/msg.h). Anything else is poison of class `forged`, decided before
 * any database work: a missing user_id, another user, the tool naming no one or someone else,
 * and the header sent by any user but the tool (from them it means nothing). Its dead letter
 * names the sender it claimed (app_id) and the one it had (user_id, or "none") in
 * x-petstore-claimed-sender and x-petstore-actual-sender. app_id is never trusted.
 * Why trusting the tool's header is safe: only the tool's connection can put "dlq" in user_id
 * (the broker checks it; no service user is an impersonator), and the tool replays only dead
 * letters whose original sender it proves (see below and services/dlq), never a `forged` one;
 * so the replay user vouches for nothing a producer did not send. (Its broker credentials are
 * therefore worth every producer's, and must be guarded as such.)
 *
 * Dead letters. After the commit, poison messages are published to petstore.dlx (routing key =
 * the queue) with publisher confirms and x-petstore-* headers (failure class, error code and
 * text, handler, original queue, exchange and routing key, time). Each carries the consumer's
 * own login in user_id (the broker checks it, so the dead letter provably comes from the
 * consumer of its original queue) and the original delivery's user_id (or "none") in
 * MSG_SENDER_HEADER: together they let the dead-letter tool prove the original sender before it
 * replays anything (the consumer vouches for what the broker told it). That header, like every
 * x-petstore-* header we set, replaces an original header of the same name. The sender check
 * comes right after the type's, before anything else: so a dead letter of any class but
 * unknown-type and forged passed it, and one whose MSG_SENDER_HEADER is MSG_REPLAY_USER was a
 * replay the consumer accepted as speaking for the type's producer (its MSG_REPLAY_FOR_HEADER
 * goes along with the original headers, unless trimmed away). Each dead letter the broker
 * confirmed is counted in petstore_dead_lettered_total{queue,class}; the series of the five
 * classes exist from the start (at 0) for every queue that has a dead-letter queue.
 * The original headers go along (nested values folded into strings), unless the dead letter
 * would then not fit in one frame (mq_publish reports that message ERR_INVALID without sending
 * it or breaking the connection): then it is published again with only the original headers
 * that are small (each at most TRIM_KEEP_BYTES, together at most TRIM_BUDGET_BYTES), and the
 * header x-petstore-headers-trimmed names what was dropped; failing that, with our headers
 * alone. A dead-letter publish that fails otherwise (broker unreachable, nacked, unroutable)
 * holds the batch: nothing is acknowledged, the publish is retried with backoff, and messages
 * already confirmed are not published again (unless the batch is redelivered, then a dead
 * letter may appear twice in the .dlq; the original is never lost).
 *
 * Invariants:
 *   - nothing is acknowledged before the transaction that recorded its effects has committed;
 *   - poison is acknowledged only after the dead-letter publish was confirmed by the broker;
 *   - a batch is always acknowledged as a whole with one multiple ack of its last tag, so no
 *     older unacknowledged delivery can exist on the channel when that ack is sent (a split
 *     batch too: its transactions all commit before the one ack);
 *   - while a batch is held nothing is acknowledged or rejected, and the supervisor keeps the
 *     broker connection alive, so the broker does not take the batch back either; if the
 *     connection is lost anyway, the broker redelivers the batch and the inbox makes the
 *     repetition harmless.
 *
 * Inbox retention. The inbox grows by one row per message; the first consumer of a process
 * that has an inbox (one per service database and process) deletes rows older than
 * INBOX_RETENTION_S, at the start of a step (outside any transaction), at most PURGE_ROWS rows
 * per statement and PURGE_STATEMENTS statements per step, every PURGE_EVERY_S seconds (sooner
 * while rows remain). The trade-off: a message redelivered or replayed from a dead-letter queue
 * after its inbox row was purged is handled again, so the retention must exceed the longest
 * replay window (the default, 7 days, does; the handlers' own version guards are the second
 * line of defence).
 *
 * Test hooks (read once, when the consumer is created):
 *   PETSTORE_FAULT_HANDLER_FAIL_MESSAGE_ID=<uuid>  the handler of that message fails with
 *       ERR_INTERNAL every time (a message that keeps failing);
 *   PETSTORE_FAULT_HANDLER_FAIL_TYPE=<type>  the handler of every message of that type (e.g.
 *       payment.charged.v1) fails with ERR_INVALID, so each one is dead-lettered as poison of
 *       class handler (a handler bug; the drill poison-and-handler-bug re-drives them);
 *   PETSTORE_FAULT_CONSUMER_EXIT_AFTER_COMMIT=1     the process logs consumer.fault_exit and
 *       ends with _exit(137) after a batch committed, before its dead letters and its ack;
 *   PETSTORE_FAULT_CONSUMER_EXIT_AFTER_DEAD_LETTER=1  likewise after the dead letters of a
 *       batch were confirmed, before its ack.
 *
 * Connections, reconnects, heartbeats, readiness and drain belong to the worker supervisor
 * (svc_worker.h); this file is the step: collect a batch, handle it, acknowledge it. */
#include "svc_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "inbox.h"
#include "metrics.h"
#include "mq.h"
#include "mq_consume.h"
#include "mq_publish.h"
#include "svc_worker.h"

#define TRIM_KEEP_BYTES 1024    /* an original header this small survives trimming */
#define TRIM_BUDGET_BYTES 16384 /* and so many bytes of them at most */
#define PURGE_ROWS 1000         /* inbox rows deleted per statement */
#define PURGE_STATEMENTS 10     /* statements per step */
#define PURGE_EVERY_S 60        /* between purges when nothing is left to delete */

/* ITEM_DONE: committed in a transaction of its own while a batch was split. */
enum item_state { ITEM_READY = 0, ITEM_POISON, ITEM_DONE };

/* The failure classes of the consumer's dead letters (x-petstore-failure-class, the class label
 * of petstore_dead_lettered_total). */
static const char *const failure_classes[] = {"unknown-type", "forged", "envelope", "contract",
                                              "handler"};
#define N_FAILURE_CLASSES (sizeof(failure_classes) / sizeof(failure_classes[0]))

typedef struct item {
    mq_delivery_t *d;
    enum item_state state;
    msg_type_t type;
    json_t *payload;
    msg_envelope_t env;
    trace_ctx_t trace;
    log_ctx_t log;
    /* for poison: "unknown-type", "forged", "envelope", "contract", "handler" */
    const char *failure_class;
    err_t err;
    int attempts;      /* for poison of class handler: the failed attempts that made it so */
    int handled;       /* a handler took it in the attempt that committed */
    int dead_lettered; /* its dead letter was confirmed */
} item_t;

/* Outcomes of one committed transaction. */
typedef struct counts {
    size_t ok, dup, ignored;
} counts_t;

typedef struct consumer {
    svc_t *svc;
    const svc_consumer_def_t *def;
    const char *label; /* the queue, or the exchange of a private queue: logs and metrics */
    char queue[256];   /* the queue consumed (server-named for a private queue) */
    svc_worker_t *w;   /* the supervisor, while it runs */
    db_conn_t *db;     /* borrowed from the supervisor for one step */
    mq_conn_t *mq;
    item_t *items;
    int prefetch;
    int batch_max;
    int max_attempts; /* CONSUMER_MAX_ATTEMPTS */
    const char **ids; /* batch_max scratch slots for the inbox */
    int *fresh;
    int purges;        /* this consumer purges the inbox of its database */
    int retention_s;   /* INBOX_RETENTION_S */
    long next_purge_s; /* monotonic seconds */
    metrics_counter_t *m_ok, *m_dup, *m_ignored, *m_poison, *m_retry, *m_split, *m_purged;
    metrics_histogram_t *m_batch;
    metrics_counter_t *m_dead_lettered[N_FAILURE_CLASSES]; /* by failure_classes[] */
    /* test hooks (see the top of this file) */
    const char *fault_fail_id;
    const char *fault_fail_type;
    int fault_exit_after_commit;
    int fault_exit_after_dead_letter;
} consumer_t;

static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500};

static long mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec;
}

static void item_clear(item_t *it)
{
    mq_delivery_free(it->d);
    json_decref(it->payload);
    memset(it, 0, sizeof(*it));
}

static void mark_poison(item_t *it, const char *failure_class, const err_t *e)
{
    it->state = ITEM_POISON;
    it->failure_class = failure_class;
    it->err = *e;
    it->handled = 0;
}

/* A test hook's exit at an exact point of the protocol: as abrupt as kill -9 (no drain, no
 * ack, no close), after one log line that says where. */
static void fault_exit(const consumer_t *c, const char *hook)
{
    log_warn(NULL, "consumer.fault_exit", json_pack("{s:s,s:s}", "queue", c->label, "hook", hook));
    _exit(137);
}

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && strcmp(v, "1") == 0;
}

/* Everything that can be checked without the database: type, contract, envelope. */
static void decode_item(item_t *it)
{
    err_t e;
    err_clear(&e);
    const mq_delivery_t *d = it->d;

    it->log.order_id = d->correlation_id;
    if (d->type == NULL || msg_type_from_name(d->type, &it->type) != 0) {
        err_set(&e, ERR_INVALID, "unknown message type \"%.64s\"", d->type ? d->type : "");
        mark_poison(it, "unknown-type", &e);
        return;
    }
    /* The sender: the broker vouches for user_id, and the replay user for the producer it names
     * (see the top of this file). */
    const char *producer = msg_type_producer(it->type);
    const char *replay_for = NULL;
    int replay = d->user_id != NULL && strcmp(d->user_id, MSG_REPLAY_USER) == 0;
    if (replay) {
        const json_t *h =
            json_is_object(d->headers) ? json_object_get(d->headers, MSG_REPLAY_FOR_HEADER) : NULL;
        replay_for = json_is_string(h) ? json_string_value(h) : NULL;
    }
    const char *speaks_for = replay ? replay_for : d->user_id;
    if (producer == NULL || speaks_for == NULL || strcmp(speaks_for, producer) != 0) {
        if (replay)
            err_set(&e, ERR_INVALID,
                    "%s is produced by %s only, not by %s speaking for %s%.64s%s (claiming to be "
                    "%s)",
                    d->type, producer ? producer : "no one", MSG_REPLAY_USER,
                    replay_for ? "\"" : "", replay_for ? replay_for : "no one",
                    replay_for ? "\"" : "", d->app_id ? d->app_id : "none");
        else
            err_set(&e, ERR_INVALID, "%s is produced by %s only, not by %s (claiming to be %s)",
                    d->type, producer ? producer : "no one", d->user_id ? d->user_id : "none",
                    d->app_id ? d->app_id : "none");
        mark_poison(it, "forged", &e);
        return;
    }
    if (d->content_type != NULL && strncmp(d->content_type, "application/json", 16) != 0) {
        err_set(&e, ERR_INVALID, "unsupported content type \"%.64s\"", d->content_type);
        mark_poison(it, "contract", &e);
        return;
    }
    if (msg_envelope_from_headers(d->headers, d->message_id, d->type, d->correlation_id, &it->env,
                                  &e) != 0) {
        mark_poison(it, "envelope", &e);
        return;
    }
    if (msg_decode(it->type, d->body, d->body_len, &it->payload, &e) != 0) {
        mark_poison(it, "contract", &e);
        return;
    }
    trace_ctx_t parent;
    if (it->env.traceparent[0] != '\0' && trace_parse(it->env.traceparent, &parent) == 0)
        trace_child(&parent, &it->trace);
    else
        trace_new_root(&it->trace);
    it->log.trace_id = it->trace.trace_id;
    it->log.span_id = it->trace.span_id;
    it->log.order_id = it->env.correlation_id[0] ? it->env.correlation_id : NULL;
}

/* The entry line of every delivery, valid or not, before any database work. */
static void log_received(const consumer_t *c, const item_t *it)
{
    const mq_delivery_t *d = it->d;
    json_t *f = json_pack("{s:s?,s:s?,s:s,s:b,s:s?,s:s?}", "type", d->type, "message_id",
                          d->message_id, "queue", c->label, "redelivered", d->redelivered,
                          "exchange", d->exchange, "routing_key", d->routing_key);
    if (f != NULL && it->env.causation_id[0] != '\0')
        json_object_set_new(f, "causation_id", json_string(it->env.causation_id));
    if (f != NULL && it->state == ITEM_POISON)
        json_object_set_new(f, "poison", json_string(it->failure_class));
    log_info(&it->log, "message.received", f);
}

static const svc_route_t *find_route(const svc_consumer_def_t *def, msg_type_t type)
{
    const svc_route_t *fallback = NULL;
    for (size_t i = 0; i < def->n_routes; i++) {
        if (def->routes[i].type == type)
            return &def->routes[i];
        if (def->routes[i].type == MSG_NONE)
            fallback = &def->routes[i];
    }
    return fallback;
}

/* What a handler sees of an item; everything borrowed from the item. */
static svc_msg_t msg_of(const consumer_t *c, const item_t *it)
{
    svc_msg_t m = {
        .type = it->type,
        .payload = it->payload,
        .env = &it->env,
        .trace = &it->trace,
        .log = &it->log,
        .queue = c->queue,
        .exchange = it->d->exchange,
        .routing_key = it->d->routing_key,
        .redelivered = it->d->redelivered,
    };
    return m;
}

/* One attempt at the items that are ITEM_READY among items[0..n), in one transaction. Returns 0
 * when committed (*got counts the outcomes), ERR_INVALID when a handler declared a message
 * poison (it is marked; the caller runs the rest again), or the failure (e filled). */
/* run_batch's answer when the flush refused a row of several messages: run each alone. */
#define RUN_SPLIT 1

/* Tells the consumer's settled hook (if any) how its transaction ended. */
static void tell_settled(consumer_t *c, int committed)
{
    if (c->def->settled != NULL)
        c->def->settled(svc_app(c->svc), committed);
}

/* Tells the consumer's flush and settled hooks (if any) that the transaction did not commit. */
static void forget_gathered(consumer_t *c)
{
    if (c->def->flush != NULL)
        (void)c->def->flush(NULL, svc_app(c->svc), NULL);
    tell_settled(c, 0);
}

/* The flush of a consumer that gathers rows, after the batch's handlers: 0, ERR_INVALID when
 * the one message handled is refused (it is marked poison), RUN_SPLIT when one of several is,
 * or another error (in *e). */
static int flush_gathered(consumer_t *c, item_t *items, size_t n, const counts_t *got, err_t *e)
{
    if (c->def->flush == NULL || got->ok == 0)
        return 0;
    err_t fe;
    err_clear(&fe);
    int rc = c->def->flush(c->db, svc_app(c->svc), &fe);
    if (rc == ERR_INVALID && got->ok == 1) {
        for (size_t i = 0; i < n; i++)
            if (items[i].state == ITEM_READY && items[i].handled)
                mark_poison(&items[i], "handler", &fe);
        return ERR_INVALID;
    }
    if (rc == ERR_INVALID) {
        log_warn(NULL, "consumer.flush_refused",
                 json_pack("{s:s,s:s,s:s,s:i}", "queue", c->label, "error", fe.msg, "sqlstate",
                           fe.sqlstate, "messages", (int)got->ok));
        return RUN_SPLIT;
    }
    if (rc != 0)
        *e = fe;
    return rc;
}

static int run_batch(consumer_t *c, item_t *items, size_t n, counts_t *got, err_t *e)
{
    const char **ids = c->ids;
    int *fresh = c->fresh;
    size_t k = 0;
    memset(got, 0, sizeof(*got));
    int rc = db_begin(c->db, e);
    if (rc != 0)
        return rc;
    /* Every id of the batch in one round trip; a repeat within the batch counts once. */
    for (size_t i = 0; i < n; i++) {
        if (items[i].state != ITEM_READY)
            continue;
        items[i].handled = 0;
        fresh[k] = 1;
        ids[k++] = items[i].env.message_id;
    }
    if (k > 0 && c->def->inbox_name != NULL) {
        rc = inbox_record_many(c->db, c->def->inbox_name, ids, k, fresh, e);
        if (rc == ERR_INVALID) /* decoded ids are uuids: not a message's fault */
            rc = e->code = ERR_INTERNAL;
        if (rc != 0)
            goto fail;
    }
    k = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (it->state != ITEM_READY)
            continue;
        if (!fresh[k++]) {
            got->dup++;
            log_info(&it->log, "message.duplicate",
                     json_pack("{s:s,s:s,s:s,s:s}", "type", it->d->type, "message_id",
                               it->env.message_id, "queue", c->label, "why",
                               "already in the inbox: acknowledged, not handled again"));
            continue;
        }
        const svc_route_t *route = find_route(c->def, it->type);
        if (route == NULL) {
            got->ignored++;
            log_info(&it->log, "message.ignored",
                     json_pack("{s:s,s:s,s:s}", "type", it->d->type, "message_id",
                               it->env.message_id, "queue", c->label));
            continue;
        }
        svc_msg_t m = msg_of(c, it);
        err_t he;
        err_clear(&he);
        if (c->fault_fail_id != NULL && strcasecmp(it->env.message_id, c->fault_fail_id) == 0)
            rc = err_set(&he, ERR_INTERNAL,
                         "injected handler failure (PETSTORE_FAULT_HANDLER_FAIL_MESSAGE_ID)");
        else if (c->fault_fail_type != NULL && strcmp(it->d->type, c->fault_fail_type) == 0)
            rc = err_set(&he, ERR_INVALID,
                         "injected handler bug (PETSTORE_FAULT_HANDLER_FAIL_TYPE)");
        else {
            log_ctx_enter(&it->log); /* db.query lines name the message's order */
            rc = route->fn(c->db, &m, svc_app(c->svc), &he);
            log_ctx_enter(NULL);
        }
        if (rc == ERR_INVALID) {
            mark_poison(it, "handler", &he);
            db_rollback(c->db);
            forget_gathered(c);
            return ERR_INVALID;
        }
        if (rc != 0) {
            *e = he;
            if (e->code == 0)
                err_set(e, rc, "handler for %s failed", it->d->type);
            goto fail;
        }
        it->handled = 1;
        got->ok++;
    }
    rc = flush_gathered(c, items, n, got, e);
    if (rc == ERR_INVALID || rc == RUN_SPLIT) {
        db_rollback(c->db);
        forget_gathered(c);
        return rc;
    }
    if (rc != 0)
        goto fail;
    rc = db_commit(c->db, e);
    tell_settled(c, rc == 0);
    return rc;
fail:
    db_rollback(c->db);
    forget_gathered(c);
    return rc;
}

/* True when the failure says the database is unreachable rather than anything about the
 * messages: the connection is gone, or the server is shutting down or cannot take it. */
static int db_unreachable(consumer_t *c, const err_t *e)
{
    if (c->db == NULL || !db_check(c->db))
        return 1;
    return strncmp(e->sqlstate, "08", 2) == 0 || strncmp(e->sqlstate, "57P", 3) == 0 ||
           strcmp(e->sqlstate, "53300") == 0;
}

enum verdict { AGAIN, GIVE_UP, ABANDON };

/* After a failed attempt: decides whether to try again (after holding: database reconnected,
 * backoff waited, broker kept alive), to give up on the messages of the attempt (the bound is
 * reached), or to abandon the batch (the broker connection is gone: the broker redelivers it;
 * or the process is stopping). *failures counts the attempts that count. */
static enum verdict after_failure(consumer_t *c, const err_t *e, int *failures, size_t pending)
{
    metrics_counter_add(c->m_retry, 1);
    if (!mq_ok(c->mq)) {
        log_err(LOG_WARN, NULL, "consumer.batch_abandoned", e);
        svc_worker_mq_lost(c->w, e->msg);
        return ABANDON;
    }
    int transient = db_unreachable(c, e);
    if (!transient)
        ++*failures;
    log_warn(NULL, "consumer.batch_retry",
             json_pack("{s:s,s:s,s:s,s:s,s:b,s:i,s:i,s:i}", "queue", c->label, "code",
                       err_name(e->code), "error", e->msg, "sqlstate", e->sqlstate, "transient",
                       transient, "attempt", *failures, "max_attempts", c->max_attempts, "messages",
                       (int)pending));
    if (!transient && *failures >= c->max_attempts)
        return GIVE_UP;
    err_t de;
    err_clear(&de);
    if (svc_worker_restore_db(c->w, &de) != 0)
        return ABANDON; /* stopping: the batch is returned to the queue at close */
    c->db = svc_worker_db(c->w);
    if (svc_worker_backoff(c->w))
        return ABANDON;
    if (c->mq != svc_worker_mq(c->w))
        return ABANDON; /* a heartbeat failed while waiting: the batch went back with the channel */
    return AGAIN;
}

static void count_add(counts_t *total, const counts_t *got)
{
    total->ok += got->ok;
    total->dup += got->dup;
    total->ignored += got->ignored;
}

static size_t count_state(const item_t *items, size_t n, enum item_state state)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += items[i].state == state;
    return k;
}

/* Runs the ready items of items[0..n) (all of them together, or each alone once the bound is
 * reached with several) until each is committed or poison. 0 when done; -1 when the batch must
 * be abandoned. With several items, a give-up splits; with one, it makes that item poison. */
static int run_until_settled(consumer_t *c, item_t *items, size_t n, counts_t *total)
{
    int failures = 0;
    for (;;) {
        size_t pending = count_state(items, n, ITEM_READY);
        counts_t got;
        err_t e;
        err_clear(&e);
        int rc = run_batch(c, items, n, &got, &e);
        if (rc == 0) {
            count_add(total, &got);
            svc_worker_backoff_reset(c->w);
            return 0;
        }
        if (rc == ERR_INVALID)
            continue; /* a handler found poison; it is marked, run the rest again at once */
        if (rc == RUN_SPLIT)
            break; /* the flush refused one of several: find it alone, at once */
        enum verdict v = after_failure(c, &e, &failures, pending);
        if (v == ABANDON)
            return -1;
        if (v == AGAIN)
            continue;
        if (pending == 1) {
            for (size_t i = 0; i < n; i++)
                if (items[i].state == ITEM_READY) {
                    mark_poison(&items[i], "handler", &e);
                    items[i].attempts = failures;
                }
            return 0;
        }
        break;
    }
    /* Split: each pending message alone, in delivery order. */
    metrics_counter_add(c->m_split, 1);
    log_warn(NULL, "consumer.batch_split",
             json_pack("{s:s,s:i,s:i}", "queue", c->label, "messages",
                       (int)count_state(items, n, ITEM_READY), "max_attempts", c->max_attempts));
    svc_worker_backoff_reset(c->w);
    for (size_t i = 0; i < n; i++) {
        if (items[i].state != ITEM_READY)
            continue;
        if (run_until_settled(c, &items[i], 1, total) != 0)
            return -1;
        if (items[i].state == ITEM_READY)
            items[i].state = ITEM_DONE;
    }
    return 0;
}

/* Registers (or finds) the petstore_dead_lettered_total series of queue and class. */
static metrics_counter_t *register_dead_lettered(const consumer_t *c, const char *failure_class)
{
    char labels[320];
    snprintf(labels, sizeof(labels), "queue=\"%s\",class=\"%s\"", c->label, failure_class);
    return metrics_counter("petstore_dead_lettered_total",
                           "Dead letters published by the consumer and confirmed by the broker, "
                           "by original queue and failure class",
                           labels);
}

/* The headers of item's dead letter (new reference): the original ones, folded flat; at level
 * 1 only the small ones, at level 2 none; then ours. */
static json_t *dead_letter_headers(const consumer_t *c, const item_t *it, int level,
                                   const char *failed_at)
{
    const mq_delivery_t *d = it->d;
    json_t *flat = mq_headers_flat(d->headers);
    json_t *h = flat;
    if (flat != NULL && level > 0) {
        h = json_object();
        char dropped[512] = "";
        size_t used = 0, kept_bytes = 0;
        int n_dropped = 0;
        const char *key;
        json_t *value;
        json_object_foreach(flat, key, value)
        {
            size_t size = strlen(key) + (json_is_string(value) ? json_string_length(value) : 16);
            if (level == 1 && size <= TRIM_KEEP_BYTES && kept_bytes + size <= TRIM_BUDGET_BYTES) {
                json_object_set(h, key, value);
                kept_bytes += size;
                continue;
            }
            n_dropped++;
            if (used < sizeof(dropped)) {
                int w = snprintf(dropped + used, sizeof(dropped) - used, "%s%s (%zu bytes)",
                                 used > 0 ? ", " : "", key, size);
                used += w > 0 ? (size_t)w : 0;
            }
        }
        char note[640];
        snprintf(note, sizeof(note), "%d original header(s) dropped to fit the frame: %s",
                 n_dropped, dropped);
        json_object_set_new(h, "x-petstore-headers-trimmed", json_string(note));
        json_decref(flat);
    }
    if (h == NULL)
        return NULL;
    json_object_set_new(h, "x-petstore-failure-class", json_string(it->failure_class));
    json_object_set_new(h, "x-petstore-error-code", json_string(err_name(it->err.code)));
    json_object_set_new(h, "x-petstore-error", json_string(it->err.msg));
    json_object_set_new(h, "x-petstore-handler", json_string(c->def->inbox_name));
    json_object_set_new(h, "x-petstore-original-queue", json_string(c->def->queue));
    json_object_set_new(h, "x-petstore-original-exchange",
                        json_string(d->exchange ? d->exchange : ""));
    json_object_set_new(h, "x-petstore-original-routing-key",
                        json_string(d->routing_key ? d->routing_key : ""));
    json_object_set_new(h, "x-petstore-failed-at", json_string(failed_at));
    json_object_set_new(h, MSG_SENDER_HEADER,
                        json_string(d->user_id && d->user_id[0] ? d->user_id : "none"));
    if (it->attempts > 0)
        json_object_set_new(h, "x-petstore-attempts", json_integer(it->attempts));
    if (strcmp(it->failure_class, "forged") == 0) {
        json_object_set_new(h, "x-petstore-claimed-sender",
                            json_string(d->app_id && d->app_id[0] ? d->app_id : "none"));
        json_object_set_new(h, "x-petstore-actual-sender",
                            json_string(d->user_id && d->user_id[0] ? d->user_id : "none"));
    }
    return h;
}

/* The petstore_dead_lettered_total series of a class (registered with the consumer; any other
 * class, which the code does not make, on first use). */
static metrics_counter_t *dead_lettered_counter(consumer_t *c, const char *failure_class)
{
    for (size_t i = 0; i < N_FAILURE_CLASSES; i++)
        if (strcmp(failure_classes[i], failure_class) == 0)
            return c->m_dead_lettered[i];
    return register_dead_lettered(c, failure_class);
}

/* Publishes the poison items of the batch not yet dead-lettered to petstore.dlx and waits for
 * the confirms, trimming the headers of those that do not fit a frame (up to two more rounds).
 * *published counts the dead letters confirmed by this call. 0 when every poison item is
 * dead-lettered. */
static int dead_letter(consumer_t *c, item_t *items, size_t n, size_t *published, err_t *e)
{
    *published = 0;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += items[i].state == ITEM_POISON && !items[i].dead_lettered;
    if (count == 0)
        return 0;
    mq_conn_t *pub = NULL;
    int rc = svc_worker_publisher(c->w, &pub, e);
    if (rc != 0)
        return rc;

    mq_message_t *msgs = calloc(count, sizeof(*msgs));
    json_t **headers = calloc(count, sizeof(*headers));
    int *status = calloc(count, sizeof(*status));
    item_t **of = calloc(count, sizeof(*of));
    /* When, to the millisecond (the dead-letter tool orders dead letters and notes by it). */
    char failed_at[48], seconds[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    strftime(seconds, sizeof(seconds), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(failed_at, sizeof(failed_at), "%s.%03ldZ", seconds, now.tv_nsec / 1000000L);
    if (msgs == NULL || headers == NULL || status == NULL || of == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory dead-lettering");
        goto out;
    }
    /* Round 0 takes every pending item; rounds 1 and 2 those the broker could not take as
     * they were (ERR_INVALID: too large for a frame), with their headers trimmed further. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].state == ITEM_POISON && !items[i].dead_lettered)
            of[k++] = &items[i];
    for (int level = 0; level <= 2 && k > 0; level++) {
        for (size_t j = 0; j < k; j++) {
            item_t *it = of[j];
            const mq_delivery_t *d = it->d;
            json_decref(headers[j]);
            headers[j] = dead_letter_headers(c, it, level, failed_at);
            if (headers[j] == NULL) {
                rc = err_set(e, ERR_NOMEM, "out of memory dead-lettering");
                goto out;
            }
            /* user_id: our own login (the original's is in MSG_SENDER_HEADER; the broker
             * would refuse it on our connection). */
            msgs[j] = (mq_message_t){
                .exchange = "petstore.dlx",
                .routing_key = c->def->queue,
                .message_id = d->message_id,
                .correlation_id = d->correlation_id,
                .type = d->type,
                .app_id = d->app_id,
                .user_id = mq_login(pub),
                .content_type = d->content_type,
                .timestamp = d->timestamp,
                .headers = headers[j],
                .body = d->body,
                .body_len = d->body_len,
            };
        }
        /* After a failed call, status still tells which were confirmed before it. */
        rc = mq_publish_batch(pub, msgs, k, status, 10000, e);
        size_t again = 0;
        for (size_t j = 0; j < k; j++) {
            item_t *it = of[j];
            if (status[j] == 0) {
                it->dead_lettered = 1;
                (*published)++;
                metrics_counter_add(dead_lettered_counter(c, it->failure_class), 1);
                log_warn(&it->log, "consumer.dead_lettered",
                         json_pack("{s:s,s:s,s:s,s:s,s:s?,s:i}", "queue", c->def->queue, "class",
                                   it->failure_class, "code", err_name(it->err.code), "error",
                                   it->err.msg, "type", it->d->type, "trim_level", level));
            } else if (status[j] == ERR_INVALID) {
                of[again] = it;
                json_t *tmp = headers[again];
                headers[again] = headers[j];
                headers[j] = tmp;
                again++;
            } else if (rc == 0) {
                rc = err_set(e, ERR_RETRY, "dead-letter publish of %s not confirmed (%s)",
                             it->d->message_id ? it->d->message_id : "a message",
                             err_name(status[j]));
            }
        }
        if (rc != 0)
            goto out;
        k = again;
    }
    if (rc == 0 && k > 0)
        rc = err_set(e, ERR_INTERNAL, "dead letter of %s does not fit a frame even untrimmed",
                     of[0]->d->message_id ? of[0]->d->message_id : "a message");
out:
    metrics_counter_add(c->m_poison, (double)*published);
    for (size_t i = 0; headers != NULL && i < count; i++)
        json_decref(headers[i]);
    free(headers);
    free(msgs);
    free(status);
    free(of);
    return rc;
}

/* Dead-letters the batch's poison, holding the batch until the broker confirmed every dead
 * letter. 0 when done (*published: how many were published); -1 when the batch must be
 * abandoned. */
static int dead_letter_until_confirmed(consumer_t *c, item_t *items, size_t n, size_t *published)
{
    *published = 0;
    for (;;) {
        err_t e;
        err_clear(&e);
        size_t now = 0;
        int rc = dead_letter(c, items, n, &now, &e);
        *published += now;
        if (rc == 0)
            return 0;
        metrics_counter_add(c->m_retry, 1);
        log_err(LOG_WARN, NULL, "consumer.dead_letter_failed", &e);
        if (!mq_ok(c->mq)) {
            svc_worker_mq_lost(c->w, e.msg);
            return -1;
        }
        if (svc_worker_backoff(c->w))
            return -1;
        if (c->mq != svc_worker_mq(c->w))
            return -1;
    }
}

/* After the broker connection opened: the queue (a private one is declared first), then qos and
 * the consumer. */
static int on_mq_open(svc_worker_t *w, void *ctx, err_t *e)
{
    consumer_t *c = ctx;
    mq_conn_t *mq = svc_worker_mq(w);
    int rc = mq_consume_start(mq, c->queue, (uint16_t)c->prefetch, e);
    if (rc != 0)
        return rc;
    log_info(NULL, "consumer.started",
             json_pack("{s:s,s:i,s:i}", "queue", c->queue, "prefetch", c->prefetch, "batch_max",
                       c->batch_max));
    return 0;
}

/* Waits for the first delivery, then takes whatever else is already there. Returns the count;
 * 0 if nothing arrived (or the connection broke, then c->mq is closed). */
static size_t collect(consumer_t *c, item_t *items)
{
    err_t e;
    err_clear(&e);
    size_t n = 0;
    int rc = mq_next(c->mq, 250, &items[0].d, &e);
    if (rc == ERR_TIMEOUT)
        return 0;
    if (rc != 0) {
        log_err(LOG_WARN, NULL, "consumer.connection_lost", &e);
        svc_worker_mq_lost(c->w, e.msg);
        return 0;
    }
    n = 1;
    while (n < (size_t)c->batch_max) {
        rc = mq_next(c->mq, 0, &items[n].d, &e);
        if (rc == ERR_TIMEOUT)
            break;
        if (rc != 0) {
            /* The batch cannot be acknowledged on a broken channel: drop it; the broker
             * redelivers every unacknowledged message. */
            log_err(LOG_WARN, NULL, "consumer.connection_lost", &e);
            svc_worker_mq_lost(c->w, e.msg);
            for (size_t i = 0; i < n; i++)
                item_clear(&items[i]);
            return 0;
        }
        n++;
    }
    return n;
}

/* Handles a collected batch until it is committed and acknowledged, or the broker connection
 * is gone (the broker then redelivers it), or the process stops (likewise). */
static void handle(consumer_t *c, item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        decode_item(&items[i]);
        log_received(c, &items[i]);
    }

    counts_t total = {0, 0, 0};
    if (run_until_settled(c, items, n, &total) != 0)
        return;
    if (c->fault_exit_after_commit)
        fault_exit(c, "PETSTORE_FAULT_CONSUMER_EXIT_AFTER_COMMIT");
    size_t published = 0;
    if (dead_letter_until_confirmed(c, items, n, &published) != 0)
        return;
    if (published > 0 && c->fault_exit_after_dead_letter)
        fault_exit(c, "PETSTORE_FAULT_CONSUMER_EXIT_AFTER_DEAD_LETTER");
    err_t e;
    err_clear(&e);
    if (mq_ack(c->mq, items[n - 1].d->delivery_tag, 1, &e) != 0) {
        /* Unacknowledged deliveries go back to the queue with the channel. */
        log_err(LOG_WARN, NULL, "consumer.ack_failed", &e);
        svc_worker_mq_lost(c->w, e.msg);
        return;
    }
    metrics_counter_add(c->m_ok, (double)total.ok);
    metrics_counter_add(c->m_dup, (double)total.dup);
    metrics_counter_add(c->m_ignored, (double)total.ignored);
    metrics_histogram_observe(c->m_batch, (double)n);
    svc_worker_backoff_reset(c->w);
}

/* Deletes inbox rows past the retention, in short statements, when due. */
static void purge_inbox(consumer_t *c)
{
    long now = mono_s();
    if (!c->purges || now < c->next_purge_s || c->db == NULL)
        return;
    long total = 0, deleted = PURGE_ROWS;
    err_t e;
    err_clear(&e);
    int rc = 0;
    for (int i = 0; i < PURGE_STATEMENTS && deleted >= PURGE_ROWS; i++) {
        rc = inbox_purge_batch(c->db, c->retention_s, PURGE_ROWS, &deleted, &e);
        if (rc != 0)
            break;
        total += deleted;
    }
    metrics_counter_add(c->m_purged, (double)total);
    if (rc != 0)
        log_err(LOG_WARN, NULL, "consumer.inbox_purge_failed", &e);
    else if (total > 0)
        log_info(NULL, "consumer.inbox_purged",
                 json_pack("{s:s,s:i,s:i}", "inbox", c->def->inbox_name, "rows", (int)total,
                           "retention_s", c->retention_s));
    /* Rows left over: come back at the next step but one second, not in a minute. */
    c->next_purge_s = now + (rc == 0 && deleted >= PURGE_ROWS ? 1 : PURGE_EVERY_S);
}

/* One step of the supervisor: the inbox purge when due, then collect a batch (waiting briefly
 * for its first delivery) and handle it. */
static int consumer_step(svc_worker_t *w, void *ctx, err_t *e)
{
    consumer_t *c = ctx;
    (void)e;
    c->w = w;
    c->db = svc_worker_db(w);
    c->mq = svc_worker_mq(w);
    purge_inbox(c);
    size_t n = collect(c, c->items);
    if (n == 0)
        return 0;
    handle(c, c->items, n);
    for (size_t i = 0; i < n; i++)
        item_clear(&c->items[i]);
    return 1;
}

static void consumer_drain(svc_worker_t *w, void *ctx)
{
    consumer_t *c = ctx;
    (void)w;
    log_info(NULL, "consumer.stopped", json_pack("{s:s}", "queue", c->label));
}

void *svc__consumer_thread(void *arg)
{
    consumer_t *c = arg;
    svc_worker_def_t def = {
        .name = c->label,
        .needs = SVC_WORKER_DB | SVC_WORKER_MQ,
        .on_mq_open = on_mq_open,
        .step = consumer_step,
        .drain = consumer_drain,
    };
    (void)svc_worker_run(c->svc, &def, c);
    return NULL;
}

consumer_t *svc__consumer_new(svc_t *svc, const svc_consumer_def_t *def, int prefetch,
                              int batch_max)
{
    consumer_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->svc = svc;
    c->def = def;
    c->label = def->queue;
    snprintf(c->queue, sizeof(c->queue), "%s", def->queue);
    c->prefetch = prefetch;
    c->batch_max = batch_max;
    const cfg_t *cfg = svc_cfg(svc);
    c->max_attempts = cfg_int(cfg, "CONSUMER_MAX_ATTEMPTS");
    c->retention_s = cfg_int(cfg, "INBOX_RETENTION_S");
    /* The first consumer of the process with an inbox purges it (one per database). */
    for (size_t i = 0; i < svc->def->n_consumers; i++) {
        if (svc->def->consumers[i].inbox_name != NULL) {
            c->purges = &svc->def->consumers[i] == def;
            break;
        }
    }
    c->next_purge_s = mono_s();
    const char *fault = getenv("PETSTORE_FAULT_HANDLER_FAIL_MESSAGE_ID");
    c->fault_fail_id = fault != NULL && fault[0] != '\0' ? fault : NULL;
    fault = getenv("PETSTORE_FAULT_HANDLER_FAIL_TYPE");
    c->fault_fail_type = fault != NULL && fault[0] != '\0' ? fault : NULL;
    c->fault_exit_after_commit = env_flag("PETSTORE_FAULT_CONSUMER_EXIT_AFTER_COMMIT");
    c->fault_exit_after_dead_letter = env_flag("PETSTORE_FAULT_CONSUMER_EXIT_AFTER_DEAD_LETTER");
    c->ids = calloc((size_t)batch_max, sizeof(*c->ids));
    c->fresh = calloc((size_t)batch_max, sizeof(*c->fresh));
    c->items = calloc((size_t)batch_max, sizeof(*c->items));
    if (c->ids == NULL || c->fresh == NULL || c->items == NULL) {
        svc__consumer_free(c);
        return NULL;
    }
    char labels[160];
    const char *help = "Messages handled by the consumer, by outcome";
    snprintf(labels, sizeof(labels), "queue=\"%s\",outcome=\"ok\"", c->label);
    c->m_ok = metrics_counter("petstore_messages_consumed_total", help, labels);
    snprintf(labels, sizeof(labels), "queue=\"%s\",outcome=\"duplicate\"", c->label);
    c->m_dup = metrics_counter("petstore_messages_consumed_total", help, labels);
    snprintf(labels, sizeof(labels), "queue=\"%s\",outcome=\"ignored\"", c->label);
    c->m_ignored = metrics_counter("petstore_messages_consumed_total", help, labels);
    snprintf(labels, sizeof(labels), "queue=\"%s\",outcome=\"dead_lettered\"", c->label);
    c->m_poison = metrics_counter("petstore_messages_consumed_total", help, labels);
    snprintf(labels, sizeof(labels), "queue=\"%s\"", c->label);
    c->m_retry =
        metrics_counter("petstore_consumer_batch_retries_total",
                        "Failed attempts at a batch (or its dead letters), retried", labels);
    c->m_split = metrics_counter("petstore_consumer_batch_splits_total",
                                 "Batches split into one transaction per message after "
                                 "CONSUMER_MAX_ATTEMPTS failures",
                                 labels);
    c->m_purged = metrics_counter("petstore_inbox_purged_total",
                                  "Inbox rows deleted after INBOX_RETENTION_S", labels);
    c->m_batch =
        metrics_histogram("petstore_consumer_batch_size", "Deliveries per transaction", labels,
                          batch_bounds, sizeof(batch_bounds) / sizeof(batch_bounds[0]));
    for (size_t i = 0; i < N_FAILURE_CLASSES; i++)
        c->m_dead_lettered[i] = register_dead_lettered(c, failure_classes[i]);
    return c;
}

void svc__consumer_free(consumer_t *c)
{
    if (c == NULL)
        return;
    free(c->ids);
    free(c->fresh);
    free(c->items);
    free(c);
}
