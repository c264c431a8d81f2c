/* svc_consumer: the idempotent, batching consumer loop (see svc.h for the contract).
 *
 * A batch is every delivery that is already waiting when the first one arrives, up to
 * CONSUMER_BATCH. It is handled optimistically in one transaction WITHOUT per-message
 * savepoints: poison is rare, so when a handler says ERR_INVALID the whole transaction is rolled
 * back, that message is marked poison, and the batch is run again without it. Decoding and
 * validation happen before the transaction, so a malformed message never touches the database.
 *
 * Invariants:
 *   - nothing is acknowledged before the transaction that recorded its effects has committed;
 *   - poison is acknowledged only after the dead-letter publish was confirmed by the broker;
 *   - a batch is always acknowledged as a whole with one multiple ack of its last tag, so no
 *     older unacknowledged delivery can exist on the channel when that ack is sent;
 *   - on a transient failure nothing is acknowledged or rejected: the batch is retried in place
 *     with backoff (the broker keeps the messages, delivery attempts are not burned), and the
 *     supervisor keeps the broker connection alive meanwhile, so the broker does not take the
 *     batch back either.
 * Connections, reconnects, heartbeats, readiness and drain belong to the worker supervisor
 * (svc_worker.h); this file is the step: collect a batch, handle it, acknowledge it. */
#include "svc_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inbox.h"
#include "metrics.h"
#include "mq.h"
#include "mq_consume.h"
#include "mq_publish.h"
#include "svc_worker.h"

enum item_state { ITEM_READY = 0, ITEM_POISON, ITEM_DONE };

typedef struct item {
    mq_delivery_t *d;
    enum item_state state;
    msg_type_t type;
    json_t *payload;
    msg_envelope_t env;
    trace_ctx_t trace;
    log_ctx_t log;
    const char *failure_class; /* for poison: "unknown-type", "envelope", "contract", "handler" */
    err_t err;
    int handled; /* a handler took it in the attempt that committed */
} item_t;

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
    const char **ids; /* batch_max scratch slots for the inbox */
    int *fresh;
    metrics_counter_t *m_ok, *m_dup, *m_ignored, *m_poison, *m_retry;
    metrics_histogram_t *m_batch;
} consumer_t;

static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500};

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

/* One attempt at the batch. Returns 0 when committed, ERR_INVALID when a handler declared a
 * message poison (it is marked; the caller runs the batch again), or a transient error. */
static int run_batch(consumer_t *c, item_t *items, size_t n, size_t *ok, size_t *dup,
                     size_t *ignored, err_t *e)
{
    const char **ids = c->ids;
    int *fresh = c->fresh;
    size_t k = 0;
    *ok = *dup = *ignored = 0;
    int rc = db_begin(c->db, e);
    if (rc != 0)
        return rc;
    /* Every id of the batch in one round trip; a repeat within the batch counts once. */
    for (size_t i = 0; i < n; i++) {
        items[i].handled = 0;
        if (items[i].state != ITEM_POISON) {
            fresh[k] = 1;
            ids[k++] = items[i].env.message_id;
        }
    }
    if (k > 0 && c->def->inbox_name != NULL) {
        rc = inbox_record_many(c->db, c->def->inbox_name, ids, k, fresh, e);
        if (rc != 0)
            goto fail;
    }
    k = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (it->state == ITEM_POISON)
            continue;
        if (!fresh[k++]) {
            (*dup)++;
            continue;
        }
        const svc_route_t *route = find_route(c->def, it->type);
        if (route == NULL) {
            (*ignored)++;
            log_debug(&it->log, "consumer.ignored",
                      json_pack("{s:s,s:s}", "type", it->d->type, "queue", c->label));
            continue;
        }
        svc_msg_t m = msg_of(c, it);
        err_t he;
        err_clear(&he);
        rc = route->fn(c->db, &m, svc_app(c->svc), &he);
        if (rc == ERR_INVALID) {
            mark_poison(it, "handler", &he);
            db_rollback(c->db);
            return ERR_INVALID;
        }
        if (rc != 0) {
            *e = he;
            if (e->code == 0)
                err_set(e, rc, "handler for %s failed", it->d->type);
            goto fail;
        }
        it->handled = 1;
        (*ok)++;
    }
    return db_commit(c->db, e);
fail:
    db_rollback(c->db);
    return rc;
}

/* The delivery's headers with nested values (x-death tables from an earlier dead-lettering)
 * folded into JSON strings, since published headers are flat. New reference. */
static json_t *flat_headers(const json_t *headers)
{
    json_t *h = json_object();
    const char *key;
    json_t *value;
    if (h == NULL || !json_is_object(headers))
        return h;
    json_object_foreach((json_t *)headers, key, value)
    {
        if (json_is_object(value) || json_is_array(value)) {
            char *text = json_dumps(value, JSON_COMPACT);
            char name[128];
            snprintf(name, sizeof(name), "x-petstore-previous-%s", key);
            if (text != NULL)
                json_object_set_new(h, name, json_string(text));
            free(text);
        } else {
            json_object_set(h, key, value);
        }
    }
    return h;
}

/* Publishes every poison item of the batch to petstore.dlx and waits for the confirms. */
static int dead_letter(consumer_t *c, item_t *items, size_t n, err_t *e)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += items[i].state == ITEM_POISON;
    if (count == 0)
        return 0;
    if (c->def->private_exchange != NULL) {
        /* No dead-letter twin for a private queue: the work queue's consumer dead-letters the
         * same message. Logged, then acknowledged with the batch. */
        for (size_t i = 0; i < n; i++)
            if (items[i].state == ITEM_POISON)
                log_warn(&items[i].log, "consumer.poison_skipped",
                         json_pack("{s:s,s:s,s:s,s:s?}", "queue", c->label, "class",
                                   items[i].failure_class, "error", items[i].err.msg, "type",
                                   items[i].d->type));
        return 0;
    }
    mq_conn_t *pub = NULL;
    int rc = svc_worker_publisher(c->w, &pub, e);
    if (rc != 0)
        return rc;

    mq_message_t *msgs = calloc(count, sizeof(*msgs));
    json_t **headers = calloc(count, sizeof(*headers));
    int *status = calloc(count, sizeof(*status));
    char failed_at[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(failed_at, sizeof(failed_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (msgs == NULL || headers == NULL || status == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory dead-lettering");
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (it->state != ITEM_POISON)
            continue;
        const mq_delivery_t *d = it->d;
        json_t *h = flat_headers(d->headers);
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
        headers[k] = h;
        /* A message that arrived without an id still needs one to match its confirm. */
        msgs[k] = (mq_message_t){
            .exchange = "petstore.dlx",
            .routing_key = c->def->queue,
            .message_id = d->message_id,
            .correlation_id = d->correlation_id,
            .type = d->type,
            .app_id = d->app_id,
            .content_type = d->content_type,
            .timestamp = d->timestamp,
            .headers = h,
            .body = d->body,
            .body_len = d->body_len,
        };
        log_warn(&it->log, "consumer.dead_lettered",
                 json_pack("{s:s,s:s,s:s,s:s,s:s?}", "queue", c->def->queue, "class",
                           it->failure_class, "code", err_name(it->err.code), "error", it->err.msg,
                           "type", d->type));
        k++;
    }
    rc = mq_publish_batch(pub, msgs, count, status, 10000, e);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        if (status[i] != 0)
            rc = err_set(e, ERR_RETRY, "dead-letter publish not confirmed (%s)",
                         err_name(status[i]));
    }
    if (rc == 0)
        metrics_counter_add(c->m_poison, (double)count);
out:
    for (size_t i = 0; headers != NULL && i < count; i++)
        json_decref(headers[i]);
    free(headers);
    free(msgs);
    free(status);
    return rc;
}

/* After the broker connection opened: the queue (a private one is declared first), then qos and
 * the consumer. */
static int on_mq_open(svc_worker_t *w, void *ctx, err_t *e)
{
    consumer_t *c = ctx;
    mq_conn_t *mq = svc_worker_mq(w);
    int rc = 0;
    if (c->def->private_exchange != NULL)
        rc = mq_declare_private_queue(mq, c->def->private_exchange, "", c->queue, sizeof(c->queue),
                                      e);
    if (rc == 0)
        rc = mq_consume_start(mq, c->queue, (uint16_t)c->prefetch, e);
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
    int wait_ms = c->def->tick != NULL && c->def->tick_ms < 250 ? c->def->tick_ms : 250;
    int rc = mq_next(c->mq, wait_ms, &items[0].d, &e);
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

static void run_after_commit(consumer_t *c, item_t *items, size_t n)
{
    if (c->def->after_commit == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (!it->handled)
            continue;
        svc_msg_t m = msg_of(c, it);
        c->def->after_commit(c->db, &m, svc_app(c->svc));
    }
}

/* Handles a collected batch until it is committed and acknowledged, or the broker connection
 * is gone (the broker then redelivers it), or the process stops (likewise). */
static void handle(consumer_t *c, item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        decode_item(&items[i]);

    for (;;) {
        err_t e;
        err_clear(&e);
        size_t ok = 0, dup = 0, ignored = 0;
        int rc = run_batch(c, items, n, &ok, &dup, &ignored, &e);
        if (rc == ERR_INVALID)
            continue; /* a handler found poison; it is marked, run the rest again at once */
        if (rc == 0) {
            run_after_commit(c, items, n);
            rc = dead_letter(c, items, n, &e);
        }
        if (rc == 0)
            rc = mq_ack(c->mq, items[n - 1].d->delivery_tag, 1, &e);
        if (rc == 0) {
            metrics_counter_add(c->m_ok, (double)ok);
            metrics_counter_add(c->m_dup, (double)dup);
            metrics_counter_add(c->m_ignored, (double)ignored);
            metrics_histogram_observe(c->m_batch, (double)n);
            svc_worker_backoff_reset(c->w);
            return;
        }
        metrics_counter_add(c->m_retry, 1);
        log_err(LOG_WARN, NULL, "consumer.batch_retry", &e);
        if (!mq_ok(c->mq)) {
            /* Unacknowledged deliveries went back to the queue with the channel. */
            svc_worker_mq_lost(c->w, e.msg);
            return;
        }
        /* Hold the batch: reconnect the database if it was lost, wait, try again. The
         * supervisor keeps the broker connection alive all the while. */
        err_t de;
        err_clear(&de);
        if (svc_worker_restore_db(c->w, &de) != 0)
            return; /* stopping: the batch is returned to the queue at close */
        c->db = svc_worker_db(c->w);
        if (svc_worker_backoff(c->w))
            return;
        if (c->mq != svc_worker_mq(c->w))
            return; /* a heartbeat failed while waiting: the batch went back with the channel */
        for (size_t i = 0; i < n; i++)
            if (items[i].state == ITEM_POISON && strcmp(items[i].failure_class, "handler") == 0)
                items[i].state = ITEM_READY; /* a handler's verdict is re-asked on retry */
    }
}

/* One step of the supervisor: collect a batch (waiting briefly for its first delivery) and
 * handle it. */
static int consumer_step(svc_worker_t *w, void *ctx, err_t *e)
{
    consumer_t *c = ctx;
    (void)e;
    c->w = w;
    c->db = svc_worker_db(w);
    c->mq = svc_worker_mq(w);
    size_t n = collect(c, c->items);
    if (n == 0)
        return 0;
    handle(c, c->items, n);
    for (size_t i = 0; i < n; i++)
        item_clear(&c->items[i]);
    return 1;
}

static void consumer_tick(svc_worker_t *w, void *ctx)
{
    consumer_t *c = ctx;
    c->def->tick(svc_worker_db(w), svc_app(c->svc));
}

static void consumer_drain(svc_worker_t *w, void *ctx)
{
    consumer_t *c = ctx;
    if (c->def->drain != NULL)
        c->def->drain(svc_worker_db(w), svc_app(c->svc));
    log_info(NULL, "consumer.stopped", json_pack("{s:s}", "queue", c->label));
}

void *svc__consumer_thread(void *arg)
{
    consumer_t *c = arg;
    svc_worker_def_t def = {
        .name = c->label,
        .needs = SVC_WORKER_DB | SVC_WORKER_MQ,
        .tick_ms = c->def->tick != NULL ? c->def->tick_ms : 0,
        .on_mq_open = on_mq_open,
        .step = consumer_step,
        .tick = c->def->tick != NULL ? consumer_tick : NULL,
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
    c->label = def->queue != NULL ? def->queue : def->private_exchange;
    snprintf(c->queue, sizeof(c->queue), "%s", def->queue != NULL ? def->queue : "");
    c->prefetch = prefetch;
    c->batch_max = batch_max;
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
    c->m_retry = metrics_counter("petstore_consumer_batch_retries_total",
                                 "Batches rolled back by a transient failure and retried", labels);
    c->m_batch =
        metrics_histogram("petstore_consumer_batch_size", "Deliveries per transaction", labels,
                          batch_bounds, sizeof(batch_bounds) / sizeof(batch_bounds[0]));
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
