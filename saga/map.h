/* map: the saga's data and how it meets the message contracts, with no I/O.
 *
 * saga_row_t is one order's saga as the store keeps it. This module translates between it and
 * the wire: which machine input a received message type is, how payment's decline reasons
 * become the order's reasons, and the payloads of the commands and status changes the saga
 * sends. Everything here is pure (jansson only), so it is unit-tested without servers and the
 * payloads are checked against the contracts there.
 *
 * Threading: no shared state; a saga_row_t belongs to one thread. */
#ifndef PETSTORE_SAGA_MAP_H
#define PETSTORE_SAGA_MAP_H

#include <jansson.h>

#include "err.h"
#include "machine.h"
#include "msg.h"

#define SAGA_UUID_LEN 36

/* One saga. Strings are fixed-size copies except pet_ids and card_sealed, which the row owns:
 * release them with saga_row_clear. */
typedef struct saga_row {
    char order_id[SAGA_UUID_LEN + 1];
    char user_id[SAGA_UUID_LEN + 1];
    saga_state_t state;
    int version;     /* 1 when created, +1 per applied step */
    json_t *pet_ids; /* owned: JSON array of uuid strings, in the order placed */
    long long total_cents;
    char *card_sealed; /* owned: base64 sealed box; NULL once the saga has finished */
    char card_last4[5];
} saga_row_t;

/* Releases what row owns and zeroes it. Accepts NULL and a zeroed row. */
void saga_row_clear(saga_row_t *row);

/* Fills out (which must be zeroed or cleared) from a validated order.placed.v1 payload
 * (borrowed): status PENDING, version 1, nothing pending. ERR_NOMEM, or ERR_INVALID if a field
 * the contract requires is missing (the codec should have refused such a payload). */
int saga_row_from_placed(const json_t *payload, saga_row_t *out, err_t *e) PETSTORE_NODISCARD;

/* The machine input a message type stands for. Returns 0 and sets *out, or -1 for a type the
 * saga does not act on (order.placed maps to SAGA_EV_PLACED). payment.refunded and
 * payment.voided are both SAGA_EV_REFUNDED: either settles the refund-or-void. */
int saga_event_for_type(msg_type_t type, saga_event_t *out);

/* The order's reason for a payment.declined.v1 reason: CARD_INVALID, CARD_UNKNOWN and
 * INSUFFICIENT_FUNDS carry over; ORDER_CLOSED and EXPIRED mean the saga had already given up on
 * the payment, which the customer sees as TIMEOUT. Anything else (NULL included) is TIMEOUT. */
saga_reason_t saga_reason_from_decline(const char *payment_reason);

/* The message type of one SAGA_CMD_* bit, or MSG_NONE if cmd is not exactly one known bit. */
msg_type_t saga_command_type(unsigned cmd);

/* The payload of command cmd (one SAGA_CMD_* bit) for row (borrowed). expires_at (RFC 3339 UTC)
 * is used by SAGA_CMD_CHARGE only and may be NULL otherwise. Sets *out to a new reference
 * (caller decrefs). ERR_INTERNAL for an unknown command or a charge the row cannot pay for
 * (no sealed card, or nothing to charge); ERR_NOMEM. */
int saga_command_payload(unsigned cmd, const saga_row_t *row, const char *expires_at, json_t **out,
                         err_t *e) PETSTORE_NODISCARD;

/* The saga.order_status_changed.v1 payload for row (borrowed) as it is now: its status, reason
 * (JSON null when none), version and order data, with occurred_at (RFC 3339 UTC). Sets *out to a
 * new reference (caller decrefs); ERR_NOMEM. */
int saga_status_payload(const saga_row_t *row, const char *occurred_at, json_t **out,
                        err_t *e) PETSTORE_NODISCARD;

#endif
