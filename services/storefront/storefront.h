/* storefront: what the storefront daemon's files share (main.c wires them).
 *
 * One storefront_app_t per process, built in svc's init hook and read-only afterwards, so HTTP
 * and consumer threads share it without locks. Handlers get their database connection from
 * svc_thread_db (one per HTTP thread). */
#ifndef PETSTORE_STOREFRONT_H
#define PETSTORE_STOREFRONT_H

#include <sodium.h>

#include "order_status.h"
#include "svc.h"

/* Argon2id for passwords (crypto_pwhash_str): OWASP's setting of 7 MiB and 5 passes, as strong
 * as 19 MiB x 2 or 46 MiB x 1, so that a login's working memory stays within the daemon's RSS
 * budget; libsodium's interactive limits take 64 MiB per concurrent login. Stored hashes name
 * their own parameters, so hashes made with other limits still verify. */
#define SF_PWHASH_OPSLIMIT 5ULL
#define SF_PWHASH_MEMLIMIT ((size_t)7 * 1024 * 1024)

typedef struct storefront_app {
    unsigned char payment_pk[crypto_box_PUBLICKEYBYTES]; /* seals card numbers */
    int admin_enabled;
    unsigned char admin_token_hash[crypto_generichash_BYTES];
    int session_ttl_s;
    int idempotency_retention_s;
    char dummy_hash[crypto_pwhash_STRBYTES]; /* verified for unknown users: equal timing */
} storefront_app_t;

/* ---- web.c: request helpers shared by the routes ---- */

/* A log context for the request (trace and span of its traceparent). */
log_ctx_t sf_log_ctx(http_request_t *req);
/* 1 with *db, or 0 after answering 503. */
int sf_db(http_request_t *req, db_conn_t **db);
/* The signed-in user's id into user_id (37 bytes), or 0 after answering 401 / 503. */
int sf_user(http_request_t *req, db_conn_t *db, char *user_id);
/* 1 if the request carries the admin token, or 0 after answering 401. */
int sf_admin(http_request_t *req);
/* Answers a database failure: 503 + Retry-After for ERR_RETRY, else 500. */
void sf_db_error(http_request_t *req, const err_t *e);
/* 422 with errors = [{field, message}] (errors stolen). */
void sf_invalid(http_request_t *req, json_t *errors);
/* SQL fragment that renders a timestamptz column as RFC 3339 UTC with milliseconds. */
#define SF_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* ---- routes ---- */
int sf_post_users(http_request_t *req, void *svc);
int sf_post_sessions(http_request_t *req, void *svc);
int sf_delete_session(http_request_t *req, void *svc);
int sf_get_pets(http_request_t *req, void *svc);
int sf_get_pet(http_request_t *req, void *svc);
int sf_post_pets(http_request_t *req, void *svc);
int sf_post_orders(http_request_t *req, void *svc);
int sf_get_orders(http_request_t *req, void *svc);
int sf_get_order(http_request_t *req, void *svc);
int sf_post_cancel(http_request_t *req, void *svc);
int sf_get_cart(http_request_t *req, void *svc);
int sf_put_cart_item(http_request_t *req, void *svc);
int sf_delete_cart_item(http_request_t *req, void *svc);

/* ---- order_view.c: the order read model, read, rendered and updated in one place ---- */
/* The order as the API shows it, with its history (new reference in *out), or ERR_NOTFOUND
 * when it is not the user's. */
int sf_order_load(db_conn_t *db, const char *order_id, const char *user_id, json_t **out,
                  err_t *e) PETSTORE_NODISCARD;
/* For a route: loads the caller's order `id` (new reference in *out) and returns 1, or answers
 * 404 (a malformed or unknown id, or someone else's order) or the database error, and returns
 * 0. */
int sf_order_load_or_answer(http_request_t *req, db_conn_t *db, const char *id, const char *user_id,
                            json_t **out);
/* The user's orders as the API lists them, newest first, at most 100, without history (new
 * array in *out). */
int sf_orders_list(db_conn_t *db, const char *user_id, json_t **out, err_t *e) PETSTORE_NODISCARD;
/* 1 when the rendered order (borrowed) has reached a final status (COMPLETED, CANCELLED). */
int sf_order_is_finished(const json_t *order);
/* 1 for a status that is the order's outcome for the service-level metrics (finished.c):
 * COMPLETED, CANCELLED, and NEEDS_OPERATOR (not terminal, but the customer's order stopped
 * there until an operator acts). */
int sf_status_is_outcome(order_status_t s);
/* What a status change meant for the order's outcome: first is 1 when the change was applied
 * and is the order's first outcome (sf_status_is_outcome), counted once per order whatever
 * comes later (a parked order finished by an operator). Then status and reason are the
 * change's (reason ORDER_REASON_COUNT: one this build does not know) and seconds the time
 * from the order's creation at the door to the change, by the storefront database's clock. */
typedef struct sf_outcome {
    int first;
    order_status_t status;
    order_reason_t reason;
    double seconds;
} sf_outcome_t;
/* Applies a saga.order_status_changed payload if its version is newer (autocommit or inside
 * the caller's transaction). outcome (caller's storage, may be NULL) is filled on success. */
int sf_apply_order_status(db_conn_t *db, const json_t *payload, sf_outcome_t *outcome,
                          err_t *e) PETSTORE_NODISCARD;

/* ---- waiters.c: long polls, answered once each (by whoever claims them) ---- */
/* `leave` for a waiter that waits for the order's end (until=terminal): it is done when the
 * status is COMPLETED or CANCELLED. */
#define SF_UNTIL_TERMINAL ""
/* 1 when a waiter waiting out `leave` (a status, or SF_UNTIL_TERMINAL) is done at status. */
int sf_waiter_done(const char *leave, const char *status);
/* Holds req (deferred) until the order's status is no longer `leave` (or, for
 * SF_UNTIL_TERMINAL, is terminal) or seconds pass. db is the calling thread's connection, used
 * once to close the race with an update that landed before the request was parked. req belongs
 * to the waiters from then on. */
void sf_waiters_park(http_request_t *req, db_conn_t *db, const char *order_id, const char *user_id,
                     const char *leave, int seconds);
/* Answers the waiters on order_id that are done at status (sf_waiter_done) with the order read
 * through db (503 when db is NULL or the read fails). No lock is held while reading. */
void sf_waiters_wake(db_conn_t *db, const char *order_id, const char *status);
/* Answers the waiters whose deadline has passed, as sf_waiters_wake does. */
void sf_waiters_expire(db_conn_t *db);
/* Looks at every waiter's order again and answers those done (after notifications may have been
 * lost: a new notices connection). */
void sf_waiters_recheck(db_conn_t *db);
/* Answers every waiter (at shutdown), as sf_waiters_wake does. */
void sf_waiters_close_all(db_conn_t *db);

/* ---- streams.c: GET /v1/orders/{id}/events, Server-Sent Events ---- */
/* The route: text/event-stream of the order's status changes. */
int sf_get_order_events(http_request_t *req, void *svc);
/* Sends the order's new state (read through db) to its streams; ends those whose client has
 * gone and those of a finished order. No lock is held while reading or sending. */
void sf_streams_notify(db_conn_t *db, const char *order_id);
/* sf_streams_notify for every stream (after notifications may have been lost). */
void sf_streams_refresh_all(db_conn_t *db);
/* Sends a keep-alive comment to every stream; ends those whose client has gone. */
void sf_streams_ping(void);
/* Ends every stream (at shutdown); streams opened afterwards end after their first event. */
void sf_streams_close_all(void);

/* ---- notices.c: what every instance hears from the database (LISTEN) ---- */
/* The channel of the notifications migration 005 sends. */
#define SF_NOTICES_CHANNEL "storefront"
/* The worker thread: wakes long polls and streams on status changes, forgets deleted sessions
 * (svc_def_t.workers). */
void *sf_notices_worker(void *svc);

/* ---- finished.c: the service-level metrics of orders, counted once each after the commit ---- */
/* Registers petstore_orders_finished_total and petstore_order_completion_seconds (svc init). */
void sf_finished_init(void);
/* Notes an outcome (a copy; ignored unless o->first) for the transaction in hand, on the
 * calling consumer's thread. */
void sf_finished_note(const sf_outcome_t *o);
/* The consumer's settled hook (svc.h): counts the noted outcomes when committed, forgets them
 * when not. */
void sf_finished_settled(void *app, int committed);

/* ---- events.c: the consumer of storefront.events ---- */
int sf_on_order_status(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);
int sf_on_pets_reserved(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);
int sf_on_pets_released(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);
int sf_on_pets_sold(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);
int sf_on_pet_listed(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);
int sf_on_pet_status(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);

/* ---- validate.c: pure checks, unit-tested ---- */
/* Card syntax: 12-19 ASCII digits. */
int sf_card_syntax_ok(const char *number);
/* Usernames: 3-32 of [a-z0-9_.-]. Passwords: 8-128 bytes. */
int sf_username_ok(const char *name);
int sf_password_ok(const char *password);
/* pet_ids: an array of 1..20 distinct UUIDs; on failure writes why into detail. */
int sf_pet_ids_ok(const json_t *ids, char *detail, size_t n);
/* The fingerprint an Idempotency-Key is stored with: SHA-256 over the pets asked for as a set
 * (pet_ids borrowed, valid per sf_pet_ids_ok, or NULL for "the cart") and the card number's last
 * four digits and length (card valid per sf_card_syntax_ok; the number itself never enters it),
 * written into out as 64 lower-case hex digits and a NUL. Returns 0, or ERR_NOMEM. */
#define SF_FINGERPRINT_HEX (2 * crypto_hash_sha256_BYTES + 1)
int sf_order_fingerprint(const json_t *pet_ids, const char *card,
                         char out[SF_FINGERPRINT_HEX]) PETSTORE_NODISCARD;
/* Appends {field, message} to errors. */
void sf_error(json_t *errors, const char *field, const char *message);
/* The checks of a parsed request body (borrowed, any JSON value), one sf_error per invalid
 * field, appended to errors in field order; nothing appended means the body is valid.
 * sf_check_credentials: POST /users (strict: username per sf_username_ok, password per
 * sf_password_ok) and POST /sessions (not strict: both merely strings). sf_check_new_pet:
 * POST /pets, name 1-100 and species 1-50 bytes, price_cents an integer 0..100000000.
 * sf_check_order_body: POST /orders, card_number per sf_card_syntax_ok and pet_ids, when
 * present, per sf_pet_ids_ok. */
void sf_check_credentials(const json_t *body, int strict, json_t *errors);
void sf_check_new_pet(const json_t *body, json_t *errors);
void sf_check_order_body(const json_t *body, json_t *errors);

#endif
