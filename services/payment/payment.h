/* payment: what the payment daemon's files share (main.c wires them; not a library).
 *
 * The process holds one payment_app_t, built by payment_app_new() in svc's init hook and handed
 * to every message handler and HTTP route. It is read-only after init (its metrics are
 * thread-safe), so consumer and HTTP threads share it without locking. Its keys live in
 * sodium_malloc'd memory (guarded pages, not swapped) and are wiped when it is freed. */
#ifndef PETSTORE_PAYMENT_H
#define PETSTORE_PAYMENT_H

#include <sodium.h>

#include "card.h"
#include "metrics.h"
#include "svc.h"

/* The decline reasons, as they appear in payment.declined.v1 and the ledger. */
typedef enum payment_decline {
    PAYMENT_CARD_INVALID = 0,
    PAYMENT_CARD_UNKNOWN,
    PAYMENT_INSUFFICIENT_FUNDS,
    PAYMENT_ORDER_CLOSED,
    PAYMENT_EXPIRED,
    PAYMENT_DECLINE_COUNT
} payment_decline_t;

typedef struct payment_app {
    const svc_t *svc;  /* borrowed */
    card_keys_t *keys; /* sodium_malloc'd, read-only */
    int admin_enabled; /* 0 when ADMIN_TOKEN is unset */
    unsigned char admin_token_hash[crypto_generichash_BYTES];
    metrics_counter_t *m_charged;
    metrics_counter_t *m_declined[PAYMENT_DECLINE_COUNT];
    metrics_counter_t *m_refunded;
    metrics_counter_t *m_voided;
    metrics_counter_t *m_cards_created;
} payment_app_t;

/* svc's init hook: decodes the keys and the admin token from the configuration and creates
 * the metrics. Sets *app to a new payment_app_t (freed by payment_app_free). */
int payment_app_new(svc_t *svc, void **app, err_t *e);

/* svc's fini hook: wipes and frees the app. Accepts NULL. */
void payment_app_free(void *app);

/* The name of a decline reason ("CARD_INVALID", ...). Static. */
const char *payment_decline_name(payment_decline_t reason);

/* Message handlers (svc_handler_fn): payment.charge.v1 and payment.refund_or_void.v1. */
int payment_handle_charge(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);
int payment_handle_refund_or_void(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);

/* The admin API's routes (POST /v1/cards, GET /v1/cards/{id}); static table. */
extern const http_route_t payment_admin_routes[];
extern const size_t payment_n_admin_routes;

#endif
