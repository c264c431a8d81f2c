/* msg_envelope: the AMQP properties and headers around a payload, in both directions.
 *
 * The producer side (msg_envelope_headers) refuses to build headers a consumer would refuse, so
 * a bad envelope is a bug found at the producer, not poison found downstream. The consumer side
 * (msg_envelope_from_headers) is strict about the identifiers that drive deduplication and
 * routing (message id, type, correlation and causation ids) and lenient about trace context,
 * as W3C trace context asks: an unreadable traceparent only starts a new trace. */
#include <stdio.h>
#include <string.h>

#include "msg.h"
#include "msg_fields.h"
#include "uuid.h"

#define SOURCE_PREFIX "/petstore/"
#define SPECVERSION "1.0"

static int is_hex_lower(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int all_zero(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != '0')
            return 0;
    return 1;
}

/* A version-00 W3C traceparent "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", lower
 * case, ids not all zero. Exactly 55 characters: longer future versions do not fit the
 * envelope and are treated as absent. */
static int is_traceparent(const char *s)
{
    if (s == NULL || strlen(s) != 55)
        return 0;
    return s[0] == '0' && s[1] == '0' && s[2] == '-' && is_hex_lower(s + 3, 32) && s[35] == '-' &&
           is_hex_lower(s + 36, 16) && s[52] == '-' && is_hex_lower(s + 53, 2) &&
           !all_zero(s + 3, 32) && !all_zero(s + 36, 16);
}

/* Visible ASCII only (no spaces or controls): what a source or app id may contain. */
static int is_token(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s < 0x21 || *s > 0x7e)
            return 0;
    return 1;
}

/* The caller's fixed array as a string, or NULL when it is not NUL-terminated. */
static const char *member(const char *arr, size_t size)
{
    return memchr(arr, '\0', size) != NULL ? arr : NULL;
}

#define MEMBER(env, m) member((env)->m, sizeof((env)->m))

static int check_env(const msg_envelope_t *env, err_t *e)
{
    msg_type_t type;
    const char *s;

    if (!uuid_valid(MEMBER(env, message_id)))
        return err_set(e, ERR_INVALID, "envelope.message_id: expected uuid");
    if ((s = MEMBER(env, type)) == NULL || msg_type_from_name(s, &type) != 0) {
        char quoted[sizeof(env->type)];
        msg__printable(quoted, sizeof(quoted), s);
        return err_set(e, ERR_INVALID, "envelope.type: unknown message type \"%s\"", quoted);
    }
    if ((s = MEMBER(env, correlation_id)) == NULL || (s[0] != '\0' && !uuid_valid(s)))
        return err_set(e, ERR_INVALID, "envelope.correlation_id: expected uuid or empty");
    if ((s = MEMBER(env, causation_id)) == NULL || (s[0] != '\0' && !uuid_valid(s)))
        return err_set(e, ERR_INVALID, "envelope.causation_id: expected uuid or empty");
    if ((s = MEMBER(env, time)) == NULL || (s[0] != '\0' && !msg_is_datetime(s)))
        return err_set(e, ERR_INVALID, "envelope.time: expected RFC 3339 UTC date-time or empty");
    if ((s = MEMBER(env, traceparent)) == NULL || (s[0] != '\0' && !is_traceparent(s)))
        return err_set(e, ERR_INVALID, "envelope.traceparent: expected W3C traceparent or empty");
    if ((s = MEMBER(env, app_id)) == NULL || !is_token(s))
        return err_set(e, ERR_INVALID, "envelope.app_id: expected printable ASCII");
    if ((s = MEMBER(env, source)) == NULL || !is_token(s))
        return err_set(e, ERR_INVALID, "envelope.source: expected printable ASCII");
    if (env->source[0] == '\0' && env->app_id[0] == '\0')
        return err_set(e, ERR_INVALID, "envelope.source: missing (set source or app_id)");
    return 0;
}

/* Adds key: value unless value is empty. -1 only if jansson cannot allocate. */
static int put(json_t *obj, const char *key, const char *value)
{
    if (value[0] == '\0')
        return 0;
    return json_object_set_new(obj, key, json_string(value));
}

int msg_envelope_headers(const msg_envelope_t *env, json_t **out, err_t *e)
{
    char source[sizeof(env->source)];
    json_t *h = NULL;
    int rc;

    if (env == NULL)
        return err_set(e, ERR_INVALID, "envelope: missing");
    rc = check_env(env, e);
    if (rc != 0)
        return rc;
    if (env->source[0] != '\0')
        snprintf(source, sizeof(source), "%s", env->source);
    else
        snprintf(source, sizeof(source), SOURCE_PREFIX "%s", env->app_id);

    h = json_object();
    if (h == NULL || put(h, "cloudEvents_specversion", SPECVERSION) != 0 ||
        put(h, "cloudEvents_id", env->message_id) != 0 ||
        put(h, "cloudEvents_source", source) != 0 || put(h, "cloudEvents_type", env->type) != 0 ||
        put(h, "cloudEvents_time", env->time) != 0 ||
        put(h, "traceparent", env->traceparent) != 0 ||
        put(h, "causation_id", env->causation_id) != 0) {
        json_decref(h);
        return err_set(e, ERR_NOMEM, "cannot build the envelope headers");
    }
    *out = h;
    return 0;
}

/* A header's string value: NULL when absent; *bad set when present but not a string. */
static const char *header(const json_t *headers, const char *key, int *bad)
{
    const json_t *v = headers != NULL ? json_object_get(headers, key) : NULL;
    const char *s = NULL;

    *bad = 0;
    if (v == NULL)
        return NULL;
    s = msg__string(v);
    if (s == NULL)
        *bad = 1;
    return s;
}

int msg_envelope_from_headers(const json_t *headers, const char *message_id, const char *type,
                              const char *correlation_id, msg_envelope_t *out, err_t *e)
{
    msg_envelope_t env;
    msg_type_t t;
    const char *s;
    int bad;

    memset(&env, 0, sizeof(env));
    if (message_id == NULL || message_id[0] == '\0')
        return err_set(e, ERR_INVALID, "envelope.message_id: missing");
    if (!uuid_valid(message_id))
        return err_set(e, ERR_INVALID, "envelope.message_id: expected uuid");
    snprintf(env.message_id, sizeof(env.message_id), "%s", message_id);
    if (type == NULL || type[0] == '\0')
        return err_set(e, ERR_INVALID, "envelope.type: missing");
    if (msg_type_from_name(type, &t) != 0) {
        char quoted[sizeof(env.type)];
        msg__printable(quoted, sizeof(quoted), type);
        return err_set(e, ERR_INVALID, "envelope.type: unknown message type \"%s\"", quoted);
    }
    snprintf(env.type, sizeof(env.type), "%s", type);
    if (correlation_id != NULL && correlation_id[0] != '\0') {
        if (!uuid_valid(correlation_id))
            return err_set(e, ERR_INVALID, "envelope.correlation_id: expected uuid");
        snprintf(env.correlation_id, sizeof(env.correlation_id), "%s", correlation_id);
    }
    if (headers != NULL && !json_is_object(headers))
        return err_set(e, ERR_INVALID, "envelope.headers: expected object");

    s = header(headers, "cloudEvents_specversion", &bad);
    if (bad || (s != NULL && strcmp(s, SPECVERSION) != 0))
        return err_set(e, ERR_INVALID,
                       "envelope.headers.cloudEvents_specversion: expected \"" SPECVERSION "\"");
    s = header(headers, "cloudEvents_id", &bad);
    if (bad || (s != NULL && strcmp(s, message_id) != 0))
        return err_set(e, ERR_INVALID, "envelope.headers.cloudEvents_id: differs from message_id");
    s = header(headers, "cloudEvents_type", &bad);
    if (bad || (s != NULL && strcmp(s, type) != 0))
        return err_set(e, ERR_INVALID, "envelope.headers.cloudEvents_type: differs from type");

    s = header(headers, "cloudEvents_source", &bad);
    if (bad || (s != NULL && (strlen(s) >= sizeof(env.source) || !is_token(s))))
        return err_set(e, ERR_INVALID,
                       "envelope.headers.cloudEvents_source: expected printable ASCII of at "
                       "most %zu characters",
                       sizeof(env.source) - 1);
    if (s != NULL) {
        snprintf(env.source, sizeof(env.source), "%s", s);
        size_t prefix = strlen(SOURCE_PREFIX);
        if (strncmp(s, SOURCE_PREFIX, prefix) == 0 && strlen(s + prefix) < sizeof(env.app_id))
            snprintf(env.app_id, sizeof(env.app_id), "%s", s + prefix);
    }

    s = header(headers, "cloudEvents_time", &bad);
    if (bad ||
        (s != NULL && s[0] != '\0' && (strlen(s) >= sizeof(env.time) || !msg_is_datetime(s))))
        return err_set(e, ERR_INVALID,
                       "envelope.headers.cloudEvents_time: expected RFC 3339 UTC date-time");
    if (s != NULL)
        snprintf(env.time, sizeof(env.time), "%s", s);

    s = header(headers, "causation_id", &bad);
    if (bad || (s != NULL && s[0] != '\0' && !uuid_valid(s)))
        return err_set(e, ERR_INVALID, "envelope.headers.causation_id: expected uuid");
    if (s != NULL)
        snprintf(env.causation_id, sizeof(env.causation_id), "%s", s);

    s = header(headers, "traceparent", &bad);
    if (is_traceparent(s))
        snprintf(env.traceparent, sizeof(env.traceparent), "%s", s);

    *out = env;
    return 0;
}
