/* audit: the append-only history of every event. It consumes audit.events (bound to the
 * petstore.audit fanout, which receives everything published on petstore.events) and writes
 * each event once into event_log; the inbox and the unique message id make redelivery
 * harmless. Poison is dead-lettered like everywhere else.
 *
 *   audit             run the daemon (DATABASE_URL, AMQP_URL, HTTP_PORT)
 *   audit --migrate   apply the migrations, then exit */
#include <stdlib.h>

#include "audit_migrations.h"
#include "svc.h"

static const db_stmt_t append_stmt = {
    .name = "audit_append",
    .sql = "INSERT INTO event_log (message_id, type, routing_key, source, correlation_id,"
           " causation_id, traceparent, occurred_at, payload)"
           " VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8::timestamptz, $9::jsonb)"
           " ON CONFLICT (message_id) DO NOTHING",
    .nparams = 9,
};

static const char *nonempty(const char *s) { return s != NULL && s[0] != '\0' ? s : NULL; }

static int append(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    (void)app;
    char *payload = json_dumps(m->payload, JSON_COMPACT);
    if (payload == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    const char *params[] = {m->env->message_id,
                            m->env->type,
                            m->routing_key ? m->routing_key : "",
                            nonempty(m->env->source),
                            nonempty(m->env->correlation_id),
                            nonempty(m->env->causation_id),
                            nonempty(m->env->traceparent),
                            nonempty(m->env->time),
                            payload};
    int rc = db_exec(db, &append_stmt, params, NULL, e);
    free(payload);
    return rc;
}

static const svc_route_t routes[] = {{MSG_NONE, append}};

static const svc_consumer_def_t consumers[] = {
    {.queue = "audit.events", .inbox_name = "audit", .routes = routes, .n_routes = 1},
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
