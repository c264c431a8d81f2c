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
 *     with backoff (the broker keeps the messages, delivery attempts are not burned). */
#include "svc_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "health.h"
#include "inbox.h"
#include "metrics.h"
#include "mq.h"
#include "mq_consume.h"
#include "mq_publish.h"
#include "uuid.h"

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
} item_t;

typedef struct consumer {
    svc_t *svc;
    const svc_consumer_def_t *def;
    db_conn_t *db;
    mq_conn_t *mq;
    mq_conn_t *dlq; /* publisher connection for dead letters, opened on first need */
    health_flag_t *db_flag;
    health_flag_t *mq_flag;
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
static void decode_item(item_t *it, const char *app_id)
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
    if (msg_envelope_from_headers(d->headers, d->message_id, d->type, d->correlation_id,
                                  &it->env, &e) != 0) {
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
    (void)app_id;
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
    for (size_t i = 0; i < n; i++)
        if (items[i].state != ITEM_POISON)
            ids[k++] = items[i].env.message_id;
    if (k > 0) {
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
                      json_pack("{s:s,s:s}", "type", it->d->type, "queue", c->def->queue));
            continue;
        }
        svc_msg_t m = {
            .type = it->type,
            .payload = it->payload,
            .env = &it->env,
            .trace = &it->trace,
            .log = &it->log,
            .queue = c->def->queue,
            .exchange = it->d->exchange,
            .routing_key = it->d->routing_key,
            .redelivered = it->d->redelivered,
        };
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
        (*ok)++;
    }
    return db_commit(c->db, e);
fail:
    db_rollback(c->db);
    return rc;
}

static int ensure_dlq(consumer_t *c, err_t *e)
{
    if (c->dlq != NULL && mq_ok(c->dlq))
        return 0;
    mq_close(c->dlq);
    c->dlq = NULL;
    char name[96];
    snprintf(name, sizeof(name), "%s dead-letter publisher", svc_name(c->svc));
    mq_opts_t opts = {.heartbeat_s = 30, .connection_name = name};
    int rc = mq_open(cfg_str(svc_cfg(c->svc), "AMQP_URL"), &opts, &c->dlq, e);
    if (rc == 0)
        rc = mq_confirm_select(c->dlq, e);
    if (rc != 0) {
        mq_close(c->dlq);
        c->dlq = NULL;
    }
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
    int rc = ensure_dlq(c, e);
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
    rc = mq_publish_batch(c->dlq, msgs, count, status, 10000, e);
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

static void close_mq(consumer_t *c)
{
    mq_close(c->mq);
    c->mq = NULL;
    health_flag_set(c->mq_flag, 0, "broker connection lost");
}

static int ensure_connections(consumer_t *c)
{
    err_t e;
    err_clear(&e);
    const cfg_t *cfg = svc_cfg(c->svc);
    if (c->db == NULL || !db_ok(c->db)) {
        db_close(c->db);
        c->db = NULL;
        health_flag_set(c->db_flag, 0, "connecting");
        if (db_open_retry(cfg_str(cfg, "DATABASE_URL"), -1, svc_stopping, &c->db, &e) != 0)
            return -1;
        health_flag_set(c->db_flag, 1, "connected");
    }
    if (c->mq == NULL || !mq_ok(c->mq)) {
        close_mq(c);
        char name[96];
        snprintf(name, sizeof(name), "%s consumer %s", svc_name(c->svc), c->def->queue);
        mq_opts_t opts = {.heartbeat_s = 30, .connection_name = name};
        if (mq_open_retry(cfg_str(cfg, "AMQP_URL"), &opts, svc_stopping, &c->mq, &e) != 0)
            return -1;
        if (mq_consume_start(c->mq, c->def->queue, (uint16_t)c->prefetch, &e) != 0) {
            log_err(LOG_ERROR, NULL, "consumer.start_failed", &e);
            close_mq(c);
            daemon_sleep_ms(1000);
            return -1;
        }
        health_flag_set(c->mq_flag, 1, "consuming");
        log_info(NULL, "consumer.started",
                 json_pack("{s:s,s:i,s:i}", "queue", c->def->queue, "prefetch", c->prefetch,
                           "batch_max", c->batch_max));
    }
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
        close_mq(c);
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
            close_mq(c);
            for (size_t i = 0; i < n; i++)
                item_clear(&items[i]);
            return 0;
        }
        n++;
    }
    return n;
}

static void handle(consumer_t *c, item_t *items, size_t n)
{
    const char *app_id = svc_name(c->svc);
    for (size_t i = 0; i < n; i++)
        decode_item(&items[i], app_id);

    daemon_backoff_t backoff;
    daemon_backoff_init(&backoff, 100, 5000);
    for (;;) {
        err_t e;
        err_clear(&e);
        size_t ok = 0, dup = 0, ignored = 0;
        int rc = run_batch(c, items, n, &ok, &dup, &ignored, &e);
        if (rc == ERR_INVALID)
            continue; /* a handler found poison; it is marked, run the rest again at once */
        if (rc == 0)
            rc = dead_letter(c, items, n, &e);
        if (rc == 0)
            rc = mq_ack(c->mq, items[n - 1].d->delivery_tag, 1, &e);
        if (rc == 0) {
            metrics_counter_add(c->m_ok, (double)ok);
            metrics_counter_add(c->m_dup, (double)dup);
            metrics_counter_add(c->m_ignored, (double)ignored);
            metrics_histogram_observe(c->m_batch, (double)n);
            return;
        }
        metrics_counter_add(c->m_retry, 1);
        log_err(LOG_WARN, NULL, "consumer.batch_retry", &e);
        if (!mq_ok(c->mq)) {
            /* Unacknowledged deliveries went back to the queue with the channel. */
            close_mq(c);
            return;
        }
        if (!db_ok(c->db)) {
            health_flag_set(c->db_flag, 0, "database connection lost");
            db_close(c->db);
            c->db = NULL;
            err_t oe;
            if (db_open_retry(cfg_str(svc_cfg(c->svc), "DATABASE_URL"), -1, svc_stopping, &c->db,
                              &oe) != 0)
                return; /* stopping: the batch is returned to the queue at close */
            health_flag_set(c->db_flag, 1, "connected");
        }
        if (daemon_sleep_ms(daemon_backoff_next_ms(&backoff)))
            return;
        /* Keep the broker connection alive while the batch waits. */
        if (mq_keepalive(c->mq, &e) != 0) {
            close_mq(c);
            return;
        }
        for (size_t i = 0; i < n; i++)
            if (items[i].state == ITEM_POISON && strcmp(items[i].failure_class, "handler") == 0)
                items[i].state = ITEM_READY; /* a handler's verdict is re-asked on retry */
    }
}

void *svc__consumer_thread(void *arg)
{
    consumer_t *c = arg;
    item_t *items = calloc((size_t)c->batch_max, sizeof(*items));
    if (items == NULL) {
        log_error(NULL, "consumer.out_of_memory", NULL);
        return NULL;
    }
    while (!svc_stopping()) {
        if (ensure_connections(c) != 0)
            continue;
        size_t n = collect(c, items);
        if (n == 0)
            continue;
        handle(c, items, n);
        for (size_t i = 0; i < n; i++)
            item_clear(&items[i]);
    }
    free(items);
    mq_close(c->mq);
    mq_close(c->dlq);
    db_close(c->db);
    c->mq = c->dlq = NULL;
    c->db = NULL;
    log_info(NULL, "consumer.stopped", json_pack("{s:s}", "queue", c->def->queue));
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
    c->prefetch = prefetch;
    c->batch_max = batch_max;
    c->ids = calloc((size_t)batch_max, sizeof(*c->ids));
    c->fresh = calloc((size_t)batch_max, sizeof(*c->fresh));
    if (c->ids == NULL || c->fresh == NULL) {
        svc__consumer_free(c);
        return NULL;
    }
    char name[128], labels[160];
    snprintf(name, sizeof(name), "database:%s", def->queue);
    c->db_flag = health_flag_new(name);
    snprintf(name, sizeof(name), "broker:%s", def->queue);
    c->mq_flag = health_flag_new(name);
    const char *help = "Messages handled by the consumer, by outcome";
    snprintf(labels, sizeof(labels), "queue=\"%s\",outcome=\"ok\"", def->queue);
    c->m_ok = metrics_counter("petstore_messages_consumed_total", help, labels);
    snprintf(labels, sizeof(labels), "queue=\"%s\",outcome=\"duplicate\"", def->queue);
    c->m_dup = metrics_counter("petstore_messages_consumed_total", help, labels);
    snprintf(labels, sizeof(labels), "queue=\"%s\",outcome=\"ignored\"", def->queue);
    c->m_ignored = metrics_counter("petstore_messages_consumed_total", help, labels);
    snprintf(labels, sizeof(labels), "queue=\"%s\",outcome=\"dead_lettered\"", def->queue);
    c->m_poison = metrics_counter("petstore_messages_consumed_total", help, labels);
    snprintf(labels, sizeof(labels), "queue=\"%s\"", def->queue);
    c->m_retry = metrics_counter("petstore_consumer_batch_retries_total",
                                 "Batches rolled back by a transient failure and retried", labels);
    c->m_batch = metrics_histogram("petstore_consumer_batch_size", "Deliveries per transaction",
                                   labels, batch_bounds,
                                   sizeof(batch_bounds) / sizeof(batch_bounds[0]));
    return c;
}

void svc__consumer_free(consumer_t *c)
{
    if (c == NULL)
        return;
    free(c->ids);
    free(c->fresh);
    free(c);
}
