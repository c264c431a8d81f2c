/* audit: the append-only history of every event. It consumes audit.events (bound to the
 * petstore.audit fanout, which receives everything published on petstore.events) and writes
 * each event once into event_log; the inbox and the unique message id make redelivery
 * harmless. The events of a batch are written with one statement (the consumer's flush, svc.h).
 * Poison is dead-lettered like everywhere else.
 *
 *   audit             run the daemon (DATABASE_URL, AMQP_URL, HTTP_PORT)
 *   audit --migrate   apply the migrations, then exit */
#include <stdlib.h>

#include "audit_migrations.h"
#include "svc.h"

/* The events of a batch in one statement, in delivery order; a message id already recorded
 * (a redelivery the inbox did not catch, a replay) is skipped. */
static const db_stmt_t append_stmt = {
    .name = "audit_append",
    .sql = "INSERT INTO event_log (message_id, type, routing_key, source, correlation_id,"
           " causation_id, traceparent, occurred_at, payload)"
           " SELECT e.message_id, e.type, e.routing_key, e.source, e.correlation_id,"
           "        e.causation_id, e.traceparent, e.occurred_at, e.payload"
           " FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (message_id uuid, type text,"
           "       routing_key text, source text, correlation_id text, causation_id text,"
           "       traceparent text, occurred_at timestamptz, payload jsonb))"
           "      WITH ORDINALITY AS e(message_id, type, routing_key, source, correlation_id,"
           "       causation_id, traceparent, occurred_at, payload, ord)"
           " ORDER BY e.ord"
           " ON CONFLICT (message_id) DO NOTHING",
    .nparams = 1,
};

/* The rows of the batch in hand, gathered by append and written by flush: each consumer runs
 * on its own thread (svc.h). */
static _Thread_local json_t *gathered;

static json_t *nonempty(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

static int append(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)db;
    (void)app;
    if (gathered == NULL && (gathered = json_array()) == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    json_t *row =
        json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:O}", "message_id", m->env->message_id, "type",
                  m->env->type, "routing_key", m->routing_key ? m->routing_key : "", "source",
                  nonempty(m->env->source), "correlation_id", nonempty(m->env->correlation_id),
                  "causation_id", nonempty(m->env->causation_id), "traceparent",
                  nonempty(m->env->traceparent), "occurred_at", nonempty(m->env->time), "payload",
                  m->payload);
    if (row == NULL || json_array_append_new(gathered, row) != 0)
        return err_set(e, ERR_NOMEM, "out of memory");
    return 0;
}

static int flush(db_conn_t *db, void *app, err_t *e)
{
    (void)app;
    int rc = 0;
    if (db != NULL && gathered != NULL && json_array_size(gathered) > 0) {
        char *rows = json_dumps(gathered, JSON_COMPACT);
        if (rows == NULL) {
            rc = err_set(e, ERR_NOMEM, "out of memory");
        } else {
            const char *params[] = {rows};
            rc = db_exec(db, &append_stmt, params, NULL, e);
            free(rows);
        }
    }
    json_decref(gathered); /* a fresh array per batch: none is left behind at exit */
    gathered = NULL;
    return rc;
}

static const svc_route_t routes[] = {{MSG_NONE, append}};

static const svc_consumer_def_t consumers[] = {
    {.queue = "audit.events",
     .inbox_name = "audit",
     .routes = routes,
     .n_routes = 1,
     .flush = flush},
};

int main(int argc, char **argv)
{
    svc_def_t def = {
        .name = "audit",
        .migrations = audit_migrations,
        .n_migrations = audit_n_migrations,
        .consumers = consumers,
        .n_consumers = 1,
    };
    return svc_main(argc, argv, &def);
}
