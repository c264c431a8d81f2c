/* mq_table: conversion between JSON objects and AMQP field tables, for message headers.
 *
 * Publishing maps a flat JSON object to a table whose keys and strings are borrowed from the
 * object (no copies; the table lives in the handle's scratch pool until the publish is done).
 * Consuming maps any table the broker or another client sent back to JSON, whatever it holds:
 * unsigned and decimal values become numbers, bytes that are not UTF-8 become '?', NaN and
 * infinity become null, and nesting deeper than MAX_TABLE_DEPTH comes out empty, so a hostile
 * header can neither fail the conversion nor exhaust the stack. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mq_internal.h"

#define MAX_TABLE_DEPTH 32

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
