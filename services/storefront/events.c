/* events: the storefront's read models, kept from other services' events (the consumer of
 * storefront.events). Every update applies only a newer version, so redelivered, duplicated or
 * reordered events never move a model back. Orders are applied by order_view.c. */
#include <stdio.h>
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

int sf_on_order_status(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    return sf_apply_order_status(db, m->payload, e);
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
