/* order-saga: the orchestrator of reserve -> pay -> confirm (DESIGN.md section 4).
 *
 * Wiring only: its configuration (saga_cfg_vars, in handlers.c: the saga tool reads the same
 * limits), its migrations, one consumer on saga.events whose routes are
 * in handlers.c, and the timer worker of timer.c. The framework (svc.h) does the rest. */
#include "handlers.h"
#include "order-saga_migrations.h"
#include "timer.h"

static int saga_init(svc_t *svc, void **app, err_t *e)
{
    saga_app_t *a = NULL;
    int rc = saga_app_new(svc_cfg(svc), &a, e);
    if (rc == 0)
        *app = a;
    return rc;
}

static void saga_fini(void *app) { saga_app_free(app); }

int main(int argc, char **argv)
{
    const svc_consumer_def_t consumer = {
        .queue = "saga.events",
        .inbox_name = SAGA_APP_ID,
        .routes = saga_routes,
        .n_routes = saga_n_routes,
    };
    svc_def_t def = {
        .name = SAGA_APP_ID,
        .cfg_vars = saga_cfg_vars,
        .n_cfg_vars = saga_n_cfg_vars,
        .migrations = order_saga_migrations,
        .n_migrations = order_saga_migrations_count,
        .consumers = &consumer,
        .n_consumers = 1,
        .init = saga_init,
        .workers = {saga_timer_run},
        .fini = saga_fini,
    };
    return svc_main(argc, argv, &def);
}
