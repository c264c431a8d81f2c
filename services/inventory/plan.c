/* plan: the inventory's answers as a table of cases (see plan.h).
 *
 * The replies follow brief 3's rules (a reply that changes pets names them with their new
 * versions in `pets`, from which the storefront keeps its catalog; no event per pet):
 *   reserve      fresh and all pets available -> reserved, its pets now "reserved";
 *                fresh and some pet unknown or taken -> reservation_rejected(unavailable);
 *                already reserved or sold -> reserved again (no change);
 *                already released or rejected -> reservation_rejected again: a reserve that
 *                arrives after its release never takes pets.
 *   release      reserved -> released(the pets it gave back), now "available";
 *                no reservation (a tombstone was written), released or rejected -> released([]);
 *                sold -> nothing (anomaly).
 *   confirm_sale reserved -> sale_confirmed, its pets now "sold"; sold -> sale_confirmed
 *                again; anything else -> nothing (anomaly).
 * "Again" replies carry pets = []: the pets did not change this time. */
#include "plan.h"

#include <string.h>

static const char *const res_names[] = {
    [INV_RES_NONE] = "",
    [INV_RES_RESERVED] = "reserved",
    [INV_RES_REJECTED] = "rejected",
    [INV_RES_RELEASED] = "released",
    [INV_RES_SOLD] = "sold",
};

int inv_res_parse(const char *text, inv_res_t *out)
{
    if (text == NULL)
        return ERR_INVALID;
    for (size_t i = 0; i < sizeof(res_names) / sizeof(res_names[0]); i++) {
        if (strcmp(text, res_names[i]) == 0) {
            *out = (inv_res_t)i;
            return 0;
        }
    }
    return ERR_INVALID;
}

const char *inv_res_name(inv_res_t res)
{
    if ((size_t)res >= sizeof(res_names) / sizeof(res_names[0]))
        return "";
    return res_names[res];
}

void inv_plan_clear(inv_plan_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        json_decref(p->msgs[i].payload);
    memset(p, 0, sizeof(*p));
}

/* Appends a message; steals payload (NULL means jansson ran out of memory). */
static int add(inv_plan_t *p, msg_type_t type, json_t *payload, err_t *e)
{
    if (payload == NULL)
        return err_set(e, ERR_NOMEM, "out of memory building a payload");
    if (p->n >= sizeof(p->msgs) / sizeof(p->msgs[0])) {
        json_decref(payload);
        return err_set(e, ERR_INVALID, "more than %d pets in one order", INV_MAX_PETS);
    }
    p->msgs[p->n].type = type;
    p->msgs[p->n].payload = payload;
    p->n++;
    return 0;
}

/* A copy of ids (an array of strings), or [] for NULL. New reference. */
static json_t *ids_copy(const json_t *ids)
{
    return ids != NULL ? json_deep_copy(ids) : json_array();
}

static int reply(inv_plan_t *p, msg_type_t type, const char *order_id, const char *key,
                 const json_t *ids, err_t *e)
{
    json_t *copy = ids_copy(ids);
    if (copy == NULL || !json_is_array(copy)) {
        json_decref(copy);
        return err_set(e, ERR_INVALID, "%s: pet ids are not an array", key);
    }
    return add(p, type, json_pack("{s:s,s:o}", "order_id", order_id, key, copy), e);
}

/* The pet ids of changed ([[id, version], ...]) as a new array, checking every entry. */
static int changed_ids(const json_t *changed, json_t **out, err_t *e)
{
    json_t *ids = json_array();
    size_t i;
    json_t *entry;
    if (ids == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    json_array_foreach(changed, i, entry)
    {
        const char *id = json_string_value(json_array_get(entry, 0));
        if (id == NULL || json_array_append_new(ids, json_string(id)) != 0) {
            json_decref(ids);
            return err_set(e, ERR_INVALID, "changed[%zu]: expected [pet_id, version]", i);
        }
    }
    *out = ids;
    return 0;
}

/* The pets of changed ([[id, version], ...]; NULL reads as []) as [{pet_id, version}, ...], in
 * the order given (pet id order), checking every entry. */
static int changed_pets(const json_t *changed, json_t **out, err_t *e)
{
    json_t *pets = json_array();
    size_t i;
    json_t *entry;
    if (pets == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    json_array_foreach(changed, i, entry)
    {
        const char *id = json_string_value(json_array_get(entry, 0));
        const json_t *v = json_array_get(entry, 1);
        if (id == NULL || !json_is_integer(v) || json_integer_value(v) < 1) {
            json_decref(pets);
            return err_set(e, ERR_INVALID, "changed[%zu]: expected [pet_id, version]", i);
        }
        if (json_array_append_new(pets, json_pack("{s:s,s:I}", "pet_id", id, "version",
                                                  json_integer_value(v))) != 0) {
            json_decref(pets);
            return err_set(e, ERR_NOMEM, "out of memory");
        }
    }
    *out = pets;
    return 0;
}

/* A reply that may change pets (reserved, released, sale_confirmed): pet_ids and, in pets, the
 * pets this reply changed with their new versions ([] when it repeats an earlier answer). */
static int reply_changed(inv_plan_t *p, msg_type_t type, const char *order_id, const json_t *ids,
                         const json_t *changed, err_t *e)
{
    json_t *pets = NULL;
    int rc = changed_pets(changed, &pets, e);
    if (rc != 0)
        return rc;
    json_t *copy = ids_copy(ids);
    if (copy == NULL || !json_is_array(copy)) {
        json_decref(copy);
        json_decref(pets);
        return err_set(e, ERR_INVALID, "pet_ids: pet ids are not an array");
    }
    return add(p, type,
               json_pack("{s:s,s:o,s:o}", "order_id", order_id, "pet_ids", copy, "pets", pets), e);
}

static int plan_reserve(const char *order_id, const inv_outcome_t *o, const json_t *changed,
                        inv_plan_t *p, err_t *e)
{
    if (o->prior == INV_RES_NONE && o->status == INV_RES_RESERVED) {
        /* All or nothing: a fresh reservation changed every one of its pets. */
        if (json_array_size(changed) != json_array_size(o->pet_ids))
            return err_set(e, ERR_INVALID, "reservation holds %zu pets but reserved %zu",
                           json_array_size(o->pet_ids), json_array_size(changed));
        return reply_changed(p, MSG_INVENTORY_RESERVED_V1, order_id, o->pet_ids, changed, e);
    }
    if (json_array_size(changed) != 0)
        return err_set(e, ERR_INVALID, "a reserve that did not reserve changed %zu pets",
                       json_array_size(changed));
    switch (o->prior == INV_RES_NONE ? o->status : o->prior) {
    case INV_RES_RESERVED:
    case INV_RES_SOLD:
        return reply_changed(p, MSG_INVENTORY_RESERVED_V1, order_id, o->pet_ids, NULL, e);
    case INV_RES_REJECTED:
    case INV_RES_RELEASED:
        return reply(p, MSG_INVENTORY_RESERVATION_REJECTED_V1, order_id, "unavailable_pet_ids",
                     o->unavailable, e);
    case INV_RES_NONE:
        break;
    }
    p->raced = 1;
    return 0;
}

static int plan_release(const char *order_id, const inv_outcome_t *o, const json_t *changed,
                        inv_plan_t *p, err_t *e)
{
    switch (o->prior) {
    case INV_RES_RESERVED: {
        json_t *ids = NULL;
        int rc = changed_ids(changed, &ids, e);
        if (rc != 0)
            return rc;
        rc = reply_changed(p, MSG_INVENTORY_RELEASED_V1, order_id, ids, changed, e);
        json_decref(ids);
        if (rc == 0 && json_array_size(changed) != json_array_size(o->pet_ids))
            p->anomaly = "reserved pets were not held by their order";
        return rc;
    }
    case INV_RES_NONE:
        if (o->status == INV_RES_NONE) {
            p->raced = 1;
            return 0;
        }
        return reply_changed(p, MSG_INVENTORY_RELEASED_V1, order_id, NULL, NULL, e);
    case INV_RES_REJECTED:
    case INV_RES_RELEASED:
        return reply_changed(p, MSG_INVENTORY_RELEASED_V1, order_id, NULL, NULL, e);
    case INV_RES_SOLD:
        break;
    }
    p->anomaly = "release of a sold order";
    return 0;
}

static int plan_confirm(const char *order_id, const inv_outcome_t *o, const json_t *changed,
                        inv_plan_t *p, err_t *e)
{
    switch (o->prior) {
    case INV_RES_RESERVED:
        if (json_array_size(changed) != json_array_size(o->pet_ids))
            p->anomaly = "reserved pets were not held by their order";
        return reply_changed(p, MSG_INVENTORY_SALE_CONFIRMED_V1, order_id, o->pet_ids, changed, e);
    case INV_RES_SOLD:
        return reply_changed(p, MSG_INVENTORY_SALE_CONFIRMED_V1, order_id, o->pet_ids, NULL, e);
    case INV_RES_NONE:
        p->anomaly = "confirm_sale of an order with no reservation";
        return 0;
    case INV_RES_REJECTED:
        p->anomaly = "confirm_sale of a rejected reservation";
        return 0;
    case INV_RES_RELEASED:
        break;
    }
    p->anomaly = "confirm_sale of a released reservation";
    return 0;
}

int inv_plan(inv_cmd_t cmd, const char *order_id, const inv_outcome_t *o, inv_plan_t *out, err_t *e)
{
    const json_t *changed = o->changed; /* NULL reads as []: jansson's array calls accept it */
    int rc;

    memset(out, 0, sizeof(*out));
    if (changed != NULL && !json_is_array(changed))
        return err_set(e, ERR_INVALID, "changed: expected an array");
    switch (cmd) {
    case INV_CMD_RESERVE:
        rc = plan_reserve(order_id, o, changed, out, e);
        break;
    case INV_CMD_RELEASE:
        rc = plan_release(order_id, o, changed, out, e);
        break;
    case INV_CMD_CONFIRM_SALE:
        rc = plan_confirm(order_id, o, changed, out, e);
        break;
    default:
        rc = err_set(e, ERR_INVALID, "unknown command %d", (int)cmd);
        break;
    }
    /* The outcome came from our own statement, so a payload that breaks its contract is a bug
     * here or in the SQL; ERR_INVALID dead-letters the command instead of retrying it forever. */
    for (size_t i = 0; rc == 0 && i < out->n; i++) {
        err_t ve;
        err_clear(&ve);
        rc = msg_validate(out->msgs[i].type, out->msgs[i].payload, &ve);
        if (rc != 0)
            rc = err_set(e, ERR_INVALID, "%s: %s", msg_type_info(out->msgs[i].type)->name, ve.msg);
    }
    if (rc != 0)
        inv_plan_clear(out);
    return rc;
}
