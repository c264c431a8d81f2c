/* admin_request: the check of a POST /v1/cards body, apart from the route so that it is pure.
 *
 * The admin route (admin.c) parses the body, calls admin_card_request_check and answers 422 with
 * the field and detail it names; the fuzz target tests/fuzz/fuzz_http_body.c calls the same
 * function. It reads the card number only to check it (card_number_check) and never copies it,
 * and the detail never quotes it. Pure and thread-safe. */
#ifndef PETSTORE_ADMIN_REQUEST_H
#define PETSTORE_ADMIN_REQUEST_H

#include <jansson.h>

#include "err.h"

/* The largest balance an administrator may give a card: ten billion in cents. */
#define ADMIN_MAX_BALANCE 1000000000000LL

/* Checks body (borrowed, any JSON value) as {card_number, balance_cents}: card_number a string
 * that passes card_number_check (12-19 digits, Luhn), balance_cents an integer from 0 to
 * ADMIN_MAX_BALANCE. Returns 0, or ERR_INVALID with *field and *detail (static strings) naming the
 * first problem, card number first. */
int admin_card_request_check(const json_t *body, const char **field,
                             const char **detail) PETSTORE_NODISCARD;

#endif
