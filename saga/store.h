/* store: the saga's rows in its own database (saga/migrations/001_sagas.sql).
 *
 *   sagas        one row per order: the machine's state plus the order data the commands need;
 *                `version` is the optimistic lock (1 when created, +1 per applied step);
 *   saga_steps   append-only log of every step (the creation is version 1);
 *   saga_timers  at most one timer per saga, its deadline in database time, with the count
 *                and last error of failed attempts at handling it and when it was parked;
 *   saga_early_cancels  cancellations that arrived before their order (handlers.c).
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

/* Loads the saga of order_id into out (zeroed or cleared first; caller clears it on success).
 * ERR_NOTFOUND if there is none, ERR_INVALID for an order id that is not a uuid. */
int saga_store_load(db_conn_t *db, const char *order_id, saga_row_t *out,
                    err_t *e) PETSTORE_NODISCARD;

/* Persists one applied step: the saga row (only if still at before->version), the step log
 * entry and the timer (a timer set afresh forgets earlier failures and parking). When the saga
 * changed since it was loaded nothing is written and the answer is ERR_CONFLICT with an empty
 * e->sqlstate (saga_store_stale says so): reload and apply again, in the same transaction or a
 * new one. A constraint the database refuses is ERR_CONFLICT too, but with its SQLSTATE. Fills
 * *out on success. */
int saga_store_save(db_conn_t *db, const saga_save_t *s, saga_saved_t *out,
                    err_t *e) PETSTORE_NODISCARD;

/* True when rc and e are saga_store_save's verdict that the saga changed since it was loaded. */
int saga_store_stale(int rc, const err_t *e);

/* Claims up to limit sagas whose timer is due by database time and not parked, locking each
 * timer and saga row (FOR UPDATE SKIP LOCKED: rows another transaction holds are left for
 * later), oldest deadline first. Only the order ids are read here, so no row's content can
 * fail the claim: the caller loads each saga on its own. On success *ids is a new array of *n
 * ids of SAGA_UUID_LEN + 1 bytes each (caller frees; NULL when *n is 0). */
int saga_store_claim_due(db_conn_t *db, int limit, char (**ids)[SAGA_UUID_LEN + 1], size_t *n,
                         err_t *e) PETSTORE_NODISCARD;

/* Deletes the saga's timer (a timer that no longer means anything). */
int saga_store_drop_timer(db_conn_t *db, const char *order_id, err_t *e) PETSTORE_NODISCARD;

/* Records a failed attempt at the saga's timer: failures + 1, the error text (borrowed), and
 * either a new deadline of now + min(base_ms * 2^(failures before), cap_ms) or, once failures
 * reach max_failures, parked (never claimed again until re-armed). Sets *failures and *parked.
 * No timer: both 0. */
int saga_store_timer_failed(db_conn_t *db, const char *order_id, const char *error, int base_ms,
                            int cap_ms, int max_failures, int *failures, int *parked,
                            err_t *e) PETSTORE_NODISCARD;

/* Counts sagas parked in NEEDS_OPERATOR and timers parked after failing. */
int saga_store_count_parked(db_conn_t *db, long *sagas, long *timers, err_t *e) PETSTORE_NODISCARD;

/* Serialises, until the end of the caller's transaction, everything that decides whether an
 * order's saga exists: the creation from order.placed and the recording of a cancellation that
 * found no saga (a transaction-scoped advisory lock keyed by the order id). */
int saga_store_lock_order(db_conn_t *db, const char *order_id, err_t *e) PETSTORE_NODISCARD;

/* Records the customer's cancellation of an order that has no saga yet (borrowed strings).
 * Sets *recorded to 0 if one was recorded already (nothing written). Call under
 * saga_store_lock_order after checking again that the saga does not exist. */
int saga_store_note_early_cancel(db_conn_t *db, const char *order_id, const char *user_id,
                                 const char *message_id, int *recorded,
                                 err_t *e) PETSTORE_NODISCARD;

/* An early cancellation taken out of the store: who asked, and the message that asked. */
typedef struct saga_early_cancel {
    char user_id[SAGA_UUID_LEN + 1];
    char message_id[SAGA_UUID_LEN + 1];
} saga_early_cancel_t;

/* In one round trip: takes saga_store_lock_order, inserts row (borrowed; version 1, PENDING)
 * and its creation step caused by message_id, and takes (reads and deletes) the order's early
 * cancellation if one was recorded. Sets *created to 1, or to 0 if a saga for the order already
 * exists (nothing inserted); *found to 1 and fills *cancel when a cancellation was taken. */
int saga_store_create(db_conn_t *db, const saga_row_t *row, const char *message_id, int *created,
                      int *found, saga_early_cancel_t *cancel, err_t *e) PETSTORE_NODISCARD;

#endif
