/* catalog: the pets customers browse, from the storefront's view of inventory's events, and the
 * administrator's way to list a new pet (a command to inventory; the pet appears when inventory
 * announces it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "storefront.h"
#include "uuid.h"

static const db_stmt_t list_pets_stmt = {
    .name = "sf_list_pets",
    .sql = "SELECT id::text AS id, name, species, price_cents, status FROM pets"
           " WHERE name IS NOT NULL AND ($1::text IS NULL OR species = $1) AND ($2::text IS NULL "
           "OR status = $2)"
           "   AND ($3::uuid IS NULL OR id > $3::uuid)"
           " ORDER BY id LIMIT $4::int",
    .nparams = 4,
};

static const db_stmt_t get_pet_stmt = {
    .name = "sf_get_pet",
    .sql = "SELECT id::text AS id, name, species, price_cents, status FROM pets WHERE id = $1::uuid"
           " AND name IS NOT NULL",
    .nparams = 1,
};

/* Where each column of a pet query is, looked up once per result. */
typedef struct pet_cols {
    int id, name, species, price_cents, status;
} pet_cols_t;

static pet_cols_t pet_cols(const db_result_t *res)
{
    return (pet_cols_t){.id = db_col_index(res, "id"),
                        .name = db_col_index(res, "name"),
                        .species = db_col_index(res, "species"),
                        .price_cents = db_col_index(res, "price_cents"),
                        .status = db_col_index(res, "status")};
}

static json_t *pet_json(const db_result_t *res, const pet_cols_t *c, int row)
{
    return json_pack("{s:s,s:s,s:s,s:I,s:s}", "id", db_value(res, row, c->id), "name",
                     db_value(res, row, c->name), "species", db_value(res, row, c->species),
                     "price_cents", (json_int_t)atoll(db_value(res, row, c->price_cents)), "status",
                     db_value(res, row, c->status));
}

int sf_get_pets(http_request_t *req, void *svc)
{
    (void)svc;
    const char *species = http_query(req, "species");
    const char *status = http_query(req, "status");
    const char *after = http_query(req, "after");
    const char *limit_s = http_query(req, "limit");
    json_t *errors = json_array();
    long limit = 20;
    if (limit_s != NULL) {
        char *end = NULL;
        limit = strtol(limit_s, &end, 10);
        if (end == limit_s || *end != '\0' || limit < 1 || limit > 100)
            sf_error(errors, "limit", "an integer from 1 to 100");
    }
    if (status != NULL && strcmp(status, "available") != 0 && strcmp(status, "reserved") != 0 &&
        strcmp(status, "sold") != 0)
        sf_error(errors, "status", "one of available, reserved, sold");
    if (after != NULL && !uuid_valid(after))
        sf_error(errors, "after", "the next cursor of a previous page");
    if (json_array_size(errors) > 0) {
        sf_invalid(req, errors);
        return 0;
    }
    json_decref(errors);
    db_conn_t *db = NULL;
    if (!sf_db(req, &db))
        return 0;
    char lim[8];
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *params[] = {species && *species ? species : NULL, status, after, lim};
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    if (db_exec(db, &list_pets_stmt, params, &res, &e) != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    pet_cols_t c = pet_cols(res);
    json_t *items = json_array();
    for (int i = 0; i < db_rows(res); i++)
        json_array_append_new(items, pet_json(res, &c, i));
    json_t *next =
        db_rows(res) == limit ? json_string(db_value(res, db_rows(res) - 1, c.id)) : json_null();
    db_result_free(res);
    http_respond_json(req, 200, json_pack("{s:o,s:o}", "items", items, "next", next));
    return 0;
}

int sf_get_pet(http_request_t *req, void *svc)
{
    (void)svc;
    const char *id = http_param(req, "id");
    db_conn_t *db = NULL;
    if (!uuid_valid(id)) {
        http_respond_kind(req, HTTP_PROBLEM_NOT_FOUND, "no such pet", NULL);
        return 0;
    }
    if (!sf_db(req, &db))
        return 0;
    const char *params[] = {id};
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    if (db_exec(db, &get_pet_stmt, params, &res, &e) != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    pet_cols_t c = pet_cols(res);
    if (db_rows(res) == 1)
        http_respond_json(req, 200, pet_json(res, &c, 0));
    else
        http_respond_kind(req, HTTP_PROBLEM_NOT_FOUND, "no such pet", NULL);
    db_result_free(res);
    return 0;
}

int sf_post_pets(http_request_t *req, void *svc)
{
    (void)svc;
    json_t *body = NULL;
    db_conn_t *db = NULL;
    if (!sf_admin(req) || http_read_json_object(req, &body) != 0)
        return 0;
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *species = json_string_value(json_object_get(body, "species"));
    const json_t *price = json_object_get(body, "price_cents");
    json_t *errors = json_array();
    sf_check_new_pet(body, errors);
    if (json_array_size(errors) > 0) {
        sf_invalid(req, errors);
        json_decref(body);
        return 0;
    }
    json_decref(errors);
    if (!sf_db(req, &db)) {
        json_decref(body);
        return 0;
    }
    char id[UUID_STR_LEN];
    uuid_v7(id);
    json_t *cmd = json_pack("{s:s,s:s,s:s,s:O}", "pet_id", id, "name", name, "species", species,
                            "price_cents", price);
    svc_cause_t cause = {.app_id = "storefront", .correlation_id = id, .trace = http_trace(req)};
    err_t e;
    err_clear(&e);
    int rc = db_begin(db, &e);
    if (rc == 0)
        rc = svc_emit(db, &cause, MSG_INVENTORY_LIST_PET_V1, cmd, &e);
    if (rc == 0)
        rc = db_commit(db, &e);
    else
        db_rollback(db);
    json_decref(cmd);
    json_decref(body);
    if (rc != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    char location[64];
    snprintf(location, sizeof(location), "/v1/pets/%s", id);
    http_add_header(req, "Location", location);
    http_respond_json(req, 202, json_pack("{s:s,s:s}", "id", id, "status", "pending"));
    return 0;
}
