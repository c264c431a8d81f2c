/* svc: the life of a service process and the outbox emitter (see svc.h).
 *
 * Startup order matters: configuration first (so a bad variable stops the process before it
 * touches anything), then logging and signals, then the migration (one advisory-locked pass, so
 * several instances may start at once), then the HTTP server (so /livez answers while the
 * consumers connect and /readyz tells that they have not yet), then the threads. Shutdown runs
 * in reverse: threads drain and join, then the HTTP server stops. */
#include "svc_internal.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "health.h"
#include "outbox.h"
#include "uuid.h"

struct svc {
    const svc_def_t *def;
    cfg_t *cfg;
    void *app;
};

/* Signals are process-wide, so is the one svc. */
static svc_t *the_svc;
static pthread_key_t thread_db_key;
static pthread_once_t thread_db_once = PTHREAD_ONCE_INIT;

static const cfg_var_t std_vars[] = {
    {.name = "DATABASE_URL", .kind = CFG_CONNINFO, .required = 1, .secret = 1,
     .help = "libpq connection string of the service's database"},
    {.name = "AMQP_URL", .kind = CFG_URL_AMQP, .required = 1, .secret = 1,
     .help = "amqp://user:password@host:port/vhost"},
    {.name = "HTTP_PORT", .kind = CFG_PORT, .required = 1, .help = "health, metrics and API port"},
    {.name = "HTTP_ADDR", .kind = CFG_STRING, .default_value = "127.0.0.1",
     .help = "address the HTTP server binds"},
    {.name = "HTTP_THREADS", .kind = CFG_INT, .default_value = "4", .min = 1, .max = 64,
     .help = "HTTP worker threads"},
    {.name = "LOG_LEVEL", .kind = CFG_ENUM, .default_value = "info",
     .enum_values = (const char *const[]){"debug", "info", "warn", "error", NULL},
     .help = "minimum level logged"},
    {.name = "ADMIN_TOKEN", .kind = CFG_STRING, .secret = 1,
     .help = "bearer token of administrative calls"},
    {.name = "CONSUMER_PREFETCH", .kind = CFG_INT, .default_value = "256", .min = 1,
     .max = 65535, .help = "unacknowledged deliveries the broker may send ahead"},
    {.name = "CONSUMER_BATCH", .kind = CFG_INT, .default_value = "128", .min = 1, .max = 4096,
     .help = "deliveries handled in one database transaction at most"},
};

const cfg_t *svc_cfg(const svc_t *svc)
{
    return svc->cfg;
}

const char *svc_name(const svc_t *svc)
{
    return svc->def->name;
}

void *svc_app(const svc_t *svc)
{
    return svc->app;
}

int svc_stopping(void)
{
    return daemon_stopping();
}

int svc_db_open(const svc_t *svc, db_conn_t **out, err_t *e)
{
    int rc = db_open_retry(cfg_str(svc->cfg, "DATABASE_URL"), -1, svc_stopping, out, e);
    if (rc != 0 && svc_stopping())
        return err_set(e, ERR_RETRY, "stopping");
    return rc;
}

static void thread_db_close(void *db)
{
    db_close(db);
}

static void thread_db_key_init(void)
{
    if (pthread_key_create(&thread_db_key, thread_db_close) != 0)
        abort();
}

int svc_thread_db(const svc_t *svc, db_conn_t **out, err_t *e)
{
    pthread_once(&thread_db_once, thread_db_key_init);
    db_conn_t *db = pthread_getspecific(thread_db_key);
    if (db != NULL && db_check(db)) {
        *out = db;
        return 0;
    }
    db_close(db);
    pthread_setspecific(thread_db_key, NULL);
    /* An HTTP request must not hang on a dead database: one attempt, then 503 upstream. */
    int rc = db_open(cfg_str(svc->cfg, "DATABASE_URL"), &db, e);
    if (rc != 0)
        return rc == ERR_CONFIG ? rc : err_set(e, ERR_RETRY, "database unavailable");
    pthread_setspecific(thread_db_key, db);
    *out = db;
    return 0;
}

svc_cause_t svc_cause_of(const char *app_id, const svc_msg_t *m)
{
    svc_cause_t c = {
        .app_id = app_id,
        .causation_id = m->env->message_id,
        .correlation_id = m->env->correlation_id[0] ? m->env->correlation_id : NULL,
        .trace = m->trace,
    };
    return c;
}

static void now_rfc3339(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char base[24];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03dZ", base, (int)(ts.tv_nsec / 1000000L) % 1000);
}

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src != NULL ? src : "");
}

int svc_emit(db_conn_t *db, const svc_cause_t *cause, msg_type_t type, const json_t *payload,
             err_t *e)
{
    const msg_type_info_t *info = msg_type_info(type);
    msg_envelope_t env;
    json_t *headers = NULL;
    char *body = NULL;
    size_t body_len = 0;
    trace_ctx_t span;
    int rc;

    if (info == NULL)
        return err_set(e, ERR_INTERNAL, "emit of an unknown message type %d", (int)type);
    memset(&env, 0, sizeof(env));
    uuid_v7(env.message_id);
    copy_str(env.correlation_id, sizeof(env.correlation_id), cause->correlation_id);
    copy_str(env.causation_id, sizeof(env.causation_id), cause->causation_id);
    copy_str(env.type, sizeof(env.type), info->name);
    copy_str(env.app_id, sizeof(env.app_id), cause->app_id);
    snprintf(env.source, sizeof(env.source), "/petstore/%s", cause->app_id);
    now_rfc3339(env.time, sizeof(env.time));
    if (cause->trace != NULL)
        trace_child(cause->trace, &span);
    else
        trace_new_root(&span);
    trace_format(&span, env.traceparent);

    rc = msg_encode(type, payload, &body, &body_len, e);
    if (rc != 0) {
        /* Our own payload broke our own contract: a bug, not poison. */
        rc = err_set(e, ERR_INTERNAL, "emit %s: %s", info->name, e ? e->msg : "invalid payload");
        goto out;
    }
    rc = msg_envelope_headers(&env, &headers, e);
    if (rc != 0)
        goto out;
    outbox_msg_t m = {
        .exchange = info->exchange,
        .routing_key = info->routing_key,
        .message_id = env.message_id,
        .type = info->name,
        .correlation_id = env.correlation_id[0] ? env.correlation_id : NULL,
        .causation_id = env.causation_id[0] ? env.causation_id : NULL,
        .traceparent = env.traceparent,
        .app_id = env.app_id,
        .headers = headers,
        .body = body,
        .body_len = body_len,
    };
    rc = outbox_enqueue(db, &m, e);
out:
    json_decref(headers);
    free(body);
    return rc;
}

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
    the_svc = &svc;
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

    http_config_t hc = {
        .addr = cfg_str(svc.cfg, "HTTP_ADDR"),
        .port = (uint16_t)cfg_int(svc.cfg, "HTTP_PORT"),
        .threads = (unsigned)cfg_int(svc.cfg, "HTTP_THREADS"),
    };
    if (http_server_start(&hc, def->http_routes, def->n_http_routes, &svc, &http, &e) != 0) {
        log_err(LOG_ERROR, NULL, "startup.http_failed", &e);
        goto out;
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
