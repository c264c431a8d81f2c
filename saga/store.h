/* store: the saga's rows in its own database (saga/migrations/001_sagas.sql).
 *
 *   sagas        one row per order: the machine's state plus the order data the commands need;
 *                `version` is the optimistic lock (1 when created, +1 per applied step);
 *   saga_steps   append-only log of every step (the creation is version 1);
 *   saga_timers  at most one timer per saga, its deadline in database time.
 *
 * Every function runs inside the caller's transaction and never commits. Writes are few round
 * trips: saga_store_save changes the saga, appends the step and arms or clears the timer in one
 * statement, and answers the database's clock for the messages the step sends.
 *
 * Threading: a db_conn_t belongs to one thread; nothing here keeps state. */
#ifndef PETSTORE_SAGA_STORE_H
#define PETSTORE_SAGA_STORE_H

#include <stddef.h>

#include "db.h"
#include "err.h"
#include "map.h"

/* Database time as RFC 3339 UTC with microseconds: "2024-05-01T12:00:00.123456Z". */
#define SAGA_TIME_LEN 32

/* What one applied step writes. Strings are borrowed. */
typedef struct saga_save {
    const saga_row_t *before;  /* the saga as loaded: its order id and version are checked */
    const saga_state_t *next;  /* the state after the step */
    const char *event;         /* machine input name (saga_event_name) */
    const char *message_id;    /* the message handled, or NULL for a timer */
    const char *why;           /* the machine's rule */
    saga_timer_action_t timer; /* keep, set (after timer_ms) or clear */
    int timer_ms;
    int expires_ms; /* the answer's expires_at is now + this (the pay timeout) */
} saga_save_t;

/* What the database answered for a saved step. */
typedef struct saga_saved {
    int version;                    /* the saga's new version */
    char now[SAGA_TIME_LEN];        /* the transaction's now() */
    char expires_at[SAGA_TIME_LEN]; /* now() + expires_ms */
} saga_saved_t;

/* Inserts row (borrowed; version 1, PENDING) and its creation step, caused by message_id.
 * Sets *created to 1, or to 0 if a saga for the order already exists (nothing written). */
int saga_store_create(db_conn_t *db, const saga_row_t *row, const char *message_id, int *created,
                      err_t *e) PETSTORE_NODISCARD;

/* Loads the saga of order_id into out (zeroed or cleared first; caller clears it on success).
 * ERR_NOTFOUND if there is none, ERR_INVALID for an order id that is not a uuid. */
int saga_store_load(db_conn_t *db, const char *order_id, saga_row_t *out,
                    err_t *e) PETSTORE_NODISCARD;

/* Persists one applied step: the saga row (only if still at before->version), the step log
 * entry and the timer. ERR_CONFLICT if the saga changed since it was loaded (the caller's
 * transaction must be rolled back and retried). Fills *out on success. */
int saga_store_save(db_conn_t *db, const saga_save_t *s, saga_saved_t *out,
                    err_t *e) PETSTORE_NODISCARD;

/* Claims up to limit sagas whose timer is due by database time, locking each timer and saga
 * row (FOR UPDATE SKIP LOCKED: rows another transaction holds are left for later). On success
 * *rows is a new array of *n rows (caller clears each with saga_row_clear and frees the array;
 * NULL when *n is 0). */
int saga_store_claim_due(db_conn_t *db, int limit, saga_row_t **rows, size_t *n,
                         err_t *e) PETSTORE_NODISCARD;

/* Deletes the saga's timer (a timer that no longer means anything). */
int saga_store_drop_timer(db_conn_t *db, const char *order_id, err_t *e) PETSTORE_NODISCARD;

/* Moves the saga's timer to now + ms (a timeout that failed for a reason a retry in the same
 * instant would not cure). No timer: nothing happens. */
int saga_store_postpone_timer(db_conn_t *db, const char *order_id, int ms,
                              err_t *e) PETSTORE_NODISCARD;

/* Counts sagas parked in NEEDS_OPERATOR. */
int saga_store_count_parked(db_conn_t *db, long *out, err_t *e) PETSTORE_NODISCARD;

#endif
