/* relay: moves committed outbox rows to RabbitMQ, at least once, in commit order per order.
 *
 * One cycle claims a batch and publishes it in ONE database transaction:
 *   1. lock as many of the 16 outbox partitions as it can (pg_try_advisory_xact_lock); rows of
 *      one order always share a partition, so whichever relay holds a partition is the only one
 *      publishing that order's messages, and several relays on one database split the work;
 *   2. claim up to RELAY_BATCH_SIZE unsent rows of the held partitions in id order,
 *      FOR UPDATE SKIP LOCKED, behind a snapshot fence (txid < pg_snapshot_xmin of the current
 *      snapshot): a row whose transaction is older than some still-running transaction waits
 *      until that transaction has finished, so a late-committing transaction's rows are never
 *      overtaken by rows committed after them;
 *   3. publish every row exactly as written (exchange, routing key, properties, headers, body),
 *      mandatory and persistent, pipelined, then wait once for all publisher confirms;
 *   4. mark the confirmed rows sent; rows the broker returned as unroutable (or nacked) stay
 *      unsent with attempts+1, last_error and a backoff in available_at; commit.
 * A crash between 3 and 4 leaves the rows unsent: they are published again (duplicates are
 * allowed, consumers dedup by message id; loss is not). Sent rows are deleted after
 * RELAY_RETENTION_S by a periodic sweep.
 *
 * The relay sleeps on LISTEN outbox (writers NOTIFY at commit) with RELAY_POLL_MS as the fallback
 * poll interval. It runs under the worker supervisor (svc_worker.h), which reconnects to either
 * server with backoff, keeps the broker connection alive with heartbeats while the relay is
 * idle, and holds its readiness flags ("database:outbox", "broker:outbox"); it never exits on
 * the loss of a server.
 *
 * Threading: relay_run runs on one thread; its supervisor owns the connections. */
#ifndef PETSTORE_RELAY_H
#define PETSTORE_RELAY_H

#include "svc.h"

/* pthread entry point for svc_def_t.workers: arg is the svc_t. Returns NULL when stopping. */
void *relay_run(void *svc);

/* Backoff before an unroutable row is tried again: 1 s doubled per attempt, capped at 5 min. */
int relay_retry_delay_ms(int attempts);

#endif
