/* db_listen: LISTEN/NOTIFY, so a relay sleeps until a writer commits instead of polling.
 *
 * PostgreSQL delivers a notification only when the notifying transaction commits, folds
 * identical notifications of one transaction into one, and forgets registrations when the
 * session ends: after db_reconnect (or a new connection) call db_listen again, and poll once,
 * since notifications sent while disconnected are lost. Notifications are a wake-up hint (with
 * at most a key in their payload), never the data. Same threading rule as db.h. */
#ifndef PETSTORE_DB_LISTEN_H
#define PETSTORE_DB_LISTEN_H

#include "db.h"

/* LISTEN channel (quoted as an identifier; outside a transaction it takes effect at once, inside
 * one at its commit). */
int db_listen(db_conn_t *db, const char *channel, err_t *e) PETSTORE_NODISCARD;

/* The connection's socket, for callers with their own poll loop; -1 when there is none. */
int db_socket(db_conn_t *db);

/* Waits up to timeout_ms (< 0: no limit) for a notification on any LISTENed channel, or until
 * stop_fd (-1: none) becomes readable (it is not read). Drains every pending notification:
 * *notified = 1 if there was one, else 0 (timeout, stop_fd, a signal, or other server traffic
 * such as a parameter change: callers loop). A lost connection is ERR_RETRY and marks it
 * broken. Must not be called inside a transaction (nothing would arrive before its end). */
int db_wait_notify(db_conn_t *db, int timeout_ms, int stop_fd, int *notified,
                   err_t *e) PETSTORE_NODISCARD;

/* Called for each notification with its channel and payload (both borrowed for the call). */
typedef void (*db_notice_fn)(void *ctx, const char *channel, const char *payload);

/* db_wait_notify that hands every notification drained to fn (NULL: they are discarded), after
 * they are all read: fn may use the connection. */
int db_wait_notices(db_conn_t *db, int timeout_ms, int stop_fd, db_notice_fn fn, void *ctx,
                    int *notified, err_t *e) PETSTORE_NODISCARD;

#endif
