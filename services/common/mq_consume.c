/* mq_consume: deliveries as caller-owned copies.
 *
 * amqp_consume_message() returns the next basic.deliver with its content. Any other frame makes
 * it answer AMQP_STATUS_UNEXPECTED_STATE after putting the frame back; mq_next then takes that
 * frame with amqp_simple_wait_frame() and deals with it: a close from the broker or a consumer
 * cancellation breaks the handle, a basic.return (someone published on this connection) is read
 * and dropped, and leftovers of closed channels are ignored. Heartbeats never surface: the
 * library answers them inside its read loop.
 *
 * A delivery is one allocation: the struct, its strings and the body, plus the headers object.
 * The frame memory rabbitmq-c used is released after each delivery has been copied. */
#include "mq_consume.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mq_internal.h"

int mq_consume_start(mq_conn_t *c, const char *queue, uint16_t prefetch, err_t *e)
{
    if (!mq_ok(c))
        return err_set(e, ERR_RETRY, "the AMQP connection is broken; reconnect");
    if (queue == NULL || strlen(queue) > 255)
        return err_set(e, ERR_INVALID, "queue name missing or longer than 255 bytes");
    if (c->confirms)
        return err_set(e, ERR_INTERNAL,
                       "consuming on a connection in confirm mode is not "
                       "supported; open a second connection to consume");
    if (c->consumer_tag != NULL)
        return err_set(e, ERR_INTERNAL, "this connection already consumes");
    char what[300];
    if (amqp_basic_qos(c->state, c->channel, 0, prefetch, 0) == NULL)
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), c->channel, "basic.qos", e);
    amqp_basic_consume_ok_t *ok =
        amqp_basic_consume(c->state, c->channel, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0,
                           0, amqp_empty_table);
    if (ok == NULL) {
        snprintf(what, sizeof(what), "consume queue \"%s\"", queue);
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), c->channel, what, e);
    }
    c->consumer_tag = malloc(ok->consumer_tag.len + 1);
    if (c->consumer_tag == NULL) {
        mq__break(c);
        return err_set(e, ERR_NOMEM, "out of memory starting a consumer");
    }
    memcpy(c->consumer_tag, ok->consumer_tag.bytes, ok->consumer_tag.len);
    c->consumer_tag[ok->consumer_tag.len] = '\0';
    amqp_maybe_release_buffers_on_channel(c->state, c->channel);
    return 0;
}

void mq_delivery_free(mq_delivery_t *d)
{
    if (d == NULL)
        return;
    json_decref(d->headers);
    free(d);
}

/* The value of an integer-kind field, or 0. */
static int64_t field_int(const amqp_field_value_t *v)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
        return v->value.i8;
    case AMQP_FIELD_KIND_U8:
        return v->value.u8;
    case AMQP_FIELD_KIND_I16:
        return v->value.i16;
    case AMQP_FIELD_KIND_U16:
        return v->value.u16;
    case AMQP_FIELD_KIND_I32:
        return v->value.i32;
    case AMQP_FIELD_KIND_U32:
        return v->value.u32;
    case AMQP_FIELD_KIND_I64:
        return v->value.i64;
    case AMQP_FIELD_KIND_U64:
        return v->value.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v->value.u64;
    default:
        return 0;
    }
}

static int64_t delivery_count(const amqp_table_t *t)
{
    static const char key[] = "x-delivery-count";
    for (int i = 0; i < t->num_entries; i++)
        if (t->entries[i].key.len == sizeof(key) - 1 &&
            memcmp(t->entries[i].key.bytes, key, sizeof(key) - 1) == 0)
            return field_int(&t->entries[i].value);
    return 0;
}

/* Copies src into the arena at *w and returns the copy; NULL when absent. */
static char *put(char **w, const amqp_bytes_t *src, int present)
{
    if (!present)
        return NULL;
    char *s = *w;
    if (src->len > 0)
        memcpy(s, src->bytes, src->len);
    s[src->len] = '\0';
    *w += src->len + 1;
    return s;
}

static int delivery_from_envelope(const amqp_envelope_t *env, mq_delivery_t **out, err_t *e)
{
    const amqp_basic_properties_t *p = &env->message.properties;
    amqp_flags_t fl = p->_flags;
    const amqp_bytes_t *body = &env->message.body;
#define LEN(flag, field) ((fl & (flag)) ? (field).len + 1 : 0)
    size_t size = sizeof(mq_delivery_t) + env->exchange.len + 1 + env->routing_key.len + 1 +
                  LEN(AMQP_BASIC_MESSAGE_ID_FLAG, p->message_id) +
                  LEN(AMQP_BASIC_CORRELATION_ID_FLAG, p->correlation_id) +
                  LEN(AMQP_BASIC_TYPE_FLAG, p->type) + LEN(AMQP_BASIC_APP_ID_FLAG, p->app_id) +
                  LEN(AMQP_BASIC_USER_ID_FLAG, p->user_id) +
                  LEN(AMQP_BASIC_CONTENT_TYPE_FLAG, p->content_type) + body->len + 1;
#undef LEN
    mq_delivery_t *d = malloc(size);
    if (d == NULL)
        return err_set(e, ERR_NOMEM, "out of memory receiving a %zu-byte message", body->len);
    memset(d, 0, sizeof(*d));
    char *w = (char *)(d + 1);
    d->delivery_tag = env->delivery_tag;
    d->redelivered = env->redelivered != 0;
    d->exchange = put(&w, &env->exchange, 1);
    d->routing_key = put(&w, &env->routing_key, 1);
    d->message_id = put(&w, &p->message_id, (fl & AMQP_BASIC_MESSAGE_ID_FLAG) != 0);
    d->correlation_id = put(&w, &p->correlation_id, (fl & AMQP_BASIC_CORRELATION_ID_FLAG) != 0);
    d->type = put(&w, &p->type, (fl & AMQP_BASIC_TYPE_FLAG) != 0);
    d->app_id = put(&w, &p->app_id, (fl & AMQP_BASIC_APP_ID_FLAG) != 0);
    d->user_id = put(&w, &p->user_id, (fl & AMQP_BASIC_USER_ID_FLAG) != 0);
    d->content_type = put(&w, &p->content_type, (fl & AMQP_BASIC_CONTENT_TYPE_FLAG) != 0);
    d->body = put(&w, body, 1);
    d->body_len = body->len;
    d->timestamp = (fl & AMQP_BASIC_TIMESTAMP_FLAG) ? p->timestamp : 0;
    int rc;
    if (fl & AMQP_BASIC_HEADERS_FLAG) {
        rc = mq__table_to_json(&p->headers, &d->headers, e);
        d->delivery_count = delivery_count(&p->headers);
    } else {
        d->headers = json_object();
        rc = d->headers ? 0 : err_set(e, ERR_NOMEM, "out of memory receiving a message");
    }
    if (rc != 0) {
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

/* A frame that is not a delivery arrived while consuming. Returns non-zero when it broke the
 * handle. */
static int on_other_frame(mq_conn_t *c, const amqp_frame_t *f, err_t *e)
{
    if (f->frame_type == AMQP_FRAME_METHOD && f->channel == c->channel &&
        f->payload.method.id == AMQP_BASIC_RETURN_METHOD) {
        /* Only possible if someone published on this consuming connection: drop the content. */
        amqp_message_t msg;
        amqp_rpc_reply_t r = amqp_read_message(c->state, c->channel, &msg, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            return mq__reply_error(c, r, c->channel, "reading a returned message", e);
        amqp_destroy_message(&msg);
        log_warn(NULL, "mq.return_on_consumer", json_pack("{s:s}", "connection", c->name));
        return 0;
    }
    return mq__handle_frame(c, f, e);
}

int mq_next(mq_conn_t *c, int timeout_ms, mq_delivery_t **out, err_t *e)
{
    if (!mq_ok(c))
        return err_set(e, ERR_RETRY, "the AMQP connection is broken; reconnect");
    if (c->consumer_tag == NULL)
        return err_set(e, ERR_INTERNAL, "mq_next: call mq_consume_start first");
    int64_t deadline = timeout_ms >= 0 ? mq__now_ms() + timeout_ms : -1;

    /* Nothing handed out earlier points into the library's frame pools any more. */
    amqp_maybe_release_buffers(c->state);
    for (;;) {
        struct timeval tv = {0, 0};
        struct timeval *tvp = &tv;
        if (deadline < 0) {
            tvp = NULL;
        } else {
            int64_t left = deadline - mq__now_ms();
            if (left > 0) {
                tv.tv_sec = (time_t)(left / 1000);
                tv.tv_usec = (long)((left % 1000) * 1000);
            }
        }
        amqp_envelope_t env;
        amqp_rpc_reply_t r = amqp_consume_message(c->state, &env, tvp, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            int rc = 0;
            if (env.channel == c->channel) {
                rc = delivery_from_envelope(&env, out, e);
                if (rc != 0)
                    mq__break(c); /* the delivery stays unacked: let the reconnect return it */
            }
            int stale = env.channel != c->channel;
            amqp_destroy_envelope(&env);
            amqp_maybe_release_buffers_on_channel(c->state, c->channel);
            if (stale)
                continue;
            return rc;
        }
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_TIMEOUT)
            return err_set(e, ERR_TIMEOUT, "no delivery within %d ms", timeout_ms);
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            amqp_frame_t f;
            int st = amqp_simple_wait_frame(c->state, &f);
            if (st != AMQP_STATUS_OK)
                return mq__status_error(c, st, "consume", e);
            int rc = on_other_frame(c, &f, e);
            amqp_maybe_release_buffers_on_channel(c->state, f.channel);
            if (rc != 0)
                return rc;
            if (!mq_ok(c))
                return err_set(e, ERR_RETRY, "the AMQP connection broke while consuming");
            continue;
        }
        /* A socket error, or the broker closed the channel while the content was read. */
        return mq__reply_error(c, r, c->channel, "consume", e);
    }
}

int mq_get(mq_conn_t *c, const char *queue, mq_delivery_t **out, uint32_t *remaining, err_t *e)
{
    if (!mq_ok(c))
        return err_set(e, ERR_RETRY, "the AMQP connection is broken; reconnect");
    if (c->consumer_tag != NULL || c->confirms)
        return err_set(e, ERR_INTERNAL, "mq_get: not on a handle that consumes or publishes");
    amqp_maybe_release_buffers(c->state);
    amqp_rpc_reply_t r = amqp_basic_get(c->state, c->channel, amqp_cstring_bytes(queue), 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        return mq__reply_error(c, r, c->channel, "basic.get", e);
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) {
        if (remaining != NULL)
            *remaining = 0;
        return err_set(e, ERR_NOTFOUND, "queue %s has no ready message", queue);
    }
    const amqp_basic_get_ok_t *ok = r.reply.decoded;
    amqp_envelope_t env;
    memset(&env, 0, sizeof(env));
    env.channel = c->channel;
    env.delivery_tag = ok->delivery_tag;
    env.redelivered = ok->redelivered;
    env.exchange = ok->exchange;
    env.routing_key = ok->routing_key;
    if (remaining != NULL)
        *remaining = ok->message_count;
    r = amqp_read_message(c->state, c->channel, &env.message, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        return mq__reply_error(c, r, c->channel, "reading a basic.get message", e);
    int rc = delivery_from_envelope(&env, out, e);
    amqp_destroy_message(&env.message);
    amqp_maybe_release_buffers_on_channel(c->state, c->channel);
    if (rc != 0)
        mq__break(c); /* the message stays unacked: closing the connection returns it */
    return rc;
}

static int settle_check(mq_conn_t *c, const char *what, err_t *e)
{
    if (!mq_ok(c))
        return err_set(e, ERR_RETRY,
                       "cannot %s: the AMQP connection is broken and its delivery tags are void",
                       what);
    return 0;
}

int mq_ack(mq_conn_t *c, uint64_t tag, int multiple, err_t *e)
{
    int rc = settle_check(c, "ack", e);
    if (rc != 0)
        return rc;
    int st = amqp_basic_ack(c->state, c->channel, tag, multiple != 0);
    return st == AMQP_STATUS_OK ? 0 : mq__status_error(c, st, "basic.ack", e);
}

int mq_nack(mq_conn_t *c, uint64_t tag, int multiple, int requeue, err_t *e)
{
    int rc = settle_check(c, "nack", e);
    if (rc != 0)
        return rc;
    int st = amqp_basic_nack(c->state, c->channel, tag, multiple != 0, requeue != 0);
    return st == AMQP_STATUS_OK ? 0 : mq__status_error(c, st, "basic.nack", e);
}

int mq_reject(mq_conn_t *c, uint64_t tag, int requeue, err_t *e)
{
    int rc = settle_check(c, "reject", e);
    if (rc != 0)
        return rc;
    int st = amqp_basic_reject(c->state, c->channel, tag, requeue != 0);
    return st == AMQP_STATUS_OK ? 0 : mq__status_error(c, st, "basic.reject", e);
}
