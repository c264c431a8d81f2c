/* outbox-relay: publishes one service database's outbox (see relay.h). One instance runs as a
 * sidecar per service database; more may run on the same database. Its name (RELAY_NAME, e.g.
 * relay-inventory) labels its logs and its broker connection. */
#include <stdlib.h>

#include "relay.h"

static const cfg_var_t relay_vars[] = {
    {.name = "RELAY_NAME",
     .kind = CFG_STRING,
     .default_value = "outbox-relay",
     .help = "name in logs and in the broker's connection list"},
    {.name = "RELAY_BATCH_SIZE",
     .kind = CFG_INT,
     .default_value = "500",
     .min = 1,
     .max = 10000,
     .help = "rows claimed and published per transaction"},
    {.name = "RELAY_POLL_MS",
     .kind = CFG_MS,
     .default_value = "1000",
     .min = 10,
     .max = 600000,
     .help = "fallback poll interval when no NOTIFY arrives"},
    {.name = "RELAY_RETENTION_S",
     .kind = CFG_INT,
     .default_value = "3600",
     .min = 0,
     .max = 31536000,
     .help = "seconds sent rows are kept before deletion"},
    {.name = "RELAY_CONFIRM_TIMEOUT_MS",
     .kind = CFG_MS,
     .default_value = "10000",
     .min = 100,
     .max = 600000,
     .help = "how long to wait for publisher confirms of a batch"},
    {.name = "RELAY_MAX_ATTEMPTS",
     .kind = CFG_INT,
     .default_value = "10",
     .min = 1,
     .max = 1000,
     .help = "failed attempts (returned or refused, not nacked) before a row is parked"},
};

int main(int argc, char **argv)
{
    const char *name = getenv("RELAY_NAME");
    svc_def_t def = {
        .name = name != NULL && name[0] != '\0' ? name : "outbox-relay",
        .cfg_vars = relay_vars,
        .n_cfg_vars = sizeof(relay_vars) / sizeof(relay_vars[0]),
        .workers = {relay_run},
    };
    return svc_main(argc, argv, &def);
}
