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
#include "order_status.h"
#include "storefront.h"
#include "uuid.h"

static const db_stmt_t claim_key_stmt = {
    .name = "sf_claim_key",
    .sql = "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ($1::uuid, $2, "
           "decode($3, 'hex'))"
           " ON CONFLICT DO NOTHING RETURNING 1",
    .nparams = 3,
    .secret = DB_SECRET(3), /* a hash of the request, card number included */
};

static const db_stmt_t read_key_stmt = {
    .name = "sf_read_key",
    .sql = "SELECT encode(request_hash, 'hex') AS request_hash, status_code, response::text AS "
           "response"
           " FROM idempotency_keys"
           " WHERE user_id = $1::uuid AND key = $2",
    .nparams = 2,
};

static const db_stmt_t price_pets_stmt = {
    .name = "sf_price_pets",
    .sql = "SELECT id::text AS id, status, price_cents FROM pets WHERE id = ANY($1::uuid[])"
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
    .sql = "SELECT pet_id::text AS pet_id FROM cart_items WHERE user_id = $1::uuid"
           " ORDER BY added_at, pet_id LIMIT 21",
    .nparams = 1,
};

static const db_stmt_t empty_cart_stmt = {
    .name = "sf_order_empty_cart",
    .sql = "DELETE FROM cart_items WHERE user_id = $1::uuid AND pet_id = ANY($2::uuid[])",
    .nparams = 2,
};

static const db_stmt_t lock_order_stmt = {
    .name = "sf_lock_order",
    .sql = "SELECT status FROM orders WHERE id = $1::uuid AND user_id = $2::uuid FOR UPDATE",
    .nparams = 2,
};

/* ---- POST /v1/orders: one step per function, in the order the handler runs them ----
 *
 * Each step returns 0 to go on or ANSWERED once it has responded (having rolled back any
 * transaction it was in); a database failure is a negative code with o->e filled, which the
 * handler answers after rolling back. */

#define ANSWERED 1

typedef struct order_request {
    http_request_t *req;
    db_conn_t *db;
    char user_id[UUID_STR_LEN];
    const char *key;       /* the Idempotency-Key header, borrowed from req */
    json_t *body;          /* owned */
    const char *card;      /* the card number, borrowed from body */
    const json_t *pet_ids; /* borrowed from body, or cart */
    json_t *cart;          /* owned: the cart's pets when the body names none */
    char hash[SF_FINGERPRINT_HEX];
    char *pets_pg; /* owned: pet_ids as a PostgreSQL array literal */
    long long total;
    char order_id[UUID_STR_LEN];
    char last4[5];
    char sealed[CARD_SEALED_B64_SIZE];
    json_t *answer; /* owned: the 202's body */
    err_t e;
} order_request_t;

/* The Idempotency-Key header: 1 to 255 characters, else 400. */
static int check_key(order_request_t *o)
{
    o->key = http_header(o->req, "Idempotency-Key");
    if (o->key == NULL || o->key[0] == '\0' || strlen(o->key) > 255) {
        http_respond_kind(o->req, HTTP_PROBLEM_IDEMPOTENCY_KEY_REQUIRED,
                          "an Idempotency-Key header of 1 to 255 characters is required", NULL);
        return ANSWERED;
    }
    return 0;
}

/* The body: a JSON object with a card number and, optionally, the pets; else 4xx. */
static int read_body(order_request_t *o)
{
    if (http_read_json_object(o->req, &o->body) != 0)
        return ANSWERED;
    o->card = json_string_value(json_object_get(o->body, "card_number"));
    o->pet_ids = json_object_get(o->body, "pet_ids");
    json_t *errors = json_array();
    sf_check_order_body(o->body, errors);
    if (json_array_size(errors) > 0) {
        sf_invalid(o->req, errors);
        return ANSWERED;
    }
    json_decref(errors);
    return 0;
}

/* Answers a key that was used before: the stored answer, 422 for another request, or 409
 * while the first request is still being written. */
static void replay(order_request_t *o)
{
    const char *params[] = {o->user_id, o->key};
    db_result_t *res = NULL;
    if (db_exec(o->db, &read_key_stmt, params, &res, &o->e) != 0) {
        sf_db_error(o->req, &o->e);
        return;
    }
    int response = db_col_index(res, "response");
    log_ctx_t ctx = sf_log_ctx(o->req);
    if (db_rows(res) != 1 || db_is_null(res, 0, response)) {
        log_info(&ctx, "order.idempotency_hit",
                 json_pack("{s:s,s:s}", "key", o->key, "outcome", "in_progress"));
        http_respond_kind(o->req, HTTP_PROBLEM_REQUEST_IN_PROGRESS,
                          "a request with this Idempotency-Key is still in progress", NULL);
    } else if (strcmp(db_value(res, 0, db_col_index(res, "request_hash")), o->hash) != 0) {
        log_info(&ctx, "order.idempotency_hit",
                 json_pack("{s:s,s:s}", "key", o->key, "outcome", "key_reused"));
        http_respond_kind(o->req, HTTP_PROBLEM_IDEMPOTENCY_KEY_REUSED,
                          "this Idempotency-Key was used with a different request", NULL);
    } else {
        json_t *answer = json_loads(db_value(res, 0, response), 0, NULL);
        ctx.order_id = json_string_value(json_object_get(answer, "id"));
        log_info(&ctx, "order.idempotency_hit",
                 json_pack("{s:s,s:s}", "key", o->key, "outcome", "replayed"));
        http_log_order(o->req, ctx.order_id);
        char location[64];
        snprintf(location, sizeof(location), "/v1/orders/%s",
                 json_string_value(json_object_get(answer, "id")));
        http_add_header(o->req, "Location", location);
        http_add_header(o->req, "Retry-After", "1");
        http_respond_json(o->req, atoi(db_value(res, 0, db_col_index(res, "status_code"))), answer);
    }
    db_result_free(res);
}

/* Opens the transaction and claims the key with the request's fingerprint. A key already
 * claimed is answered by replay(); one whose row another request still holds gets 409 after a
 * short wait. */
static int claim_key(order_request_t *o)
{
    if (sf_order_fingerprint(o->pet_ids, o->card, o->hash) != 0) {
        http_respond_kind(o->req, HTTP_PROBLEM_UNAVAILABLE, "out of memory; try again", NULL);
        return ANSWERED;
    }
    int rc = db_begin(o->db, &o->e);
    if (rc != 0)
        return rc;
    /* A concurrent request with the same key holds its row: wait briefly, then say 409. */
    rc = db_exec_sql(o->db, "SET LOCAL lock_timeout = '2s'", 0, NULL, NULL, &o->e);
    if (rc != 0)
        return rc;
    const char *params[] = {o->user_id, o->key, o->hash};
    db_result_t *res = NULL;
    rc = db_exec(o->db, &claim_key_stmt, params, &res, &o->e);
    if (rc != 0) {
        if (strcmp(o->e.sqlstate, "55P03") != 0)
            return rc;
        db_rollback(o->db);
        http_respond_kind(o->req, HTTP_PROBLEM_REQUEST_IN_PROGRESS,
                          "a request with this Idempotency-Key is still in progress", NULL);
        return ANSWERED;
    }
    int claimed = db_rows(res) == 1;
    db_result_free(res);
    if (!claimed) {
        db_rollback(o->db);
        replay(o);
        return ANSWERED;
    }
    return 0;
}

/* No pets named: order the cart, which must hold 1 to 20 pets (else 422). */
static int take_cart(order_request_t *o)
{
    if (o->pet_ids != NULL)
        return 0;
    const char *params[] = {o->user_id};
    db_result_t *res = NULL;
    int rc = db_exec(o->db, &cart_pets_stmt, params, &res, &o->e);
    if (rc != 0)
        return rc;
    int col = db_col_index(res, "pet_id");
    o->cart = json_array();
    for (int r = 0; r < db_rows(res); r++)
        json_array_append_new(o->cart, json_string(db_value(res, r, col)));
    db_result_free(res);
    size_t n = json_array_size(o->cart);
    if (n == 0 || n > 20) {
        db_rollback(o->db);
        json_t *errors = json_array();
        sf_error(errors, "pet_ids",
                 n == 0 ? "the cart is empty: name the pets or add them to the cart"
                        : "the cart holds more than 20 pets: order at most 20 at once");
        sf_invalid(o->req, errors);
        return ANSWERED;
    }
    o->pet_ids = o->cart;
    return 0;
}

/* Adds up the pets' prices; an unknown pet is 404 and a pet not available 409, and neither
 * consumes the key: the customer may try again. */
static int price_pets(order_request_t *o)
{
    o->pets_pg = db_array_from_json(o->pet_ids);
    if (o->pets_pg == NULL)
        return err_set(&o->e, ERR_NOMEM, "out of memory");
    const char *params[] = {o->pets_pg};
    db_result_t *res = NULL;
    int rc = db_exec(o->db, &price_pets_stmt, params, &res, &o->e);
    if (rc != 0)
        return rc;
    int id_col = db_col_index(res, "id"), status_col = db_col_index(res, "status"),
        price_col = db_col_index(res, "price_cents");
    json_t *missing = json_array(), *taken = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(o->pet_ids, i, id)
    {
        int row = -1;
        for (int r = 0; r < db_rows(res); r++)
            if (strcmp(db_value(res, r, id_col), json_string_value(id)) == 0)
                row = r;
        if (row < 0)
            json_array_append(missing, id);
        else if (strcmp(db_value(res, row, status_col), "available") != 0)
            json_array_append(taken, id);
        else
            o->total += atoll(db_value(res, row, price_col));
    }
    db_result_free(res);
    rc = 0;
    if (json_array_size(missing) > 0 || json_array_size(taken) > 0) {
        db_rollback(o->db);
        log_ctx_t ctx = sf_log_ctx(o->req);
        log_info(&ctx, "order.rejected",
                 json_pack("{s:s,s:O,s:O}", "why",
                           json_array_size(missing) > 0 ? "unknown pet" : "pet not available",
                           "missing", missing, "taken", taken));
        if (json_array_size(missing) > 0)
            http_respond_kind(o->req, HTTP_PROBLEM_PET_NOT_FOUND, "no such pet",
                              json_pack("{s:O}", "pet_ids", missing));
        else
            http_respond_kind(o->req, HTTP_PROBLEM_PET_NOT_AVAILABLE,
                              "a pet is already reserved or sold",
                              json_pack("{s:O}", "pet_ids", taken));
        rc = ANSWERED;
    }
    json_decref(missing);
    json_decref(taken);
    return rc;
}

/* Seals the card number for the payment service; only its last four digits stay here. */
static int seal_card(order_request_t *o, const storefront_app_t *app)
{
    uuid_v7(o->order_id);
    snprintf(o->last4, sizeof(o->last4), "%s", o->card + strlen(o->card) - 4);
    if (card_seal(app->payment_pk, o->card, o->sealed) != 0)
        return err_set(&o->e, ERR_INTERNAL, "card sealing failed");
    return 0;
}

/* The order row (PENDING, version 1) and its first history entry; an ordered cart is emptied
 * of the ordered pets. */
static int insert_order(order_request_t *o)
{
    char total[24];
    snprintf(total, sizeof(total), "%lld", o->total);
    const char *params[] = {o->order_id, o->user_id, total, o->pets_pg, o->last4};
    int rc = db_exec(o->db, &insert_order_stmt, params, NULL, &o->e);
    if (rc != 0 || o->cart == NULL)
        return rc;
    const char *cart_params[] = {o->user_id, o->pets_pg};
    return db_exec(o->db, &empty_cart_stmt, cart_params, NULL, &o->e);
}

/* order.placed into the outbox, in the same transaction. */
static int emit_placed(order_request_t *o)
{
    json_t *payload =
        json_pack("{s:s,s:s,s:O,s:I,s:s,s:s}", "order_id", o->order_id, "user_id", o->user_id,
                  "pet_ids", o->pet_ids, "total_cents", (json_int_t)o->total, "card_sealed",
                  o->sealed, "card_last4", o->last4);
    svc_cause_t cause = {
        .app_id = "storefront", .correlation_id = o->order_id, .trace = http_trace(o->req)};
    int rc = svc_emit(o->db, &cause, MSG_ORDER_PLACED_V1, payload, &o->e);
    json_decref(payload);
    return rc;
}

/* Stores the answer with the key, so a repeated request gets the same one, and commits. */
static int store_answer(order_request_t *o)
{
    o->answer = json_pack("{s:s,s:s,s:I}", "id", o->order_id, "status", "PENDING", "total_cents",
                          (json_int_t)o->total);
    char *text = json_dumps(o->answer, JSON_COMPACT);
    const char *params[] = {o->user_id, o->key, o->order_id, text};
    int rc = text ? db_exec(o->db, &store_answer_stmt, params, NULL, &o->e) : ERR_NOMEM;
    free(text);
    if (rc != 0)
        return rc;
    return db_commit(o->db, &o->e);
}

/* 202 with the order's place and when to look. */
static void answer_placed(order_request_t *o)
{
    log_ctx_t ctx = sf_log_ctx(o->req);
    ctx.order_id = o->order_id;
    log_info(&ctx, "order.accepted",
             json_pack("{s:I,s:O,s:s,s:s,s:b}", "total_cents", (json_int_t)o->total, "pet_ids",
                       o->pet_ids, "card_last4", o->last4, "user_id", o->user_id, "from_cart",
                       o->cart != NULL));
    http_log_order(o->req, o->order_id);
    char location[64];
    snprintf(location, sizeof(location), "/v1/orders/%s", o->order_id);
    http_add_header(o->req, "Location", location);
    http_add_header(o->req, "Retry-After", "1");
    http_respond_json(o->req, 202, o->answer);
    o->answer = NULL;
}

int sf_post_orders(http_request_t *req, void *svc)
{
    order_request_t o = {.req = req};
    err_clear(&o.e);
    if (!sf_db(req, &o.db) || !sf_user(req, o.db, o.user_id))
        return 0;
    int rc = check_key(&o);
    if (rc == 0)
        rc = read_body(&o);
    if (rc == 0)
        rc = claim_key(&o);
    if (rc == 0)
        rc = take_cart(&o);
    if (rc == 0)
        rc = price_pets(&o);
    if (rc == 0)
        rc = seal_card(&o, svc_app(svc));
    if (rc == 0)
        rc = insert_order(&o);
    if (rc == 0)
        rc = emit_placed(&o);
    if (rc == 0)
        rc = store_answer(&o);
    if (rc == 0) {
        answer_placed(&o);
    } else if (rc < 0) {
        db_rollback(o.db);
        sf_db_error(req, &o.e);
    }
    free(o.pets_pg);
    json_decref(o.answer);
    json_decref(o.cart);
    json_decref(o.body);
    return 0;
}

/* GET /v1/orders/{id}[?wait=S&(status=X|until=terminal)]: with wait, the answer is held until
 * the status is no longer X (default: the current status), or with until=terminal until the
 * order is COMPLETED or CANCELLED, or S seconds (at most 30) have passed. */
int sf_get_order(http_request_t *req, void *svc)
{
    (void)svc;
    db_conn_t *db = NULL;
    char user_id[UUID_STR_LEN];
    if (!sf_db(req, &db) || !sf_user(req, db, user_id))
        return 0;
    const char *id = http_param(req, "id");
    if (!uuid_valid(id)) {
        http_respond_kind(req, HTTP_PROBLEM_NOT_FOUND, "no such order", NULL);
        return 0;
    }
    const char *wait_s = http_query(req, "wait");
    const char *until = http_query(req, "until");
    const char *leave = http_query(req, "status");
    long wait = 0;
    json_t *errs = json_array();
    if (wait_s != NULL) {
        char *end = NULL;
        wait = strtol(wait_s, &end, 10);
        if (end == wait_s || *end != '\0' || wait < 0 || wait > 30)
            sf_error(errs, "wait", "whole seconds from 0 to 30");
    }
    if (until != NULL && strcmp(until, "terminal") != 0)
        sf_error(errs, "until", "terminal (the only value)");
    else if (until != NULL && leave != NULL)
        sf_error(errs, "until", "until=terminal and status exclude each other");
    if (json_array_size(errs) > 0) {
        sf_invalid(req, errs);
        return 0;
    }
    json_decref(errs);
    json_t *order = NULL;
    if (!sf_order_load_or_answer(req, db, id, user_id, &order))
        return 0;
    const char *current = json_string_value(json_object_get(order, "status"));
    if (until != NULL)
        leave = SF_UNTIL_TERMINAL;
    else if (leave == NULL)
        leave = current;
    if (wait > 0 && !sf_waiter_done(leave, current)) {
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
    json_t *items = NULL;
    err_t e;
    err_clear(&e);
    if (sf_orders_list(db, user_id, &items, &e) != 0) {
        sf_db_error(req, &e);
        return 0;
    }
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
    if (!uuid_valid(id)) {
        http_respond_kind(req, HTTP_PROBLEM_NOT_FOUND, "no such order", NULL);
        return 0;
    }
    if (db_begin(db, &e) != 0)
        goto db_fail;
    const char *params[] = {id, user_id};
    if (db_exec(db, &lock_order_stmt, params, &res, &e) != 0)
        goto db_fail;
    if (db_rows(res) != 1) {
        db_rollback(db);
        http_respond_kind(req, HTTP_PROBLEM_NOT_FOUND, "no such order", NULL);
        goto out;
    }
    char status[24];
    snprintf(status, sizeof(status), "%s", db_value(res, 0, db_col_index(res, "status")));
    order_status_t current;
    if (order_status_parse(status, &current) != 0 || !order_status_is_cancellable(current)) {
        db_rollback(db);
        http_respond_kind(req, HTTP_PROBLEM_CANNOT_CANCEL, "the order can no longer be cancelled",
                          json_pack("{s:s}", "order_status", status));
        goto out;
    }
    json_t *p = json_pack("{s:s,s:s}", "order_id", id, "user_id", user_id);
    svc_cause_t cause = {.app_id = "storefront", .correlation_id = id, .trace = http_trace(req)};
    int rc = svc_emit(db, &cause, MSG_ORDER_CANCEL_REQUESTED_V1, p, &e);
    json_decref(p);
    if (rc != 0 || db_commit(db, &e) != 0)
        goto db_fail;
    http_respond_json(
        req, 202, json_pack("{s:s,s:s,s:b}", "id", id, "status", status, "cancel_requested", 1));
    goto out;
db_fail:
    db_rollback(db);
    sf_db_error(req, &e);
out:
    db_result_free(res);
    return 0;
}
