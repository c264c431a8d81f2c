/* orders: the order API. POST answers 202 at once; the saga does the work and the storefront's
 * read model (events.c) follows it.
 *
 * Placing an order is ONE transaction: the idempotency record, the order row (PENDING, version
 * 1), its first history entry and the order.placed message in the outbox. A repeated request
 * with the same Idempotency-Key and the same body gets the same 202 and the same order; with
 * another body, 422; while the first is still being written, 409 (the key's row is locked and
 * this request gives up after a short lock timeout).
 *
 * The card number lives only in this request: it is checked (12-19 digits), sealed with the
 * payment service's public key and dropped; the order keeps its last four digits. The request
 * fingerprint stored with the key covers the pet ids, the last four digits and the number's
 * length, never the number itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card_seal.h"
#include "db_array.h"
#include "msg.h"
#include "storefront.h"
#include "uuid.h"

static const db_stmt_t claim_key_stmt = {
    .name = "sf_claim_key",
    .sql = "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ($1::uuid, $2, decode($3, 'hex'))"
           " ON CONFLICT DO NOTHING RETURNING 1",
    .nparams = 3,
};

static const db_stmt_t read_key_stmt = {
    .name = "sf_read_key",
    .sql = "SELECT encode(request_hash, 'hex'), status_code, response::text FROM idempotency_keys"
           " WHERE user_id = $1::uuid AND key = $2",
    .nparams = 2,
};

static const db_stmt_t price_pets_stmt = {
    .name = "sf_price_pets",
    .sql = "SELECT id::text, status, price_cents FROM pets WHERE id = ANY($1::uuid[])"
           " AND name IS NOT NULL",
    .nparams = 1,
};

static const db_stmt_t insert_order_stmt = {
    .name = "sf_insert_order",
    .sql = "WITH o AS (INSERT INTO orders (id, user_id, status, total_cents, pet_ids, card_last4,"
           "  version) VALUES ($1::uuid, $2::uuid, 'PENDING', $3::bigint, $4::uuid[], $5, 1)"
           "  RETURNING id, created_at) "
           "INSERT INTO order_history (order_id, version, status, at)"
           " SELECT id, 1, 'PENDING', created_at FROM o",
    .nparams = 5,
};

static const db_stmt_t store_answer_stmt = {
    .name = "sf_store_answer",
    .sql = "UPDATE idempotency_keys SET order_id = $3::uuid, status_code = 202,"
           " response = $4::jsonb WHERE user_id = $1::uuid AND key = $2",
    .nparams = 4,
};

static const db_stmt_t cart_pets_stmt = {
    .name = "sf_order_cart",
    .sql = "SELECT pet_id::text FROM cart_items WHERE user_id = $1::uuid"
           " ORDER BY added_at, pet_id LIMIT 21",
    .nparams = 1,
};

static const db_stmt_t empty_cart_stmt = {
    .name = "sf_order_empty_cart",
    .sql = "DELETE FROM cart_items WHERE user_id = $1::uuid AND pet_id = ANY($2::uuid[])",
    .nparams = 2,
};

static const db_stmt_t get_order_stmt = {
    .name = "sf_get_order",
    .sql = "SELECT id::text, status, reason, total_cents, pet_ids::text[], card_last4,"
           " " SF_TIME("created_at") ", " SF_TIME("updated_at") ","
           " (SELECT coalesce(json_agg(json_build_object('status', h.status, 'reason', h.reason,"
           "   'at', " SF_TIME("h.at") ") ORDER BY h.version), '[]') FROM order_history h"
           "   WHERE h.order_id = o.id)::text, version"
           " FROM orders o WHERE id = $1::uuid AND user_id = $2::uuid",
    .nparams = 2,
};

static const db_stmt_t list_orders_stmt = {
    .name = "sf_list_orders",
    .sql = "SELECT id::text, status, reason, total_cents, pet_ids::text[], card_last4,"
           " " SF_TIME("created_at") ", " SF_TIME("updated_at") ", NULL, version"
           " FROM orders o WHERE user_id = $1::uuid ORDER BY created_at DESC, id DESC LIMIT 100",
    .nparams = 1,
};

static const db_stmt_t lock_order_stmt = {
    .name = "sf_lock_order",
    .sql = "SELECT status FROM orders WHERE id = $1::uuid AND user_id = $2::uuid FOR UPDATE",
    .nparams = 2,
};

static json_t *order_json(db_result_t *res, int row)
{
    json_t *o = json_pack("{s:s,s:s,s:o,s:I,s:o,s:s,s:s,s:s}", "id", db_value(res, row, 0),
                          "status", db_value(res, row, 1), "reason",
                          db_is_null(res, row, 2) ? json_null() : json_string(db_value(res, row, 2)),
                          "total_cents", (json_int_t)atoll(db_value(res, row, 3)), "pet_ids",
                          db_array_to_json(db_value(res, row, 4)), "card_last4", db_value(res, row, 5),
                          "created_at", db_value(res, row, 6), "updated_at", db_value(res, row, 7));
    if (o != NULL)
        json_object_set_new(o, "version", json_integer(atoi(db_value(res, row, 9))));
    if (o != NULL && !db_is_null(res, row, 8)) {
        json_t *history = json_loads(db_value(res, row, 8), 0, NULL);
        json_object_set_new(o, "history", history ? history : json_array());
    }
    return o;
}

/* Answers a key that was used before. Returns after responding. */
static void replay(http_request_t *req, db_conn_t *db, const char *user_id, const char *key,
                   const char *hash)
{
    const char *params[] = {user_id, key};
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    if (db_exec(db, &read_key_stmt, params, &res, &e) != 0) {
        sf_db_error(req, &e);
        return;
    }
    if (db_rows(res) != 1 || db_is_null(res, 0, 2)) {
        http_respond_problem(req, 409, "request-in-progress", "Conflict",
                             "a request with this Idempotency-Key is still in progress", NULL);
    } else if (strcmp(db_value(res, 0, 0), hash) != 0) {
        http_respond_problem(req, 422, "idempotency-key-reused", "Unprocessable Content",
                             "this Idempotency-Key was used with a different request", NULL);
    } else {
        json_t *answer = json_loads(db_value(res, 0, 2), 0, NULL);
        char location[64];
        snprintf(location, sizeof(location), "/v1/orders/%s",
                 json_string_value(json_object_get(answer, "id")));
        http_add_header(req, "Location", location);
        http_add_header(req, "Retry-After", "1");
        http_respond_json(req, atoi(db_value(res, 0, 1)), answer);
    }
    db_result_free(res);
}

int sf_post_orders(http_request_t *req, void *svc)
{
    const storefront_app_t *app = svc_app(svc);
    log_ctx_t ctx = sf_log_ctx(req);
    db_conn_t *db = NULL;
    json_t *body = NULL, *payload = NULL, *answer = NULL, *cart = NULL;
    db_result_t *res = NULL;
    char *pets_pg = NULL;
    char user_id[UUID_STR_LEN];
    err_t e;
    err_clear(&e);

    if (!sf_db(req, &db) || !sf_user(req, db, user_id))
        return 0;
    const char *key = http_header(req, "Idempotency-Key");
    if (key == NULL || key[0] == '\0' || strlen(key) > 255) {
        http_respond_problem(req, 400, "idempotency-key-required", "Bad Request",
                             "an Idempotency-Key header of 1 to 255 characters is required",
                             NULL);
        return 0;
    }
    if (http_read_json_object(req, &body) != 0)
        return 0;
    const char *card = json_string_value(json_object_get(body, "card_number"));
    const json_t *pet_ids = json_object_get(body, "pet_ids");
    json_t *errors = json_array();
    char detail[128];
    if (!sf_card_syntax_ok(card))
        sf_error(errors, "card_number", "a string of 12 to 19 digits");
    if (pet_ids != NULL && !sf_pet_ids_ok(pet_ids, detail, sizeof(detail)))
        sf_error(errors, "pet_ids", detail);
    if (json_array_size(errors) > 0) {
        sf_invalid(req, errors);
        goto out;
    }
    json_decref(errors);

    char hash[SF_FINGERPRINT_HEX];
    if (sf_order_fingerprint(pet_ids, card, hash) != 0) {
        http_respond_problem(req, 503, "unavailable", "Service Unavailable",
                             "out of memory; try again", NULL);
        goto out;
    }
    if (db_begin(db, &e) != 0)
        goto db_fail;
    /* A concurrent request with the same key holds its row: wait briefly, then say 409. */
    if (db_exec_sql(db, "SET LOCAL lock_timeout = '2s'", 0, NULL, NULL, &e) != 0)
        goto db_fail;
    const char *kp[] = {user_id, key, hash};
    if (db_exec(db, &claim_key_stmt, kp, &res, &e) != 0) {
        if (strcmp(e.sqlstate, "55P03") == 0) {
            db_rollback(db);
            http_respond_problem(req, 409, "request-in-progress", "Conflict",
                                 "a request with this Idempotency-Key is still in progress", NULL);
            goto out;
        }
        goto db_fail;
    }
    int claimed = db_rows(res) == 1;
    db_result_free(res);
    res = NULL;
    if (!claimed) {
        db_rollback(db);
        replay(req, db, user_id, key, hash);
        goto out;
    }

    if (pet_ids == NULL) {
        /* No pets named: order the cart. */
        const char *cp[] = {user_id};
        if (db_exec(db, &cart_pets_stmt, cp, &res, &e) != 0)
            goto db_fail;
        cart = json_array();
        for (int r = 0; r < db_rows(res); r++)
            json_array_append_new(cart, json_string(db_value(res, r, 0)));
        db_result_free(res);
        res = NULL;
        if (json_array_size(cart) == 0 || json_array_size(cart) > 20) {
            db_rollback(db);
            json_t *errs = json_array();
            sf_error(errs, "pet_ids",
                     json_array_size(cart) == 0
                         ? "the cart is empty: name the pets or add them to the cart"
                         : "the cart holds more than 20 pets: order at most 20 at once");
            sf_invalid(req, errs);
            goto out;
        }
        pet_ids = cart;
    }
    pets_pg = db_array_from_json(pet_ids);
    const char *pp[] = {pets_pg};
    if (pets_pg == NULL || db_exec(db, &price_pets_stmt, pp, &res, &e) != 0)
        goto db_fail;
    long long total = 0;
    json_t *missing = json_array(), *taken = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(pet_ids, i, id)
    {
        int row = -1;
        for (int r = 0; r < db_rows(res); r++)
            if (strcmp(db_value(res, r, 0), json_string_value(id)) == 0)
                row = r;
        if (row < 0)
            json_array_append(missing, id);
        else if (strcmp(db_value(res, row, 1), "available") != 0)
            json_array_append(taken, id);
        else
            total += atoll(db_value(res, row, 2));
    }
    db_result_free(res);
    res = NULL;
    if (json_array_size(missing) > 0 || json_array_size(taken) > 0) {
        db_rollback(db); /* the key is not consumed: the customer may try again */
        if (json_array_size(missing) > 0)
            http_respond_problem(req, 404, "pet-not-found", "Not Found", "no such pet",
                                 json_pack("{s:O}", "pet_ids", missing));
        else
            http_respond_problem(req, 409, "pet-not-available", "Conflict",
                                 "a pet is already reserved or sold",
                                 json_pack("{s:O}", "pet_ids", taken));
        json_decref(missing);
        json_decref(taken);
        goto out;
    }
    json_decref(missing);
    json_decref(taken);

    char order_id[UUID_STR_LEN], sealed[CARD_SEALED_B64_SIZE], total_s[24], last4[5];
    uuid_v7(order_id);
    snprintf(total_s, sizeof(total_s), "%lld", total);
    snprintf(last4, sizeof(last4), "%s", card + strlen(card) - 4);
    if (card_seal(app->payment_pk, card, sealed) != 0) {
        err_set(&e, ERR_INTERNAL, "card sealing failed");
        goto db_fail;
    }
    const char *op[] = {order_id, user_id, total_s, pets_pg, last4};
    if (db_exec(db, &insert_order_stmt, op, NULL, &e) != 0)
        goto db_fail;
    if (cart != NULL) {
        const char *ep[] = {user_id, pets_pg};
        if (db_exec(db, &empty_cart_stmt, ep, NULL, &e) != 0)
            goto db_fail;
    }
    payload = json_pack("{s:s,s:s,s:O,s:I,s:s,s:s}", "order_id", order_id, "user_id", user_id,
                        "pet_ids", pet_ids, "total_cents", (json_int_t)total, "card_sealed",
                        sealed, "card_last4", last4);
    svc_cause_t cause = {.app_id = "storefront", .correlation_id = order_id,
                         .trace = http_trace(req)};
    if (svc_emit(db, &cause, MSG_ORDER_PLACED_V1, payload, &e) != 0)
        goto db_fail;
    answer = json_pack("{s:s,s:s,s:I}", "id", order_id, "status", "PENDING", "total_cents",
                       (json_int_t)total);
    char *answer_text = json_dumps(answer, JSON_COMPACT);
    const char *ap[] = {user_id, key, order_id, answer_text};
    int rc = answer_text ? db_exec(db, &store_answer_stmt, ap, NULL, &e) : ERR_NOMEM;
    free(answer_text);
    if (rc != 0 || db_commit(db, &e) != 0)
        goto db_fail;

    ctx.order_id = order_id;
    log_info(&ctx, "order.placed", json_pack("{s:I,s:i,s:s}", "total_cents", (json_int_t)total,
                                             "pets", (int)json_array_size(pet_ids), "card_last4",
                                             last4));
    char location[64];
    snprintf(location, sizeof(location), "/v1/orders/%s", order_id);
    http_add_header(req, "Location", location);
    http_add_header(req, "Retry-After", "1");
    http_respond_json(req, 202, answer);
    answer = NULL;
    goto out;
db_fail:
    db_rollback(db);
    sf_db_error(req, &e);
out:
    db_result_free(res);
    free(pets_pg);
    json_decref(payload);
    json_decref(answer);
    json_decref(cart);
    json_decref(body);
    return 0;
}

int sf_order_load(db_conn_t *db, const char *order_id, const char *user_id, json_t **out,
                  err_t *e)
{
    const char *params[] = {order_id, user_id};
    db_result_t *res = NULL;
    int rc = db_exec(db, &get_order_stmt, params, &res, e);
    if (rc != 0)
        return rc;
    if (db_rows(res) == 1)
        *out = order_json(res, 0);
    else
        rc = err_set(e, ERR_NOTFOUND, "no such order");
    db_result_free(res);
    return rc;
}

/* GET /v1/orders/{id}[?wait=S&status=X]: with wait, the answer is held until the status is no
 * longer X (default: the current status) or S seconds (at most 30) have passed. */
int sf_get_order(http_request_t *req, void *svc)
{
    (void)svc;
    db_conn_t *db = NULL;
    char user_id[UUID_STR_LEN];
    if (!sf_db(req, &db) || !sf_user(req, db, user_id))
        return 0;
    const char *id = http_param(req, "id");
    if (!msg_is_uuid(id)) {
        http_respond_problem(req, 404, "not-found", "Not Found", "no such order", NULL);
        return 0;
    }
    const char *wait_s = http_query(req, "wait");
    long wait = 0;
    if (wait_s != NULL) {
        char *end = NULL;
        wait = strtol(wait_s, &end, 10);
        if (end == wait_s || *end != '\0' || wait < 0 || wait > 30) {
            json_t *errs = json_array();
            sf_error(errs, "wait", "whole seconds from 0 to 30");
            sf_invalid(req, errs);
            return 0;
        }
    }
    json_t *order = NULL;
    err_t e;
    err_clear(&e);
    int rc = sf_order_load(db, id, user_id, &order, &e);
    if (rc == ERR_NOTFOUND) {
        http_respond_problem(req, 404, "not-found", "Not Found", "no such order", NULL);
        return 0;
    }
    if (rc != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    const char *current = json_string_value(json_object_get(order, "status"));
    const char *leave = http_query(req, "status");
    if (leave == NULL)
        leave = current;
    if (wait > 0 && strcmp(current, leave) == 0) {
        json_decref(order);
        sf_waiters_park(req, db, id, user_id, leave, (int)wait);
        return 0;
    }
    http_respond_json(req, 200, order);
    return 0;
}

int sf_get_orders(http_request_t *req, void *svc)
{
    (void)svc;
    db_conn_t *db = NULL;
    char user_id[UUID_STR_LEN];
    if (!sf_db(req, &db) || !sf_user(req, db, user_id))
        return 0;
    const char *params[] = {user_id};
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    if (db_exec(db, &list_orders_stmt, params, &res, &e) != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    json_t *items = json_array();
    for (int i = 0; i < db_rows(res); i++)
        json_array_append_new(items, order_json(res, i));
    db_result_free(res);
    http_respond_json(req, 200, json_pack("{s:o}", "items", items));
    return 0;
}

int sf_post_cancel(http_request_t *req, void *svc)
{
    (void)svc;
    db_conn_t *db = NULL;
    db_result_t *res = NULL;
    char user_id[UUID_STR_LEN];
    err_t e;
    err_clear(&e);
    if (!sf_db(req, &db) || !sf_user(req, db, user_id))
        return 0;
    const char *id = http_param(req, "id");
    if (!msg_is_uuid(id)) {
        http_respond_problem(req, 404, "not-found", "Not Found", "no such order", NULL);
        return 0;
    }
    if (db_begin(db, &e) != 0)
        goto db_fail;
    const char *params[] = {id, user_id};
    if (db_exec(db, &lock_order_stmt, params, &res, &e) != 0)
        goto db_fail;
    if (db_rows(res) != 1) {
        db_rollback(db);
        http_respond_problem(req, 404, "not-found", "Not Found", "no such order", NULL);
        goto out;
    }
    char status[24];
    snprintf(status, sizeof(status), "%s", db_value(res, 0, 0));
    if (strcmp(status, "PENDING") != 0 && strcmp(status, "RESERVING") != 0 &&
        strcmp(status, "PAYING") != 0) {
        db_rollback(db);
        http_respond_problem(req, 409, "cannot-cancel", "Conflict",
                             "the order can no longer be cancelled",
                             json_pack("{s:s}", "order_status", status));
        goto out;
    }
    json_t *p = json_pack("{s:s,s:s}", "order_id", id, "user_id", user_id);
    svc_cause_t cause = {.app_id = "storefront", .correlation_id = id, .trace = http_trace(req)};
    int rc = svc_emit(db, &cause, MSG_ORDER_CANCEL_REQUESTED_V1, p, &e);
    json_decref(p);
    if (rc != 0 || db_commit(db, &e) != 0)
        goto db_fail;
    http_respond_json(req, 202, json_pack("{s:s,s:s,s:b}", "id", id, "status", status,
                                          "cancel_requested", 1));
    goto out;
db_fail:
    db_rollback(db);
    sf_db_error(req, &e);
out:
    db_result_free(res);
    return 0;
}
