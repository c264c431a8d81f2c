/* msg: the message contracts every service speaks, and the codec that enforces them.
 *
 * A message is an AMQP 0-9-1 message whose body is a JSON object (the payload) and whose
 * properties and headers form the envelope (DESIGN.md section 3, contracts/README.md). Every
 * message type has a versioned name ("payment.charge.v1"), a fixed exchange and routing key, and
 * a payload contract: a table of field descriptors (msg_fields.c) that this codec enforces and
 * that contracts/schemas/<type>.json restates as JSON Schema for everybody else. Unknown extra
 * fields are always accepted (additive versioning); a breaking change is a new ".v2" type.
 *
 * Producers call msg_encode (validate, then serialise) and msg_envelope_headers; consumers call
 * msg_type_from_name, msg_envelope_from_headers and msg_decode. Every contract violation is
 * ERR_INVALID with a message naming the offending place as a JSON path ("$.pet_ids[2]: expected
 * uuid"), so a consumer can dead-letter the message with a useful reason. Error messages quote
 * at most field names and short tokens of the input, never a whole payload.
 *
 * Threading: every function is pure and reentrant; the type table is static and read-only.
 * Ownership follows jansson's words: "new reference" (caller decrefs), "borrowed" (valid while the
 * owner lives, do not free). */
#ifndef PETSTORE_MSG_H
#define PETSTORE_MSG_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"
#include "uuid.h"

/* The largest body msg_decode accepts and msg_encode produces, in bytes. */
#define MSG_MAX_BODY (64 * 1024)

#define MSG_EXCHANGE_COMMANDS "petstore.commands"
#define MSG_EXCHANGE_EVENTS "petstore.events"

/* One constant per message type, generated from msg_types.def. MSG_NONE is never a valid type;
 * MSG__COUNT is one past the last. Values are stable within a build only: put the type NAME on
 * the wire and in databases, never the number. */
typedef enum msg_type {
    MSG_NONE = 0,
#define X(id, name, exchange, routing_key, producer, fields) id,
#include "msg_types.def"
#undef X
    MSG__COUNT
} msg_type_t;

/* What the transport needs to know about a type. All strings are static. */
typedef struct msg_type_info {
    const char *name;        /* "payment.charge.v1": the AMQP type and the CloudEvents type */
    const char *exchange;    /* MSG_EXCHANGE_COMMANDS or MSG_EXCHANGE_EVENTS */
    const char *routing_key; /* commands: the target service; events: name without ".vN" */
    int is_command;          /* 1 for commands, 0 for events */
    const char *producer;    /* the RabbitMQ user of the one service that produces it */
} msg_type_info_t;

/* The static description of type, or NULL for MSG_NONE and anything out of range. Borrowed. */
const msg_type_info_t *msg_type_info(msg_type_t type);

/* The RabbitMQ user of the one service allowed to produce type ("storefront", "inventory",
 * "payment", "saga"), or NULL for MSG_NONE and anything out of range. A consumer compares it
 * with a delivery's user_id property, which the broker has checked against the publisher's
 * login. Borrowed, static. */
const char *msg_type_producer(msg_type_t type);

/* Replays. The dead-letter tool re-drives a dead letter as its own broker user, MSG_REPLAY_USER
 * (the broker lets a connection put only its own login in user_id), speaking for the message's
 * producer, whom it names in the header MSG_REPLAY_FOR_HEADER. A consumer accepts a message of
 * type T when user_id is msg_type_producer(T), or when user_id is MSG_REPLAY_USER and that
 * header is msg_type_producer(T); from any other user the header means nothing. The tool replays
 * only dead letters whose original sender it can prove (services/dlq/README.md), so the replay
 * user cannot launder a forgery. */
#define MSG_REPLAY_USER "dlq"
#define MSG_REPLAY_FOR_HEADER "x-petstore-replay-for"

/* Dead letters. The consumer that dead-letters a message publishes it with its own login in
 * user_id and records the original delivery's user_id (or "none") in MSG_SENDER_HEADER, so the
 * dead-letter tool can tell who sent the original and who vouches for that. */
#define MSG_SENDER_HEADER "x-petstore-sender"

/* Looks up a type by its exact name ("inventory.reserve.v1"). Sets *out and returns 0, or returns
 * ERR_INVALID for NULL or an unknown name (*out untouched). */
int msg_type_from_name(const char *name, msg_type_t *out) PETSTORE_NODISCARD;

/* Checks payload (borrowed) against type's contract: every required field present, every known
 * field of the right kind and within its bounds, extra fields ignored. Returns 0, or ERR_INVALID
 * with e describing the first violation: "$: expected object", "$.amount_cents: missing required
 * field", "$.status: expected one of available, reserved, sold", "$.pet_ids[2]: expected uuid",
 * or "unknown message type N" for MSG_NONE and out-of-range values. */
int msg_validate(msg_type_t type, const json_t *payload, err_t *e) PETSTORE_NODISCARD;

/* Parses and validates a message body of len bytes (not NUL-terminated; NULL only with len 0).
 * Rejected with ERR_INVALID: an unknown type, a body over MSG_MAX_BODY ("body too large"),
 * malformed JSON or a duplicate object key ("malformed JSON at line L column C: ..."), a
 * top-level value that is not an object, and anything msg_validate rejects. On success *out is a
 * new reference to the payload object (caller decrefs); on failure *out is untouched. */
int msg_decode(msg_type_t type, const char *body, size_t len, json_t **out,
               err_t *e) PETSTORE_NODISCARD;

/* Validates payload (borrowed) like msg_validate, then serialises it compactly with the keys
 * sorted (JSON_COMPACT | JSON_SORT_KEYS): equal payloads always give byte-identical bodies, which
 * keeps outbox rows, logs and test fixtures comparable. Non-ASCII text stays UTF-8. On success
 * *out is a new NUL-terminated string (caller frees with free()) and *len, if len is not NULL,
 * its length without the NUL. ERR_INVALID for a contract violation or a result larger than
 * MSG_MAX_BODY (a consumer would refuse it), ERR_NOMEM if serialisation fails. */
int msg_encode(msg_type_t type, const json_t *payload, char **out, size_t *len,
               err_t *e) PETSTORE_NODISCARD;

/* 1 if s is an RFC 3339 date-time in UTC as used on the wire: "YYYY-MM-DDTHH:MM:SSZ" with an
 * optional fraction of 1 to 9 digits (".123Z"), upper-case T and Z, a real calendar date and
 * seconds 00-59 (no leap second), else 0. Offsets other than Z are refused. NULL gives 0. */
int msg_is_datetime(const char *s);

/* The envelope: the AMQP properties and headers around a payload (DESIGN.md section 3).
 * Plain fixed-size strings, "" when absent, so it can live on the stack and be copied. */
typedef struct msg_envelope {
    char message_id[37];     /* AMQP message_id = cloudEvents_id: a uuid, unique per message */
    char correlation_id[37]; /* AMQP correlation_id: the order id, "" for messages of no order */
    char causation_id[37];   /* header causation_id: the message that caused this one, or "" */
    char type[64];           /* AMQP type = cloudEvents_type: a known type name */
    char app_id[32];         /* AMQP app_id: the producing service ("inventory") */
    char traceparent[56];    /* header traceparent: W3C trace context, or "" */
    char time[32];           /* header cloudEvents_time: RFC 3339 UTC with milliseconds */
    char source[64];         /* header cloudEvents_source: "/petstore/<app_id>" */
} msg_envelope_t;

/* Builds the AMQP header table for env as a JSON object of strings:
 *   cloudEvents_specversion "1.0", cloudEvents_id, cloudEvents_source, cloudEvents_type,
 *   cloudEvents_time, traceparent, causation_id
 * with empty optional members (time, traceparent, causation_id) omitted. An empty source is
 * derived from app_id as "/petstore/<app_id>". ERR_INVALID if message_id is not a uuid, type is
 * unknown, there is neither source nor app_id, or a present member is malformed (causation_id
 * and correlation_id must be uuids, time a msg_is_datetime date-time, traceparent a version-00
 * W3C traceparent). On success *out is a new reference (caller decrefs); ERR_NOMEM if jansson
 * cannot allocate. */
int msg_envelope_headers(const msg_envelope_t *env, json_t **out, err_t *e) PETSTORE_NODISCARD;

/* Rebuilds and checks a received envelope from the AMQP message_id, type and correlation_id
 * properties (borrowed, each may be NULL) and the header table as a JSON object (borrowed, may
 * be NULL when the message had no headers). ERR_INVALID, naming the property or header, when:
 * message_id is missing or not a uuid; type is missing or unknown; correlation_id is present and
 * not a uuid; headers is not an object; cloudEvents_specversion is present and not "1.0";
 * cloudEvents_id or cloudEvents_type is present and differs from message_id or type;
 * cloudEvents_source is not a string that fits; cloudEvents_time is not a msg_is_datetime
 * date-time; causation_id is not a uuid. A malformed traceparent is NOT an error: W3C trace
 * context says to start a new trace, so it is left "". app_id is taken from a source of the form
 * "/petstore/<app_id>" ("" otherwise). *out is written only on success. */
int msg_envelope_from_headers(const json_t *headers, const char *message_id, const char *type,
                              const char *correlation_id, msg_envelope_t *out,
                              err_t *e) PETSTORE_NODISCARD;

#endif
