/* fuzz_message: a consumer's decoding of one delivery, under libFuzzer.
 *
 * What a consumer does with a delivery before any database work (svc_consumer.c decode_item):
 * msg_type_from_name on the AMQP type, msg_envelope_from_headers on the properties and the
 * header table, msg_decode of the body for that type, trace_parse of the traceparent it keeps.
 * The input is split into lines, so seeds stay readable (tests/fuzz/make_corpus.py writes them
 * from tests/data/contracts):
 *
 *   line 1   the AMQP type property          ("" means absent)
 *   line 2   the message_id property         ("" means absent)
 *   line 3   the correlation_id property     ("" means absent)
 *   line 4   the header table as one line of JSON, as mq_delivery_t carries it (a line that
 *            does not parse means a delivery without headers)
 *   rest     the body, in a buffer of exactly its length
 *
 * Besides "no crash, no leak, no undefined behaviour", the target checks what the codec promises
 * (msg.h): a rejection is ERR_INVALID with a message; an accepted envelope names a known type
 * and a uuid, rebuilds into headers that are accepted again to the same envelope, and keeps
 * only a traceparent that trace_parse accepts too; an accepted body is an object that
 * msg_validate accepts, and encoding it gives a canonical body that decodes to an equal payload
 * and encodes to the same bytes (unless the canonical form is over MSG_MAX_BODY, which
 * msg_encode refuses by contract). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fuzz_util.h"
#include "msg.h"
#include "trace.h"
#include "uuid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A rejection must be ERR_INVALID and say why. */
static void check_rejection(const err_t *e, const char *what)
{
    if (e->code != ERR_INVALID || e->msg[0] == '\0') {
        fprintf(stderr, "fuzz: %s: code %d (%s) \"%s\"\n", what, e->code, err_name(e->code),
                e->msg);
        abort();
    }
}

/* Each member of a received envelope is a NUL-terminated string of its array. */
static int env_terminated(const msg_envelope_t *env)
{
    return memchr(env->message_id, '\0', sizeof(env->message_id)) != NULL &&
           memchr(env->correlation_id, '\0', sizeof(env->correlation_id)) != NULL &&
           memchr(env->causation_id, '\0', sizeof(env->causation_id)) != NULL &&
           memchr(env->type, '\0', sizeof(env->type)) != NULL &&
           memchr(env->app_id, '\0', sizeof(env->app_id)) != NULL &&
           memchr(env->traceparent, '\0', sizeof(env->traceparent)) != NULL &&
           memchr(env->time, '\0', sizeof(env->time)) != NULL &&
           memchr(env->source, '\0', sizeof(env->source)) != NULL;
}

static void check_envelope(const json_t *headers, const char *message_id, const char *type,
                           const char *correlation_id)
{
    msg_envelope_t env, again;
    json_t *rebuilt = NULL;
    err_t e;
    err_clear(&e);
    if (msg_envelope_from_headers(headers, message_id, type, correlation_id, &env, &e) != 0) {
        check_rejection(&e, "msg_envelope_from_headers");
        return;
    }
    FUZZ_CHECK(env_terminated(&env), "envelope member not terminated");
    FUZZ_CHECK(uuid_valid(env.message_id), "accepted envelope without a uuid message_id");
    msg_type_t t;
    FUZZ_CHECK(msg_type_from_name(env.type, &t) == 0, "accepted envelope of an unknown type");
    FUZZ_CHECK(strcmp(env.type, type) == 0, "envelope type differs from the property");
    trace_ctx_t tc;
    FUZZ_CHECK(env.traceparent[0] == '\0' || trace_parse(env.traceparent, &tc) == 0,
               "envelope kept a traceparent that trace_parse refuses");

    /* A producer can send on what a consumer accepted, unless nothing names the source. */
    if (env.source[0] == '\0' && env.app_id[0] == '\0')
        return;
    err_clear(&e);
    if (msg_envelope_headers(&env, &rebuilt, &e) != 0) {
        fprintf(stderr, "fuzz: msg_envelope_headers refused an accepted envelope: %s\n", e.msg);
        abort();
    }
    if (msg_envelope_from_headers(rebuilt, env.message_id, env.type, env.correlation_id, &again,
                                  &e) != 0) {
        fprintf(stderr, "fuzz: rebuilt headers refused: %s\n", e.msg);
        abort();
    }
    FUZZ_CHECK(memcmp(&env, &again, sizeof(env)) == 0, "envelope changed by a round trip");
    json_decref(rebuilt);
}

static void check_body(msg_type_t type, const char *body, size_t len)
{
    json_t *payload = NULL, *again = NULL;
    char *canon = NULL, *canon2 = NULL;
    size_t canon_len = 0, canon2_len = 0;
    err_t e;
    err_clear(&e);
    if (msg_decode(type, body, len, &payload, &e) != 0) {
        check_rejection(&e, "msg_decode");
        return;
    }
    FUZZ_CHECK(json_is_object(payload), "msg_decode accepted a non-object");
    FUZZ_CHECK(msg_validate(type, payload, &e) == 0, "msg_validate refuses a decoded payload");
    if (msg_encode(type, payload, &canon, &canon_len, &e) != 0) {
        FUZZ_CHECK(e.code == ERR_INVALID && strncmp(e.msg, "body too large", 14) == 0,
                   "msg_encode refused a decoded payload");
        json_decref(payload);
        return;
    }
    FUZZ_CHECK(strlen(canon) == canon_len, "msg_encode length differs from the string");
    if (msg_decode(type, canon, canon_len, &again, &e) != 0) {
        fprintf(stderr, "fuzz: the canonical body does not decode: %s\n", e.msg);
        abort();
    }
    FUZZ_CHECK(json_equal(payload, again), "the canonical body decodes to another payload");
    FUZZ_CHECK(msg_encode(type, again, &canon2, &canon2_len, &e) == 0,
               "the canonical payload does not encode");
    FUZZ_CHECK(canon2_len == canon_len && memcmp(canon, canon2, canon_len) == 0,
               "encoding is not canonical");
    free(canon2);
    free(canon);
    json_decref(again);
    json_decref(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, data + size};
    size_t headers_len = 0, body_len = 0;
    char *type = fuzz_line(&in, NULL);
    char *message_id = fuzz_line(&in, NULL);
    char *correlation_id = fuzz_line(&in, NULL);
    char *headers_text = fuzz_line(&in, &headers_len);
    char *body = fuzz_rest(&in, &body_len);
    /* The table conversion can hand over strings with NUL bytes and any JSON kind. */
    json_t *headers = json_loadb(headers_text, headers_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

    msg_type_t t = MSG_NONE;
    if (msg_type_from_name(type, &t) == 0) {
        const msg_type_info_t *info = msg_type_info(t);
        FUZZ_CHECK(info != NULL && strcmp(info->name, type) == 0, "type table disagrees");
        FUZZ_CHECK(msg_type_producer(t) != NULL, "a type without a producer");
    }
    check_envelope(headers, message_id[0] ? message_id : NULL, type[0] ? type : NULL,
                   correlation_id[0] ? correlation_id : NULL);
    if (t != MSG_NONE) {
        check_body(t, body, body_len);
    } else {
        /* An unknown type is refused before the body is looked at. */
        json_t *payload = NULL;
        err_t e;
        err_clear(&e);
        FUZZ_CHECK(msg_decode(MSG_NONE, body, body_len, &payload, &e) == ERR_INVALID,
                   "msg_decode accepted MSG_NONE");
    }

    json_decref(headers);
    free(body);
    free(headers_text);
    free(correlation_id);
    free(message_id);
    free(type);
    return 0;
}
