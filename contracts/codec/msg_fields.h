/* msg_fields: the payload contracts as data, private to the codec and its tests.
 *
 * Each message type (msg_types.def) points at a table of field descriptors in msg_fields.c.
 * msg_validate walks that table; the unit tests compare it with contracts/schemas/<type>.json,
 * so this table is the one source of truth and the schemas are its published restatement.
 * Services use msg.h only. Static, read-only data: thread-safe. */
#ifndef PETSTORE_MSG_FIELDS_H
#define PETSTORE_MSG_FIELDS_H

#include <limits.h>
#include <stddef.h>

#include "msg.h"

/* What a field holds on the wire, and therefore how it is checked. */
typedef enum msg_field_kind {
    MSG_FIELD_UUID = 1,      /* string, uuid_valid */
    MSG_FIELD_STRING,        /* string of min..max Unicode characters (code points) */
    MSG_FIELD_INT,           /* JSON integer literal in min..max (12.0 is not an integer) */
    MSG_FIELD_BOOL,          /* true or false */
    MSG_FIELD_DATETIME,      /* string, msg_is_datetime */
    MSG_FIELD_LAST4,         /* string of exactly 4 ASCII digits (the last digits of a card) */
    MSG_FIELD_BASE64,        /* canonical standard base64 with padding, min..max characters */
    MSG_FIELD_UUID_ARRAY,    /* array of min..max uuids, no two equal */
    MSG_FIELD_ENUM,          /* one of values */
    MSG_FIELD_NULLABLE_ENUM, /* null or one of values */
    MSG_FIELD_PET_VERSIONS   /* array of min..max objects {pet_id: uuid, version: integer >= 1},
                                no two with the same pet_id (other members accepted) */
} msg_field_kind_t;

/* "No upper bound" for an MSG_FIELD_INT's max. */
#define MSG_FIELD_NO_MAX LLONG_MAX

typedef struct msg_field {
    const char *name; /* the member name in the payload object */
    msg_field_kind_t kind;
    int required;  /* 1: absence is an error; 0: may be absent (null only if NULLABLE) */
    long long min; /* INT: value; STRING, BASE64: characters; UUID_ARRAY, PET_VERSIONS: items */
    long long max; /* as min; MSG_FIELD_NO_MAX for an INT without upper bound */
    const char *const *values; /* ENUM, NULLABLE_ENUM: allowed strings, NULL-terminated */
} msg_field_t;

/* A type's full description: the public info plus its field table. */
typedef struct msg_type_def {
    msg_type_info_t info;
    const msg_field_t *fields;
    size_t n_fields;
} msg_type_def_t;

/* The description of type, or NULL for MSG_NONE and out-of-range values. Borrowed (static). */
const msg_type_def_t *msg__type_def(msg_type_t type);

/* The bytes of a JSON string, or NULL if v is not a string or holds an embedded NUL (jansson can
 * carry "\u0000"; no contract field may, and C readers would silently truncate it). Borrowed. */
const char *msg__string(const json_t *v);

/* Copies src into dst (size bytes, always terminated), replacing every byte outside printable
 * ASCII with '?': for error messages that quote wire input, which must stay safe to log and to
 * put in an AMQP header even when the input is not UTF-8 or is cut mid-character. */
void msg__printable(char *dst, size_t size, const char *src);

/* The printable name of a field kind ("uuid", "string", ...), for messages and tests. Static. */
const char *msg__kind_name(msg_field_kind_t kind);

#endif
