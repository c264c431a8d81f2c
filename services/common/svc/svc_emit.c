/* svc_emit: writing an outgoing message into the outbox, in the caller's transaction, with the
 * envelope every message of the system carries (see svc.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "outbox.h"
#include "svc.h"
#include "uuid.h"

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

/* One message made ready for the outbox: its envelope, span, headers and body (owned). */
typedef struct prepared {
    msg_envelope_t env;
    trace_ctx_t span;
    json_t *headers;
    char *body;
    size_t body_len;
    const msg_type_info_t *info;
} prepared_t;

static int prepare(const svc_cause_t *cause, msg_type_t type, const json_t *payload, prepared_t *p,
                   err_t *e)
{
    memset(p, 0, sizeof(*p));
    const msg_type_info_t *info = msg_type_info(type);
    if (info == NULL)
        return err_set(e, ERR_INTERNAL, "emit of an unknown message type %d", (int)type);
    p->info = info;
    msg_envelope_t *env = &p->env;
    uuid_v7(env->message_id);
    copy_str(env->correlation_id, sizeof(env->correlation_id), cause->correlation_id);
    copy_str(env->causation_id, sizeof(env->causation_id), cause->causation_id);
    copy_str(env->type, sizeof(env->type), info->name);
    copy_str(env->app_id, sizeof(env->app_id), cause->app_id);
    snprintf(env->source, sizeof(env->source), "/petstore/%s", cause->app_id);
    now_rfc3339(env->time, sizeof(env->time));
    if (cause->trace != NULL)
        trace_child(cause->trace, &p->span);
    else
        trace_new_root(&p->span);
    trace_format(&p->span, env->traceparent);

    int rc = msg_encode(type, payload, &p->body, &p->body_len, e);
    if (rc != 0) /* Our own payload broke our own contract: a bug, not poison. */
        return err_set(e, ERR_INTERNAL, "emit %s: %s", info->name, e ? e->msg : "invalid payload");
    return msg_envelope_headers(env, &p->headers, e);
}

static void prepared_free(prepared_t *p)
{
    json_decref(p->headers);
    free(p->body);
    memset(p, 0, sizeof(*p));
}

static outbox_msg_t outbox_msg_of(const prepared_t *p)
{
    outbox_msg_t m = {
        .exchange = p->info->exchange,
        .routing_key = p->info->routing_key,
        .message_id = p->env.message_id,
        .type = p->info->name,
        .correlation_id = p->env.correlation_id[0] ? p->env.correlation_id : NULL,
        .causation_id = p->env.causation_id[0] ? p->env.causation_id : NULL,
        .traceparent = p->env.traceparent,
        .app_id = p->env.app_id,
        .headers = p->headers,
        .body = p->body,
        .body_len = p->body_len,
    };
    return m;
}

/* Written in the caller's transaction: it leaves only if that commits. */
static void log_enqueued(const prepared_t *p, const outbox_msg_t *m)
{
    log_ctx_t lc = {p->span.trace_id, p->span.span_id, m->correlation_id};
    log_info(&lc, "outbox.enqueued",
             json_pack("{s:s,s:s,s:s,s:s,s:s?}", "type", p->info->name, "message_id",
                       p->env.message_id, "exchange", p->info->exchange, "routing_key",
                       p->info->routing_key, "causation_id", m->causation_id));
}

int svc_emit_many(db_conn_t *db, const svc_cause_t *cause, const svc_emit_item_t *items, size_t n,
                  err_t *e)
{
    prepared_t p[SVC_EMIT_MAX];
    outbox_msg_t m[SVC_EMIT_MAX];
    size_t ready = 0;
    int rc = 0;
    if (n > SVC_EMIT_MAX)
        return err_set(e, ERR_INTERNAL, "emit of %zu messages at once (at most %d)", n,
                       SVC_EMIT_MAX);
    memset(m, 0, sizeof(m));
    for (; ready < n && rc == 0; ready++) {
        rc = prepare(cause, items[ready].type, items[ready].payload, &p[ready], e);
        if (rc == 0)
            m[ready] = outbox_msg_of(&p[ready]);
    }
    if (rc == 0)
        rc = outbox_enqueue_many(db, m, n, e);
    for (size_t i = 0; i < ready; i++) {
        if (rc == 0)
            log_enqueued(&p[i], &m[i]);
        prepared_free(&p[i]);
    }
    return rc;
}

int svc_emit(db_conn_t *db, const svc_cause_t *cause, msg_type_t type, const json_t *payload,
             err_t *e)
{
    svc_emit_item_t item = {type, payload};
    return svc_emit_many(db, cause, &item, 1, e);
}
