/* svc_ctx: what a running service hands to its hooks, workers and HTTP handlers: its
 * configuration, name and application state, and each HTTP thread's own database connection.
 * Kept apart from svc_main so that the workers and the consumer depend on this small piece and
 * svc_main depends on them, never the other way round.
 *
 * An HTTP thread's connection is kept between requests, so it can die in between (a PostgreSQL
 * restart, a middlebox that forgot it). Two defences, both before any 503: svc_thread_db reads
 * whatever the server sent while the connection sat idle (db_check) and replaces a connection
 * that is seen to be closed; and, since a connection can also die without a word (nothing to
 * read until we send), the connection is opened with db_opts_t.retry_broken, so a statement
 * that meets the dead connection outside a transaction reconnects and runs once more (db.h
 * states which statements may). Every handler that takes its connection here (the storefront's
 * routes and session lookup, the long-poll parking, the payment admin API) is covered. */
#include "svc_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"

static pthread_key_t thread_db_key;
static pthread_once_t thread_db_once = PTHREAD_ONCE_INIT;

const cfg_t *svc_cfg(const svc_t *svc) { return svc->cfg; }

const char *svc_name(const svc_t *svc) { return svc->def->name; }

void *svc_app(const svc_t *svc) { return svc->app; }

int svc_stopping(void) { return daemon_stopping(); }

static void thread_db_close(void *db) { db_close(db); }

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
    char name[64];
    snprintf(name, sizeof(name), "%s http", svc_name(svc));
    db_opts_t opts = {.application_name = name, .retry_broken = 1};
    int rc = db_open_ex(cfg_str(svc->cfg, "DATABASE_URL"), &opts, &db, e);
    if (rc != 0)
        return rc == ERR_CONFIG ? rc : err_set(e, ERR_RETRY, "database unavailable");
    pthread_setspecific(thread_db_key, db);
    *out = db;
    return 0;
}
