/* mq_error: mapping of rabbitmq-c failures and broker closes to the err.h vocabulary, and the
 * handle's state after them (see mq.h for the classes).
 *
 * rabbitmq-c does not answer a broker's channel.close or connection.close for us. So every place
 * that reads frames (mq.c, mq_publish.c, mq_consume.c) hands a failed reply to mq__reply_error
 * and an unexpected frame to mq__handle_frame, which answer the close with its close-ok at once
 * and record what is left usable: a closed side channel is merely forgotten, a closed working
 * channel or a lost socket makes the handle broken (mq_ok false). */
#include <string.h>

#include "log.h"
#include "mq_internal.h"

int mq__reply_code_class(int reply_code)
{
    switch (reply_code) {
    case AMQP_INVALID_PATH:
    case AMQP_ACCESS_REFUSED:
    case AMQP_NOT_FOUND:
    case AMQP_PRECONDITION_FAILED:
    case AMQP_NOT_ALLOWED:
        return ERR_CONFIG;
    default:
        return ERR_RETRY;
    }
}

void mq__break(mq_conn_t *c)
{
    if (c != NULL)
        c->usable = 0;
}

/* The socket is gone or in an unknown state: no graceful close is possible any more. */
static void socket_lost(mq_conn_t *c)
{
    c->usable = 0;
    c->ch_ok = 0;
    c->sock_ok = 0;
    c->side = 0;
}

int mq__status_error(mq_conn_t *c, int status, const char *what, err_t *e)
{
    int code;
    switch (status) {
    case AMQP_STATUS_TIMEOUT:
        code = ERR_TIMEOUT;
        break;
    case AMQP_STATUS_NO_MEMORY:
        code = ERR_NOMEM;
        break;
    case AMQP_STATUS_BROKER_UNSUPPORTED_SASL_METHOD:
    case AMQP_STATUS_INCOMPATIBLE_AMQP_VERSION:
        code = ERR_CONFIG;
        break;
    default:
        code = ERR_RETRY;
        break;
    }
    if (c != NULL)
        socket_lost(c);
    return err_set(e, code, "%s: %s", what, amqp_error_string2(status));
}

static void send_channel_close_ok(mq_conn_t *c, amqp_channel_t ch)
{
    amqp_channel_close_ok_t ok = {0};
    if (amqp_send_method(c->state, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK)
        socket_lost(c);
}

/* Answers connection.close; the broker then closes the socket. */
static void connection_closed(mq_conn_t *c)
{
    amqp_connection_close_ok_t ok = {0};
    (void)amqp_send_method(c->state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    socket_lost(c);
}

/* The bytes of an AMQP string for "%.*s": never NULL, even when empty. */
static const char *text(amqp_bytes_t b)
{
    return b.len > 0 && b.bytes != NULL ? (const char *)b.bytes : "";
}

static const char *method_name(uint16_t class_id, uint16_t method_id)
{
    if (class_id == 0)
        return "-";
    const char *n = amqp_method_name(((amqp_method_number_t)class_id << 16) | method_id);
    return n != NULL ? n : "?";
}

/* Handles a channel.close or connection.close method (already received) and returns the
 * mapped error. */
static int close_method_error(mq_conn_t *c, const amqp_method_t *m, amqp_channel_t ch,
                              const char *what, err_t *e)
{
    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *cl = m->decoded;
        int code = mq__reply_code_class(cl->reply_code);
        int rc = err_set(e, code, "%s: connection closed by the broker: %u %.*s (%s)", what,
                         cl->reply_code, (int)cl->reply_text.len, text(cl->reply_text),
                         method_name(cl->class_id, cl->method_id));
        connection_closed(c);
        return rc;
    }
    const amqp_channel_close_t *cl = m->decoded;
    int code = mq__reply_code_class(cl->reply_code);
    int rc = err_set(e, code, "%s: channel closed by the broker: %u %.*s (%s)", what,
                     cl->reply_code, (int)cl->reply_text.len, text(cl->reply_text),
                     method_name(cl->class_id, cl->method_id));
    if (ch != 0 && ch == c->side) {
        c->side = 0;
    } else if (ch == c->channel) {
        c->ch_ok = 0;
        c->usable = 0;
    }
    send_channel_close_ok(c, ch);
    return rc;
}

int mq__reply_error(mq_conn_t *c, amqp_rpc_reply_t r, amqp_channel_t ch, const char *what, err_t *e)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return mq__status_error(c, r.library_error, what, e);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD || r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
            return close_method_error(c, &r.reply, ch, what, e);
        mq__break(c);
        return err_set(e, ERR_INTERNAL, "%s: unexpected reply %s", what,
                       amqp_method_name(r.reply.id) ? amqp_method_name(r.reply.id) : "?");
    case AMQP_RESPONSE_NONE:
    default:
        mq__break(c);
        return err_set(e, ERR_INTERNAL, "%s: rabbitmq-c returned no reply", what);
    }
}

int mq__handle_frame(mq_conn_t *c, const amqp_frame_t *f, err_t *e)
{
    if (f->frame_type != AMQP_FRAME_METHOD)
        return 0;
    const amqp_method_t *m = &f->payload.method;
    if (f->channel == 0) {
        switch (m->id) {
        case AMQP_CONNECTION_CLOSE_METHOD:
            return close_method_error(c, m, 0, "connection", e);
        case AMQP_CONNECTION_BLOCKED_METHOD: {
            const amqp_connection_blocked_t *b = m->decoded;
            c->blocked = 1;
            log_warn(NULL, "mq.blocked",
                     json_pack("{s:s,s:s#}", "connection", c->name, "reason", text(b->reason),
                               (int)b->reason.len));
            return 0;
        }
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            c->blocked = 0;
            log_info(NULL, "mq.unblocked", json_pack("{s:s}", "connection", c->name));
            return 0;
        default:
            return 0;
        }
    }
    if (f->channel == c->channel) {
        switch (m->id) {
        case AMQP_CHANNEL_CLOSE_METHOD:
            return close_method_error(c, m, f->channel, "channel", e);
        case AMQP_BASIC_CANCEL_METHOD:
            c->usable = 0;
            log_warn(
                NULL, "mq.consumer_cancelled",
                json_pack("{s:s,s:s?}", "connection", c->name, "consumer_tag", c->consumer_tag));
            return err_set(e, ERR_RETRY,
                           "the broker cancelled the consumer (queue deleted or unavailable)");
        default:
            return 0;
        }
    }
    if (f->channel == c->side && m->id == AMQP_CHANNEL_CLOSE_METHOD) {
        err_t ignored;
        (void)close_method_error(c, m, f->channel, "side channel", &ignored);
    }
    return 0;
}
