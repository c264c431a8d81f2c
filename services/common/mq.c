/* mq: the connection handle, URL parsing, error mapping and AMQP table conversion.
 *
 * rabbitmq-c does not answer a broker's channel.close or connection.close for us, and it leaves
 * every frame it reads in per-channel memory pools until they are released. So every place that
 * reads frames here (and in mq_publish.c, mq_consume.c) follows two rules: a close from the
 * broker is answered with its close-ok at once (mq__reply_error, mq__handle_frame), and pools are
 * released with the amqp_maybe_release_* calls, which do nothing while a frame is half read or
 * still queued.
 *
 * The handle keeps two channels. The working channel carries publishing or consuming. Passive
 * declares (topology checks) run on a side channel, because a failed passive declare closes its
 * channel: on the side channel that costs nothing but a fresh channel.open next time, while the
 * working channel, its consumer and its confirm sequence stay intact. Channel numbers are never
 * reused within a connection, so a frame that still arrives for an old channel is recognised
 * and dropped. */
#include "mq.h"

#include <amqp_tcp_socket.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mq_internal.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_CAP_MS 5000
#define STOP_POLL_MS 100
#define CLOSE_TIMEOUT_MS 2000
#define MAX_TABLE_DEPTH 32

int64_t mq__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_to_tv(int ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* ---- URL parsing ---------------------------------------------------------------------- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+len) into a new string. Returns NULL and sets *bad on a malformed
 * escape or an encoded NUL; NULL with *bad == 0 when out of memory. */
static char *decode_part(const char *s, size_t len, int *bad)
{
    *bad = 0;
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        int hi = len - i >= 3 ? hexval((unsigned char)s[i + 1]) : -1;
        int lo = len - i >= 3 ? hexval((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || hi * 16 + lo == 0) {
            free(out);
            *bad = 1;
            return NULL;
        }
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/* Decodes one URL part into *dst; what names it in the error message (never its value). */
static int url_part(const char *s, size_t len, char **dst, const char *what, err_t *e)
{
    int bad = 0;
    *dst = decode_part(s, len, &bad);
    if (*dst != NULL)
        return 0;
    if (bad)
        return err_set(e, ERR_CONFIG, "AMQP URL: the %s is not properly percent-encoded", what);
    return err_set(e, ERR_NOMEM, "AMQP URL: out of memory");
}

/* Parses a decimal number in [min, max] from [s, s+len). */
static int parse_num(const char *s, size_t len, long min, long max, long *out)
{
    if (len == 0 || len > 10)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_query(const char *q, mq__url_t *u, err_t *e)
{
    while (*q != '\0') {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (eq == NULL)
            return err_set(e, ERR_CONFIG, "AMQP URL: query parameter \"%.*s\" has no value",
                           (int)(len > 64 ? 64 : len), q);
        size_t klen = (size_t)(eq - q);
        const char *v = eq + 1;
        size_t vlen = len - klen - 1;
        long n = 0;
        if (klen == 9 && memcmp(q, "heartbeat", 9) == 0) {
            if (parse_num(v, vlen, 0, 65535, &n) != 0)
                return err_set(e, ERR_CONFIG, "AMQP URL: heartbeat must be 0..65535 seconds");
            u->heartbeat_s = (int)n;
        } else if (klen == 18 && memcmp(q, "connection_timeout", 18) == 0) {
            if (parse_num(v, vlen, 1, 3600000, &n) != 0)
                return err_set(e, ERR_CONFIG,
                               "AMQP URL: connection_timeout must be 1..3600000 milliseconds");
            u->connect_timeout_ms = (int)n;
        } else if (klen == 9 && memcmp(q, "frame_max", 9) == 0) {
            if (parse_num(v, vlen, 4096, INT_MAX, &n) != 0)
                return err_set(e, ERR_CONFIG, "AMQP URL: frame_max must be at least 4096");
            u->frame_max = (int)n;
        } else {
            return err_set(e, ERR_CONFIG,
                           "AMQP URL: unsupported query parameter \"%.*s\" (known: heartbeat, "
                           "connection_timeout, frame_max)",
                           (int)(klen > 64 ? 64 : klen), q);
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

void mq__url_free(mq__url_t *u)
{
    if (u == NULL)
        return;
    free(u->user);
    free(u->password);
    free(u->host);
    free(u->vhost);
    u->user = u->password = u->host = u->vhost = NULL;
}

int mq__url_parse(const char *url, mq__url_t *out, err_t *e)
{
    mq__url_t u = {.port = 5672, .heartbeat_s = -1, .connect_timeout_ms = -1, .frame_max = -1};
    int rc = 0;

    if (url == NULL || *url == '\0')
        return err_set(e, ERR_CONFIG, "AMQP URL is empty");
    if (strncmp(url, "amqps://", 8) == 0)
        return err_set(e, ERR_CONFIG, "AMQP URL: amqps:// (TLS) is not supported, use amqp://");
    if (strncmp(url, "amqp://", 7) != 0)
        return err_set(e, ERR_CONFIG, "AMQP URL must start with amqp://");
    if (strchr(url, '#') != NULL)
        return err_set(e, ERR_CONFIG, "AMQP URL must not contain a fragment ('#')");

    const char *p = url + 7;
    size_t auth_len = strcspn(p, "/?");
    const char *path = p + auth_len; /* "" or starts with '/' or '?' */

    /* userinfo ends at the last '@' of the authority. */
    const char *at = NULL;
    for (const char *s = p; s < p + auth_len; s++)
        if (*s == '@')
            at = s;
    const char *hostport = p;
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);
        if ((rc = url_part(p, ulen, &u.user, "user name", e)) != 0)
            goto fail;
        if (colon != NULL &&
            (rc = url_part(colon + 1, (size_t)(at - colon - 1), &u.password, "password", e)) != 0)
            goto fail;
        hostport = at + 1;
    }
    size_t hp_len = (size_t)(p + auth_len - hostport);
    const char *host = hostport;
    size_t host_len = hp_len;
    const char *port = NULL;
    size_t port_len = 0;
    if (hp_len > 0 && hostport[0] == '[') {
        const char *close = memchr(hostport, ']', hp_len);
        if (close == NULL) {
            rc = err_set(e, ERR_CONFIG, "AMQP URL: IPv6 host lacks its closing ']'");
            goto fail;
        }
        host = hostport + 1;
        host_len = (size_t)(close - host);
        const char *rest = close + 1;
        size_t rest_len = hp_len - (size_t)(rest - hostport);
        if (rest_len > 0) {
            if (rest[0] != ':') {
                rc = err_set(e, ERR_CONFIG, "AMQP URL: unexpected text after the IPv6 host");
                goto fail;
            }
            port = rest + 1;
            port_len = rest_len - 1;
        }
    } else {
        const char *colon = memchr(hostport, ':', hp_len);
        if (colon != NULL) {
            host_len = (size_t)(colon - hostport);
            port = colon + 1;
            port_len = hp_len - host_len - 1;
        }
    }
    if (host_len == 0) {
        u.host = strdup("localhost");
        if (u.host == NULL) {
            rc = err_set(e, ERR_NOMEM, "AMQP URL: out of memory");
            goto fail;
        }
    } else if ((rc = url_part(host, host_len, &u.host, "host", e)) != 0) {
        goto fail;
    }
    if (port != NULL) {
        long n = 0;
        if (parse_num(port, port_len, 1, 65535, &n) != 0) {
            rc = err_set(e, ERR_CONFIG, "AMQP URL: port must be a number in 1..65535");
            goto fail;
        }
        u.port = (int)n;
    }

    /* The path is at most one segment: the percent-encoded vhost. "" and "/" mean "/". */
    size_t path_len = strcspn(path, "?");
    if (path_len <= 1) {
        u.vhost = strdup("/");
        if (u.vhost == NULL) {
            rc = err_set(e, ERR_NOMEM, "AMQP URL: out of memory");
            goto fail;
        }
    } else {
        if (memchr(path + 1, '/', path_len - 1) != NULL) {
            rc = err_set(e, ERR_CONFIG,
                         "AMQP URL: the vhost must be one path segment (write '/' as %%2F)");
            goto fail;
        }
        if ((rc = url_part(path + 1, path_len - 1, &u.vhost, "vhost", e)) != 0)
            goto fail;
    }
    if (path[path_len] == '?' && (rc = parse_query(path + path_len + 1, &u, e)) != 0)
        goto fail;

    if (u.user == NULL && (u.user = strdup("guest")) == NULL) {
        rc = err_set(e, ERR_NOMEM, "AMQP URL: out of memory");
        goto fail;
    }
    if (u.password == NULL && (u.password = strdup("guest")) == NULL) {
        rc = err_set(e, ERR_NOMEM, "AMQP URL: out of memory");
        goto fail;
    }
    *out = u;
    return 0;
fail:
    mq__url_free(&u);
    return rc;
}

/* ---- JSON <-> AMQP field tables ---------------------------------------------------------- */

int mq__table_from_json(const json_t *obj, amqp_pool_t *pool, amqp_table_t *out, size_t *wire_size,
                        err_t *e)
{
    out->num_entries = 0;
    out->entries = NULL;
    size_t wire = 4; /* the table's length prefix */
    if (obj == NULL)
        goto done;
    if (!json_is_object(obj))
        return err_set(e, ERR_INVALID, "headers must be a JSON object");
    size_t n = json_object_size(obj);
    if (n == 0)
        goto done;
    if (n > INT_MAX / 2)
        return err_set(e, ERR_INVALID, "too many headers");
    amqp_table_entry_t *entries = amqp_pool_alloc(pool, n * sizeof(*entries));
    if (entries == NULL)
        return err_set(e, ERR_NOMEM, "out of memory encoding headers");

    /* jansson's iterator takes a non-const object; iteration does not modify it. */
    json_t *o = (json_t *)obj;
    const char *key;
    json_t *v;
    int i = 0;
    json_object_foreach(o, key, v)
    {
        size_t klen = strlen(key);
        if (klen > 255)
            return err_set(e, ERR_INVALID, "header name \"%.40s...\" is longer than 255 bytes",
                           key);
        amqp_table_entry_t *en = &entries[i];
        en->key.len = klen;
        en->key.bytes = (void *)key;
        wire += 1 + klen + 1;
        switch (json_typeof(v)) {
        case JSON_STRING:
            en->value.kind = AMQP_FIELD_KIND_UTF8;
            en->value.value.bytes.len = json_string_length(v);
            en->value.value.bytes.bytes = (void *)json_string_value(v);
            wire += 4 + json_string_length(v);
            break;
        case JSON_INTEGER:
            en->value.kind = AMQP_FIELD_KIND_I64;
            en->value.value.i64 = (int64_t)json_integer_value(v);
            wire += 8;
            break;
        case JSON_REAL:
            en->value.kind = AMQP_FIELD_KIND_F64;
            en->value.value.f64 = json_real_value(v);
            wire += 8;
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            en->value.kind = AMQP_FIELD_KIND_BOOLEAN;
            en->value.value.boolean = json_is_true(v);
            wire += 1;
            break;
        case JSON_NULL:
            en->value.kind = AMQP_FIELD_KIND_VOID;
            break;
        default:
            return err_set(e, ERR_INVALID,
                           "header \"%.64s\": nested objects and arrays cannot be published", key);
        }
        i++;
    }
    out->entries = entries;
    out->num_entries = i;
done:
    if (wire_size != NULL)
        *wire_size += wire;
    return 0;
}

/* A JSON string from arbitrary bytes: bytes that are not valid UTF-8 become '?'. NULL only when
 * out of memory. */
static json_t *string_from_bytes(const void *bytes, size_t len)
{
    json_t *s = json_stringn(len ? bytes : "", len);
    if (s != NULL)
        return s;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return NULL;
    const unsigned char *b = bytes;
    for (size_t i = 0; i < len; i++)
        copy[i] = b[i] < 0x80 ? (char)b[i] : '?';
    s = json_stringn(copy, len);
    free(copy);
    return s;
}

static json_t *unsigned_to_json(uint64_t v)
{
    if (v > (uint64_t)INT64_MAX)
        return json_real((double)v);
    return json_integer((json_int_t)v);
}

static json_t *real_to_json(double d)
{
    /* JSON has no NaN or infinity. */
    return isfinite(d) ? json_real(d) : json_null();
}

static json_t *table_to_json(const amqp_table_t *t, int depth);

static json_t *field_to_json(const amqp_field_value_t *v, int depth)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
        return json_boolean(v->value.boolean);
    case AMQP_FIELD_KIND_I8:
        return json_integer(v->value.i8);
    case AMQP_FIELD_KIND_U8:
        return json_integer(v->value.u8);
    case AMQP_FIELD_KIND_I16:
        return json_integer(v->value.i16);
    case AMQP_FIELD_KIND_U16:
        return json_integer(v->value.u16);
    case AMQP_FIELD_KIND_I32:
        return json_integer(v->value.i32);
    case AMQP_FIELD_KIND_U32:
        return json_integer(v->value.u32);
    case AMQP_FIELD_KIND_I64:
        return json_integer(v->value.i64);
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        return unsigned_to_json(v->value.u64);
    case AMQP_FIELD_KIND_F32:
        return real_to_json(v->value.f32);
    case AMQP_FIELD_KIND_F64:
        return real_to_json(v->value.f64);
    case AMQP_FIELD_KIND_DECIMAL: {
        /* A loop rather than pow(): the runtime does not link libm. */
        double d = (double)v->value.decimal.value;
        for (unsigned i = 0; i < v->value.decimal.decimals; i++)
            d /= 10.0;
        return real_to_json(d);
    }
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        return string_from_bytes(v->value.bytes.bytes, v->value.bytes.len);
    case AMQP_FIELD_KIND_TABLE:
        return table_to_json(&v->value.table, depth + 1);
    case AMQP_FIELD_KIND_ARRAY: {
        json_t *a = json_array();
        if (a == NULL || depth + 1 > MAX_TABLE_DEPTH)
            return a;
        for (int i = 0; i < v->value.array.num_entries; i++) {
            json_t *x = field_to_json(&v->value.array.entries[i], depth + 1);
            if (x == NULL || json_array_append_new(a, x) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case AMQP_FIELD_KIND_VOID:
    default:
        return json_null();
    }
}

/* Tables nested deeper than MAX_TABLE_DEPTH come out empty rather than exhausting the stack. */
static json_t *table_to_json(const amqp_table_t *t, int depth)
{
    json_t *o = json_object();
    if (o == NULL || depth > MAX_TABLE_DEPTH)
        return o;
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *en = &t->entries[i];
        json_t *v = field_to_json(&en->value, depth);
        if (v == NULL)
            goto oom;
        /* Keys are short strings (at most 255 bytes), possibly not UTF-8. */
        char key[256];
        size_t klen = en->key.len < sizeof(key) ? en->key.len : sizeof(key) - 1;
        memcpy(key, en->key.bytes, klen);
        key[klen] = '\0';
        for (size_t k = 0; k < klen; k++)
            if ((unsigned char)key[k] >= 0x80 || key[k] == '\0')
                key[k] = '?';
        if (json_object_set_new(o, key, v) != 0)
            goto oom;
    }
    return o;
oom:
    json_decref(o);
    return NULL;
}

int mq__table_to_json(const amqp_table_t *t, json_t **out, err_t *e)
{
    json_t *o = table_to_json(t, 0);
    if (o == NULL)
        return err_set(e, ERR_NOMEM, "out of memory converting AMQP headers");
    *out = o;
    return 0;
}

/* ---- error mapping ------------------------------------------------------------------------ */

int mq__reply_code_class(int reply_code)
{
    switch (reply_code) {
    case AMQP_INVALID_PATH:
    case AMQP_ACCESS_REFUSED:
    case AMQP_NOT_FOUND:
    case AMQP_PRECONDITION_FAILED:
    case AMQP_NOT_ALLOWED:
        return ERR_CONFIG;
    default:
        return ERR_RETRY;
    }
}

void mq__break(mq_conn_t *c)
{
    if (c != NULL)
        c->usable = 0;
}

/* The socket is gone or in an unknown state: no graceful close is possible any more. */
static void socket_lost(mq_conn_t *c)
{
    c->usable = 0;
    c->ch_ok = 0;
    c->sock_ok = 0;
    c->side = 0;
}

int mq__status_error(mq_conn_t *c, int status, const char *what, err_t *e)
{
    int code;
    switch (status) {
    case AMQP_STATUS_TIMEOUT:
        code = ERR_TIMEOUT;
        break;
    case AMQP_STATUS_NO_MEMORY:
        code = ERR_NOMEM;
        break;
    case AMQP_STATUS_BROKER_UNSUPPORTED_SASL_METHOD:
    case AMQP_STATUS_INCOMPATIBLE_AMQP_VERSION:
        code = ERR_CONFIG;
        break;
    default:
        code = ERR_RETRY;
        break;
    }
    if (c != NULL)
        socket_lost(c);
    return err_set(e, code, "%s: %s", what, amqp_error_string2(status));
}

static void send_channel_close_ok(mq_conn_t *c, amqp_channel_t ch)
{
    amqp_channel_close_ok_t ok = {0};
    if (amqp_send_method(c->state, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK)
        socket_lost(c);
}

/* Answers connection.close; the broker then closes the socket. */
static void connection_closed(mq_conn_t *c)
{
    amqp_connection_close_ok_t ok = {0};
    (void)amqp_send_method(c->state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    socket_lost(c);
}

/* The bytes of an AMQP string for "%.*s": never NULL, even when empty. */
static const char *text(amqp_bytes_t b)
{
    return b.len > 0 && b.bytes != NULL ? (const char *)b.bytes : "";
}

static const char *method_name(uint16_t class_id, uint16_t method_id)
{
    if (class_id == 0)
        return "-";
    const char *n = amqp_method_name(((amqp_method_number_t)class_id << 16) | method_id);
    return n != NULL ? n : "?";
}

/* Handles a channel.close or connection.close method (already received) and returns the
 * mapped error. */
static int close_method_error(mq_conn_t *c, const amqp_method_t *m, amqp_channel_t ch,
                              const char *what, err_t *e)
{
    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *cl = m->decoded;
        int code = mq__reply_code_class(cl->reply_code);
        int rc = err_set(e, code, "%s: connection closed by the broker: %u %.*s (%s)", what,
                         cl->reply_code, (int)cl->reply_text.len, text(cl->reply_text),
                         method_name(cl->class_id, cl->method_id));
        connection_closed(c);
        return rc;
    }
    const amqp_channel_close_t *cl = m->decoded;
    int code = mq__reply_code_class(cl->reply_code);
    int rc = err_set(e, code, "%s: channel closed by the broker: %u %.*s (%s)", what,
                     cl->reply_code, (int)cl->reply_text.len, text(cl->reply_text),
                     method_name(cl->class_id, cl->method_id));
    if (ch != 0 && ch == c->side) {
        c->side = 0;
    } else if (ch == c->channel) {
        c->ch_ok = 0;
        c->usable = 0;
    }
    send_channel_close_ok(c, ch);
    return rc;
}

int mq__reply_error(mq_conn_t *c, amqp_rpc_reply_t r, amqp_channel_t ch, const char *what, err_t *e)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return mq__status_error(c, r.library_error, what, e);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD || r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
            return close_method_error(c, &r.reply, ch, what, e);
        mq__break(c);
        return err_set(e, ERR_INTERNAL, "%s: unexpected reply %s", what,
                       amqp_method_name(r.reply.id) ? amqp_method_name(r.reply.id) : "?");
    case AMQP_RESPONSE_NONE:
    default:
        mq__break(c);
        return err_set(e, ERR_INTERNAL, "%s: rabbitmq-c returned no reply", what);
    }
}

int mq__handle_frame(mq_conn_t *c, const amqp_frame_t *f, err_t *e)
{
    if (f->frame_type != AMQP_FRAME_METHOD)
        return 0;
    const amqp_method_t *m = &f->payload.method;
    if (f->channel == 0) {
        switch (m->id) {
        case AMQP_CONNECTION_CLOSE_METHOD:
            return close_method_error(c, m, 0, "connection", e);
        case AMQP_CONNECTION_BLOCKED_METHOD: {
            const amqp_connection_blocked_t *b = m->decoded;
            c->blocked = 1;
            log_warn(NULL, "mq.blocked",
                     json_pack("{s:s,s:s#}", "connection", c->name, "reason", text(b->reason),
                               (int)b->reason.len));
            return 0;
        }
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            c->blocked = 0;
            log_info(NULL, "mq.unblocked", json_pack("{s:s}", "connection", c->name));
            return 0;
        default:
            return 0;
        }
    }
    if (f->channel == c->channel) {
        switch (m->id) {
        case AMQP_CHANNEL_CLOSE_METHOD:
            return close_method_error(c, m, f->channel, "channel", e);
        case AMQP_BASIC_CANCEL_METHOD:
            c->usable = 0;
            log_warn(
                NULL, "mq.consumer_cancelled",
                json_pack("{s:s,s:s?}", "connection", c->name, "consumer_tag", c->consumer_tag));
            return err_set(e, ERR_RETRY,
                           "the broker cancelled the consumer (queue deleted or unavailable)");
        default:
            return 0;
        }
    }
    if (f->channel == c->side && m->id == AMQP_CHANNEL_CLOSE_METHOD) {
        err_t ignored;
        (void)close_method_error(c, m, f->channel, "side channel", &ignored);
    }
    return 0;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

amqp_connection_state_t mq__state(mq_conn_t *c) { return c->state; }

amqp_channel_t mq__channel(const mq_conn_t *c) { return c->channel; }

int mq_ok(const mq_conn_t *c) { return c != NULL && c->usable; }

/* Opens a channel with a number never used before on this connection. */
static int open_channel(mq_conn_t *c, amqp_channel_t *out, err_t *e)
{
    if ((int)c->next_ch > c->channel_max || c->next_ch == 0) {
        mq__break(c);
        return err_set(e, ERR_RETRY, "channel numbers exhausted on this connection; reconnect");
    }
    amqp_channel_t ch = c->next_ch++;
    if (amqp_channel_open(c->state, ch) == NULL)
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), ch, "channel.open", e);
    *out = ch;
    return 0;
}

static int resolve_opt(int from_url, int from_opts, int dflt)
{
    if (from_url >= 0)
        return from_url;
    return from_opts != 0 ? from_opts : dflt;
}

int mq_open(const char *url, const mq_opts_t *opts, mq_conn_t **out, err_t *e)
{
    static const mq_opts_t no_opts;
    mq__url_t u = {0};
    mq_conn_t *c = NULL;
    int rc = mq__url_parse(url, &u, e);
    if (rc != 0)
        return rc;
    if (opts == NULL)
        opts = &no_opts;

    int heartbeat = resolve_opt(u.heartbeat_s, opts->heartbeat_s, MQ_DEFAULT_HEARTBEAT_S);
    if (heartbeat < 0)
        heartbeat = 0; /* opts asked for no heartbeats */
    int frame_max = resolve_opt(u.frame_max, opts->frame_max, MQ_DEFAULT_FRAME_MAX);
    int connect_ms =
        resolve_opt(u.connect_timeout_ms, opts->connect_timeout_ms, MQ_DEFAULT_CONNECT_TIMEOUT_MS);
    int rpc_ms = opts->rpc_timeout_ms > 0 ? opts->rpc_timeout_ms : MQ_DEFAULT_RPC_TIMEOUT_MS;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory opening an AMQP connection");
        goto fail;
    }
    init_amqp_pool(&c->scratch, 4096);
    c->next_ch = 1;
    if (opts->connection_name != NULL && opts->connection_name[0] != '\0')
        snprintf(c->name, sizeof(c->name), "%s", opts->connection_name);
    else
        snprintf(c->name, sizeof(c->name), "%s:%d", u.host, u.port);

    c->state = amqp_new_connection();
    amqp_socket_t *sock = c->state ? amqp_tcp_socket_new(c->state) : NULL;
    if (sock == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory opening an AMQP connection");
        goto fail;
    }
    struct timeval tv = ms_to_tv(connect_ms);
    int st = amqp_socket_open_noblock(sock, u.host, u.port, &tv);
    if (st != AMQP_STATUS_OK) {
        rc = err_set(e, st == AMQP_STATUS_TIMEOUT ? ERR_TIMEOUT : ERR_RETRY,
                     "cannot connect to %s:%d: %s", u.host, u.port, amqp_error_string2(st));
        goto fail;
    }
    tv = ms_to_tv(rpc_ms);
    if (amqp_set_handshake_timeout(c->state, &tv) != AMQP_STATUS_OK ||
        amqp_set_rpc_timeout(c->state, &tv) != AMQP_STATUS_OK) {
        rc = err_set(e, ERR_INTERNAL, "cannot set AMQP timeouts");
        goto fail;
    }

    /* Capabilities we announce: consumer_cancel_notify makes the broker tell us (basic.cancel)
     * when our queue disappears instead of leaving the consumer silently idle;
     * connection.blocked lets us log resource alarms. */
    amqp_table_entry_t caps[] = {
        {.key = amqp_cstring_bytes("consumer_cancel_notify"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
        {.key = amqp_cstring_bytes("connection.blocked"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
        {.key = amqp_cstring_bytes("basic.nack"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
        {.key = amqp_cstring_bytes("publisher_confirms"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
    };
    amqp_table_entry_t props[3];
    int nprops = 0;
    props[nprops].key = amqp_cstring_bytes("capabilities");
    props[nprops].value.kind = AMQP_FIELD_KIND_TABLE;
    props[nprops].value.value.table.num_entries = (int)(sizeof(caps) / sizeof(caps[0]));
    props[nprops].value.value.table.entries = caps;
    nprops++;
    props[nprops].key = amqp_cstring_bytes("product");
    props[nprops].value.kind = AMQP_FIELD_KIND_UTF8;
    props[nprops].value.value.bytes = amqp_cstring_bytes("petstore");
    nprops++;
    if (opts->connection_name != NULL && opts->connection_name[0] != '\0') {
        props[nprops].key = amqp_cstring_bytes("connection_name");
        props[nprops].value.kind = AMQP_FIELD_KIND_UTF8;
        props[nprops].value.value.bytes = amqp_cstring_bytes(opts->connection_name);
        nprops++;
    }
    amqp_table_t client_props = {.num_entries = nprops, .entries = props};

    amqp_rpc_reply_t r =
        amqp_login_with_properties(c->state, u.vhost, 0, frame_max, heartbeat, &client_props,
                                   AMQP_SASL_METHOD_PLAIN, u.user, u.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        char what[160];
        snprintf(what, sizeof(what), "login to %s:%d vhost \"%.40s\" as \"%.40s\"", u.host, u.port,
                 u.vhost, u.user);
        rc = mq__reply_error(c, r, 0, what, e);
        goto fail;
    }
    c->sock_ok = 1;
    c->channel_max = amqp_get_channel_max(c->state);
    if (c->channel_max <= 0)
        c->channel_max = 65535;
    c->heartbeat_s = amqp_get_heartbeat(c->state);
    if ((rc = open_channel(c, &c->channel, e)) != 0)
        goto fail;
    c->ch_ok = 1;
    c->usable = 1;
    log_info(NULL, "mq.connected",
             json_pack("{s:s,s:s,s:i,s:s,s:i,s:i}", "connection", c->name, "host", u.host, "port",
                       u.port, "vhost", u.vhost, "heartbeat_s", c->heartbeat_s, "frame_max",
                       amqp_get_frame_max(c->state)));
    mq__url_free(&u);
    *out = c;
    return 0;
fail:
    mq__url_free(&u);
    mq_close(c);
    return rc;
}

/* xorshift64*: jitter only needs to differ between processes and attempts. */
static uint64_t jitter_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* Sleeps ms milliseconds in slices, returning 1 early when should_stop says so. */
static int sleep_unless_stopped(int ms, int (*should_stop)(void))
{
    int64_t until = mq__now_ms() + ms;
    for (;;) {
        if (should_stop != NULL && should_stop())
            return 1;
        int64_t left = until - mq__now_ms();
        if (left <= 0)
            return 0;
        int slice = left < STOP_POLL_MS ? (int)left : STOP_POLL_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)slice * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int mq_open_retry(const char *url, const mq_opts_t *opts, int (*should_stop)(void), mq_conn_t **out,
                  err_t *e)
{
    mq__url_t u = {0};
    int rc = mq__url_parse(url, &u, e);
    if (rc != 0)
        return rc;
    mq__url_free(&u);

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t seed = ((uint64_t)now.tv_nsec << 20) ^ (uint64_t)now.tv_sec ^
                    ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&now;
    if (seed == 0)
        seed = 0x9e3779b97f4a7c15ULL;

    err_t last;
    err_set(&last, ERR_RETRY, "stopped before the broker connection was opened");
    int delay = BACKOFF_FIRST_MS;
    for (int attempt = 1;; attempt++) {
        if (should_stop != NULL && should_stop())
            break;
        err_t le;
        err_clear(&le);
        rc = mq_open(url, opts, out, &le);
        if (rc == 0) {
            if (attempt > 1)
                log_info(NULL, "mq.reconnected",
                         json_pack("{s:s,s:i}", "connection", (*out)->name, "attempts", attempt));
            return 0;
        }
        last = le;
        /* Full jitter over the upper half keeps a herd of restarting daemons apart. */
        int wait = delay / 2 + (int)(jitter_next(&seed) % (uint64_t)(delay / 2 + 1));
        log_write(rc == ERR_CONFIG ? LOG_ERROR : LOG_WARN, NULL, "mq.connect_failed",
                  json_pack("{s:s?,s:i,s:s,s:s,s:i}", "connection",
                            opts ? opts->connection_name : NULL, "attempt", attempt, "code",
                            err_name(rc), "error", le.msg, "retry_in_ms", wait));
        if (sleep_unless_stopped(wait, should_stop))
            break;
        delay = delay * 2 > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : delay * 2;
    }
    if (e != NULL)
        *e = last;
    return last.code;
}

void mq_close(mq_conn_t *c)
{
    if (c == NULL)
        return;
    if (c->state != NULL) {
        if (c->sock_ok) {
            struct timeval tv = ms_to_tv(CLOSE_TIMEOUT_MS);
            (void)amqp_set_rpc_timeout(c->state, &tv);
            int ok = 1;
            if (c->ch_ok && c->consumer_tag != NULL) {
                /* Stop the consumer first. Besides being the polite order, it matters for
                 * quorum queues in RabbitMQ 3.10: while a channel has more than 32 commands in
                 * flight its queue client holds acknowledgements back and forgets them when the
                 * channel closes, so the last acks before a close could be lost. basic.cancel
                 * is applied through the queue's log after them, which flushes them first. */
                ok = amqp_basic_cancel(c->state, c->channel, amqp_cstring_bytes(c->consumer_tag)) !=
                         NULL ||
                     amqp_get_rpc_reply(c->state).reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION;
            }
            if (ok && c->ch_ok) {
                amqp_rpc_reply_t r = amqp_channel_close(c->state, c->channel, AMQP_REPLY_SUCCESS);
                ok = r.reply_type == AMQP_RESPONSE_NORMAL ||
                     r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION;
            }
            if (ok)
                (void)amqp_connection_close(c->state, AMQP_REPLY_SUCCESS);
        }
        amqp_destroy_connection(c->state);
    }
    empty_amqp_pool(&c->scratch);
    free(c->consumer_tag);
    free(c);
}

int mq_channel_reopen(mq_conn_t *c, err_t *e)
{
    if (c == NULL || !c->sock_ok)
        return err_set(e, ERR_RETRY, "the AMQP connection is closed; reconnect");
    if (c->ch_ok) {
        amqp_rpc_reply_t r = amqp_channel_close(c->state, c->channel, AMQP_REPLY_SUCCESS);
        c->ch_ok = 0;
        c->usable = 0;
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
            return mq__status_error(c, r.library_error, "channel.close", e);
    }
    c->usable = 0;
    free(c->consumer_tag);
    c->consumer_tag = NULL;
    c->published = 0;
    amqp_channel_t ch = 0;
    int rc = open_channel(c, &ch, e);
    if (rc != 0)
        return rc;
    c->channel = ch;
    c->ch_ok = 1;
    if (c->confirms && amqp_confirm_select(c->state, ch) == NULL) {
        c->confirms = 0;
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), ch, "confirm.select", e);
    }
    c->usable = 1;
    amqp_maybe_release_buffers(c->state);
    return 0;
}

/* ---- topology checks --------------------------------------------------------------------- */

static int ensure_side(mq_conn_t *c, err_t *e)
{
    if (c == NULL || !c->sock_ok)
        return err_set(e, ERR_RETRY, "the AMQP connection is closed; reconnect");
    if (c->side != 0)
        return 0;
    amqp_channel_t ch = 0;
    int rc = open_channel(c, &ch, e);
    if (rc == 0)
        c->side = ch;
    return rc;
}

int mq_check_queue(mq_conn_t *c, const char *queue, uint32_t *messages, uint32_t *consumers,
                   err_t *e)
{
    if (queue == NULL || strlen(queue) > 255)
        return err_set(e, ERR_INVALID, "queue name missing or longer than 255 bytes");
    int rc = ensure_side(c, e);
    if (rc != 0)
        return rc;
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(c->state, c->side, amqp_cstring_bytes(queue),
                                                     1, 0, 0, 0, amqp_empty_table);
    if (ok == NULL) {
        char what[300];
        snprintf(what, sizeof(what), "check queue \"%s\"", queue);
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), c->side, what, e);
    }
    if (messages != NULL)
        *messages = ok->message_count;
    if (consumers != NULL)
        *consumers = ok->consumer_count;
    amqp_maybe_release_buffers_on_channel(c->state, c->side);
    return 0;
}

int mq_declare_private_queue(mq_conn_t *c, const char *exchange, const char *routing_key,
                             char *name, size_t n, err_t *e)
{
    if (c == NULL || !c->ch_ok)
        return err_set(e, ERR_RETRY, "the AMQP channel is closed");
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(c->state, c->channel, amqp_empty_bytes, 0,
                                                     0, 1, 1, amqp_empty_table);
    if (ok == NULL)
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), c->channel,
                               "declare a private queue", e);
    snprintf(name, n, "%.*s", (int)ok->queue.len, (const char *)ok->queue.bytes);
    if (amqp_queue_bind(c->state, c->channel, amqp_cstring_bytes(name),
                        amqp_cstring_bytes(exchange), amqp_cstring_bytes(routing_key),
                        amqp_empty_table) == NULL) {
        char what[300];
        snprintf(what, sizeof(what), "bind a private queue to \"%s\"", exchange);
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), c->channel, what, e);
    }
    amqp_maybe_release_buffers_on_channel(c->state, c->channel);
    return 0;
}

int mq_check_exchange(mq_conn_t *c, const char *exchange, err_t *e)
{
    if (exchange == NULL || strlen(exchange) > 255)
        return err_set(e, ERR_INVALID, "exchange name missing or longer than 255 bytes");
    if (exchange[0] == '\0')
        return c != NULL && c->sock_ok ? 0 : err_set(e, ERR_RETRY, "the AMQP connection is closed");
    int rc = ensure_side(c, e);
    if (rc != 0)
        return rc;
    /* The type is not compared by a passive declare. */
    if (amqp_exchange_declare(c->state, c->side, amqp_cstring_bytes(exchange),
                              amqp_cstring_bytes("direct"), 1, 0, 0, 0, amqp_empty_table) == NULL) {
        char what[300];
        snprintf(what, sizeof(what), "check exchange \"%s\"", exchange);
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), c->side, what, e);
    }
    amqp_maybe_release_buffers_on_channel(c->state, c->side);
    return 0;
}

int mq_keepalive(mq_conn_t *c, err_t *e)
{
    if (!mq_ok(c))
        return err_set(e, ERR_RETRY, "the AMQP connection is broken");
    if (c->heartbeat_s <= 0)
        return 0;
    amqp_frame_t hb;
    memset(&hb, 0, sizeof(hb));
    hb.frame_type = AMQP_FRAME_HEARTBEAT;
    hb.channel = 0;
    int st = amqp_send_frame(c->state, &hb);
    if (st != AMQP_STATUS_OK)
        return mq__status_error(c, st, "heartbeat", e);
    return 0;
}
