/* msg_fields: every payload contract, as tables of field descriptors.
 *
 * Read a table as the contract itself: name, kind, required or optional, bounds, allowed values.
 * Bounds are inclusive. The same numbers appear in contracts/schemas/<type>.json; the unit tests
 * (test_msg_codec.c) fail if the two ever disagree. */
#include "msg_fields.h"

#include <stddef.h>
#include <string.h>

/* Shared limits, so that a field means the same thing in every message that carries it. */
#define MAX_CENTS 100000000LL /* one million in the currency's main unit */
#define MAX_PETS 20           /* pets per order */
#define MAX_SEALED 512        /* base64 characters of a sealed card number */

static const char *const pet_statuses[] = {"available", "reserved", "sold", NULL};

static const char *const decline_reasons[] = {"CARD_INVALID", "CARD_UNKNOWN", "INSUFFICIENT_FUNDS",
                                              "ORDER_CLOSED", "EXPIRED",      NULL};

/* The order's statuses and reasons, spelled by their one table (order_status.def). */
static const char *const order_statuses[] = {
#define ORDER_STATUS(name, terminal, cancellable) #name,
#include "order_status.def"
    NULL};

static const char *const order_reasons[] = {
#define ORDER_REASON(name) #name,
#include "order_status.def"
    NULL};

/* Descriptor shorthands: REQ_x is a required field, OPT_x an optional one. */
#define F(name, kind, req, min, max, values)                                                       \
    {                                                                                              \
        name, MSG_FIELD_##kind, req, min, max, values                                              \
    }
#define REQ_UUID(n) F(n, UUID, 1, 0, 0, NULL)
#define OPT_UUID(n) F(n, UUID, 0, 0, 0, NULL)
#define REQ_STRING(n, lo, hi) F(n, STRING, 1, lo, hi, NULL)
#define REQ_INT(n, lo, hi) F(n, INT, 1, lo, hi, NULL)
#define OPT_INT(n, lo, hi) F(n, INT, 0, lo, hi, NULL)
#define REQ_DATETIME(n) F(n, DATETIME, 1, 0, 0, NULL)
#define OPT_DATETIME(n) F(n, DATETIME, 0, 0, 0, NULL)
#define REQ_LAST4(n) F(n, LAST4, 1, 0, 0, NULL)
#define OPT_LAST4(n) F(n, LAST4, 0, 0, 0, NULL)
#define REQ_BASE64(n, lo, hi) F(n, BASE64, 1, lo, hi, NULL)
#define REQ_UUIDS(n, lo, hi) F(n, UUID_ARRAY, 1, lo, hi, NULL)
#define OPT_UUIDS(n, lo, hi) F(n, UUID_ARRAY, 0, lo, hi, NULL)
#define REQ_ENUM(n, v) F(n, ENUM, 1, 0, 0, v)
#define OPT_NULLABLE_ENUM(n, v) F(n, NULLABLE_ENUM, 0, 0, 0, v)
#define OPT_PET_VERSIONS(n, lo, hi) F(n, PET_VERSIONS, 0, lo, hi, NULL)

/* Commands. */

static const msg_field_t fields_inventory_list_pet_v1[] = {
    REQ_UUID("pet_id"),
    REQ_STRING("name", 1, 100),
    REQ_STRING("species", 1, 50),
    REQ_INT("price_cents", 0, MAX_CENTS),
};

static const msg_field_t fields_inventory_reserve_v1[] = {
    REQ_UUID("order_id"),
    REQ_UUIDS("pet_ids", 1, MAX_PETS),
};

static const msg_field_t fields_inventory_release_v1[] = {
    REQ_UUID("order_id"),
};

static const msg_field_t fields_inventory_confirm_sale_v1[] = {
    REQ_UUID("order_id"),
};

static const msg_field_t fields_payment_charge_v1[] = {
    REQ_UUID("order_id"),
    REQ_INT("amount_cents", 1, MAX_CENTS),
    REQ_BASE64("card_sealed", 1, MAX_SEALED),
    REQ_LAST4("card_last4"),
    OPT_DATETIME("expires_at"), /* payment declines (EXPIRED) a charge that arrives after it */
};

static const msg_field_t fields_payment_refund_or_void_v1[] = {
    REQ_UUID("order_id"),
};

/* Events. */

static const msg_field_t fields_order_placed_v1[] = {
    REQ_UUID("order_id"),
    REQ_UUID("user_id"),
    REQ_UUIDS("pet_ids", 1, MAX_PETS),
    REQ_INT("total_cents", 0, MAX_CENTS),
    REQ_BASE64("card_sealed", 1, MAX_SEALED),
    REQ_LAST4("card_last4"),
};

static const msg_field_t fields_order_cancel_requested_v1[] = {
    REQ_UUID("order_id"),
    REQ_UUID("user_id"),
};

static const msg_field_t fields_inventory_pet_listed_v1[] = {
    REQ_UUID("pet_id"),
    REQ_STRING("name", 1, 100),
    REQ_STRING("species", 1, 50),
    REQ_INT("price_cents", 0, MAX_CENTS),
    REQ_ENUM("status", pet_statuses),
    REQ_INT("version", 1, MSG_FIELD_NO_MAX),
};

static const msg_field_t fields_inventory_pet_status_changed_v1[] = {
    REQ_UUID("pet_id"),
    REQ_ENUM("status", pet_statuses),
    REQ_INT("version", 1, MSG_FIELD_NO_MAX),
    OPT_UUID("order_id"),
};

/* pets, on reserved, released and sale_confirmed: the pets whose status this reply changed, with
 * their new versions (their status is the reply's: reserved, available, sold); empty when the
 * reply repeats an earlier answer. The storefront's catalog is kept from these. */
static const msg_field_t fields_inventory_reserved_v1[] = {
    REQ_UUID("order_id"),
    REQ_UUIDS("pet_ids", 1, MAX_PETS),
    OPT_PET_VERSIONS("pets", 0, MAX_PETS),
};

static const msg_field_t fields_inventory_reservation_rejected_v1[] = {
    REQ_UUID("order_id"),
    REQ_UUIDS("unavailable_pet_ids", 0, MAX_PETS),
};

static const msg_field_t fields_inventory_released_v1[] = {
    REQ_UUID("order_id"),
    REQ_UUIDS("pet_ids", 0, MAX_PETS), /* empty when nothing was held for the order */
    OPT_PET_VERSIONS("pets", 0, MAX_PETS),
};

static const msg_field_t fields_inventory_sale_confirmed_v1[] = {
    REQ_UUID("order_id"),
    REQ_UUIDS("pet_ids", 1, MAX_PETS),
    OPT_PET_VERSIONS("pets", 0, MAX_PETS),
};

static const msg_field_t fields_payment_charged_v1[] = {
    REQ_UUID("order_id"),
    REQ_INT("amount_cents", 1, MAX_CENTS),
    REQ_LAST4("card_last4"),
};

static const msg_field_t fields_payment_declined_v1[] = {
    REQ_UUID("order_id"),
    REQ_ENUM("reason", decline_reasons),
};

static const msg_field_t fields_payment_refunded_v1[] = {
    REQ_UUID("order_id"),
    REQ_INT("amount_cents", 1, MAX_CENTS),
};

static const msg_field_t fields_payment_voided_v1[] = {
    REQ_UUID("order_id"),
};

static const msg_field_t fields_saga_order_status_changed_v1[] = {
    REQ_UUID("order_id"),
    OPT_UUID("user_id"),
    REQ_ENUM("status", order_statuses),
    OPT_NULLABLE_ENUM("reason", order_reasons),
    REQ_INT("version", 1, MSG_FIELD_NO_MAX),
    OPT_INT("total_cents", 0, MAX_CENTS),
    OPT_UUIDS("pet_ids", 1, MAX_PETS),
    OPT_LAST4("card_last4"),
    REQ_DATETIME("occurred_at"),
};

/* The type table, indexed by msg_type_t. The exchange column of msg_types.def is a token that
 * selects both the exchange name and the command flag, so the two cannot disagree. */
#define EXCHANGE_COMMANDS MSG_EXCHANGE_COMMANDS
#define EXCHANGE_EVENTS MSG_EXCHANGE_EVENTS
#define IS_COMMAND_COMMANDS 1
#define IS_COMMAND_EVENTS 0
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const msg_type_def_t types[MSG__COUNT] = {
#define X(id, name, exchange, routing_key, producer, fields)                                       \
    [id] = {{name, EXCHANGE_##exchange, routing_key, IS_COMMAND_##exchange, producer},             \
            fields,                                                                                \
            COUNT(fields)},
#include "msg_types.def"
#undef X
};

const msg_type_def_t *msg__type_def(msg_type_t type)
{
    if ((int)type <= (int)MSG_NONE || (int)type >= (int)MSG__COUNT)
        return NULL;
    return &types[type];
}

const msg_type_info_t *msg_type_info(msg_type_t type)
{
    const msg_type_def_t *def = msg__type_def(type);
    return def != NULL ? &def->info : NULL;
}

const char *msg_type_producer(msg_type_t type)
{
    const msg_type_def_t *def = msg__type_def(type);
    return def != NULL ? def->info.producer : NULL;
}

int msg_type_from_name(const char *name, msg_type_t *out)
{
    if (name == NULL)
        return ERR_INVALID;
    for (int t = MSG_NONE + 1; t < MSG__COUNT; t++) {
        if (strcmp(types[t].info.name, name) == 0) {
            *out = (msg_type_t)t;
            return 0;
        }
    }
    return ERR_INVALID;
}

const char *msg__kind_name(msg_field_kind_t kind)
{
    switch (kind) {
    case MSG_FIELD_UUID:
        return "uuid";
    case MSG_FIELD_STRING:
        return "string";
    case MSG_FIELD_INT:
        return "integer";
    case MSG_FIELD_BOOL:
        return "boolean";
    case MSG_FIELD_DATETIME:
        return "date-time";
    case MSG_FIELD_LAST4:
        return "last4";
    case MSG_FIELD_BASE64:
        return "base64";
    case MSG_FIELD_UUID_ARRAY:
        return "uuid array";
    case MSG_FIELD_PET_VERSIONS:
        return "pet versions";
    case MSG_FIELD_ENUM:
        return "enum";
    case MSG_FIELD_NULLABLE_ENUM:
        return "nullable enum";
    }
    return "unknown";
}
