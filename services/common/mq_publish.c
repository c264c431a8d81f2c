/* mq_publish: pipelined publisher confirms.
 *
 * In confirm mode the broker numbers the publishes of a channel 1, 2, 3, ... and answers each
 * with basic.ack or basic.nack carrying that number, possibly for several at once (multiple).
 * The handle counts the publishes of its channel across batches (mq_conn.published), so the
 * k-th message sent by a batch has tag published_before + k. A batch writes every message,
 * peeking at the socket every DRAIN_EVERY messages so that confirms (and a channel.close for a
 * missing exchange) are consumed early and the broker's replies never pile up, then reads
 * frames until every sent message is settled or the deadline passes.
 *
 * A mandatory message that no queue takes comes back as basic.return, a content header and body
 * frames, always BEFORE the ack for that message; the return is matched to its slot by
 * message_id and the slot is settled as ERR_UNROUTABLE when its ack arrives.
 *
 * While a batch runs, status[] doubles as the slot state: the positive values below are
 * internal and never left in it when the call returns. */
#include "mq_publish.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mq_internal.h"

#define DRAIN_EVERY 64
#define BLOCKED_WAIT_MS 5000

enum { SLOT_UNSENT = 1, SLOT_SENT = 2, SLOT_RETURNED = 3 };

/* ---- fault injection -------------------------------------------------------------------- */

static pthread_once_t fault_once = PTHREAD_ONCE_INIT;
static long fault_at; /* 0: off */
static atomic_long fault_calls;

static void fault_init(void)
{
    const char *v = getenv("PETSTORE_FAULT_MQ_PUBLISH_FAIL_AT");
    if (v == NULL || *v == '\0')
        return;
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (*end == '\0' && n > 0)
        fault_at = n;
}

static int fault_hit(void)
{
    pthread_once(&fault_once, fault_init);
    if (fault_at == 0)
        return 0;
    return atomic_fetch_add(&fault_calls, 1) + 1 == fault_at;
}

/* ---- confirm mode ------------------------------------------------------------------------- */

int mq_confirm_select(mq_conn_t *c, err_t *e)
{
    if (!mq_ok(c))
        return err_set(e, ERR_RETRY, "the AMQP connection is broken; reconnect");
    if (c->consumer_tag != NULL)
        return err_set(e, ERR_INTERNAL,
                       "publisher confirms on a consuming connection are not "
                       "supported; open a second connection to publish");
    if (c->confirms)
        return 0;
    if (amqp_confirm_select(c->state, c->channel) == NULL)
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), c->channel, "confirm.select", e);
    c->confirms = 1;
    c->published = 0;
    amqp_maybe_release_buffers_on_channel(c->state, c->channel);
    return 0;
}

/* ---- one batch ------------------------------------------------------------------------------ */

typedef struct batch {
    mq_conn_t *c;
    const mq_message_t *msgs;
    size_t n;
    int *status;
    size_t *slot_of;  /* k-th sent message -> its index in msgs */
    size_t sent;      /* messages written */
    size_t unsettled; /* written and not yet acked or nacked */
    size_t lo;        /* every sent ordinal below lo is settled */
    uint64_t base;    /* the channel's publish count before this batch */
} batch_t;

static int shortstr_ok(const char *s, size_t *wire)
{
    if (s == NULL)
        return 1;
    size_t len = strlen(s);
    *wire += 1 + len;
    return len <= 255;
}

static void set_shortstr(amqp_basic_properties_t *p, amqp_flags_t flag, amqp_bytes_t *field,
                         const char *s)
{
    if (s == NULL || *s == '\0')
        return;
    p->_flags |= flag;
    *field = amqp_cstring_bytes(s);
}

/* Fills *p for m; header tables go into the handle's scratch pool. ERR_INVALID when m cannot be
 * encoded within the negotiated frame size. */
static int build_props(mq_conn_t *c, const mq_message_t *m, amqp_basic_properties_t *p, err_t *e)
{
    size_t wire = 14 + 1 + 8; /* class, weight, body size, flags; delivery mode; timestamp */
    const char *content_type = m->content_type ? m->content_type : "application/json";
    if (!shortstr_ok(m->exchange, &wire) || !shortstr_ok(m->routing_key, &wire) ||
        !shortstr_ok(content_type, &wire) || !shortstr_ok(m->message_id, &wire) ||
        !shortstr_ok(m->correlation_id, &wire) || !shortstr_ok(m->type, &wire) ||
        !shortstr_ok(m->app_id, &wire) || !shortstr_ok(m->user_id, &wire))
        return err_set(e, ERR_INVALID,
                       "a property, the exchange or the routing key of message "
                       "\"%.64s\" is longer than 255 bytes",
                       m->message_id ? m->message_id : "");
    memset(p, 0, sizeof(*p));
    set_shortstr(p, AMQP_BASIC_CONTENT_TYPE_FLAG, &p->content_type, content_type);
    set_shortstr(p, AMQP_BASIC_MESSAGE_ID_FLAG, &p->message_id, m->message_id);
    set_shortstr(p, AMQP_BASIC_CORRELATION_ID_FLAG, &p->correlation_id, m->correlation_id);
    set_shortstr(p, AMQP_BASIC_TYPE_FLAG, &p->type, m->type);
    set_shortstr(p, AMQP_BASIC_APP_ID_FLAG, &p->app_id, m->app_id);
    set_shortstr(p, AMQP_BASIC_USER_ID_FLAG, &p->user_id, m->user_id);
    p->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    p->delivery_mode = AMQP_DELIVERY_PERSISTENT;
    p->timestamp = m->timestamp ? m->timestamp : (uint64_t)time(NULL);
    if (m->headers != NULL) {
        int rc = mq__table_from_json(m->headers, &c->scratch, &p->headers, &wire, e);
        if (rc != 0)
            return rc;
        if (p->headers.num_entries > 0)
            p->_flags |= AMQP_BASIC_HEADERS_FLAG;
    }
    /* The properties travel in one frame; rabbitmq-c would fail half-way through a publish
     * (after the method frame went out) if they did not fit, breaking the connection. */
    size_t frame_max = (size_t)amqp_get_frame_max(c->state);
    if (wire + 64 > frame_max)
        return err_set(e, ERR_INVALID,
                       "the headers of message \"%.64s\" need %zu bytes, more than frame_max %zu",
                       m->message_id ? m->message_id : "", wire, frame_max);
    return 0;
}

static void settle(batch_t *b, size_t k, int outcome)
{
    size_t i = b->slot_of[k];
    if (b->status[i] == SLOT_SENT) {
        b->status[i] = outcome;
        b->unsettled--;
    } else if (b->status[i] == SLOT_RETURNED) {
        b->status[i] = ERR_UNROUTABLE;
        b->unsettled--;
    }
}

/* Applies an ack (outcome 0) or nack (ERR_RETRY) for tag. Tags of earlier batches (possible
 * only after an abandoned batch) and beyond what was sent are ignored. */
static void on_confirm(batch_t *b, uint64_t tag, int multiple, int outcome)
{
    if (multiple && tag == 0)
        tag = b->base + b->sent;
    if (tag <= b->base || tag > b->base + b->sent)
        return;
    size_t k = (size_t)(tag - b->base - 1);
    if (!multiple) {
        settle(b, k, outcome);
        return;
    }
    for (size_t j = b->lo; j <= k; j++)
        settle(b, j, outcome);
    if (k + 1 > b->lo)
        b->lo = k + 1;
}

static int bytes_eq(amqp_bytes_t a, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    return a.len == len && (len == 0 || memcmp(a.bytes, s, len) == 0);
}

/* Marks the slot of a returned message: the first sent, unsettled, not yet returned slot with
 * the same message_id (or, for messages without one, the same exchange and routing key). */
static void on_return(batch_t *b, const amqp_basic_return_t *ret, const amqp_message_t *msg)
{
    const amqp_basic_properties_t *p = &msg->properties;
    int has_id = (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) && p->message_id.len > 0;
    for (size_t k = b->lo; k < b->sent; k++) {
        size_t i = b->slot_of[k];
        if (b->status[i] != SLOT_SENT)
            continue;
        const mq_message_t *m = &b->msgs[i];
        int match = has_id ? bytes_eq(p->message_id, m->message_id)
                           : (m->message_id == NULL || m->message_id[0] == '\0') &&
                                 bytes_eq(ret->exchange, m->exchange) &&
                                 bytes_eq(ret->routing_key, m->routing_key);
        if (match) {
            b->status[i] = SLOT_RETURNED;
            return;
        }
    }
    log_warn(NULL, "mq.return_unmatched",
             json_pack("{s:s,s:s#,s:s#}", "connection", b->c->name, "exchange",
                       ret->exchange.len ? (const char *)ret->exchange.bytes : "",
                       (int)ret->exchange.len, "routing_key",
                       ret->routing_key.len ? (const char *)ret->routing_key.bytes : "",
                       (int)ret->routing_key.len));
}

static int on_frame(batch_t *b, const amqp_frame_t *f, err_t *e)
{
    mq_conn_t *c = b->c;
    if (f->frame_type != AMQP_FRAME_METHOD || f->channel != c->channel)
        return mq__handle_frame(c, f, e);
    switch (f->payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *a = f->payload.method.decoded;
        on_confirm(b, a->delivery_tag, a->multiple, 0);
        return 0;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *n = f->payload.method.decoded;
        on_confirm(b, n->delivery_tag, n->multiple, ERR_RETRY);
        return 0;
    }
    case AMQP_BASIC_RETURN_METHOD: {
        const amqp_basic_return_t *ret = f->payload.method.decoded;
        amqp_message_t msg;
        amqp_rpc_reply_t r = amqp_read_message(c->state, c->channel, &msg, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            return mq__reply_error(c, r, c->channel, "reading a returned message", e);
        on_return(b, ret, &msg);
        amqp_destroy_message(&msg);
        return 0;
    }
    default:
        return mq__handle_frame(c, f, e);
    }
}

/* Reads and handles frames. With until_settled, until nothing is unsettled (0) or deadline_ms
 * passes (ERR_TIMEOUT; deadline_ms < 0: none); without, only what can be read without waiting. */
static int pump(batch_t *b, int until_settled, int64_t deadline_ms, err_t *e)
{
    mq_conn_t *c = b->c;
    while (!until_settled || b->unsettled > 0) {
        struct timeval tv = {0, 0};
        struct timeval *tvp = &tv;
        if (until_settled) {
            if (deadline_ms < 0) {
                tvp = NULL;
            } else {
                int64_t left = deadline_ms - mq__now_ms();
                if (left < 0)
                    left = 0;
                tv.tv_sec = (time_t)(left / 1000);
                tv.tv_usec = (long)((left % 1000) * 1000);
            }
        }
        amqp_frame_t f;
        int st = amqp_simple_wait_frame_noblock(c->state, &f, tvp);
        if (st == AMQP_STATUS_TIMEOUT) {
            if (!until_settled)
                return 0;
            return err_set(e, ERR_TIMEOUT, "%zu of %zu publishes not confirmed in time",
                           b->unsettled, b->sent);
        }
        if (st != AMQP_STATUS_OK)
            return mq__status_error(c, st, "waiting for publisher confirms", e);
        int rc = on_frame(b, &f, e);
        amqp_maybe_release_buffers_on_channel(c->state, f.channel);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Waits (reading frames) until the broker lifts connection.blocked or deadline_ms passes. */
static int wait_unblocked(batch_t *b, int64_t deadline_ms, err_t *e)
{
    mq_conn_t *c = b->c;
    while (c->blocked) {
        int64_t left = deadline_ms - mq__now_ms();
        if (left <= 0)
            return err_set(e, ERR_RETRY,
                           "the broker is blocking publishers (resource alarm); nothing sent");
        struct timeval tv = {.tv_sec = (time_t)(left / 1000),
                             .tv_usec = (long)((left % 1000) * 1000)};
        amqp_frame_t f;
        int st = amqp_simple_wait_frame_noblock(c->state, &f, &tv);
        if (st == AMQP_STATUS_TIMEOUT)
            continue;
        if (st != AMQP_STATUS_OK)
            return mq__status_error(c, st, "waiting for the broker to unblock", e);
        int rc = on_frame(b, &f, e);
        amqp_maybe_release_buffers_on_channel(c->state, f.channel);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The batch with an optional per-message error detail for mq_publish_one. */
static int publish(mq_conn_t *c, const mq_message_t *msgs, size_t n, int *status, int timeout_ms,
                   err_t *e, err_t *detail)
{
    int64_t deadline = timeout_ms > 0 ? mq__now_ms() + timeout_ms : -1;
    batch_t b = {.c = c, .msgs = msgs, .n = n, .status = status};
    int rc = 0;

    for (size_t i = 0; i < n; i++)
        status[i] = SLOT_UNSENT;
    if (fault_hit()) {
        mq__break(c);
        rc = err_set(e, ERR_RETRY, "injected publish failure (PETSTORE_FAULT_MQ_PUBLISH_FAIL_AT)");
        goto out;
    }
    if (!mq_ok(c)) {
        rc = err_set(e, ERR_RETRY, "the AMQP connection is broken; reconnect");
        goto out;
    }
    if (n == 0)
        return 0;
    if (!c->confirms && (rc = mq_confirm_select(c, e)) != 0)
        goto out;
    b.slot_of = malloc(n * sizeof(*b.slot_of));
    if (b.slot_of == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory publishing %zu messages", n);
        goto out;
    }
    amqp_maybe_release_buffers(c->state);
    if (c->blocked) {
        rc = wait_unblocked(&b, deadline >= 0 ? deadline : mq__now_ms() + BLOCKED_WAIT_MS, e);
        if (rc != 0)
            goto out;
    }

    b.base = c->published;
    for (size_t i = 0; i < n; i++) {
        const mq_message_t *m = &msgs[i];
        amqp_basic_properties_t props;
        err_t me;
        err_clear(&me);
        int brc = build_props(c, m, &props, &me);
        if (brc != 0) {
            recycle_amqp_pool(&c->scratch);
            if (brc != ERR_INVALID) {
                rc = err_set(e, brc, "%s", me.msg);
                goto out;
            }
            status[i] = ERR_INVALID;
            if (detail != NULL)
                *detail = me;
            log_warn(NULL, "mq.publish_invalid",
                     json_pack("{s:s,s:s?,s:s?,s:s}", "connection", c->name, "message_id",
                               m->message_id, "exchange", m->exchange, "error", me.msg));
            continue;
        }
        amqp_bytes_t body = {.len = m->body_len, .bytes = (void *)m->body};
        int st = amqp_basic_publish(
            c->state, c->channel, amqp_cstring_bytes(m->exchange ? m->exchange : ""),
            amqp_cstring_bytes(m->routing_key ? m->routing_key : ""), 1, 0, &props, body);
        recycle_amqp_pool(&c->scratch);
        if (st != AMQP_STATUS_OK) {
            rc = mq__status_error(c, st, "basic.publish", e);
            goto out;
        }
        status[i] = SLOT_SENT;
        b.slot_of[b.sent++] = i;
        b.unsettled++;
        c->published++;
        if (b.sent % DRAIN_EVERY == 0 && (rc = pump(&b, 0, 0, e)) != 0)
            goto out;
    }
    rc = pump(&b, 1, deadline, e);
    if (rc == ERR_TIMEOUT)
        mq__break(c); /* late confirms would be misread by the next batch */
out:
    for (size_t i = 0; i < n; i++)
        if (status[i] > 0)
            status[i] = rc != 0 ? rc : ERR_RETRY;
    free(b.slot_of);
    if (mq_ok(c))
        amqp_maybe_release_buffers(c->state);
    return rc;
}

int mq_publish_batch(mq_conn_t *c, const mq_message_t *msgs, size_t n, int *status, int timeout_ms,
                     err_t *e)
{
    if (n > 0 && (msgs == NULL || status == NULL))
        return err_set(e, ERR_INTERNAL, "mq_publish_batch: msgs and status are required");
    return publish(c, msgs, n, status, timeout_ms, e, NULL);
}

int mq_publish_one(mq_conn_t *c, const mq_message_t *m, int timeout_ms, err_t *e)
{
    int status = 0;
    err_t detail;
    err_clear(&detail);
    if (m == NULL)
        return err_set(e, ERR_INTERNAL, "mq_publish_one: no message");
    int rc = publish(c, m, 1, &status, timeout_ms, e, &detail);
    if (rc != 0)
        return rc;
    switch (status) {
    case 0:
        return 0;
    case ERR_UNROUTABLE:
        return err_set(e, ERR_UNROUTABLE,
                       "message \"%.64s\" to exchange \"%.64s\" with key \"%.64s\" was returned: "
                       "no queue is bound for it",
                       m->message_id ? m->message_id : "", m->exchange ? m->exchange : "",
                       m->routing_key ? m->routing_key : "");
    case ERR_INVALID:
        if (e != NULL)
            *e = detail;
        return ERR_INVALID;
    default:
        return err_set(e, status, "message \"%.64s\" was nacked by the broker",
                       m->message_id ? m->message_id : "");
    }
}

json_t *mq_headers_flat(const json_t *headers)
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
