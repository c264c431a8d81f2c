/* outbox: the writer side of the transactional outbox.
 *
 * A service writes its business rows and its outgoing messages in ONE transaction by calling
 * outbox_enqueue() inside it; the message exists for the rest of the world only once that
 * transaction commits (a rollback takes it away with the business rows). The relay
 * (outbox/relay.c) then publishes it. Threading: as db.h.
 *
 * The row contract (table `outbox`, runtime migrations 001 and 003, in every service database):
 *   id            bigserial, taken at INSERT time (not commit time). For a row with a
 *                 correlation id the insert trigger (migration 003) first takes
 *                 pg_advisory_xact_lock(OUTBOX_ORDER_LOCK_NAMESPACE, hashtext(correlation_id))
 *                 and then draws the id, so the ids of one order follow the commit order of
 *                 the transactions that wrote them (a second writer of the order waits until
 *                 the first has committed; outbox/relay.c has the argument)
 *   txid          xid8 of the writing transaction (default pg_current_xact_id()); kept for
 *                 diagnosis, no longer used by the relay
 *   partition     smallint 0..OUTBOX_PARTITIONS-1 = outbox_partition(correlation_id), or of
 *                 message_id when there is no correlation id: one order's messages share a
 *                 partition
 *   exchange, routing_key   where to publish (both required)
 *   message_id    uuid, UNIQUE: the AMQP message_id; enqueueing one id twice is ERR_DUPLICATE
 *   type, correlation_id, causation_id, traceparent, app_id   AMQP properties / headers
 *                 (NULL when absent)
 *   headers       jsonb object of extra AMQP headers ('{}' when none)
 *   body          text: the JSON payload, published byte for byte
 *   created_at    now() of the writing transaction: the AMQP timestamp
 *   available_at  not before this time (the relay pushes it back after a failed publish)
 *   attempts, last_error   the relay's retry bookkeeping (0 / NULL when written)
 *   parked_at     NULL; set by the relay when it gave up on the row (outbox/relay.h tells an
 *                 operator how to see, re-drive or discard parked rows)
 *   sent_at       NULL until the broker confirmed the publish; sent rows are kept for
 *                 retention (index outbox_sent_at), then deleted by the relay
 * Writers only INSERT; only the relay (and an operator, for parked rows) UPDATEs and DELETEs.
 * Marking a row sent cannot be a HOT update in PostgreSQL 15 (sent_at is in the predicate of
 * outbox_unsent and the key of outbox_sent_at), so every mark adds index entries; fillfactor 80
 * still keeps the new row version on its page, so the heap does not grow with the marks and
 * the retention sweep frees whole pages.
 *
 * For the relay: claim with one statement inside a transaction that
 *   1. takes pg_try_advisory_xact_lock(OUTBOX_LOCK_NAMESPACE, p) for at most its share of the
 *      partitions p (one relay per partition at a time keeps one order's messages in order
 *      across relays; relays count each other by session locks in OUTBOX_SLOT_NAMESPACE);
 *   2. selects `sent_at IS NULL AND parked_at IS NULL AND available_at <= now() AND partition
 *      IN (held)` in id order, LIMIT batch, FOR UPDATE SKIP LOCKED (index outbox_unsent, on id
 *      over the unsent rows only, hands them over in that order whatever the backlog and
 *      however many sent rows are kept: migration 004), leaving out every row behind an
 *      earlier unsent row of its correlation id that is in backoff or parked (index
 *      outbox_failed);
 * then publishes with publisher confirms, sets sent_at = now() on the confirmed ids in the same
 * transaction and commits (a crash before the commit republishes: consumers dedupe by
 * message_id). LISTEN on channel OUTBOX_CHANNEL wakes it; poll as well, since a notification
 * can be lost while reconnecting. */
#ifndef PETSTORE_OUTBOX_H
#define PETSTORE_OUTBOX_H

#include <jansson.h>
#include <stddef.h>

#include "db.h"

#define OUTBOX_PARTITIONS 16
#define OUTBOX_CHANNEL "outbox"
/* Relays lock a partition with pg_try_advisory_xact_lock(OUTBOX_LOCK_NAMESPACE, partition). */
#define OUTBOX_LOCK_NAMESPACE 7301
/* Each live relay holds pg_try_advisory_lock(OUTBOX_SLOT_NAMESPACE, slot) for its session. */
#define OUTBOX_SLOT_NAMESPACE 7302
/* The insert trigger takes pg_advisory_xact_lock(OUTBOX_ORDER_LOCK_NAMESPACE,
 * hashtext(correlation_id)); migration 003 spells the number out. */
#define OUTBOX_ORDER_LOCK_NAMESPACE 7303

/* Everything is borrowed for the duration of the call. */
typedef struct outbox_msg {
    const char *exchange;       /* required */
    const char *routing_key;    /* required */
    const char *message_id;     /* required, a UUID */
    const char *type;           /* e.g. "payment.charge.v1", or NULL */
    const char *correlation_id; /* the order id, or NULL */
    const char *causation_id;   /* the message that caused this one, or NULL */
    const char *traceparent;    /* W3C, or NULL */
    const char *app_id;         /* the writing service, or NULL */
    const json_t *headers;      /* a JSON object of AMQP headers, or NULL */
    const char *body;           /* the payload: body_len bytes of UTF-8, no NUL */
    size_t body_len;
} outbox_msg_t;

/* Inserts one message inside the caller's transaction, in one round trip; the table's trigger
 * queues a NOTIFY on OUTBOX_CHANNEL (delivered at commit, folded into one per transaction).
 * ERR_INVALID for a missing field, headers that are not an object or a body PostgreSQL cannot
 * store; ERR_DUPLICATE when message_id is already in the table; the db.h codes otherwise. With a
 * correlation id it waits until any other open transaction that wrote a message of the same
 * order ends (the insert trigger's lock, held to the end of the caller's transaction); two
 * transactions that take two orders' locks in opposite orders deadlock, and PostgreSQL fails
 * one of them with 40P01, which is ERR_RETRY: run the transaction again. */
int outbox_enqueue(db_conn_t *db, const outbox_msg_t *m, err_t *e) PETSTORE_NODISCARD;

/* Inserts msgs[0..n) in ONE statement inside the caller's transaction, in the order given (their
 * ids follow it); the same contract as outbox_enqueue, for all of them or none: a message refused
 * before the database (ERR_INVALID) or by it (ERR_DUPLICATE, ...) writes none. n == 0 writes
 * nothing; n == 1 is outbox_enqueue. */
int outbox_enqueue_many(db_conn_t *db, const outbox_msg_t *msgs, size_t n,
                        err_t *e) PETSTORE_NODISCARD;

/* The partition of a key: 32-bit FNV-1a (offset basis 2166136261, prime 16777619) over the
 * key's bytes as written (so use one spelling: the canonical lower-case uuid), modulo
 * OUTBOX_PARTITIONS. Part of the row contract: stable across processes, hosts and versions.
 * NULL: 0. */
int outbox_partition(const char *key);

#endif
