/* outbox: the writer side of the transactional outbox.
 *
 * A service writes its business rows and its outgoing messages in ONE transaction by calling
 * outbox_enqueue() inside it; the message exists for the rest of the world only once that
 * transaction commits. The relay (outbox/relay.c) then publishes it.
 *
 * The row contract (table `outbox`, created by the runtime migrations in every service database):
 *   id            bigserial: commit-independent insertion order
 *   txid          xid8, the writing transaction: the relay publishes a row only once every older
 *                 transaction has finished (snapshot fence), so rows are never overtaken
 *   partition     0..OUTBOX_PARTITIONS-1 = outbox_partition(correlation id, else message id):
 *                 one order's messages share a partition, and one relay at a time owns a
 *                 partition, so they leave in commit order
 *   exchange, routing_key, message_id (unique), type, correlation_id, causation_id,
 *   traceparent, app_id, headers (jsonb object: AMQP headers), body (the JSON payload)
 *                 published exactly as written
 *   created_at    becomes the AMQP timestamp
 *   available_at, attempts, last_error: retry bookkeeping of the relay
 *   sent_at       set when the broker confirmed the publish; NULL = still to publish
 * The same statement NOTIFYs channel `outbox`; PostgreSQL delivers it at commit and folds
 * repeated notifications of one transaction into one. */
#ifndef PETSTORE_OUTBOX_H
#define PETSTORE_OUTBOX_H

#include <jansson.h>
#include <stddef.h>

#include "db.h"

#define OUTBOX_PARTITIONS 16

typedef struct outbox_msg {
    const char *exchange;
    const char *routing_key;
    const char *message_id;     /* a UUID */
    const char *type;           /* e.g. "payment.charge.v1" */
    const char *correlation_id; /* the order id, or NULL */
    const char *causation_id;   /* the message that caused this one, or NULL */
    const char *traceparent;    /* W3C, or NULL */
    const char *app_id;         /* the writing service */
    const json_t *headers;      /* borrowed object of AMQP headers, or NULL */
    const char *body;           /* the payload */
    size_t body_len;
} outbox_msg_t;

/* Inserts one message inside the caller's transaction (one round trip, with the NOTIFY). */
int outbox_enqueue(db_conn_t *db, const outbox_msg_t *m, err_t *e) PETSTORE_NODISCARD;

/* FNV-1a of key, modulo OUTBOX_PARTITIONS. Stable across processes and versions. */
int outbox_partition(const char *key);

#endif
