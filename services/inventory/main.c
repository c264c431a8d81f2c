/* inventory: the inventory daemon. Wiring only: the consumer of inventory.commands
 * (handlers.c) on top of the service framework, and the demo seed.
 *
 *   inventory               run the daemon (DATABASE_URL, AMQP_URL, HTTP_PORT from the environment)
 *   inventory --migrate     apply the runtime's and the inventory's migrations, then exit
 *   inventory --seed-demo   list the demo pets (idempotent: fixed ids), then exit
 *
 * INVENTORY_CONSUMERS (default 2) consumer threads compete for inventory.commands, each with its
 * own database and broker connections: the commands of one order are serialised by its
 * reservation row, not by delivery order, so the threads need no coordination. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inventory.h"
#include "inventory_migrations.h"

/* The demo catalogue: fixed ids, so demos, tests and operators can name the pets. */
static const inventory_pet_t demo_pets[] = {
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

#define MAX_CONSUMERS 8

static const cfg_var_t inventory_vars[] = {
    {.name = "INVENTORY_CONSUMERS",
     .kind = CFG_INT,
     .default_value = "2",
     .min = 1,
     .max = MAX_CONSUMERS,
     .help = "consumer threads competing for inventory.commands"},
};

/* The consumer count must be known before svc_main reads the configuration, so it is read here
 * too; a bad value is reported (exit 78) by svc_main, which validates INVENTORY_CONSUMERS with
 * everything else. */
static size_t consumer_count(void)
{
    const char *text = getenv("INVENTORY_CONSUMERS");
    if (text == NULL || text[0] == '\0')
        return 2;
    char *end = NULL;
    long n = strtol(text, &end, 10);
    return *end == '\0' && n >= 1 && n <= MAX_CONSUMERS ? (size_t)n : 1;
}

static const cfg_var_t seed_vars[] = {
    {.name = "DATABASE_URL",
     .kind = CFG_CONNINFO,
     .required = 1,
     .secret = 1,
     .help = "libpq connection string of the inventory database"},
    {.name = "LOG_LEVEL",
     .kind = CFG_ENUM,
     .default_value = "info",
     .enum_values = (const char *const[]){"debug", "info", "warn", "error", NULL},
     .help = "minimum level logged"},
};

/* Migrates (so a seed on a fresh database works), then lists the missing demo pets and their
 * pet_listed outbox rows in ONE transaction: all of them or none. Pets already there are left
 * as they are and not announced again. */
static int seed_demo(void)
{
    cfg_t *cfg = NULL;
    cfg_load_or_exit(INVENTORY_APP_ID, seed_vars, sizeof(seed_vars) / sizeof(seed_vars[0]), &cfg);
    log_level_t level = LOG_INFO;
    if (log_level_parse(cfg_str(cfg, "LOG_LEVEL"), &level) != 0)
        level = LOG_INFO;
    log_init(INVENTORY_APP_ID, level, 1);

    db_conn_t *db = NULL;
    err_t e;
    err_clear(&e);
    int listed = 0;
    int rc = db_open_retry(cfg_str(cfg, "DATABASE_URL"), 30000, NULL, &db, &e);
    if (rc == 0)
        rc = db_migrate_runtime(db, &e);
    if (rc == 0)
        rc = db_migrate(db, INVENTORY_APP_ID, inventory_migrations, inventory_migrations_count, &e);
    if (rc == 0)
        rc = db_begin(db, &e);
    const svc_cause_t cause = {.app_id = INVENTORY_APP_ID};
    for (size_t i = 0; rc == 0 && i < sizeof(demo_pets) / sizeof(demo_pets[0]); i++) {
        int inserted = 0;
        rc = inventory_list_pet(db, &cause, &demo_pets[i], 0, &inserted, &e);
        listed += inserted;
    }
    if (rc == 0)
        rc = db_commit(db, &e);
    else if (db != NULL)
        db_rollback(db);
    db_close(db);
    cfg_free(cfg);
    if (rc != 0) {
        log_err(LOG_ERROR, NULL, "inventory.seed_failed", &e);
        return 1;
    }
    log_info(NULL, "inventory.seeded",
             json_pack("{s:i,s:i}", "new_pets", listed, "demo_pets",
                       (int)(sizeof(demo_pets) / sizeof(demo_pets[0]))));
    return 0;
}

static int inventory_init(svc_t *svc, void **app, err_t *e)
{
    (void)svc;
    inventory_app_t *a = NULL;
    int rc = inventory_app_new(&a, e);
    if (rc == 0)
        *app = a;
    return rc;
}

static void inventory_fini(void *app) { inventory_app_free(app); }

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--seed-demo") == 0)
        return seed_demo();
    svc_consumer_def_t consumers[MAX_CONSUMERS];
    size_t n_consumers = consumer_count();
    for (size_t i = 0; i < n_consumers; i++) {
        consumers[i] = (svc_consumer_def_t){
            .queue = "inventory.commands",
            .inbox_name = INVENTORY_APP_ID,
            .routes = inventory_routes,
            .n_routes = inventory_n_routes,
        };
    }
    svc_def_t def = {
        .name = INVENTORY_APP_ID,
        .cfg_vars = inventory_vars,
        .n_cfg_vars = sizeof(inventory_vars) / sizeof(inventory_vars[0]),
        .migrations = inventory_migrations,
        .n_migrations = inventory_migrations_count,
        .consumers = consumers,
        .n_consumers = n_consumers,
        .init = inventory_init,
        .fini = inventory_fini,
    };
    return svc_main(argc, argv, &def);
}
