/* map: tables from message types to machine inputs and from commands to message types, and the
 * payload builders. The payloads are built field by field from the contracts in
 * contracts/codec/msg_fields.c; svc_emit validates them again before they reach the outbox. */
#include "map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    msg_type_t type;
    saga_event_t event;
} event_map[] = {
    {MSG_ORDER_PLACED_V1, SAGA_EV_PLACED},
    {MSG_ORDER_CANCEL_REQUESTED_V1, SAGA_EV_CANCEL},
    {MSG_INVENTORY_RESERVED_V1, SAGA_EV_RESERVED},
    {MSG_INVENTORY_RESERVATION_REJECTED_V1, SAGA_EV_REJECTED},
    {MSG_INVENTORY_RELEASED_V1, SAGA_EV_RELEASED},
    {MSG_INVENTORY_SALE_CONFIRMED_V1, SAGA_EV_SALE_CONFIRMED},
    {MSG_PAYMENT_CHARGED_V1, SAGA_EV_CHARGED},
    {MSG_PAYMENT_DECLINED_V1, SAGA_EV_DECLINED},
    {MSG_PAYMENT_REFUNDED_V1, SAGA_EV_REFUNDED},
    {MSG_PAYMENT_VOIDED_V1, SAGA_EV_REFUNDED},
};

static const struct {
    const char *payment;
    saga_reason_t reason;
} decline_map[] = {
    {"CARD_INVALID", SAGA_REASON_CARD_INVALID},
    {"CARD_UNKNOWN", SAGA_REASON_CARD_UNKNOWN},
    {"INSUFFICIENT_FUNDS", SAGA_REASON_INSUFFICIENT_FUNDS},
    {"ORDER_CLOSED", SAGA_REASON_TIMEOUT},
    {"EXPIRED", SAGA_REASON_TIMEOUT},
};

static const struct {
    unsigned cmd;
    msg_type_t type;
} command_map[] = {
    {SAGA_CMD_RESERVE, MSG_INVENTORY_RESERVE_V1},
    {SAGA_CMD_CHARGE, MSG_PAYMENT_CHARGE_V1},
    {SAGA_CMD_CONFIRM, MSG_INVENTORY_CONFIRM_SALE_V1},
    {SAGA_CMD_RELEASE, MSG_INVENTORY_RELEASE_V1},
    {SAGA_CMD_REFUND_OR_VOID, MSG_PAYMENT_REFUND_OR_VOID_V1},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

void saga_row_clear(saga_row_t *row)
{
    if (row == NULL)
        return;
    json_decref(row->pet_ids);
    free(row->card_sealed);
    memset(row, 0, sizeof(*row));
}

static const char *str_field(const json_t *obj, const char *name)
{
    return json_string_value(json_object_get(obj, name));
}

int saga_row_from_placed(const json_t *payload, saga_row_t *out, err_t *e)
{
    const char *order_id = str_field(payload, "order_id");
    const char *user_id = str_field(payload, "user_id");
    const char *sealed = str_field(payload, "card_sealed");
    const char *last4 = str_field(payload, "card_last4");
    json_t *pets = json_object_get(payload, "pet_ids");
    json_t *total = json_object_get(payload, "total_cents");

    if (order_id == NULL || user_id == NULL || sealed == NULL || last4 == NULL ||
        !json_is_array(pets) || !json_is_integer(total))
        return err_set(e, ERR_INVALID, "order.placed without the fields the saga needs");
    if (strlen(order_id) != SAGA_UUID_LEN || strlen(user_id) != SAGA_UUID_LEN || strlen(last4) != 4)
        return err_set(e, ERR_INVALID, "order.placed with malformed ids or card_last4");

    memset(out, 0, sizeof(*out));
    memcpy(out->order_id, order_id, SAGA_UUID_LEN + 1);
    memcpy(out->user_id, user_id, SAGA_UUID_LEN + 1);
    memcpy(out->card_last4, last4, 5);
    out->state.status = SAGA_PENDING;
    out->state.reason = SAGA_REASON_NONE;
    out->version = 1;
    out->total_cents = json_integer_value(total);
    out->pet_ids = json_deep_copy(pets);
    out->card_sealed = strdup(sealed);
    if (out->pet_ids == NULL || out->card_sealed == NULL) {
        saga_row_clear(out);
        return err_set(e, ERR_NOMEM, "out of memory copying order.placed");
    }
    return 0;
}

int saga_event_for_type(msg_type_t type, saga_event_t *out)
{
    for (size_t i = 0; i < COUNT(event_map); i++) {
        if (event_map[i].type == type) {
            *out = event_map[i].event;
            return 0;
        }
    }
    return -1;
}

saga_reason_t saga_reason_from_decline(const char *payment_reason)
{
    for (size_t i = 0; payment_reason != NULL && i < COUNT(decline_map); i++)
        if (strcmp(payment_reason, decline_map[i].payment) == 0)
            return decline_map[i].reason;
    return SAGA_REASON_TIMEOUT;
}

msg_type_t saga_command_type(unsigned cmd)
{
    for (size_t i = 0; i < COUNT(command_map); i++)
        if (command_map[i].cmd == cmd)
            return command_map[i].type;
    return MSG_NONE;
}

int saga_command_payload(unsigned cmd, const saga_row_t *row, const char *expires_at, json_t **out,
                         err_t *e)
{
    json_t *p = NULL;
    switch (cmd) {
    case SAGA_CMD_RESERVE:
        p = json_pack("{s:s,s:O}", "order_id", row->order_id, "pet_ids", row->pet_ids);
        break;
    case SAGA_CMD_CHARGE:
        if (row->card_sealed == NULL || row->total_cents <= 0)
            return err_set(e, ERR_INTERNAL, "order %s: no card or nothing to charge",
                           row->order_id);
        p = json_pack("{s:s,s:I,s:s,s:s}", "order_id", row->order_id, "amount_cents",
                      (json_int_t)row->total_cents, "card_sealed", row->card_sealed, "card_last4",
                      row->card_last4);
        if (p != NULL && expires_at != NULL &&
            json_object_set_new(p, "expires_at", json_string(expires_at)) != 0) {
            json_decref(p);
            p = NULL;
        }
        break;
    case SAGA_CMD_CONFIRM:
    case SAGA_CMD_RELEASE:
    case SAGA_CMD_REFUND_OR_VOID:
        p = json_pack("{s:s}", "order_id", row->order_id);
        break;
    default:
        return err_set(e, ERR_INTERNAL, "unknown saga command 0x%x", cmd);
    }
    if (p == NULL)
        return err_set(e, ERR_NOMEM, "out of memory building a command");
    *out = p;
    return 0;
}

int saga_status_payload(const saga_row_t *row, const char *occurred_at, json_t **out, err_t *e)
{
    const char *reason = saga_reason_name(row->state.reason);
    json_t *p = json_pack("{s:s,s:s,s:s,s:o,s:i,s:I,s:O,s:s,s:s}", "order_id", row->order_id,
                          "user_id", row->user_id, "status", saga_status_name(row->state.status),
                          "reason", reason != NULL ? json_string(reason) : json_null(), "version",
                          row->version, "total_cents", (json_int_t)row->total_cents, "pet_ids",
                          row->pet_ids, "card_last4", row->card_last4, "occurred_at", occurred_at);
    if (p == NULL)
        return err_set(e, ERR_NOMEM, "out of memory building a status change");
    *out = p;
    return 0;
}
