/* mq_consume: consuming with manual acknowledgements and a prefetch window.
 *
 * mq_consume_start() sets basic.qos and starts one consumer on the working channel (no_ack=0).
 * mq_next() hands out deliveries one at a time as caller-owned copies; call it with timeout 0
 * to drain what has already arrived without blocking, which is how a consumer builds a batch.
 * Acknowledge with mq_ack (multiple=1 acknowledges every earlier delivery too, the cheap way to
 * settle a batch), or give messages back with mq_nack / mq_reject.
 *
 * Delivery tags belong to the channel: after the handle breaks, or after mq_channel_reopen(), the
 * unacknowledged deliveries go back to the queue by themselves and their tags must be dropped,
 * never acknowledged on the new channel.
 *
 * A consuming connection must not publish with confirms (mq_publish.h): the confirm frames and
 * the deliveries would interleave on one socket. Daemons open a second connection for
 * dead-letter publishing.
 *
 * Threading: as mq.h. */
#ifndef PETSTORE_MQ_CONSUME_H
#define PETSTORE_MQ_CONSUME_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mq.h"

/* A received message, owned by the caller and freed with mq_delivery_free(). Strings are
 * NUL-terminated copies, NULL when the property was absent. */
typedef struct mq_delivery {
    uint64_t delivery_tag;
    int redelivered; /* the broker delivered it before (to anyone) */
    char *exchange;  /* "" for the default exchange */
    char *routing_key;
    char *message_id;
    char *correlation_id;
    char *type;
    char *app_id;  /* who the publisher says it is: not checked by anyone */
    char *user_id; /* the publisher's broker login: RabbitMQ refuses a publish whose user_id
                      differs from it, so a present user_id can be trusted */
    char *content_type;
    uint64_t timestamp; /* seconds since the epoch; 0 when absent */
    /* Never NULL: an object holding the AMQP headers table (empty when there were none).
     * Strings (including byte strings) become JSON strings, with bytes that are not valid UTF-8
     * replaced by '?'; every integer kind becomes an integer (an unsigned value above INT64_MAX
     * becomes a real), timestamps become integer seconds, floats and decimals reals, void null,
     * and nested tables and arrays (the broker's x-death, for example) objects and arrays. */
    json_t *headers;
    char *body; /* body_len bytes, followed by a NUL that is not counted */
    size_t body_len;
    /* The x-delivery-count header that quorum queues add on redelivery: how many times the
     * message was returned to the queue before; 0 on the first delivery and for other queues. */
    int64_t delivery_count;
} mq_delivery_t;

/* Sets the prefetch window (basic.qos prefetch_count; 0 means unlimited) and starts consuming
 * queue with manual acknowledgements. Once per handle; refuses (ERR_INTERNAL) on a handle in
 * confirm mode. Errors: ERR_CONFIG when the queue does not exist or is not ours to read (the
 * handle is then broken), ERR_RETRY on connection loss. */
int mq_consume_start(mq_conn_t *c, const char *queue, uint16_t prefetch,
                     err_t *e) PETSTORE_NODISCARD;

/* Waits up to timeout_ms for the next delivery (0: take one only if it has already arrived,
 * without blocking; negative: wait without a deadline). Returns 0 and a new delivery in *out
 * (caller frees), ERR_TIMEOUT when none came in time (not an error: the handle stays usable), or
 * ERR_RETRY when the connection or channel was lost or the broker cancelled the consumer (for
 * example because the queue was deleted); ERR_CONFIG when the broker closed the channel with a
 * topology or permission error (e.g. 406 for an unknown delivery tag). After an error the handle
 * is broken. Messages are never lost by a failed call: what was not handed out stays in the
 * queue. */
int mq_next(mq_conn_t *c, int timeout_ms, mq_delivery_t **out, err_t *e) PETSTORE_NODISCARD;

/* Takes the next ready message of queue with basic.get (manual acknowledgement), for tools that
 * walk a queue one message at a time instead of consuming it. Returns 0 and a new delivery in
 * *out (settle it with mq_ack / mq_nack / mq_reject like a consumed one; until then it is
 * checked out to this channel and other consumers do not see it), ERR_NOTFOUND when the queue
 * has no ready message (not an error: the handle stays usable), ERR_CONFIG when the queue does
 * not exist or is not ours to read, ERR_RETRY on connection loss. Not on a handle that consumes
 * or publishes with confirms. *remaining (may be NULL) receives the broker's count of ready
 * messages left after this one. */
int mq_get(mq_conn_t *c, const char *queue, mq_delivery_t **out, uint32_t *remaining,
           err_t *e) PETSTORE_NODISCARD;

/* Frees a delivery. Accepts NULL. */
void mq_delivery_free(mq_delivery_t *d);

/* Acknowledges delivery tag (and every earlier one when multiple is non-zero). Asynchronous: the
 * broker does not answer, an error shows up in a later call. ERR_RETRY when the handle is broken
 * or the write failed. */
int mq_ack(mq_conn_t *c, uint64_t tag, int multiple, err_t *e) PETSTORE_NODISCARD;

/* Negatively acknowledges tag (and earlier ones when multiple): requeue non-zero puts the
 * messages back in the queue (a quorum queue then counts a delivery attempt), zero drops or
 * dead-letters them according to the queue's policy. Asynchronous, as mq_ack. */
int mq_nack(mq_conn_t *c, uint64_t tag, int multiple, int requeue, err_t *e) PETSTORE_NODISCARD;

/* Rejects one delivery; requeue as mq_nack. Asynchronous, as mq_ack. */
int mq_reject(mq_conn_t *c, uint64_t tag, int requeue, err_t *e) PETSTORE_NODISCARD;

#endif
