/* handlers: the inventory's commands.
 *
 * Every handler runs inside the consumer's batch transaction (svc.h). The reservation row of an
 * order is read FOR UPDATE first: it serialises every command about that order and records the
 * final answer, so a repeated or late command (redelivered, re-sent by the saga, or arriving
 * after its compensation when several instances compete) is answered exactly as before and
 * never changes a pet twice.
 *
 * Invariants (also in the schema): a pet is reserved or sold for exactly one order; a
 * reservation is all or nothing; pets are locked in id order so concurrent batches cannot
 * deadlock; every pet change bumps its version and is announced with
 * inventory.pet_status_changed, correlated by pet id so one pet's events stay in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_array.h"
#include "inventory.h"

static const db_stmt_t reservation_stmt = {
    .name = "inv_reservation",
    .sql = "SELECT status, pet_ids::text[] FROM reservations WHERE order_id = $1::uuid FOR UPDATE",
    .nparams = 1,
};

/* Locks the requested pets that exist, in id order, and says which are available. */
static const db_stmt_t lock_pets_stmt = {
    .name = "inv_lock_pets",
    .sql = "SELECT id::text, status = 'available' FROM pets WHERE id = ANY($1::uuid[]) "
           "ORDER BY id FOR UPDATE",
    .nparams = 1,
};

static const db_stmt_t reserve_stmt = {
    .name = "inv_reserve",
    .sql = "WITH upd AS ("
           "  UPDATE pets SET status = 'reserved', order_id = $1::uuid, version = version + 1,"
           "         updated_at = now()"
           "  WHERE id = ANY($2::uuid[]) AND status = 'available' RETURNING id, version,"
           "         price_cents"
           "), ins AS ("
           "  INSERT INTO reservations (order_id, status, pet_ids, total_cents)"
           "  SELECT $1::uuid, 'reserved', $2::uuid[], coalesce(sum(price_cents), 0) FROM upd"
           ") SELECT id::text, version FROM upd ORDER BY id",
    .nparams = 2,
};

static const db_stmt_t reject_stmt = {
    .name = "inv_reject",
    .sql = "INSERT INTO reservations (order_id, status, pet_ids) VALUES ($1::uuid, $2, '{}')",
    .nparams = 2,
};

static const db_stmt_t release_stmt = {
    .name = "inv_release",
    .sql = "WITH upd AS ("
           "  UPDATE pets SET status = 'available', order_id = NULL, version = version + 1,"
           "         updated_at = now()"
           "  WHERE order_id = $1::uuid AND status = 'reserved' RETURNING id, version"
           "), res AS ("
           "  UPDATE reservations SET status = 'released', updated_at = now()"
           "  WHERE order_id = $1::uuid"
           ") SELECT id::text, version FROM upd ORDER BY id",
    .nparams = 1,
};

static const db_stmt_t sell_stmt = {
    .name = "inv_sell",
    .sql = "WITH upd AS ("
           "  UPDATE pets SET status = 'sold', version = version + 1, updated_at = now()"
           "  WHERE order_id = $1::uuid AND status = 'reserved' RETURNING id, version"
           "), res AS ("
           "  UPDATE reservations SET status = 'sold', updated_at = now()"
           "  WHERE order_id = $1::uuid"
           ") SELECT id::text, version FROM upd ORDER BY id",
    .nparams = 1,
};

static const db_stmt_t list_stmt = {
    .name = "inv_list",
    .sql = "INSERT INTO pets (id, name, species, price_cents) VALUES ($1::uuid, $2, $3, $4::bigint)"
           " ON CONFLICT (id) DO NOTHING RETURNING version",
    .nparams = 4,
};

static const char *str(const json_t *payload, const char *key)
{
    return json_string_value(json_object_get(payload, key));
}

/* Announces a pet's new status (correlated by pet id, so one pet's events stay ordered). */
static int emit_pet_status(db_conn_t *db, const svc_msg_t *m, const char *pet_id,
                           const char *version, const char *status, const char *order_id,
                           err_t *e)
{
    svc_cause_t cause = svc_cause_of("inventory", m);
    cause.correlation_id = pet_id;
    json_t *p = json_pack("{s:s,s:s,s:I}", "pet_id", pet_id, "status", status, "version",
                          (json_int_t)atoll(version));
    if (p != NULL && order_id != NULL)
        json_object_set_new(p, "order_id", json_string(order_id));
    int rc = p ? svc_emit(db, &cause, MSG_INVENTORY_PET_STATUS_CHANGED_V1, p, e)
               : err_set(e, ERR_NOMEM, "out of memory");
    json_decref(p);
    return rc;
}

/* Emits one order reply: payload {order_id, <key>: ids}. ids is stolen. */
static int emit_reply(db_conn_t *db, const svc_msg_t *m, msg_type_t type, const char *key,
                      json_t *ids, err_t *e)
{
    svc_cause_t cause = svc_cause_of("inventory", m);
    json_t *p = json_pack("{s:s,s:o}", "order_id", str(m->payload, "order_id"), key, ids);
    int rc = p ? svc_emit(db, &cause, type, p, e) : err_set(e, ERR_NOMEM, "out of memory");
    json_decref(p);
    return rc;
}

/* Emits pet_status_changed for every (id, version) row of res, and returns their ids. */
static int announce(db_conn_t *db, const svc_msg_t *m, db_result_t *res, const char *status,
                    json_t *ids, err_t *e)
{
    const char *order_id = strcmp(status, "available") == 0 ? NULL : str(m->payload, "order_id");
    for (int i = 0; i < db_rows(res); i++) {
        int rc = emit_pet_status(db, m, db_value(res, i, 0), db_value(res, i, 1), status,
                                 order_id, e);
        if (rc != 0)
            return rc;
        json_array_append_new(ids, json_string(db_value(res, i, 0)));
    }
    return 0;
}

/* The order's reservation row: *status "" when none; *pets its pet ids (new reference). */
static int load_reservation(db_conn_t *db, const char *order_id, char *status, size_t n,
                            json_t **pets, err_t *e)
{
    db_result_t *res = NULL;
    const char *params[] = {order_id};
    int rc = db_exec(db, &reservation_stmt, params, &res, e);
    if (rc != 0)
        return rc;
    status[0] = '\0';
    *pets = json_array();
    if (db_rows(res) == 1) {
        snprintf(status, n, "%s", db_value(res, 0, 0));
        json_decref(*pets);
        *pets = db_array_to_json(db_value(res, 0, 1));
    }
    db_result_free(res);
    return 0;
}

int inventory_handle_reserve(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    const char *order_id = str(m->payload, "order_id");
    const json_t *wanted = json_object_get(m->payload, "pet_ids");
    char status[16];
    json_t *pets = NULL;
    db_result_t *res = NULL;
    char *wanted_pg = NULL;
    int rc = load_reservation(db, order_id, status, sizeof(status), &pets, e);
    if (rc != 0)
        return rc;
    if (strcmp(status, "reserved") == 0 || strcmp(status, "sold") == 0) {
        log_info(m->log, "inventory.reserve_repeated", json_pack("{s:s}", "status", status));
        return emit_reply(db, m, MSG_INVENTORY_RESERVED_V1, "pet_ids", pets, e);
    }
    if (status[0] != '\0') {
        /* Released or rejected before: a late reserve must not lock pets. */
        json_decref(pets);
        log_info(m->log, "inventory.reserve_after_close", json_pack("{s:s}", "status", status));
        return emit_reply(db, m, MSG_INVENTORY_RESERVATION_REJECTED_V1, "unavailable_pet_ids",
                          json_deep_copy(wanted), e);
    }
    json_decref(pets);

    wanted_pg = db_array_from_json(wanted);
    if (wanted_pg == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    const char *lock_params[] = {wanted_pg};
    rc = db_exec(db, &lock_pets_stmt, lock_params, &res, e);
    if (rc != 0)
        goto out;
    /* Unavailable = requested but missing, or present but not available. */
    json_t *unavailable = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(wanted, i, id)
    {
        int ok = 0;
        for (int r = 0; r < db_rows(res); r++)
            if (strcmp(db_value(res, r, 0), json_string_value(id)) == 0)
                ok = strcmp(db_value(res, r, 1), "t") == 0;
        if (!ok)
            json_array_append(unavailable, id);
    }
    db_result_free(res);
    res = NULL;

    if (json_array_size(unavailable) > 0) {
        const char *params[] = {order_id, "rejected"};
        rc = db_exec(db, &reject_stmt, params, NULL, e);
        if (rc == 0) {
            log_info(m->log, "inventory.reservation_rejected",
                     json_pack("{s:O}", "unavailable_pet_ids", unavailable));
            rc = emit_reply(db, m, MSG_INVENTORY_RESERVATION_REJECTED_V1, "unavailable_pet_ids",
                            unavailable, e);
        } else {
            json_decref(unavailable);
        }
        goto out;
    }
    json_decref(unavailable);
    const char *params[] = {order_id, wanted_pg};
    rc = db_exec(db, &reserve_stmt, params, &res, e);
    if (rc != 0)
        goto out;
    if ((size_t)db_rows(res) != json_array_size(wanted)) {
        /* The pets were locked and available a moment ago in this very transaction. */
        rc = err_set(e, ERR_INTERNAL, "reserved %d of %zu locked pets", db_rows(res),
                     json_array_size(wanted));
        goto out;
    }
    json_t *ids = json_array();
    rc = announce(db, m, res, "reserved", ids, e);
    if (rc == 0)
        rc = emit_reply(db, m, MSG_INVENTORY_RESERVED_V1, "pet_ids", ids, e);
    else
        json_decref(ids);
out:
    db_result_free(res);
    free(wanted_pg);
    return rc;
}

/* Moves the order's held pets with stmt (release or sell), announces each pet's new status and
 * replies with their ids. */
static int move_held_pets(db_conn_t *db, const svc_msg_t *m, const db_stmt_t *stmt,
                          const char *pet_status, msg_type_t reply, err_t *e)
{
    const char *params[] = {str(m->payload, "order_id")};
    db_result_t *res = NULL;
    int rc = db_exec(db, stmt, params, &res, e);
    if (rc == 0) {
        json_t *ids = json_array();
        rc = announce(db, m, res, pet_status, ids, e);
        if (rc == 0)
            rc = emit_reply(db, m, reply, "pet_ids", ids, e);
        else
            json_decref(ids);
    }
    db_result_free(res);
    return rc;
}

int inventory_handle_release(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    const char *order_id = str(m->payload, "order_id");
    char status[16];
    json_t *pets = NULL;
    int rc = load_reservation(db, order_id, status, sizeof(status), &pets, e);
    if (rc != 0)
        return rc;
    json_decref(pets);
    if (status[0] == '\0') {
        /* The release overtook its reserve: leave a tombstone so the reserve is refused. */
        const char *params[] = {order_id, "released"};
        rc = db_exec(db, &reject_stmt, params, NULL, e);
        if (rc == 0)
            rc = emit_reply(db, m, MSG_INVENTORY_RELEASED_V1, "pet_ids", json_array(), e);
        return rc;
    }
    if (strcmp(status, "sold") == 0) {
        log_error(m->log, "inventory.release_after_sale",
                  json_pack("{s:s}", "why", "an order that was sold cannot be released; an "
                                            "operator must look at this saga"));
        return 0;
    }
    if (strcmp(status, "reserved") != 0) /* released or rejected: nothing is held */
        return emit_reply(db, m, MSG_INVENTORY_RELEASED_V1, "pet_ids", json_array(), e);

    return move_held_pets(db, m, &release_stmt, "available", MSG_INVENTORY_RELEASED_V1, e);
}

int inventory_handle_confirm_sale(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    const char *order_id = str(m->payload, "order_id");
    char status[16];
    json_t *pets = NULL;
    int rc = load_reservation(db, order_id, status, sizeof(status), &pets, e);
    if (rc != 0)
        return rc;
    if (strcmp(status, "sold") == 0)
        return emit_reply(db, m, MSG_INVENTORY_SALE_CONFIRMED_V1, "pet_ids", pets, e);
    json_decref(pets);
    if (strcmp(status, "reserved") != 0) {
        log_error(m->log, "inventory.confirm_without_reservation",
                  json_pack("{s:s}", "reservation", status[0] ? status : "none"));
        return 0;
    }
    return move_held_pets(db, m, &sell_stmt, "sold", MSG_INVENTORY_SALE_CONFIRMED_V1, e);
}

int inventory_list_pet(db_conn_t *db, const svc_cause_t *cause, const char *pet_id,
                       const char *name, const char *species, long long price_cents,
                       int *inserted, err_t *e)
{
    char price[24];
    snprintf(price, sizeof(price), "%lld", price_cents);
    const char *params[] = {pet_id, name, species, price};
    db_result_t *res = NULL;
    int rc = db_exec(db, &list_stmt, params, &res, e);
    if (rc != 0)
        return rc;
    int added = db_rows(res) == 1;
    db_result_free(res);
    if (inserted != NULL)
        *inserted = added;
    if (!added)
        return 0;
    svc_cause_t c = *cause;
    c.correlation_id = pet_id;
    json_t *p = json_pack("{s:s,s:s,s:s,s:I,s:s,s:i}", "pet_id", pet_id, "name", name, "species",
                          species, "price_cents", (json_int_t)price_cents, "status", "available",
                          "version", 1);
    rc = p ? svc_emit(db, &c, MSG_INVENTORY_PET_LISTED_V1, p, e)
           : err_set(e, ERR_NOMEM, "out of memory");
    json_decref(p);
    return rc;
}

int inventory_handle_list_pet(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    svc_cause_t cause = svc_cause_of("inventory", m);
    int inserted = 0;
    int rc = inventory_list_pet(db, &cause, str(m->payload, "pet_id"), str(m->payload, "name"),
                                str(m->payload, "species"),
                                json_integer_value(json_object_get(m->payload, "price_cents")),
                                &inserted, e);
    if (rc == 0 && !inserted)
        log_info(m->log, "inventory.pet_exists",
                 json_pack("{s:s}", "pet_id", str(m->payload, "pet_id")));
    return rc;
}
