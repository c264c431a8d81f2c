/* message: what a dead letter says, read from its properties and headers. Pure.
 *
 * Two kinds of dead letters reach a .dlq:
 *   - a consumer's (svc_consumer.c): headers x-petstore-failure-class, -error-code, -error,
 *     -handler, -original-queue, -original-exchange, -original-routing-key, -failed-at,
 *     -attempts and x-petstore-sender (the original's user_id); the consumer publishes it with
 *     its own login in user_id;
 *   - RabbitMQ's own, when a work queue's delivery limit is reached: the original message as it
 *     was (user_id = its producer's login, checked by the broker when it was first published)
 *     with the x-death table added. Its class is "delivery-limit" (or the x-death reason).
 *
 * Authenticity. A replay goes out as user dlq speaking for the producer, and consumers accept
 * that (contracts/codec/msg.h), so the tool must only replay what its producer really sent. It
 * refuses:
 *   - class forged: the consumer already found the sender wrong;
 *   - a type this version does not know (no producer to speak for);
 *   - a consumer's dead letter whose user_id is not the consumer of the queue it came from (by
 *     the queue naming rule: the first dot-separated part of a work queue's name is its
 *     consumer's broker user, saga.events -> saga), or whose x-petstore-sender is not the
 *     type's producer. Every service user may publish to petstore.dlx, so without this check
 *     one of them could plant a "dead letter" for the tool to launder;
 *   - RabbitMQ's dead letter whose user_id is not the producer;
 *   - a message the tool moved (user_id dlq) unless the move recorded that it was verified
 *     (x-petstore-sender-verified, which only the dlq user can have written since the broker
 *     vouches for its user_id).
 * A replay that failed again is accepted for the producer its x-petstore-replay-for names: a
 * consumer's dead letter of it records sender dlq (the consumer checked the replay header before
 * anything else could fail), and RabbitMQ's keeps user_id dlq; either way only the dlq user
 * could have published it, and it replays only what it proved.
 * The consumer of a queue vouches for what it received: it could, if its credentials were
 * stolen, plant a dead letter of a type it receives; that trust is the same one the consumer
 * already has over its own effects. */
#include <ctype.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "hex.h"
#include "log.h"
#include "msg.h"

static const char *hstr(const json_t *h, const char *key)
{
    const char *s = json_string_value(json_object_get(h, key));
    return s ? s : "";
}

static long hint(const json_t *h, const char *key, long dflt)
{
    const json_t *v = json_object_get(h, key);
    if (json_is_integer(v))
        return (long)json_integer_value(v);
    if (json_is_string(v)) {
        char *end;
        long n = strtol(json_string_value(v), &end, 10);
        if (*end == '\0' && end != json_string_value(v))
            return n;
    }
    return dflt;
}

static time_t htime(const json_t *h, const char *key)
{
    const json_t *v = json_object_get(h, key);
    if (json_is_integer(v))
        return (time_t)json_integer_value(v);
    time_t t;
    err_t e;
    if (json_is_string(v) && dlq_parse_time(json_string_value(v), 0, &t, &e) == 0 && t > 0)
        return t;
    return 0;
}

void dlq_base_queue(const char *dlq_queue, char *out, size_t n)
{
    size_t len = strlen(dlq_queue);
    if (len > 4 && strcmp(dlq_queue + len - 4, ".dlq") == 0)
        len -= 4;
    if (len >= n)
        len = n - 1;
    memcpy(out, dlq_queue, len);
    out[len] = '\0';
}

void dlq_fingerprint(const char *klass, const char *code, const char *type, const char *handler,
                     const char *original_queue, char out[17])
{
    crypto_generichash_state st;
    unsigned char hash[8];
    const char *parts[] = {klass, code, type, handler, original_queue};
    crypto_generichash_init(&st, NULL, 0, sizeof(hash));
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        const char *p = parts[i] ? parts[i] : "";
        crypto_generichash_update(&st, (const unsigned char *)p, strlen(p) + 1); /* with NUL */
    }
    crypto_generichash_final(&st, hash, sizeof(hash));
    hex_encode(hash, sizeof(hash), out);
}

static void refuse(dlq_msg_t *m, const char *fmt, ...) PETSTORE_PRINTF(2, 3);
static void refuse(dlq_msg_t *m, const char *fmt, ...)
{
    if (m->refusal[0] != '\0')
        return; /* the first reason is the one to fix first */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->refusal, sizeof(m->refusal), fmt, ap);
    va_end(ap);
}

void dlq_msg_parse(dlq_msg_t *m, const char *dlq_queue)
{
    const mq_delivery_t *d = m->d;
    const json_t *h = d->headers;
    m->id = d->message_id ? d->message_id : "";
    m->type = d->type ? d->type : "";
    msg_type_t t;
    m->producer = msg_type_from_name(m->type, &t) == 0 ? msg_type_producer(t) : NULL;
    m->replay_count = hint(h, "x-petstore-replay-count", 0);
    m->refusal[0] = '\0';
    m->dead_at = 0;
    const char *user = d->user_id ? d->user_id : "";
    char base[256];
    dlq_base_queue(dlq_queue, base, sizeof(base));

    const json_t *deaths = json_object_get(h, "x-death");
    const json_t *last = json_array_get(deaths, 0);
    if (json_object_get(h, "x-petstore-failure-class") != NULL) {
        m->klass = hstr(h, "x-petstore-failure-class");
        m->code = hstr(h, "x-petstore-error-code");
        m->error = hstr(h, "x-petstore-error");
        m->handler = hstr(h, "x-petstore-handler");
        m->original_queue = hstr(h, "x-petstore-original-queue");
        m->exchange = hstr(h, "x-petstore-original-exchange");
        m->routing_key = hstr(h, "x-petstore-original-routing-key");
        m->attempts = hint(h, "x-petstore-attempts", 0);
        m->dead_at = htime(h, "x-petstore-failed-at");
        m->sender = hstr(h, MSG_SENDER_HEADER);
    } else if (json_is_object(last)) {
        const char *reason = json_string_value(json_object_get(last, "reason"));
        m->klass = reason && strcmp(reason, "delivery_limit") == 0 ? "delivery-limit"
                   : reason                                        ? reason
                                                                   : "rabbitmq";
        m->code = reason ? reason : "";
        m->error = "dead-lettered by RabbitMQ";
        m->handler = "";
        m->original_queue = hstr(last, "queue");
        m->exchange = hstr(last, "exchange");
        m->routing_key =
            json_string_value(json_array_get(json_object_get(last, "routing-keys"), 0));
        if (m->routing_key == NULL)
            m->routing_key = "";
        m->attempts = hint(last, "count", 0);
        m->dead_at = htime(last, "time");
        m->sender = user;
    } else {
        m->klass = "unknown";
        m->code = m->error = m->handler = "";
        m->original_queue = base;
        m->exchange = m->routing_key = "";
        m->sender = "";
        refuse(m, "not a dead letter (neither x-petstore-failure-class nor x-death)");
    }
    if (m->original_queue == base || m->original_queue[0] == '\0')
        m->original_queue = "";
    if (m->dead_at == 0)
        m->dead_at = (time_t)d->timestamp;
    int64_t ms;
    err_t ignore;
    const char *failed_at = json_string_value(json_object_get(h, "x-petstore-failed-at"));
    m->dead_at_ms = failed_at && dlq_parse_time_ms(failed_at, 0, &ms, &ignore) == 0 && ms > 0
                        ? ms
                        : (int64_t)m->dead_at * 1000;
    m->first_death = htime(h, "x-petstore-first-failed-at");
    size_t i;
    const json_t *death;
    json_array_foreach(deaths, i, death)
    {
        time_t when = htime(death, "time");
        if (when > 0 && (m->first_death == 0 || when < m->first_death))
            m->first_death = when;
    }
    if (m->first_death == 0 || m->first_death > m->dead_at)
        m->first_death = m->dead_at;

    const char *tp = hstr(h, "traceparent");
    m->trace_id[0] = '\0';
    if (strlen(tp) >= 35 && tp[2] == '-') {
        memcpy(m->trace_id, tp + 3, 32);
        m->trace_id[32] = '\0';
    }
    dlq_fingerprint(m->klass, m->code, m->type, m->handler,
                    m->original_queue[0] ? m->original_queue : base, m->fingerprint);

    /* Authenticity, as the top of this file says. */
    if (strcmp(m->klass, "forged") == 0)
        refuse(m, "forged (%.120s): never replayed; purge it once reviewed", m->error);
    if (m->producer == NULL)
        refuse(m,
               "unknown type \"%.64s\": this version knows no producer to speak for; purge or "
               "move it aside",
               m->type);
    if (strcmp(user, MSG_REPLAY_USER) == 0 &&
        json_object_get(h, "x-petstore-failure-class") == NULL &&
        json_object_get(h, MSG_REPLAY_FOR_HEADER) != NULL) {
        /* A replay RabbitMQ dead-lettered (delivery limit): the broker vouches that the dlq user
         * published it, and the tool replays only what it proved, for the producer it names. */
        m->sender = hstr(h, MSG_REPLAY_FOR_HEADER);
    } else if (strcmp(user, MSG_REPLAY_USER) == 0) {
        const json_t *v = json_object_get(h, "x-petstore-sender-verified");
        if (!json_is_true(v) && !(json_is_string(v) && strcmp(json_string_value(v), "true") == 0))
            refuse(m, "moved here by dlq without a proven sender");
        m->sender = hstr(h, MSG_SENDER_HEADER);
    } else if (json_object_get(h, "x-petstore-failure-class") != NULL) {
        char consumer[256];
        snprintf(consumer, sizeof(consumer), "%s", base);
        char *dot = strchr(consumer, '.');
        if (dot)
            *dot = '\0';
        if (strcmp(user, consumer) != 0)
            refuse(m,
                   "dead letter published by \"%.32s\", not by %.32s, the consumer of %.64s: "
                   "nobody vouches for it",
                   user[0] ? user : "no one", consumer, base);
    }
    /* A replay that failed again: the consumer accepted its user dlq as speaking for the
     * producer named in the replay header (the sender check comes before anything else can
     * fail), so that is the sender the consumer vouches for. */
    if (strcmp(m->sender, MSG_REPLAY_USER) == 0 && json_object_get(h, MSG_REPLAY_FOR_HEADER))
        m->sender = hstr(h, MSG_REPLAY_FOR_HEADER);
    if (m->producer != NULL && strcmp(m->sender, m->producer) != 0)
        refuse(m, "sent by \"%.32s\", not by %.32s, the producer of %.64s",
               m->sender[0] ? m->sender : "no one", m->producer, m->type);
}

char *dlq_masked_body(const mq_delivery_t *d)
{
    size_t n = d->body_len;
    char *text = malloc(n + 1);
    char *out = malloc(n + 1);
    if (text == NULL || out == NULL) {
        free(text);
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)d->body[i];
        text[i] = (ch < 0x20 && ch != '\n' && ch != '\t') ? '?' : (char)ch;
    }
    text[n] = '\0';
    log_mask_digits(text, out, n + 1);
    free(text);
    json_t *probe = json_string(out);
    if (probe == NULL) /* not UTF-8: keep ASCII only */
        for (size_t i = 0; out[i]; i++)
            if ((unsigned char)out[i] >= 0x80)
                out[i] = '?';
    json_decref(probe);
    return out;
}

json_t *dlq_msg_json(const dlq_msg_t *m)
{
    char dead[32], first[32];
    dlq_format_time(m->dead_at, dead, sizeof(dead));
    dlq_format_time(m->first_death, first, sizeof(first));
    char *body = dlq_masked_body(m->d);
    char error[512];
    log_mask_digits(m->error, error, sizeof(error));
    json_t *j = json_pack(
        "{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s?,s:I,s:s,s:s,s:b,s:s?,s:s?}",
        "position", (json_int_t)m->position, "id", m->id, "type", m->type, "exchange", m->exchange,
        "routing_key", m->routing_key, "class", m->klass, "code", m->code, "error", error,
        "handler", m->handler, "original_queue", m->original_queue, "attempts",
        (json_int_t)m->attempts, "first_death", first, "dead_at", dead, "trace_id",
        m->trace_id[0] ? m->trace_id : NULL, "replay_count", (json_int_t)m->replay_count,
        "fingerprint", m->fingerprint, "sender", m->sender, "verified", m->refusal[0] == '\0',
        "refusal", m->refusal[0] ? m->refusal : NULL, "body", body);
    free(body);
    return j;
}

int dlq_sel_given(const dlq_sel_t *s)
{
    return s->all || s->n_ids > 0 || s->group || s->type || s->since || s->until ||
           s->older_than_ms > 0 || s->manifest;
}

int dlq_sel_match(const dlq_sel_t *s, const dlq_msg_t *m, time_t now)
{
    if (s->n_ids > 0) {
        int found = 0;
        for (size_t i = 0; i < s->n_ids && !found; i++)
            found = strcmp(s->ids[i], m->id) == 0;
        if (!found)
            return 0;
    }
    if (s->group && strcmp(s->group, m->fingerprint) != 0)
        return 0;
    if (s->type && strcmp(s->type, m->type) != 0)
        return 0;
    if (s->since && m->dead_at < s->since)
        return 0;
    if (s->until && m->dead_at > s->until)
        return 0;
    if (s->older_than_ms > 0 && m->dead_at > now - (time_t)(s->older_than_ms / 1000))
        return 0;
    return 1;
}

json_t *dlq_sel_json(const dlq_sel_t *s)
{
    json_t *j = json_object();
    if (s->all)
        json_object_set_new(j, "all", json_true());
    if (s->n_ids > 0) {
        json_t *ids = json_array();
        for (size_t i = 0; i < s->n_ids; i++)
            json_array_append_new(ids, json_string(s->ids[i]));
        json_object_set_new(j, "ids", ids);
    }
    if (s->group)
        json_object_set_new(j, "group", json_string(s->group));
    if (s->type)
        json_object_set_new(j, "type", json_string(s->type));
    char t[32];
    if (s->since) {
        dlq_format_time(s->since, t, sizeof(t));
        json_object_set_new(j, "since", json_string(t));
    }
    if (s->until) {
        dlq_format_time(s->until, t, sizeof(t));
        json_object_set_new(j, "until", json_string(t));
    }
    if (s->older_than_ms > 0)
        json_object_set_new(j, "older_than_s", json_integer(s->older_than_ms / 1000));
    if (s->manifest)
        json_object_set_new(j, "manifest_queue", json_string(s->manifest));
    return j;
}
