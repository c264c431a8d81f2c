/* inventory: the inventory daemon. Wiring only: the consumer of inventory.commands
 * (handlers.c) on top of the service framework, and the demo seed.
 *
 *   inventory               run the daemon (DATABASE_URL, AMQP_URL, HTTP_PORT from the environment)
 *   inventory --migrate     apply the runtime's and the inventory's migrations, then exit
 *   inventory --seed-demo   list the demo pets (idempotent: fixed ids), then exit */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inventory.h"
#include "inventory_migrations.h"

static const svc_route_t command_routes[] = {
    {MSG_INVENTORY_LIST_PET_V1, inventory_handle_list_pet},
    {MSG_INVENTORY_RESERVE_V1, inventory_handle_reserve},
    {MSG_INVENTORY_RELEASE_V1, inventory_handle_release},
    {MSG_INVENTORY_CONFIRM_SALE_V1, inventory_handle_confirm_sale},
};

static const svc_consumer_def_t consumers[] = {
    {.queue = "inventory.commands",
     .inbox_name = "inventory",
     .routes = command_routes,
     .n_routes = sizeof(command_routes) / sizeof(command_routes[0])},
};

static const struct demo_pet {
    const char *id, *name, *species;
    long long price_cents;
} demo_pets[] = {
    {"5e7d0000-0000-4000-8000-000000000001", "Rex", "dog", 45000},
    {"5e7d0000-0000-4000-8000-000000000002", "Bella", "dog", 52000},
    {"5e7d0000-0000-4000-8000-000000000003", "Max", "dog", 38000},
    {"5e7d0000-0000-4000-8000-000000000004", "Luna", "cat", 30000},
    {"5e7d0000-0000-4000-8000-000000000005", "Milo", "cat", 27500},
    {"5e7d0000-0000-4000-8000-000000000006", "Nala", "cat", 32000},
    {"5e7d0000-0000-4000-8000-000000000007", "Kiwi", "bird", 8900},
    {"5e7d0000-0000-4000-8000-000000000008", "Sunny", "bird", 12000},
    {"5e7d0000-0000-4000-8000-000000000009", "Nemo", "fish", 1500},
    {"5e7d0000-0000-4000-8000-00000000000a", "Dory", "fish", 1800},
    {"5e7d0000-0000-4000-8000-00000000000b", "Thumper", "rabbit", 6500},
    {"5e7d0000-0000-4000-8000-00000000000c", "Clover", "rabbit", 7200},
};

static int seed_demo(void)
{
    const char *url = getenv("DATABASE_URL");
    if (url == NULL || url[0] == '\0') {
        fprintf(stderr, "inventory: configuration error: DATABASE_URL: required but not set\n");
        return 78;
    }
    log_init("inventory", LOG_INFO, 1);
    db_conn_t *db = NULL;
    err_t e;
    err_clear(&e);
    int listed = 0, rc = db_open_retry(url, 30000, NULL, &db, &e);
    if (rc == 0)
        rc = db_migrate_runtime(db, &e);
    if (rc == 0)
        rc = db_migrate(db, "inventory", inventory_migrations, inventory_n_migrations, &e);
    if (rc == 0)
        rc = db_begin(db, &e);
    svc_cause_t cause = {.app_id = "inventory"};
    for (size_t i = 0; rc == 0 && i < sizeof(demo_pets) / sizeof(demo_pets[0]); i++) {
        int inserted = 0;
        rc = inventory_list_pet(db, &cause, demo_pets[i].id, demo_pets[i].name,
                                demo_pets[i].species, demo_pets[i].price_cents, &inserted, &e);
        listed += inserted;
    }
    if (rc == 0)
        rc = db_commit(db, &e);
    else if (db != NULL)
        db_rollback(db);
    db_close(db);
    if (rc != 0) {
        log_err(LOG_ERROR, NULL, "inventory.seed_failed", &e);
        return 1;
    }
    log_info(NULL, "inventory.seeded", json_pack("{s:i}", "new_pets", listed));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--seed-demo") == 0)
        return seed_demo();
    svc_def_t def = {
        .name = "inventory",
        .migrations = inventory_migrations,
        .n_migrations = inventory_n_migrations,
        .consumers = consumers,
        .n_consumers = sizeof(consumers) / sizeof(consumers[0]),
    };
    return svc_main(argc, argv, &def);
}
