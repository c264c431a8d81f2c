/* order-saga: the orchestrator of reserve -> pay -> confirm (DESIGN.md section 4).
 *
 * Wiring only: its configuration, its migrations, one consumer on saga.events whose routes are
 * in handlers.c, and the timer worker of timer.c. The framework (svc.h) does the rest. */
#include "handlers.h"
#include "order-saga_migrations.h"
#include "timer.h"

static const cfg_var_t saga_vars[] = {
    {.name = "SAGA_RESERVE_TIMEOUT_MS",
     .kind = CFG_MS,
     .default_value = "5000",
     .min = 10,
     .max = 86400000,
     .help = "how long the saga waits for the reservation"},
    {.name = "SAGA_PAY_TIMEOUT_MS",
     .kind = CFG_MS,
     .default_value = "5000",
     .min = 10,
     .max = 86400000,
     .help = "how long the saga waits for the payment (also the charge's expires_at)"},
    {.name = "SAGA_CONFIRM_TIMEOUT_MS",
     .kind = CFG_MS,
     .default_value = "5000",
     .min = 10,
     .max = 86400000,
     .help = "first wait for the sale confirmation before sending it again"},
    {.name = "SAGA_COMPENSATE_TIMEOUT_MS",
     .kind = CFG_MS,
     .default_value = "5000",
     .min = 10,
     .max = 86400000,
     .help = "first wait for compensations before sending them again"},
    {.name = "SAGA_RETRY_MAX_MS",
     .kind = CFG_MS,
     .default_value = "60000",
     .min = 10,
     .max = 86400000,
     .help = "cap of the exponential backoff between retries"},
    {.name = "SAGA_MAX_COMPENSATION_TRIES",
     .kind = CFG_INT,
     .default_value = "5",
     .min = 1,
     .max = 1000,
     .help = "compensation timeouts before the saga parks in NEEDS_OPERATOR"},
    {.name = "SAGA_MAX_CONFIRM_TRIES",
     .kind = CFG_INT,
     .default_value = "10",
     .min = 1,
     .max = 1000,
     .help = "sale confirmation timeouts before the saga parks in NEEDS_OPERATOR"},
    {.name = "SAGA_TIMER_POLL_MS",
     .kind = CFG_MS,
     .default_value = "200",
     .min = 10,
     .max = 60000,
     .help = "how often the timer worker looks for due timers"},
};

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
        .cfg_vars = saga_vars,
        .n_cfg_vars = sizeof(saga_vars) / sizeof(saga_vars[0]),
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
