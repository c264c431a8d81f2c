/* mq_publish: persistent, mandatory publishing with pipelined publisher confirms.
 *
 * Every message is published with mandatory=1 and delivery_mode=2 (persistent). The channel is
 * put in confirm mode once (mq_confirm_select) and the broker then acknowledges every publish by
 * its sequence number on the channel. mq_publish_batch writes a whole batch without waiting,
 * then reads the confirms once, so a batch costs one round trip instead of one per message.
 *
 * Outcomes per message:
 *   0              the broker confirmed it: it is routed to at least one queue and, for durable
 *                  queues, safely stored;
 *   ERR_UNROUTABLE the broker returned it (basic.return, no queue bound for its routing key);
 *   ERR_RETRY      the broker nacked it, or it was never sent (the broker blocked publishing);
 *   ERR_INVALID    it cannot be encoded (see mq_message_t) and was not sent; it never will be.
 * A returned message is matched to its slot by message_id, so give every message a distinct
 * message_id (messages without one are matched by exchange and routing key, in order).
 *
 * When the call itself fails (the connection broke, the channel was closed by the broker, or the
 * deadline passed) the handle is broken: every message not yet confirmed must be treated as not
 * published, and the caller reconnects. Publishing is at-least-once: a message whose confirm was
 * lost may already be in its queue, so consumers deduplicate by message_id.
 *
 * Fault injection for tests: when the environment variable PETSTORE_FAULT_MQ_PUBLISH_FAIL_AT=N
 * is set (read once per process), the Nth call of mq_publish_batch or mq_publish_one in the
 * process publishes nothing, marks its handle broken and fails with ERR_RETRY, as if the
 * connection had dropped.
 *
 * Threading: as mq.h; never publish on a connection that consumes. */
#ifndef PETSTORE_MQ_PUBLISH_H
#define PETSTORE_MQ_PUBLISH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mq.h"

/* One message to publish. Every pointer is borrowed for the duration of the call only. Strings
 * other than the body are NUL-terminated and at most 255 bytes; NULL or "" leaves the property
 * out (exchange NULL is the default exchange ""). */
typedef struct mq_message {
    const char *exchange;
    const char *routing_key;
    const char *message_id;
    const char *correlation_id;
    const char *type;
    const char *app_id;
    /* The AMQP user_id property. RabbitMQ refuses a publish whose user_id is not the
     * connection's login (the channel is closed with 406 PRECONDITION_FAILED, ERR_CONFIG), so
     * a consumer may trust it as the sender: pass mq_login() of the publishing connection. */
    const char *user_id;
    const char *content_type; /* NULL: "application/json" */
    uint64_t timestamp;       /* seconds since the epoch; 0: now */
    /* An object whose members become the AMQP headers table: strings as long strings, integers
     * as signed 64-bit, booleans, reals as doubles, null as void. Nested objects and arrays
     * cannot be published (ERR_INVALID for that message): flatten them first, e.g. drop the
     * broker's x-death array when re-publishing a consumed message. NULL: no headers. */
    const json_t *headers;
    const void *body; /* body_len bytes, any content; may be NULL when body_len is 0 */
    size_t body_len;
} mq_message_t;

/* Switches the working channel to confirm mode. Idempotent; mq_publish_batch calls it on first
 * use if the caller has not. Refuses (ERR_INTERNAL) on a connection that consumes. */
int mq_confirm_select(mq_conn_t *c, err_t *e) PETSTORE_NODISCARD;

/* Publishes msgs[0..n) in order, then waits until every one has an outcome or timeout_ms has
 * passed since the call began (timeout_ms <= 0 waits without a deadline; heartbeats still
 * detect a dead connection). status must have room for n entries and receives each message's
 * outcome (see above). Returns 0 when every message has an outcome, even if some were returned
 * or nacked. Otherwise returns ERR_TIMEOUT (deadline passed), ERR_RETRY (connection lost),
 * ERR_CONFIG (the broker closed the channel, e.g. 404 for a missing exchange, with its reply
 * text) or ERR_INTERNAL (misuse); then status holds 0 for the messages confirmed before the
 * failure, ERR_INVALID for those that could not be encoded and the error code for the rest, and
 * the handle is broken (except when the broker was blocking publishers: ERR_RETRY, nothing
 * sent, handle still usable). n may be 0. */
int mq_publish_batch(mq_conn_t *c, const mq_message_t *msgs, size_t n, int *status, int timeout_ms,
                     err_t *e) PETSTORE_NODISCARD;

/* Publishes one message and waits for its confirm. Returns its outcome (0, ERR_UNROUTABLE,
 * ERR_RETRY, ERR_INVALID) or the call's error as mq_publish_batch. */
int mq_publish_one(mq_conn_t *c, const mq_message_t *m, int timeout_ms,
                   err_t *e) PETSTORE_NODISCARD;

/* A consumed message's headers made publishable again (new reference; NULL only when out of
 * memory): every nested value (the broker's x-death table from an earlier dead-lettering, say)
 * is folded into a JSON string under the key "x-petstore-previous-<key>", everything else is
 * kept as it is. */
json_t *mq_headers_flat(const json_t *headers);

#endif
