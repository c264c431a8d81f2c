/* events: the storefront's read models, kept from other services' events (the consumer of
 * storefront.events): the catalog from inventory's listings and from the pets its replies
 * (reserved, released, sale_confirmed) changed, the orders from the saga's status changes
 * (order_view.c). Every update applies only a newer version, so redelivered, duplicated or
 * reordered events never move a model back; a status that arrives before its pet's listing
 * waits in a partial row (migration 004). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storefront.h"

/* A listing fills in the pet's name, species and price (they never change) and its status if
 * that is newer than a status change applied before the listing arrived. */
static const db_stmt_t pet_listed_stmt = {
    .name = "sf_pet_listed",
    .sql = "INSERT INTO pets (id, name, species, price_cents, status, version)"
           " VALUES ($1::uuid, $2, $3, $4::bigint, $5, $6::int)"
           " ON CONFLICT (id) DO UPDATE SET name = excluded.name, species = excluded.species,"
           "  price_cents = excluded.price_cents,"
           "  status = CASE WHEN pets.version < excluded.version THEN excluded.status"
           "   ELSE pets.status END,"
           "  version = greatest(pets.version, excluded.version), updated_at = now()"
           " WHERE pets.name IS NULL OR pets.version < excluded.version",
    .nparams = 6,
};

/* A status change for a pet not listed here yet leaves a row with only status and version,
 * hidden from every read until the listing arrives. */
static const db_stmt_t pet_status_stmt = {
    .name = "sf_pet_status",
    .sql = "INSERT INTO pets (id, status, version) VALUES ($1::uuid, $2, $3::int)"
           " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
           "  version = excluded.version, updated_at = now()"
           " WHERE pets.version < excluded.version",
    .nparams = 3,
};

static const char *s(const svc_msg_t *m, const char *key)
{
    return json_string_value(json_object_get(m->payload, key));
}

static void int_text(const svc_msg_t *m, const char *key, char *out, size_t n)
{
    snprintf(out, n, "%lld", (long long)json_integer_value(json_object_get(m->payload, key)));
}

/* The pets an inventory reply changed ([{pet_id, version}, ...]) set to one status, newest
 * version winning, in one statement. */
static const db_stmt_t pets_status_stmt = {
    .name = "sf_pets_status",
    .sql = "INSERT INTO pets (id, status, version)"
           " SELECT p.pet_id, $2, p.version"
           " FROM jsonb_to_recordset($1::jsonb) AS p(pet_id uuid, version int)"
           " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
           "  version = excluded.version, updated_at = now()"
           " WHERE pets.version < excluded.version",
    .nparams = 2,
};

/* inventory.reserved, released and sale_confirmed name the pets they changed with their new
 * versions (`pets`): the catalog's statuses come from them. A reply that repeats an earlier one
 * changes none; a reply without `pets` (an older inventory) leaves the catalog to its
 * pet_status_changed events. */
static int apply_pets(db_conn_t *db, const svc_msg_t *m, const char *status, err_t *e)
{
    const json_t *pets = json_object_get(m->payload, "pets");
    if (json_array_size(pets) == 0)
        return 0;
    char *text = json_dumps(pets, JSON_COMPACT);
    if (text == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    const char *params[] = {text, status};
    int rc = db_exec(db, &pets_status_stmt, params, NULL, e);
    free(text);
    return rc;
}

int sf_on_pets_reserved(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    return apply_pets(db, m, "reserved", e);
}

int sf_on_pets_released(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    return apply_pets(db, m, "available", e);
}

int sf_on_pets_sold(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    return apply_pets(db, m, "sold", e);
}

/* An order's outcome is counted in the metrics once the batch commits (finished.c). */
int sf_on_order_status(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    sf_outcome_t outcome;
    int rc = sf_apply_order_status(db, m->payload, &outcome, e);
    if (rc == 0)
        sf_finished_note(&outcome);
    return rc;
}

int sf_on_pet_listed(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    char price[24], version[24];
    int_text(m, "price_cents", price, sizeof(price));
    int_text(m, "version", version, sizeof(version));
    const char *params[] = {s(m, "pet_id"), s(m, "name"),   s(m, "species"),
                            price,          s(m, "status"), version};
    return db_exec(db, &pet_listed_stmt, params, NULL, e);
}

int sf_on_pet_status(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    char version[24];
    int_text(m, "version", version, sizeof(version));
    const char *params[] = {s(m, "pet_id"), s(m, "status"), version};
    return db_exec(db, &pet_status_stmt, params, NULL, e);
}
