/* cart: the pets a customer intends to order.
 *
 *   GET    /v1/cart                 -> 200 {items: [pet], total_cents}
 *   PUT    /v1/cart/items/{pet_id}  -> 200 the cart; 404 unknown pet; 409 pet not available
 *   DELETE /v1/cart/items/{pet_id}  -> 200 the cart (removing an absent item changes nothing)
 *
 * POST /v1/orders without pet_ids orders the cart (orders.c). The cart shows each pet's current
 * status, so a pet reserved by someone else meanwhile shows as such and the order answers 409. */
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "storefront.h"
#include "uuid.h"

static const db_stmt_t cart_stmt = {
    .name = "sf_cart",
    .sql = "SELECT p.id::text AS id, p.name, p.species, p.price_cents, p.status FROM cart_items c"
           " JOIN pets p ON p.id = c.pet_id WHERE c.user_id = $1::uuid AND p.name IS NOT NULL"
           " ORDER BY c.added_at, c.pet_id",
    .nparams = 1,
};

static const db_stmt_t pet_status_stmt = {
    .name = "sf_cart_pet",
    .sql = "SELECT status FROM pets WHERE id = $1::uuid AND name IS NOT NULL",
    .nparams = 1,
};

static const db_stmt_t add_stmt = {
    .name = "sf_cart_add",
    .sql = "INSERT INTO cart_items (user_id, pet_id) VALUES ($1::uuid, $2::uuid)"
           " ON CONFLICT DO NOTHING",
    .nparams = 2,
};

static const db_stmt_t remove_stmt = {
    .name = "sf_cart_remove",
    .sql = "DELETE FROM cart_items WHERE user_id = $1::uuid AND pet_id = $2::uuid",
    .nparams = 2,
};

/* Answers 200 with the user's cart. */
static void respond_cart(http_request_t *req, db_conn_t *db, const char *user_id)
{
    const char *params[] = {user_id};
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    if (db_exec(db, &cart_stmt, params, &res, &e) != 0) {
        sf_db_error(req, &e);
        return;
    }
    int id = db_col_index(res, "id"), name = db_col_index(res, "name"),
        species = db_col_index(res, "species"), price = db_col_index(res, "price_cents"),
        status = db_col_index(res, "status");
    json_t *items = json_array();
    long long total = 0;
    for (int i = 0; i < db_rows(res); i++) {
        total += atoll(db_value(res, i, price));
        json_array_append_new(items, json_pack("{s:s,s:s,s:s,s:I,s:s}", "id", db_value(res, i, id),
                                               "name", db_value(res, i, name), "species",
                                               db_value(res, i, species), "price_cents",
                                               (json_int_t)atoll(db_value(res, i, price)), "status",
                                               db_value(res, i, status)));
    }
    db_result_free(res);
    http_respond_json(req, 200,
                      json_pack("{s:o,s:I}", "items", items, "total_cents", (json_int_t)total));
}

int sf_get_cart(http_request_t *req, void *svc)
{
    (void)svc;
    db_conn_t *db = NULL;
    char user_id[37];
    if (sf_db(req, &db) && sf_user(req, db, user_id))
        respond_cart(req, db, user_id);
    return 0;
}

int sf_put_cart_item(http_request_t *req, void *svc)
{
    (void)svc;
    db_conn_t *db = NULL;
    char user_id[37];
    err_t e;
    err_clear(&e);
    if (!sf_db(req, &db) || !sf_user(req, db, user_id))
        return 0;
    const char *pet = http_param(req, "pet_id");
    db_result_t *res = NULL;
    const char *pp[] = {pet};
    if (!uuid_valid(pet)) {
        http_respond_kind(req, HTTP_PROBLEM_PET_NOT_FOUND, "no such pet", NULL);
        return 0;
    }
    if (db_exec(db, &pet_status_stmt, pp, &res, &e) != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    int known = db_rows(res) == 1;
    int available =
        known && strcmp(db_value(res, 0, db_col_index(res, "status")), "available") == 0;
    db_result_free(res);
    if (!known) {
        http_respond_kind(req, HTTP_PROBLEM_PET_NOT_FOUND, "no such pet", NULL);
        return 0;
    }
    if (!available) {
        http_respond_kind(req, HTTP_PROBLEM_PET_NOT_AVAILABLE,
                          "the pet is already reserved or sold", NULL);
        return 0;
    }
    const char *ap[] = {user_id, pet};
    if (db_exec(db, &add_stmt, ap, NULL, &e) != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    respond_cart(req, db, user_id);
    return 0;
}

int sf_delete_cart_item(http_request_t *req, void *svc)
{
    (void)svc;
    db_conn_t *db = NULL;
    char user_id[37];
    err_t e;
    err_clear(&e);
    if (!sf_db(req, &db) || !sf_user(req, db, user_id))
        return 0;
    const char *pet = http_param(req, "pet_id");
    if (!uuid_valid(pet)) {
        http_respond_kind(req, HTTP_PROBLEM_PET_NOT_FOUND, "no such pet", NULL);
        return 0;
    }
    const char *params[] = {user_id, pet};
    if (db_exec(db, &remove_stmt, params, NULL, &e) != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    respond_cart(req, db, user_id);
    return 0;
}
