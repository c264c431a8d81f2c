/* order_view: the storefront's read model of orders, one place for reading, rendering and
 * updating it.
 *
 * The order API (orders.c), the long-poll waiters (waiters.c), the event streams (streams.c)
 * and the consumer of saga.order_status_changed (events.c) all see an order through this file,
 * so none of them depends on another. The rendering is the API's:
 *
 *   {id, status, reason, total_cents, pet_ids, card_last4, created_at, updated_at, version
 *    [, history: [{status, reason, at}]]}
 *
 * Results are read by column name; a query that does not select "history" renders no history.
 * Columns named after their rendering (created_at is text) are ordered by qualified name, which
 * PostgreSQL resolves to the table's column, not the output one.
 * Status changes apply only when newer than the stored version, so redelivered, duplicated or
 * reordered events never move an order back. The change that gives an order its outcome is
 * marked once (finished_version), for the metrics of finished orders (finished.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_array.h"
#include "order_status.h"
#include "storefront.h"
#include "uuid.h"

static const db_stmt_t get_order_stmt = {
    .name = "sf_get_order",
    .sql =
        "SELECT id::text AS id, status, reason, total_cents, pet_ids::text[] AS pet_ids,"
        " card_last4, " SF_TIME(
            "created_at") " AS created_at,"
                          " " SF_TIME("updated_at") " AS updated_at,"
                                                    " (SELECT "
                                                    "coalesce(json_agg(json_build_object('status', "
                                                    "h.status, 'reason', h.reason,"
                                                    "   'at', " SF_TIME(
                                                        "h.at") ") ORDER BY h.version), '[]') FROM "
                                                                "order_history h"
                                                                "   WHERE h.order_id = o.id)::text "
                                                                "AS history, version"
                                                                " FROM orders o WHERE id = "
                                                                "$1::uuid AND user_id = $2::uuid",
    .nparams = 2,
};

static const db_stmt_t list_orders_stmt = {
    .name = "sf_list_orders",
    .sql = "SELECT id::text AS id, status, reason, total_cents, pet_ids::text[] AS pet_ids,"
           " card_last4, " SF_TIME(
               "created_at") " AS created_at,"
                             " " SF_TIME("updated_at") " AS updated_at, version"
                                                       " FROM orders o WHERE user_id = $1::uuid "
                                                       "ORDER BY o.created_at DESC, o.id DESC"
                                                       " LIMIT 100",
    .nparams = 1,
};

/* Applies a newer status and appends it to the history; one row when applied, none when not
 * newer. $6 says whether the status is an outcome (sf_status_is_outcome): the first outcome
 * applied sets finished_version (migration 007). SET reads the row as locked by this UPDATE
 * (the newest version, re-read after waiting for a concurrent writer), so of two instances
 * applying two outcomes of one order at once only the first to commit sets it, and `first`
 * is true in exactly one applied change per order. `seconds` is the time since the order was
 * created at the door, both ends by this database's clock (clock_timestamp: now, not the start
 * of the consumer's transaction). */
static const db_stmt_t order_status_stmt = {
    .name = "sf_order_status",
    .sql = "WITH o AS (UPDATE orders SET status = $2, reason = $3, version = $4::int,"
           "  updated_at = coalesce($5::timestamptz, now()),"
           "  finished_version = CASE WHEN $6::boolean AND finished_version IS NULL"
           "   THEN $4::int ELSE finished_version END"
           "  WHERE id = $1::uuid AND version < $4::int"
           "  RETURNING id, coalesce(finished_version = $4::int, false) AS first,"
           "   extract(epoch FROM clock_timestamp() - created_at)::float8 AS seconds),"
           " h AS (INSERT INTO order_history (order_id, version, status, reason, at)"
           "  SELECT id, $4::int, $2, $3, coalesce($5::timestamptz, now()) FROM o"
           "  ON CONFLICT DO NOTHING) "
           "SELECT first, seconds FROM o",
    .nparams = 6,
};

/* Where each column of an order query is, looked up once per result. */
typedef struct order_cols {
    int id, status, reason, total_cents, pet_ids, card_last4, created_at, updated_at, version;
    int history; /* -1 when the query does not select it */
} order_cols_t;

static order_cols_t order_cols(const db_result_t *res)
{
    return (order_cols_t){
        .id = db_col_index(res, "id"),
        .status = db_col_index(res, "status"),
        .reason = db_col_index(res, "reason"),
        .total_cents = db_col_index(res, "total_cents"),
        .pet_ids = db_col_index(res, "pet_ids"),
        .card_last4 = db_col_index(res, "card_last4"),
        .created_at = db_col_index(res, "created_at"),
        .updated_at = db_col_index(res, "updated_at"),
        .version = db_col_index(res, "version"),
        .history = db_col_index(res, "history"),
    };
}

/* The order in row (new reference), or NULL when out of memory. */
static json_t *order_json(const db_result_t *res, const order_cols_t *c, int row)
{
    json_t *o = json_pack(
        "{s:s,s:s,s:o,s:I,s:o,s:s,s:s,s:s}", "id", db_value(res, row, c->id), "status",
        db_value(res, row, c->status), "reason",
        db_is_null(res, row, c->reason) ? json_null() : json_string(db_value(res, row, c->reason)),
        "total_cents", (json_int_t)atoll(db_value(res, row, c->total_cents)), "pet_ids",
        db_array_to_json(db_value(res, row, c->pet_ids)), "card_last4",
        db_value(res, row, c->card_last4), "created_at", db_value(res, row, c->created_at),
        "updated_at", db_value(res, row, c->updated_at));
    if (o != NULL)
        json_object_set_new(o, "version", json_integer(atoi(db_value(res, row, c->version))));
    if (o != NULL && c->history >= 0 && !db_is_null(res, row, c->history)) {
        json_t *history = json_loads(db_value(res, row, c->history), 0, NULL);
        json_object_set_new(o, "history", history ? history : json_array());
    }
    return o;
}

int sf_order_load(db_conn_t *db, const char *order_id, const char *user_id, json_t **out, err_t *e)
{
    const char *params[] = {order_id, user_id};
    db_result_t *res = NULL;
    int rc = db_exec(db, &get_order_stmt, params, &res, e);
    if (rc != 0)
        return rc;
    if (db_rows(res) == 1) {
        order_cols_t c = order_cols(res);
        *out = order_json(res, &c, 0);
    } else {
        rc = err_set(e, ERR_NOTFOUND, "no such order");
    }
    db_result_free(res);
    return rc;
}

int sf_orders_list(db_conn_t *db, const char *user_id, json_t **out, err_t *e)
{
    const char *params[] = {user_id};
    db_result_t *res = NULL;
    int rc = db_exec(db, &list_orders_stmt, params, &res, e);
    if (rc != 0)
        return rc;
    order_cols_t c = order_cols(res);
    json_t *items = json_array();
    for (int i = 0; i < db_rows(res); i++)
        json_array_append_new(items, order_json(res, &c, i));
    db_result_free(res);
    *out = items;
    return 0;
}

int sf_order_is_finished(const json_t *order)
{
    order_status_t status;
    return order_status_parse(json_string_value(json_object_get(order, "status")), &status) == 0 &&
           order_status_is_terminal(status);
}

int sf_status_is_outcome(order_status_t s)
{
    return order_status_is_terminal(s) || s == ORDER_NEEDS_OPERATOR;
}

int sf_apply_order_status(db_conn_t *db, const json_t *p, sf_outcome_t *outcome, err_t *e)
{
    char version[24];
    snprintf(version, sizeof(version), "%lld",
             (long long)json_integer_value(json_object_get(p, "version")));
    const char *status_name = json_string_value(json_object_get(p, "status"));
    order_status_t status = ORDER_PENDING;
    int is_outcome = order_status_parse(status_name, &status) == 0 && sf_status_is_outcome(status);
    const char *params[] = {
        json_string_value(json_object_get(p, "order_id")),    status_name,
        json_string_value(json_object_get(p, "reason")),      version,
        json_string_value(json_object_get(p, "occurred_at")), is_outcome ? "true" : "false"};
    db_result_t *res = NULL;
    int rc = db_exec(db, &order_status_stmt, params, &res, e);
    if (rc != 0)
        return rc;
    int applied = db_rows(res) > 0;
    if (outcome != NULL) {
        memset(outcome, 0, sizeof(*outcome));
        if (applied && db_value(res, 0, db_col_index(res, "first"))[0] == 't') {
            outcome->first = 1;
            outcome->status = status;
            if (params[2] == NULL)
                outcome->reason = ORDER_REASON_NONE;
            else if (order_reason_parse(params[2], &outcome->reason) != 0)
                outcome->reason = ORDER_REASON_COUNT; /* not in this build's list */
            outcome->seconds = atof(db_value(res, 0, db_col_index(res, "seconds")));
        }
    }
    db_result_free(res);
    /* In the consumed message's context (the consumer sets it around the handler). */
    log_info(log_ctx_current(), "order.view_updated",
             json_pack("{s:s?,s:s?,s:I,s:b,s:s}", "status", params[1], "reason", params[2],
                       "version", (json_int_t)json_integer_value(json_object_get(p, "version")),
                       "applied", applied, "why",
                       applied ? "newer version: the read model shows it"
                               : "not newer than the read model: ignored"));
    return 0;
}

int sf_order_load_or_answer(http_request_t *req, db_conn_t *db, const char *id, const char *user_id,
                            json_t **out)
{
    err_t e;
    err_clear(&e);
    int rc = uuid_valid(id) ? sf_order_load(db, id, user_id, out, &e) : ERR_NOTFOUND;
    if (uuid_valid(id))
        http_log_order(req, id);
    if (rc == ERR_NOTFOUND)
        http_respond_kind(req, HTTP_PROBLEM_NOT_FOUND, "no such order", NULL);
    else if (rc != 0)
        sf_db_error(req, &e);
    return rc == 0;
}
