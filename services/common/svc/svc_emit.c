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
    if (rc == 0) {
        /* Written in the caller's transaction: it leaves only if that commits. */
        log_ctx_t lc = {span.trace_id, span.span_id, m.correlation_id};
        log_info(&lc, "outbox.enqueued",
                 json_pack("{s:s,s:s,s:s,s:s,s:s?}", "type", info->name, "message_id",
                           env.message_id, "exchange", info->exchange, "routing_key",
                           info->routing_key, "causation_id", m.causation_id));
    }
out:
    json_decref(headers);
    free(body);
    return rc;
}
