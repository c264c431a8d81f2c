/* admin: the card administration API on the payment daemon's HTTP port.
 *
 *   POST /v1/cards {card_number, balance_cents} -> 201 {id, last4, balance_cents} + Location;
 *                                                  422 bad number or amount; 409 card exists
 *   GET  /v1/cards/{id}                         -> 200 {id, last4, balance_cents, ...}; 404
 *
 * Every call needs "Authorization: Bearer <ADMIN_TOKEN>"; without ADMIN_TOKEN configured the API
 * refuses everyone. The presented token is compared with the configured one in constant time:
 * both are reduced to fixed-length hashes first, so neither the comparison's duration nor its
 * length check tells an attacker anything. Errors are problem+json. The card number is checked,
 * hashed and wiped; it is never logged, stored or echoed, not even in a 422. No copy stays in
 * memory once the request is answered, on any path: the parsed string and the raw body are
 * wiped by the handler, libmicrohttpd's read buffer and our body buffer as the body is read
 * (http.c), and jansson's parser buffers as they are freed (card_wipe_json_frees in main). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_request.h"
#include "hex.h"
#include "payment.h"
#include "uuid.h"

/* Creates the card, or finds the card this very request created: the id is new for every
 * request, so a row with it can only come from an earlier run of this statement whose answer
 * was lost with the connection. That makes a second run harmless, so it runs through
 * db_exec_idempotent, which repeats it when an HTTP thread's pooled connection turns out dead
 * (db.h). No row: another card has this number. */
static const db_stmt_t create_card_stmt = {
    .name = "payment_create_card",
    .sql = "WITH ins AS (INSERT INTO cards (id, card_hash, last4, balance_cents) "
           "  VALUES ($1::uuid, decode($2, 'hex'), $3, $4::bigint) "
           "  ON CONFLICT (card_hash) DO NOTHING "
           "  RETURNING id, last4, balance_cents) "
           "SELECT id, last4, balance_cents FROM ins "
           "UNION ALL "
           "SELECT id, last4, balance_cents FROM cards "
           "  WHERE id = $1::uuid AND NOT EXISTS (SELECT FROM ins)",
    .nparams = 4,
    .secret = DB_SECRET(2), /* the card hash */
};

/* The first row's value of the named column (borrowed from r). */
static const char *col(const db_result_t *r, const char *name)
{
    return db_value(r, 0, db_col_index(r, name));
}

static const db_stmt_t get_card_stmt = {
    .name = "payment_get_card",
    .sql = "SELECT id, last4, balance_cents, version,"
           "       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
           "         AS created_at,"
           "       to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
           "         AS updated_at "
           "FROM cards WHERE id = $1::uuid",
    .nparams = 1,
};

/* 1 if the request carries the admin token; otherwise it has answered 401 and returns 0. */
static int authorized(http_request_t *req, const payment_app_t *app)
{
    const char *token = http_bearer_token(req);
    unsigned char presented[crypto_generichash_BYTES];
    int ok = 0;
    if (token != NULL && app->admin_enabled) {
        crypto_generichash(presented, sizeof(presented), (const unsigned char *)token,
                           strlen(token), NULL, 0);
        ok = sodium_memcmp(presented, app->admin_token_hash, sizeof(presented)) == 0;
        sodium_memzero(presented, sizeof(presented));
    }
    if (ok)
        return 1;
    http_add_header(req, "WWW-Authenticate", "Bearer realm=\"petstore-payment-admin\"");
    http_respond_kind(req, HTTP_PROBLEM_UNAUTHORIZED,
                      app->admin_enabled ? "a valid admin bearer token is required"
                                         : "the admin API is disabled (ADMIN_TOKEN unset)",
                      NULL);
    return 0;
}

/* 1 with *db set, or 0 after answering 503. */
static int thread_db(http_request_t *req, const log_ctx_t *ctx, db_conn_t **db)
{
    err_t e;
    err_clear(&e);
    if (svc_thread_db(http_app(req), db, &e) == 0)
        return 1;
    log_err(LOG_WARN, ctx, "admin.database_unavailable", &e);
    http_add_header(req, "Retry-After", "1");
    http_respond_kind(req, HTTP_PROBLEM_UNAVAILABLE, "the payment database is unavailable", NULL);
    return 0;
}

static void respond_db_error(http_request_t *req, const log_ctx_t *ctx, const err_t *e)
{
    log_err(LOG_ERROR, ctx, "admin.database_error", e);
    if (e->code == ERR_RETRY) {
        http_add_header(req, "Retry-After", "1");
        http_respond_kind(req, HTTP_PROBLEM_UNAVAILABLE, "the payment database is unavailable",
                          NULL);
        return;
    }
    http_respond_kind(req, HTTP_PROBLEM_INTERNAL, NULL, NULL);
}

static void invalid(http_request_t *req, const char *field, const char *detail)
{
    http_respond_kind(req, HTTP_PROBLEM_VALIDATION_FAILED, detail,
                      json_pack("{s:[{s:s,s:s}]}", "errors", "field", field, "detail", detail));
}

static int create_card(http_request_t *req, void *svc)
{
    payment_app_t *app = svc_app(svc);
    const trace_ctx_t *trace = http_trace(req);
    log_ctx_t ctx = {.trace_id = trace->trace_id, .span_id = trace->span_id};
    json_t *body = NULL;
    db_result_t *res = NULL;
    db_conn_t *db = NULL;
    err_t e;
    err_clear(&e);

    if (!authorized(req, app))
        return 0;
    if (http_read_json_object(req, &body) != 0) {
        http_body_wipe(req); /* malformed: the number may still be in the raw body */
        return 0;
    }

    const json_t *number_j = json_object_get(body, "card_number");
    const json_t *balance_j = json_object_get(body, "balance_cents");
    const char *number = json_string_value(number_j);
    const char *field = NULL, *detail = NULL;
    if (admin_card_request_check(body, &field, &detail) != 0) {
        invalid(req, field, detail);
        goto out;
    }

    char id[UUID_STR_LEN], last4[5], hash_hex[2 * CARD_HASH_BYTES + 1], balance[24];
    unsigned char hash[CARD_HASH_BYTES];
    uuid_v7(id);
    card_last4(number, last4);
    card_hash(app->keys, number, hash);
    hex_encode(hash, sizeof(hash), hash_hex);
    snprintf(balance, sizeof(balance), "%" JSON_INTEGER_FORMAT, json_integer_value(balance_j));

    if (!thread_db(req, &ctx, &db))
        goto out;
    const char *params[] = {id, hash_hex, last4, balance};
    if (db_exec_idempotent(db, &create_card_stmt, params, &res, &e) != 0) {
        respond_db_error(req, &ctx, &e);
        goto out;
    }
    if (db_rows(res) == 0) {
        log_info(&ctx, "admin.card_exists", json_pack("{s:s}", "card_last4", last4));
        http_respond_kind(req, HTTP_PROBLEM_CARD_EXISTS, "a card with this number already exists",
                          NULL);
        goto out;
    }
    metrics_counter_add(app->m_cards_created, 1);
    log_info(&ctx, "admin.card_created",
             json_pack("{s:s,s:s,s:I}", "card_id", id, "card_last4", last4, "balance_cents",
                       json_integer_value(balance_j)));
    char location[64];
    snprintf(location, sizeof(location), "/v1/cards/%s", id);
    http_add_header(req, "Location", location);
    http_respond_json(req, 201,
                      json_pack("{s:s,s:s,s:I}", "id", id, "last4", last4, "balance_cents",
                                json_integer_value(balance_j)));
out:
    /* The number lives in the parsed value and the raw body: wipe both now, on every path
     * (jansson's parser buffers are wiped as it frees them: card_wipe_json_frees). */
    if (json_is_string(number_j))
        sodium_memzero((void *)json_string_value(number_j), json_string_length(number_j));
    http_body_wipe(req);
    json_decref(body);
    db_result_free(res);
    return 0;
}

static int get_card(http_request_t *req, void *svc)
{
    payment_app_t *app = svc_app(svc);
    const trace_ctx_t *trace = http_trace(req);
    log_ctx_t ctx = {.trace_id = trace->trace_id, .span_id = trace->span_id};
    db_result_t *res = NULL;
    db_conn_t *db = NULL;
    err_t e;
    err_clear(&e);

    if (!authorized(req, app))
        return 0;
    const char *id = http_param(req, "id");
    if (id == NULL || !uuid_valid(id)) {
        http_respond_kind(req, HTTP_PROBLEM_NOT_FOUND, "no such card", NULL);
        return 0;
    }
    if (!thread_db(req, &ctx, &db))
        return 0;
    const char *params[] = {id};
    if (db_exec(db, &get_card_stmt, params, &res, &e) != 0) {
        respond_db_error(req, &ctx, &e);
        goto out;
    }
    if (db_rows(res) == 0) {
        http_respond_kind(req, HTTP_PROBLEM_NOT_FOUND, "no such card", NULL);
        goto out;
    }
    http_respond_json(req, 200,
                      json_pack("{s:s,s:s,s:I,s:I,s:s,s:s}", "id", col(res, "id"), "last4",
                                col(res, "last4"), "balance_cents",
                                (json_int_t)strtoll(col(res, "balance_cents"), NULL, 10), "version",
                                (json_int_t)strtoll(col(res, "version"), NULL, 10), "created_at",
                                col(res, "created_at"), "updated_at", col(res, "updated_at")));
out:
    db_result_free(res);
    return 0;
}

const http_route_t payment_admin_routes[] = {
    {"POST", "/v1/cards", create_card},
    {"GET", "/v1/cards/{id}", get_card},
};
const size_t payment_n_admin_routes =
    sizeof(payment_admin_routes) / sizeof(payment_admin_routes[0]);
