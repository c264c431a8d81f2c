/* inventory: what the inventory daemon's files share (main.c wires them). */
#ifndef PETSTORE_INVENTORY_H
#define PETSTORE_INVENTORY_H

#include "svc.h"

/* Message handlers (svc_handler_fn), in handlers.c. */
int inventory_handle_list_pet(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);
int inventory_handle_reserve(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);
int inventory_handle_release(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);
int inventory_handle_confirm_sale(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e);

/* Inserts a pet unless it exists and, if inserted, emits inventory.pet_listed.v1. Inside the
 * caller's transaction. *inserted (may be NULL) says which. cause may have no causation. */
int inventory_list_pet(db_conn_t *db, const svc_cause_t *cause, const char *pet_id,
                       const char *name, const char *species, long long price_cents,
                       int *inserted, err_t *e) PETSTORE_NODISCARD;

#endif
