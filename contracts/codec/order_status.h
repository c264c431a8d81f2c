/* order_status: the order's statuses and reasons, and what each status means.
 *
 * The names come from one table, order_status.def; this module turns them into enums and
 * answers the questions every reader of a status asks: its name on the wire, the value of a
 * name read back, whether the order is finished, whether a customer may still cancel it. The
 * saga's machine, the saga.order_status_changed.v1 contract, the saga's store and the
 * storefront all ask here instead of keeping lists of their own.
 *
 * Threading: pure functions over static, read-only data. Names are static strings (borrowed,
 * never freed). */
#ifndef PETSTORE_ORDER_STATUS_H
#define PETSTORE_ORDER_STATUS_H

#include "err.h"

/* One constant per status (ORDER_PENDING, ..., ORDER_NEEDS_OPERATOR); ORDER_STATUS_COUNT is one
 * past the last. Values are stable within a build only: names go on the wire. */
typedef enum order_status {
#define ORDER_STATUS(name, terminal, cancellable) ORDER_##name,
#include "order_status.def"
    ORDER_STATUS_COUNT
} order_status_t;

/* ORDER_REASON_NONE (no reason, null on the wire), then one constant per reason
 * (ORDER_REASON_PET_UNAVAILABLE, ...); ORDER_REASON_COUNT is one past the last. */
typedef enum order_reason {
    ORDER_REASON_NONE = 0,
#define ORDER_REASON(name) ORDER_REASON_##name,
#include "order_status.def"
    ORDER_REASON_COUNT
} order_reason_t;

/* The status's name ("PAYING"), or "UNKNOWN" for a value out of range (a name that
 * order_status_parse refuses). Static. */
const char *order_status_name(order_status_t s);

/* Sets *out to the status named name (exact, upper-case) and returns 0; ERR_INVALID for NULL or
 * an unknown name (*out untouched). */
int order_status_parse(const char *name, order_status_t *out) PETSTORE_NODISCARD;

/* 1 for a status the order never leaves (COMPLETED, CANCELLED), else 0 (also out of range).
 * NEEDS_OPERATOR is not terminal: late acknowledgements still finish the saga as CANCELLED. */
int order_status_is_terminal(order_status_t s);

/* 1 while a customer's cancellation is still accepted (PENDING, RESERVING, PAYING), else 0
 * (also out of range). */
int order_status_is_cancellable(order_status_t s);

/* The reason's name ("INSUFFICIENT_FUNDS"), or NULL for ORDER_REASON_NONE and values out of
 * range. Static. */
const char *order_reason_name(order_reason_t r);

/* Sets *out to the reason named name and returns 0; ERR_INVALID for NULL or an unknown name
 * (there is no name for ORDER_REASON_NONE; *out untouched). */
int order_reason_parse(const char *name, order_reason_t *out) PETSTORE_NODISCARD;

#endif
