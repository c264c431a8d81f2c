/* plan: what inventory answers to a command, decided from what the database reported. Pure.
 *
 * Each command (reserve, release, confirm_sale) runs as ONE SQL statement that locks the order's
 * reservation row, changes what must change and reports the outcome: the reservation's status
 * before and after, its pet ids, the unavailable pet ids and the pets whose status changed with
 * their new versions (handlers.c). inv_plan turns that outcome into the message to emit: the
 * reply (reserved, reservation_rejected, released or sale_confirmed), which names the pets it
 * changed with their new versions (`pets`, in pet id order). Cases that cannot happen by
 * construction (a release after the sale, a confirm without a reservation) emit nothing and name
 * the anomaly, which the caller logs at error level.
 *
 * Threading: pure and reentrant. Ownership: the outcome's JSON is borrowed; a plan owns the
 * payloads it holds until inv_plan_clear. */
#ifndef PETSTORE_INV_PLAN_H
#define PETSTORE_INV_PLAN_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"
#include "msg.h"

/* The most pets one order may hold (the contracts' maxItems). */
#define INV_MAX_PETS 20

typedef enum inv_cmd {
    INV_CMD_RESERVE = 0,
    INV_CMD_RELEASE,
    INV_CMD_CONFIRM_SALE,
} inv_cmd_t;

/* A reservation's status; INV_RES_NONE is "no row". */
typedef enum inv_res {
    INV_RES_NONE = 0,
    INV_RES_RESERVED,
    INV_RES_REJECTED,
    INV_RES_RELEASED,
    INV_RES_SOLD,
} inv_res_t;

/* "" -> INV_RES_NONE, "reserved", "rejected", "released", "sold". Returns 0 and sets *out, or
 * ERR_INVALID for anything else (*out untouched). */
int inv_res_parse(const char *text, inv_res_t *out) PETSTORE_NODISCARD;

/* The column value of a status ("" for INV_RES_NONE). Static. */
const char *inv_res_name(inv_res_t res);

/* What a command's statement reported. JSON members are borrowed and may be NULL (read as []). */
typedef struct inv_outcome {
    inv_res_t prior;           /* the reservation before the command; NONE: there was none */
    inv_res_t status;          /* after the command; NONE: no row (see inv_plan_t.raced) */
    const json_t *pet_ids;     /* the reservation's pet ids (for a fresh reserve: the request) */
    const json_t *unavailable; /* reserve: the pets that were unknown or not available */
    const json_t *changed;     /* [[pet_id, new_version], ...]: pets this command changed */
} inv_outcome_t;

typedef struct inv_emit {
    msg_type_t type;
    json_t *payload; /* owned by the plan */
} inv_emit_t;

typedef struct inv_plan {
    inv_emit_t msgs[1 + INV_MAX_PETS];
    size_t n;
    /* 1: a concurrent transaction created the order's reservation row after this statement's
     * snapshot was taken, so the statement did nothing; run it again (it will see the row). */
    int raced;
    /* Non-NULL: a state that cannot happen by construction; log it at error level. Static. */
    const char *anomaly;
} inv_plan_t;

/* Fills *out (caller-owned, cleared here first) for command cmd of order order_id (borrowed).
 * Every payload conforms to its contract. Returns 0; ERR_INVALID when the outcome contradicts
 * itself (a reserve that reserved some pets but not all, malformed changed entries); ERR_NOMEM.
 * On failure *out holds nothing. */
int inv_plan(inv_cmd_t cmd, const char *order_id, const inv_outcome_t *o, inv_plan_t *out,
             err_t *e) PETSTORE_NODISCARD;

/* Frees the payloads of p and empties it. NULL ok. */
void inv_plan_clear(inv_plan_t *p);

#endif
