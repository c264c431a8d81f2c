/* inventory: what the inventory daemon's files share (main.c wires them).
 *
 * handlers.c holds the routes of the inventory.commands consumer. Each order command (reserve,
 * release, confirm_sale) is ONE prepared statement that serialises on the order's reservation
 * row, locks the pets in id order, applies the change and reports what it did; plan.c (pure)
 * turns that report into the replies, which go to the outbox in the consumer's transaction. A
 * command therefore costs one round trip plus one per message it emits, and its effects, its
 * inbox row and its replies commit together or not at all.
 *
 * Correlation: replies carry the order id as correlation_id, and name the pets they changed
 * with their new versions (the storefront keeps its catalog from them); pet_listed carries the
 * pet id. A reply may therefore reach the storefront before its pets' listings: the storefront
 * keeps such a status in a partial row until the listing arrives (its migration 004).
 *
 * Threading: handlers run on the consumer thread that owns db; the app (metrics handles) is
 * read-only after inventory_app_new. */
#ifndef PETSTORE_INVENTORY_H
#define PETSTORE_INVENTORY_H

#include <stddef.h>

#include "svc.h"

#define INVENTORY_APP_ID "inventory"

/* The routes of the inventory.commands consumer: list_pet, reserve, release, confirm_sale. */
extern const svc_route_t inventory_routes[];
extern const size_t inventory_n_routes;

typedef struct inventory_app inventory_app_t;

/* Registers the service's metrics. *out (set on success) is freed with inventory_app_free. */
int inventory_app_new(inventory_app_t **out, err_t *e) PETSTORE_NODISCARD;
void inventory_app_free(inventory_app_t *app); /* NULL ok */

/* A pet as list_pet describes it. Strings borrowed. */
typedef struct inventory_pet {
    const char *id;
    const char *name;
    const char *species;
    long long price_cents;
} inventory_pet_t;

/* Lists pet inside the caller's transaction: inserts it unless its id exists, and emits
 * inventory.pet_listed.v1 with the pet as it is now when it was inserted, or also when it
 * existed and announce_existing is set (a repeated list_pet is answered again). cause is the
 * message being handled (or one with only app_id, for the seed); its correlation becomes the pet
 * id. *inserted (may be NULL) says whether the pet is new. ERR_INVALID when the id exists with
 * another name, species or price: no retry can fix that. */
int inventory_list_pet(db_conn_t *db, const svc_cause_t *cause, const inventory_pet_t *pet,
                       int announce_existing, int *inserted, err_t *e) PETSTORE_NODISCARD;

#endif
