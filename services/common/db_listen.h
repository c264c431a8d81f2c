/* db_listen: LISTEN/NOTIFY, so a relay sleeps until a writer commits instead of polling.
 * Notifications arrive only for committed transactions. Same threading rule as db.h. */
#ifndef PETSTORE_DB_LISTEN_H
#define PETSTORE_DB_LISTEN_H

#include "db.h"

/* LISTEN channel (an identifier chosen by code, not input). */
int db_listen(db_conn_t *db, const char *channel, err_t *e) PETSTORE_NODISCARD;

/* The connection's socket, for callers with their own poll loop. */
int db_socket(db_conn_t *db);

/* Waits up to timeout_ms for a notification on any LISTENed channel, or until stop_fd (-1: none)
 * becomes readable. Drains every pending notification; *notified = 1 if there was one. A lost
 * connection is ERR_RETRY. */
int db_wait_notify(db_conn_t *db, int timeout_ms, int stop_fd, int *notified,
                   err_t *e) PETSTORE_NODISCARD;

#endif
