/* svc: the life of a service process (see svc.h).
 *
 * Startup order matters: configuration first (so a bad variable stops the process before it
 * touches anything), then logging and signals, then the migration (one advisory-locked pass, so
 * several instances may start at once), then the HTTP server (so /livez answers while the
 * consumers connect and /readyz tells that they have not yet), then the check that every work
 * queue consumed is fit (svc_queue_check.c: exit 78 if one is not), then the threads. Shutdown
 * runs in reverse: threads drain and join, then the HTTP server stops. */
#include "svc_internal.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "health.h"

static const cfg_var_t std_vars[] = {
    {.name = "DATABASE_URL",
     .kind = CFG_CONNINFO,
     .required = 1,
     .secret = 1,
     .help = "libpq connection string of the service's database"},
    {.name = "AMQP_URL",
     .kind = CFG_URL_AMQP,
     .required = 1,
     .secret = 1,
     .help = "amqp://user:password@host:port/vhost"},
    {.name = "AMQP_MGMT_URL",
     .kind = CFG_STRING,
     .required = 1, /* only for a daemon that consumes a work queue: see all_vars() */
     .help = "RabbitMQ management API, http://host:port: at start, every consumed queue must be a "
             "quorum queue with a dead-letter exchange, a delivery limit and at-least-once "
             "dead-lettering"},
    {.name = "HTTP_PORT", .kind = CFG_PORT, .required = 1, .help = "health, metrics and API port"},
    {.name = "HTTP_TLS_CERT_FILE",
     .kind = CFG_STRING,
     .help = "PEM certificate chain of the HTTP server; set with HTTP_TLS_KEY_FILE, the port "
             "speaks HTTPS only"},
    {.name = "HTTP_TLS_KEY_FILE",
     .kind = CFG_STRING,
     .help = "PEM private key of HTTP_TLS_CERT_FILE (a path: the file is the secret)"},
    {.name = "TLS_CA_FILE",
     .kind = CFG_STRING,
     .help = "PEM certificates of the authorities that sign the broker's certificates (amqps:// "
             "and https:// management API); unset: the system's store"},
    {.name = "HTTP_ADDR",
     .kind = CFG_STRING,
     .default_value = "127.0.0.1",
     .help = "address the HTTP server binds"},
    {.name = "HTTP_THREADS",
     .kind = CFG_INT,
     .default_value = "4",
     .min = 1,
     .max = 64,
     .help = "HTTP worker threads"},
    {.name = "LOG_LEVEL",
     .kind = CFG_ENUM,
     .default_value = "info",
     .enum_values = (const char *const[]){"debug", "info", "warn", "error", NULL},
     .help = "minimum level logged"},
    {.name = "ADMIN_TOKEN",
     .kind = CFG_STRING,
     .secret = 1,
     .help = "bearer token of administrative calls"},
    {.name = "AMQP_HEARTBEAT_S",
     .kind = CFG_INT,
     .default_value = "30",
     .min = 1,
     .max = 3600,
     .help = "seconds between AMQP heartbeats of every broker connection"},
    {.name = "CONSUMER_PREFETCH",
     .kind = CFG_INT,
     .default_value = "256",
     .min = 1,
     .max = 65535,
     .help = "unacknowledged deliveries the broker may send ahead"},
    {.name = "CONSUMER_BATCH",
     .kind = CFG_INT,
     .default_value = "128",
     .min = 1,
     .max = 4096,
     .help = "deliveries handled in one database transaction at most"},
    {.name = "CONSUMER_MAX_ATTEMPTS",
     .kind = CFG_INT,
     .default_value = "5",
     .min = 1,
     .max = 100,
     .help = "failed attempts (not counting outages) before a batch is split and then a "
             "message that keeps failing alone is dead-lettered"},
    {.name = "INBOX_RETENTION_S",
     .kind = CFG_INT,
     .default_value = "604800",
     .min = 60,
     .max = 315360000,
     .help = "seconds an inbox row is kept; must exceed the longest redelivery or "
             "dead-letter replay window, or a replayed message is handled again"},
};

/* Applies the runtime's and the service's migrations. A transient failure (the database
 * restarting while the daemon starts) is retried with backoff for up to a minute; anything else
 * (a changed migration, bad SQL, bad credentials) stops the start at once. */
static int migrate(svc_t *svc, err_t *e)
{
    daemon_backoff_t backoff;
    daemon_backoff_init(&backoff, 200, 5000);
    int rc = ERR_RETRY;
    for (int attempt = 0; attempt < 20 && rc == ERR_RETRY && !svc_stopping(); attempt++) {
        if (attempt > 0) {
            log_err(LOG_WARN, NULL, "startup.migration_retry", e);
            daemon_sleep_ms(daemon_backoff_next_ms(&backoff));
        }
        db_conn_t *db = NULL;
        rc = db_open_retry(cfg_str(svc->cfg, "DATABASE_URL"), 60000, svc_stopping, &db, e);
        if (rc == 0)
            rc = db_migrate_runtime(db, e);
        if (rc == 0 && svc->def->n_migrations > 0)
            rc = db_migrate(db, svc->def->name, svc->def->migrations, svc->def->n_migrations, e);
        db_close(db);
    }
    return rc;
}

static cfg_var_t *all_vars(const svc_def_t *def, size_t *n)
{
    size_t n_std = sizeof(std_vars) / sizeof(std_vars[0]);
    cfg_var_t *vars = calloc(n_std + def->n_cfg_vars, sizeof(*vars));
    if (vars == NULL)
        return NULL;
    memcpy(vars, std_vars, sizeof(std_vars));
    /* AMQP_MGMT_URL serves the queue check alone, so a process without a work queue (a relay)
     * does not need it. */
    for (size_t i = 0; i < n_std && !svc__consumes_work_queue(def); i++)
        if (strcmp(vars[i].name, "AMQP_MGMT_URL") == 0)
            vars[i].required = 0;
    if (def->n_cfg_vars > 0)
        memcpy(vars + n_std, def->cfg_vars, def->n_cfg_vars * sizeof(*vars));
    *n = n_std + def->n_cfg_vars;
    return vars;
}

int svc_main(int argc, char **argv, const svc_def_t *def)
{
    int only_migrate = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--migrate") == 0) {
            only_migrate = 1;
        } else {
            fprintf(stderr, "%s: unknown argument %s (known: --migrate)\n", def->name, argv[i]);
            return 64;
        }
    }

    static svc_t svc;
    svc.def = def;
    size_t n_vars = 0;
    cfg_var_t *vars = all_vars(def, &n_vars);
    if (vars == NULL)
        return 1;
    cfg_load_or_exit(def->name, vars, n_vars, &svc.cfg);

    log_level_t level = LOG_INFO;
    if (log_level_parse(cfg_str(svc.cfg, "LOG_LEVEL"), &level) != 0)
        level = LOG_INFO;
    log_init(def->name, level, 1);

    err_t e;
    err_clear(&e);
    int status = 1;
    http_server_t *http = NULL;
    consumer_t *consumers[8] = {0};
    pthread_t threads[16];
    size_t n_threads = 0;

    if (daemon_signals_init(&e) != 0) {
        log_err(LOG_ERROR, NULL, "startup.signals_failed", &e);
        goto out;
    }
    if (migrate(&svc, &e) != 0) {
        log_err(LOG_ERROR, NULL, "startup.migration_failed", &e);
        goto out;
    }
    if (only_migrate) {
        log_info(NULL, "migrated", NULL);
        status = 0;
        goto out;
    }
    if (def->init != NULL && def->init(&svc, &svc.app, &e) != 0) {
        log_err(LOG_ERROR, NULL, "startup.init_failed", &e);
        goto out;
    }

    /* Created before the HTTP server starts, so /readyz never answers ready before the check
     * passed. */
    int check_queues = svc__consumes_work_queue(def);
    health_flag_t *queues_flag = check_queues ? health_flag_new("queue-policy") : NULL;
    if (check_queues && queues_flag == NULL) {
        log_error(NULL, "startup.out_of_memory", NULL);
        goto out;
    }

    http_config_t hc = {
        .addr = cfg_str(svc.cfg, "HTTP_ADDR"),
        .port = (uint16_t)cfg_int(svc.cfg, "HTTP_PORT"),
        .threads = (unsigned)cfg_int(svc.cfg, "HTTP_THREADS"),
        .tls_cert_file = cfg_str(svc.cfg, "HTTP_TLS_CERT_FILE"),
        .tls_key_file = cfg_str(svc.cfg, "HTTP_TLS_KEY_FILE"),
    };
    if (http_server_start(&hc, def->http_routes, def->n_http_routes, &svc, &http, &e) != 0) {
        log_err(LOG_ERROR, NULL, "startup.http_failed", &e);
        goto out;
    }

    if (check_queues) {
        char line[2048];
        int rc = svc__check_queues(&svc, queues_flag, line, sizeof(line));
        if (rc == ERR_RETRY) { /* stopped while waiting for the management API */
            log_info(NULL, "stopping", NULL);
            status = 0;
            goto out;
        }
        if (rc != 0) {
            fprintf(stderr, "%s: %s\n", def->name, line);
            status = 78; /* EX_CONFIG */
            goto out;
        }
    }

    int prefetch = cfg_int(svc.cfg, "CONSUMER_PREFETCH");
    int batch = cfg_int(svc.cfg, "CONSUMER_BATCH");
    for (size_t i = 0; i < def->n_consumers && i < 8; i++) {
        consumers[i] = svc__consumer_new(&svc, &def->consumers[i], prefetch, batch);
        if (consumers[i] == NULL ||
            pthread_create(&threads[n_threads], NULL, svc__consumer_thread, consumers[i]) != 0) {
            log_error(NULL, "startup.thread_failed", NULL);
            daemon_request_stop();
            break;
        }
        n_threads++;
    }
    for (size_t i = 0; i < 4 && def->workers[i] != NULL && !svc_stopping(); i++) {
        if (pthread_create(&threads[n_threads], NULL, def->workers[i], &svc) != 0) {
            log_error(NULL, "startup.thread_failed", NULL);
            daemon_request_stop();
            break;
        }
        n_threads++;
    }
    log_info(NULL, "started",
             json_pack("{s:i,s:i}", "http_port", (int)hc.port, "consumers", (int)def->n_consumers));

    while (!svc_stopping()) {
        struct pollfd p = {.fd = daemon_stop_fd(), .events = POLLIN};
        (void)poll(&p, 1, 1000);
    }
    log_info(NULL, "stopping", NULL);
    status = 0;

out:
    daemon_request_stop();
    for (size_t i = 0; i < n_threads; i++)
        pthread_join(threads[i], NULL);
    for (size_t i = 0; i < 8; i++)
        svc__consumer_free(consumers[i]);
    http_server_stop(http);
    if (def->fini != NULL)
        def->fini(svc.app);
    cfg_free(svc.cfg);
    free(vars);
    if (status == 0)
        log_info(NULL, "stopped", NULL);
    return status;
}
