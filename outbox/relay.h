/* relay: moves committed outbox rows to RabbitMQ, at least once, in commit order per order.
 *
 * One cycle claims a batch and publishes it in ONE database transaction:
 *   1. lock at most its share of the 16 outbox partitions (pg_try_advisory_xact_lock; the
 *      share is ceil(16 / the relays live on this database), see relay.c); rows of one order
 *      always share a partition, so whichever relay holds a partition is the only one
 *      publishing that order's messages, and several relays on one database split the work;
 *   2. claim up to RELAY_BATCH_SIZE unsent, unparked rows of the held partitions in id order,
 *      FOR UPDATE SKIP LOCKED, skipping rows in backoff and every row of an order behind an
 *      earlier row of that order in backoff or parked. There is no snapshot fence: ids of one
 *      order are drawn in commit order (relay.c's top comment has the argument), so no
 *      transaction anywhere on the server holds a relay back;
 *   3. publish every row exactly as written (exchange, routing key, properties, headers, body)
 *      with user_id = the relay's broker login, mandatory and persistent, pipelined, then wait
 *      once for all publisher confirms (one row at a time after the broker closed the channel
 *      on a batch: isolation, relay.c);
 *   4. mark the confirmed rows sent; rows the broker returned as unroutable, nacked, refused
 *      by closing the channel, or that cannot be encoded stay unsent with attempts+1,
 *      last_error and a backoff in available_at, or are parked (below); commit. Rows whose
 *      outcome is unknown (the connection broke) are left as they were.
 * A crash between 3 and the commit leaves the rows unsent: they are published again
 * (duplicates are allowed, consumers dedup by message id; loss is not). For the same reason the
 * commit does not wait for its WAL flush (synchronous_commit off for the cycle's transaction): a
 * server crash may forget a mark, never a message, and the rows are published again. Test hooks for
 * the exact windows: PETSTORE_FAULT_RELAY_EXIT_AFTER_PUBLISH=1 (after the publish, before the mark)
 * and PETSTORE_FAULT_RELAY_EXIT_AFTER_MARK=1 (after the mark, before the commit) make the relay
 * _exit(137) there. Sent rows are deleted after RELAY_RETENTION_S by a periodic sweep.
 *
 * Parked rows. A row that failed RELAY_MAX_ATTEMPTS times (returned or refused; nacks never
 * park) or cannot be encoded gets parked_at and is never claimed again, nor is any later row of
 * its order, until an operator acts. It shows in the gauge petstore_outbox_parked and in an
 * error log line relay.parked (outbox_id, message_id, type, order_id, error, attempts). In the
 * service's database, as its role:
 *   -- see them
 *   SELECT id, message_id, type, correlation_id, exchange, routing_key, attempts, last_error,
 *          parked_at FROM outbox WHERE parked_at IS NOT NULL ORDER BY id;
 *   -- re-drive one once its cause is fixed (a fresh set of attempts; the relay takes it at its
 *   -- next poll, or at once after NOTIFY outbox), then the rows of its order behind it
 *   UPDATE outbox SET parked_at = NULL, attempts = 0, available_at = now()
 *    WHERE id = $1 AND parked_at IS NOT NULL;  NOTIFY outbox;
 *   -- or discard it for good: the rows of its order behind it then flow
 *   DELETE FROM outbox WHERE id = $1 AND parked_at IS NOT NULL;
 *
 * The relay sleeps on LISTEN outbox (writers NOTIFY at commit) with RELAY_POLL_MS as the fallback
 * poll interval; a notification that arrives while a cycle runs is kept by libpq and ends the
 * next idle wait at once. It runs under the worker supervisor (svc_worker.h), which reconnects
 * to either server with backoff, keeps the broker connection alive with heartbeats while the
 * relay is idle, and holds its readiness flags ("database:outbox", "broker:outbox"); it never
 * exits on the loss of a server.
 *
 * Threading: relay_run runs on one thread; its supervisor owns the connections. */
#ifndef PETSTORE_RELAY_H
#define PETSTORE_RELAY_H

#include "svc.h"

/* pthread entry point for svc_def_t.workers: arg is the svc_t. Returns NULL when stopping. */
void *relay_run(void *svc);

/* Backoff before a failed row is tried again, given its attempts before this failure: 1 s
 * doubled per attempt, capped at 5 min. */
int relay_retry_delay_ms(int attempts);

#endif
