/* Unit tests of the message codec (contracts/codec).
 *
 * Most of the contract is checked through data: every directory under tests/data/contracts/valid
 * and tests/data/contracts/invalid is one case (files `type`, `input.json`, and for invalid cases
 * `error`, a substring the error message must contain). tests/unit/test_schemas.py runs the same
 * cases through the JSON Schemas, and the last tests here hold every schema to the C field table,
 * so the codec, the schemas and the examples cannot drift apart. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msg.h"
#include "msg_fields.h"
#include "uuid.h"

#define UUID_PATTERN "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
#define DATETIME_PATTERN "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z$"
#define LAST4_PATTERN "^[0-9]{4}$"
#define BASE64_PATTERN                                                                             \
    "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"

#define ORDER "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f90"
#define PET "0190a3c0-1111-7aaa-8bbb-000000000001"

#define MAX_CASES 512

/* ---- helpers ---------------------------------------------------------------------------- */

static const char *source_dir(void)
{
    const char *dir = getenv("PETSTORE_SOURCE_DIR");
    if (dir == NULL || dir[0] == '\0')
        fail_msg("PETSTORE_SOURCE_DIR is not set (ctest sets it)");
    return dir;
}

/* Whole file into a new NUL-terminated buffer (caller frees); *len without the NUL. NULL if the
 * file cannot be read. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (cap == 0 ? 8192 : cap * 2);
            char *grown = realloc(buf, cap);
            assert_non_null(grown);
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

/* A one-line file (type, error) without its trailing newline; caller frees. */
static char *slurp_line(const char *path)
{
    size_t n = 0;
    char *s = slurp(path, &n);
    while (s != NULL && n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        s[--n] = '\0';
    return s;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted case names under tests/data/contracts/<kind>; returns how many (caller frees). */
static size_t list_cases(const char *kind, char **names)
{
    char dir[1024];
    DIR *d;
    struct dirent *ent;
    size_t n = 0;

    snprintf(dir, sizeof(dir), "%s/tests/data/contracts/%s", source_dir(), kind);
    d = opendir(dir);
    if (d == NULL)
        fail_msg("cannot open %s", dir);
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.')
            continue;
        assert_true(n < MAX_CASES);
        names[n] = strdup(ent->d_name);
        assert_non_null(names[n]);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), compare_names);
    return n;
}

typedef struct test_case {
    char name[256];
    char *type_name;
    char *body;
    size_t len;
    char *error; /* invalid cases only */
} test_case_t;

static void load_case(const char *kind, const char *name, test_case_t *c)
{
    char path[1024];

    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s/%s", kind, name);
    snprintf(path, sizeof(path), "%s/tests/data/contracts/%s/%s/type", source_dir(), kind, name);
    c->type_name = slurp_line(path);
    if (c->type_name == NULL)
        fail_msg("%s: no type file", c->name);
    snprintf(path, sizeof(path), "%s/tests/data/contracts/%s/%s/input.json", source_dir(), kind,
             name);
    c->body = slurp(path, &c->len);
    if (c->body == NULL)
        fail_msg("%s: no input.json", c->name);
    if (strcmp(kind, "invalid") == 0) {
        snprintf(path, sizeof(path), "%s/tests/data/contracts/%s/%s/error", source_dir(), kind,
                 name);
        c->error = slurp_line(path);
        if (c->error == NULL || c->error[0] == '\0')
            fail_msg("%s: no error file", c->name);
    }
}

static void free_case(test_case_t *c)
{
    free(c->type_name);
    free(c->body);
    free(c->error);
}

/* What a consumer does with a case: look the type up, decode. An unknown name decodes as
 * MSG_NONE, which the codec refuses as an unknown type. */
static int decode_case(const test_case_t *c, json_t **out, err_t *e)
{
    msg_type_t type = MSG_NONE;
    if (msg_type_from_name(c->type_name, &type) != 0)
        type = MSG_NONE;
    return msg_decode(type, c->body, c->len, out, e);
}

static json_t *valid_payload(msg_type_t type, const char *body)
{
    json_t *p = NULL;
    err_t e;
    err_clear(&e);
    if (msg_decode(type, body, strlen(body), &p, &e) != 0)
        fail_msg("fixture does not decode: %s", e.msg);
    return p;
}

/* ---- the data-driven cases -------------------------------------------------------------- */

static void test_every_valid_case_decodes_and_every_type_has_one(void **state)
{
    char *names[MAX_CASES];
    int seen[MSG__COUNT] = {0};
    int failures = 0;
    size_t n = list_cases("valid", names);
    (void)state;

    assert_true(n >= (size_t)(MSG__COUNT - 1));
    for (size_t i = 0; i < n; i++) {
        test_case_t c;
        json_t *out = NULL;
        msg_type_t type;
        err_t e;
        err_clear(&e);
        load_case("valid", names[i], &c);
        if (msg_type_from_name(c.type_name, &type) != 0) {
            print_error("%s: unknown type %s\n", c.name, c.type_name);
            failures++;
        } else if (msg_decode(type, c.body, c.len, &out, &e) != 0) {
            print_error("%s: rejected: %s\n", c.name, e.msg);
            failures++;
        } else {
            assert_true(json_is_object(out));
            seen[type] = 1;
        }
        json_decref(out);
        free_case(&c);
        free(names[i]);
    }
    for (int t = MSG_NONE + 1; t < MSG__COUNT; t++) {
        if (!seen[t]) {
            print_error("no valid example of %s\n", msg_type_info((msg_type_t)t)->name);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void test_every_valid_case_survives_an_encode_decode_round_trip(void **state)
{
    char *names[MAX_CASES];
    size_t n = list_cases("valid", names);
    (void)state;

    for (size_t i = 0; i < n; i++) {
        test_case_t c;
        json_t *first = NULL, *second = NULL;
        char *body = NULL, *again = NULL;
        size_t len = 0, len2 = 0;
        msg_type_t type;
        err_t e;
        err_clear(&e);
        load_case("valid", names[i], &c);
        assert_int_equal(msg_type_from_name(c.type_name, &type), 0);
        assert_int_equal(msg_decode(type, c.body, c.len, &first, &e), 0);
        if (msg_encode(type, first, &body, &len, &e) != 0)
            fail_msg("%s: encode refused: %s", c.name, e.msg);
        assert_int_equal(len, strlen(body));
        if (msg_decode(type, body, len, &second, &e) != 0)
            fail_msg("%s: the encoded body does not decode: %s", c.name, e.msg);
        if (!json_equal(first, second))
            fail_msg("%s: round trip changed the payload: %s", c.name, body);
        /* Encoding is deterministic: the same payload gives the same bytes. */
        assert_int_equal(msg_encode(type, second, &again, &len2, &e), 0);
        assert_string_equal(body, again);
        free(again);
        free(body);
        json_decref(second);
        json_decref(first);
        free_case(&c);
        free(names[i]);
    }
}

static void test_every_invalid_case_is_rejected_with_its_error(void **state)
{
    char *names[MAX_CASES];
    int failures = 0;
    size_t n = list_cases("invalid", names);
    (void)state;

    assert_true(n >= 12);
    for (size_t i = 0; i < n; i++) {
        test_case_t c;
        json_t *sentinel = json_object();
        json_t *out = sentinel;
        err_t e;
        err_clear(&e);
        load_case("invalid", names[i], &c);
        int rc = decode_case(&c, &out, &e);
        if (rc == 0) {
            print_error("%s: accepted\n", c.name);
            failures++;
            json_decref(out);
        } else if (rc != ERR_INVALID || e.code != ERR_INVALID) {
            print_error("%s: rc %s, want ERR_INVALID (%s)\n", c.name, err_name(rc), e.msg);
            failures++;
        } else if (strstr(e.msg, c.error) == NULL) {
            print_error("%s: error \"%s\" lacks \"%s\"\n", c.name, e.msg, c.error);
            failures++;
        } else if (out != sentinel) {
            print_error("%s: *out written on failure\n", c.name);
            failures++;
        }
        json_decref(sentinel);
        free_case(&c);
        free(names[i]);
    }
    assert_int_equal(failures, 0);
}

/* ---- the schemas against the field table ------------------------------------------------ */

static json_t *load_schema(const char *type_name)
{
    char path[1024];
    json_error_t je;
    snprintf(path, sizeof(path), "%s/contracts/schemas/%s.json", source_dir(), type_name);
    json_t *s = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (s == NULL)
        fail_msg("%s: %s (line %d)", path, je.text, je.line);
    return s;
}

static const char *str_at(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL ? s : "(absent)";
}

static int string_is(const json_t *v, const char *want)
{
    return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

static int int_is(const json_t *obj, const char *key, long long want)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && (long long)json_integer_value(v) == want;
}

static int schema_has_required(const json_t *schema, const char *name)
{
    const json_t *req = json_object_get(schema, "required");
    for (size_t i = 0; i < json_array_size(req); i++)
        if (strcmp(json_string_value(json_array_get(req, i)), name) == 0)
            return 1;
    return 0;
}

static int enum_matches(const json_t *p, const msg_field_t *f)
{
    const json_t *list = json_object_get(p, "enum");
    size_t n = 0;
    while (f->values[n] != NULL)
        n++;
    int nullable = f->kind == MSG_FIELD_NULLABLE_ENUM;
    if (!json_is_array(list) || json_array_size(list) != n + (nullable ? 1 : 0))
        return 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(list, i));
        if (s == NULL || strcmp(s, f->values[i]) != 0)
            return 0;
    }
    return !nullable || json_is_null(json_array_get(list, n));
}

/* Returns NULL when property p restates field f exactly, else what differs. */
static const char *property_mismatch(const json_t *p, const msg_field_t *f)
{
    const char *type = str_at(p, "type");

    switch (f->kind) {
    case MSG_FIELD_UUID:
        if (strcmp(type, "string") != 0 || strcmp(str_at(p, "pattern"), UUID_PATTERN) != 0)
            return "uuid: type string with the uuid pattern";
        return NULL;
    case MSG_FIELD_STRING:
        if (strcmp(type, "string") != 0 || !int_is(p, "minLength", f->min) ||
            !int_is(p, "maxLength", f->max))
            return "string: type and length bounds";
        return NULL;
    case MSG_FIELD_INT:
        if (strcmp(type, "integer") != 0 || !int_is(p, "minimum", f->min))
            return "integer: type and minimum";
        if (f->max == MSG_FIELD_NO_MAX ? json_object_get(p, "maximum") != NULL
                                       : !int_is(p, "maximum", f->max))
            return "integer: maximum";
        return NULL;
    case MSG_FIELD_BOOL:
        return strcmp(type, "boolean") == 0 ? NULL : "boolean: type";
    case MSG_FIELD_DATETIME:
        if (strcmp(type, "string") != 0 || strcmp(str_at(p, "format"), "date-time") != 0 ||
            strcmp(str_at(p, "pattern"), DATETIME_PATTERN) != 0)
            return "date-time: type, format and pattern";
        return NULL;
    case MSG_FIELD_LAST4:
        if (strcmp(type, "string") != 0 || strcmp(str_at(p, "pattern"), LAST4_PATTERN) != 0)
            return "last4: type and pattern";
        return NULL;
    case MSG_FIELD_BASE64:
        if (strcmp(type, "string") != 0 || !int_is(p, "minLength", f->min) ||
            !int_is(p, "maxLength", f->max) || strcmp(str_at(p, "pattern"), BASE64_PATTERN) != 0)
            return "base64: type, length bounds and pattern";
        return NULL;
    case MSG_FIELD_UUID_ARRAY: {
        const json_t *items = json_object_get(p, "items");
        if (strcmp(type, "array") != 0 || !int_is(p, "minItems", f->min) ||
            !int_is(p, "maxItems", f->max) || !json_is_true(json_object_get(p, "uniqueItems")) ||
            strcmp(str_at(items, "pattern"), UUID_PATTERN) != 0)
            return "uuid array: type, item bounds, uniqueness and item pattern";
        return NULL;
    }
    case MSG_FIELD_PET_VERSIONS: {
        const json_t *items = json_object_get(p, "items");
        const json_t *props = json_object_get(items, "properties");
        const json_t *req = json_object_get(items, "required");
        const json_t *version = json_object_get(props, "version");
        if (strcmp(type, "array") != 0 || !int_is(p, "minItems", f->min) ||
            !int_is(p, "maxItems", f->max) || strcmp(str_at(items, "type"), "object") != 0 ||
            json_array_size(req) != 2 || !string_is(json_array_get(req, 0), "pet_id") ||
            !string_is(json_array_get(req, 1), "version") ||
            strcmp(str_at(json_object_get(props, "pet_id"), "pattern"), UUID_PATTERN) != 0 ||
            strcmp(str_at(version, "type"), "integer") != 0 || !int_is(version, "minimum", 1))
            return "pet versions: array bounds, objects requiring pet_id (uuid pattern) and"
                   " version (integer from 1)";
        return NULL;
    }
    case MSG_FIELD_ENUM:
        if (strcmp(type, "string") != 0 || !enum_matches(p, f))
            return "enum: type string and the same values in the same order";
        return NULL;
    case MSG_FIELD_NULLABLE_ENUM:
        if (!json_is_array(json_object_get(p, "type")) || !enum_matches(p, f))
            return "nullable enum: type [string, null] and the same values, then null";
        return NULL;
    }
    return "unknown kind";
}

static void test_every_schema_restates_its_field_table(void **state)
{
    int failures = 0;
    (void)state;

    for (int t = MSG_NONE + 1; t < MSG__COUNT; t++) {
        const msg_type_def_t *def = msg__type_def((msg_type_t)t);
        const char *name = def->info.name;
        json_t *s = load_schema(name);
        char id[256];
        const json_t *props = json_object_get(s, "properties");
        size_t n_required = 0;

        snprintf(id, sizeof(id), "https://petstore.example/contracts/%s.json", name);
        if (strcmp(str_at(s, "$id"), id) != 0 || strcmp(str_at(s, "title"), name) != 0 ||
            strcmp(str_at(s, "$schema"), "https://json-schema.org/draft/2020-12/schema") != 0 ||
            strcmp(str_at(s, "type"), "object") != 0 ||
            !json_is_true(json_object_get(s, "additionalProperties"))) {
            print_error("%s: $id, title, $schema, type or additionalProperties\n", name);
            failures++;
        }
        if (strcmp(str_at(s, "x-petstore-exchange"), def->info.exchange) != 0 ||
            strcmp(str_at(s, "x-petstore-routing-key"), def->info.routing_key) != 0) {
            print_error("%s: exchange or routing key differs from msg_types.def\n", name);
            failures++;
        }
        if (strcmp(str_at(s, "x-petstore-producer"), def->info.producer) != 0 ||
            strcmp(msg_type_producer((msg_type_t)t), def->info.producer) != 0) {
            print_error("%s: producer differs from msg_types.def\n", name);
            failures++;
        }
        if (json_object_size(props) != def->n_fields) {
            print_error("%s: %zu properties, the table has %zu fields\n", name,
                        json_object_size(props), def->n_fields);
            failures++;
        }
        for (size_t i = 0; i < def->n_fields; i++) {
            const msg_field_t *f = &def->fields[i];
            const json_t *p = json_object_get(props, f->name);
            const char *why = p != NULL ? property_mismatch(p, f) : "missing from properties";
            if (why != NULL) {
                print_error("%s: $.%s: %s\n", name, f->name, why);
                failures++;
            }
            if (schema_has_required(s, f->name) != f->required) {
                print_error("%s: $.%s: required differs\n", name, f->name);
                failures++;
            }
            n_required += f->required ? 1 : 0;
        }
        if (json_array_size(json_object_get(s, "required")) != n_required) {
            print_error("%s: the required list has extra names\n", name);
            failures++;
        }
        json_decref(s);
    }
    assert_int_equal(failures, 0);
}

static void test_every_schema_file_names_a_known_type(void **state)
{
    char dir[1024];
    DIR *d;
    struct dirent *ent;
    int failures = 0;
    (void)state;

    snprintf(dir, sizeof(dir), "%s/contracts/schemas", source_dir());
    d = opendir(dir);
    assert_non_null(d);
    while ((ent = readdir(d)) != NULL) {
        char type_name[256];
        size_t len = strlen(ent->d_name);
        msg_type_t t;
        if (len <= 5 || strcmp(ent->d_name + len - 5, ".json") != 0 ||
            strcmp(ent->d_name, "envelope.json") == 0)
            continue;
        snprintf(type_name, sizeof(type_name), "%.*s", (int)(len - 5), ent->d_name);
        if (msg_type_from_name(type_name, &t) != 0) {
            print_error("contracts/schemas/%s: no such type in msg_types.def\n", ent->d_name);
            failures++;
        }
    }
    closedir(d);
    assert_int_equal(failures, 0);
}

/* ---- the type table --------------------------------------------------------------------- */

static void test_every_type_follows_the_naming_and_routing_rules(void **state)
{
    (void)state;
    for (int t = MSG_NONE + 1; t < MSG__COUNT; t++) {
        const msg_type_info_t *info = msg_type_info((msg_type_t)t);
        msg_type_t back = MSG_NONE;
        assert_non_null(info);
        const char *dot = strchr(info->name, '.');
        const char *version = strrchr(info->name, '.');
        assert_non_null(dot);
        assert_true(version > dot);
        assert_true(version[1] == 'v' && version[2] >= '1' && version[2] <= '9');
        if (info->is_command) {
            assert_string_equal(info->exchange, MSG_EXCHANGE_COMMANDS);
            assert_int_equal(strlen(info->routing_key), (size_t)(dot - info->name));
            assert_memory_equal(info->routing_key, info->name, strlen(info->routing_key));
        } else {
            assert_string_equal(info->exchange, MSG_EXCHANGE_EVENTS);
            assert_int_equal(strlen(info->routing_key), (size_t)(version - info->name));
            assert_memory_equal(info->routing_key, info->name, strlen(info->routing_key));
        }
        assert_int_equal(msg_type_from_name(info->name, &back), 0);
        assert_int_equal(back, t);
    }
}

static void test_type_info_is_null_for_none_and_out_of_range_values(void **state)
{
    (void)state;
    assert_null(msg_type_info(MSG_NONE));
    assert_null(msg_type_info(MSG__COUNT));
    assert_null(msg_type_info((msg_type_t)-1));
    assert_null(msg_type_producer(MSG_NONE));
    assert_null(msg_type_producer(MSG__COUNT));
    assert_string_equal(msg_type_producer(MSG_PAYMENT_CHARGED_V1), "payment");
    assert_string_equal(msg_type_producer(MSG_PAYMENT_CHARGE_V1), "saga");
    assert_string_equal(msg_type_producer(MSG_ORDER_PLACED_V1), "storefront");
    assert_non_null(msg_type_info(MSG_PAYMENT_CHARGE_V1));
    assert_string_equal(msg_type_info(MSG_PAYMENT_CHARGE_V1)->routing_key, "payment");
    assert_string_equal(msg_type_info(MSG_SAGA_ORDER_STATUS_CHANGED_V1)->routing_key,
                        "saga.order_status_changed");
}

static void test_type_lookup_refuses_unknown_and_null_names(void **state)
{
    msg_type_t t = MSG_PAYMENT_VOIDED_V1;
    (void)state;
    assert_int_equal(msg_type_from_name("payment.voided.v2", &t), ERR_INVALID);
    assert_int_equal(msg_type_from_name("PAYMENT.VOIDED.V1", &t), ERR_INVALID);
    assert_int_equal(msg_type_from_name("", &t), ERR_INVALID);
    assert_int_equal(msg_type_from_name(NULL, &t), ERR_INVALID);
    assert_int_equal(t, MSG_PAYMENT_VOIDED_V1);
}

/* ---- the helpers ------------------------------------------------------------------------ */

/* The codec has no uuid rule of its own: a uuid field holds exactly what uuid_valid accepts
 * (uuid.h, tested in test_uuid.c), the lower-case canonical form. */
static void test_uuid_fields_accept_exactly_what_uuid_valid_accepts(void **state)
{
    (void)state;
    const char *cases[] = {
        ORDER,
        "00000000-0000-0000-0000-000000000000",
        "0190A3C2-7B1E-7C4D-9F2A-3B5C6D7E8F90",
        "0190a3c27b1e7c4d9f2a3b5c6d7e8f90",
        "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f9",
        "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f900",
        "0190a3c2-7b1e-7c4d-9f2a_3b5c6d7e8f90",
        "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f9g",
        "",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *p = json_pack("{s:s}", "order_id", cases[i]);
        assert_non_null(p);
        err_t e;
        err_clear(&e);
        int rc = msg_validate(MSG_PAYMENT_VOIDED_V1, p, &e);
        if ((rc == 0) != (uuid_valid(cases[i]) == 1))
            fail_msg("\"%s\": codec says %s, uuid_valid says %d", cases[i], err_name(rc),
                     uuid_valid(cases[i]));
        if (rc != 0)
            assert_string_equal(e.msg, "$.order_id: expected uuid");
        json_decref(p);
    }
    assert_true(uuid_valid(ORDER));
    assert_false(uuid_valid(NULL));
}

static void test_datetime_helper_accepts_only_utc_calendar_times(void **state)
{
    (void)state;
    assert_true(msg_is_datetime("2026-11-23T05:30:12Z"));
    assert_true(msg_is_datetime("2026-11-23T05:30:12.345Z"));
    assert_true(msg_is_datetime("2026-11-23T05:30:12.123456789Z"));
    assert_true(msg_is_datetime("2000-02-29T00:00:00Z"));
    assert_true(msg_is_datetime("2026-12-31T23:59:59Z"));
    assert_false(msg_is_datetime("1900-02-29T00:00:00Z"));
    assert_false(msg_is_datetime("2026-04-31T00:00:00Z"));
    assert_false(msg_is_datetime("2026-13-01T00:00:00Z"));
    assert_false(msg_is_datetime("2026-00-01T00:00:00Z"));
    assert_false(msg_is_datetime("2026-11-00T00:00:00Z"));
    assert_false(msg_is_datetime("2026-11-23T24:00:00Z"));
    assert_false(msg_is_datetime("2026-11-23T23:60:00Z"));
    assert_false(msg_is_datetime("2026-12-31T23:59:60Z"));
    assert_false(msg_is_datetime("2026-11-23T05:30:12.Z"));
    assert_false(msg_is_datetime("2026-11-23T05:30:12.1234567890Z"));
    assert_false(msg_is_datetime("2026-11-23T05:30:12z"));
    assert_false(msg_is_datetime("2026-11-23t05:30:12Z"));
    assert_false(msg_is_datetime("2026-11-23T05:30:12+00:00"));
    assert_false(msg_is_datetime("2026-11-23T05:30:12"));
    assert_false(msg_is_datetime("2026-11-23T05:30:12Z "));
    assert_false(msg_is_datetime("2026-11-23"));
    assert_false(msg_is_datetime("2026-1-23T05:30:12Z"));
    assert_false(msg_is_datetime(""));
    assert_false(msg_is_datetime(NULL));
}

/* ---- decode ----------------------------------------------------------------------------- */

/* A valid payment.voided.v1 body of exactly len bytes, padded with spaces. */
static char *voided_body_of(size_t len)
{
    const char *json = "{\"order_id\":\"" ORDER "\"}";
    char *body = malloc(len + 1);
    assert_non_null(body);
    assert_true(len >= strlen(json));
    memset(body, ' ', len);
    memcpy(body, json, strlen(json));
    body[len] = '\0';
    return body;
}

static void test_decode_accepts_a_body_of_exactly_the_size_limit(void **state)
{
    char *body = voided_body_of(MSG_MAX_BODY);
    json_t *out = NULL;
    err_t e;
    (void)state;
    err_clear(&e);
    assert_int_equal(msg_decode(MSG_PAYMENT_VOIDED_V1, body, MSG_MAX_BODY, &out, &e), 0);
    assert_string_equal(json_string_value(json_object_get(out, "order_id")), ORDER);
    json_decref(out);
    free(body);
}

static void test_decode_rejects_a_body_one_byte_over_the_size_limit(void **state)
{
    char *body = voided_body_of(MSG_MAX_BODY + 1);
    json_t *out = NULL;
    err_t e;
    (void)state;
    err_clear(&e);
    assert_int_equal(msg_decode(MSG_PAYMENT_VOIDED_V1, body, MSG_MAX_BODY + 1, &out, &e),
                     ERR_INVALID);
    assert_non_null(strstr(e.msg, "body too large"));
    assert_null(out);
    free(body);
}

static void test_decode_reads_only_len_bytes_of_an_unterminated_body(void **state)
{
    const char body[] = "{\"order_id\":\"" ORDER "\"}garbage";
    json_t *out = NULL;
    (void)state;
    assert_int_equal(msg_decode(MSG_INVENTORY_RELEASE_V1, body, strlen(body) - 7, &out, NULL), 0);
    json_decref(out);
}

static void test_decode_refuses_an_unknown_type_and_a_missing_body(void **state)
{
    json_t *out = NULL;
    err_t e;
    (void)state;
    err_clear(&e);
    assert_int_equal(msg_decode(MSG_NONE, "{}", 2, &out, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "unknown message type"));
    assert_int_equal(msg_decode(MSG__COUNT, "{}", 2, &out, NULL), ERR_INVALID);
    assert_int_equal(msg_decode(MSG_PAYMENT_VOIDED_V1, NULL, 0, &out, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "malformed JSON"));
    assert_int_equal(msg_decode(MSG_PAYMENT_VOIDED_V1, NULL, 5, &out, &e), ERR_INVALID);
    assert_null(out);
}

static void test_decode_works_without_an_error_struct(void **state)
{
    json_t *out = NULL;
    (void)state;
    assert_int_equal(msg_decode(MSG_PAYMENT_VOIDED_V1, "{", 1, &out, NULL), ERR_INVALID);
    assert_int_equal(msg_decode(MSG_PAYMENT_VOIDED_V1, "{}", 2, &out, NULL), ERR_INVALID);
    assert_null(out);
}

static int is_printable_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s < 0x20 || *s > 0x7e)
            return 0;
    return 1;
}

static void test_decode_errors_quote_the_input_as_printable_ascii(void **state)
{
    const char *bodies[] = {
        "{\"order_id\": \"\xff\xfe\"}",
        "{\"order_id\": \"abc\x01\"}",
        "{\"order_id\": 1, \"x\": \xc3\xa9\xc3\xa9}",
        "{\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\":"
        " nope}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        json_t *out = NULL;
        err_t e;
        err_clear(&e);
        assert_int_equal(msg_decode(MSG_PAYMENT_VOIDED_V1, bodies[i], strlen(bodies[i]), &out, &e),
                         ERR_INVALID);
        assert_non_null(strstr(e.msg, "malformed JSON"));
        if (!is_printable_ascii(e.msg))
            fail_msg("body %zu: error message is not printable ASCII", i);
    }
}

/* ---- validate --------------------------------------------------------------------------- */

static void test_validate_reports_the_first_violation_in_table_order(void **state)
{
    json_t *p = json_pack("{s:i, s:s, s:s}", "price_cents", -5, "name", "", "pet_id", "x");
    err_t e;
    (void)state;
    err_clear(&e);
    assert_int_equal(msg_validate(MSG_INVENTORY_LIST_PET_V1, p, &e), ERR_INVALID);
    assert_string_equal(e.msg, "$.pet_id: expected uuid");
    assert_int_equal(e.code, ERR_INVALID);
    json_decref(p);
}

static void test_validate_refuses_a_string_with_an_embedded_nul(void **state)
{
    json_t *p = json_pack("{s:s, s:s%, s:s, s:i}", "pet_id", PET, "name", "Rex\0Max", (size_t)7,
                          "species", "dog", "price_cents", 100);
    err_t e;
    (void)state;
    err_clear(&e);
    assert_non_null(p);
    assert_int_equal(msg_validate(MSG_INVENTORY_LIST_PET_V1, p, &e), ERR_INVALID);
    assert_string_equal(e.msg, "$.name: expected string");
    json_decref(p);
}

static void test_validate_refuses_a_payload_that_is_not_an_object(void **state)
{
    json_t *a = json_array();
    err_t e;
    (void)state;
    err_clear(&e);
    assert_int_equal(msg_validate(MSG_PAYMENT_VOIDED_V1, a, &e), ERR_INVALID);
    assert_string_equal(e.msg, "$: expected object");
    assert_int_equal(msg_validate(MSG_PAYMENT_VOIDED_V1, NULL, &e), ERR_INVALID);
    json_decref(a);
}

/* ---- encode ----------------------------------------------------------------------------- */

static void test_encode_is_compact_with_sorted_keys(void **state)
{
    json_t *p = json_object();
    char *body = NULL;
    size_t len = 0;
    (void)state;
    /* Inserted out of order on purpose. */
    assert_int_equal(json_object_set_new(p, "reason", json_string("EXPIRED")), 0);
    assert_int_equal(json_object_set_new(p, "order_id", json_string(ORDER)), 0);
    assert_int_equal(json_object_set_new(p, "extra", json_string("caf\xc3\xa9")), 0);
    assert_int_equal(msg_encode(MSG_PAYMENT_DECLINED_V1, p, &body, &len, NULL), 0);
    assert_string_equal(body, "{\"extra\":\"caf\xc3\xa9\",\"order_id\":\"" ORDER
                              "\",\"reason\":\"EXPIRED\"}");
    assert_int_equal(len, strlen(body));
    free(body);
    json_decref(p);
}

static void test_encode_accepts_a_null_length_pointer(void **state)
{
    json_t *p = valid_payload(MSG_PAYMENT_VOIDED_V1, "{\"order_id\":\"" ORDER "\"}");
    char *body = NULL;
    (void)state;
    assert_int_equal(msg_encode(MSG_PAYMENT_VOIDED_V1, p, &body, NULL, NULL), 0);
    assert_string_equal(body, "{\"order_id\":\"" ORDER "\"}");
    free(body);
    json_decref(p);
}

static void test_encode_refuses_an_invalid_payload_and_leaves_out_untouched(void **state)
{
    json_t *p = json_pack("{s:s, s:i}", "order_id", ORDER, "amount_cents", 0);
    char sentinel[] = "untouched";
    char *body = sentinel;
    size_t len = 42;
    err_t e;
    (void)state;
    err_clear(&e);
    assert_int_equal(msg_encode(MSG_PAYMENT_REFUNDED_V1, p, &body, &len, &e), ERR_INVALID);
    assert_string_equal(e.msg, "$.amount_cents: expected integer between 1 and 100000000");
    assert_ptr_equal(body, sentinel);
    assert_int_equal(len, 42);
    assert_int_equal(msg_encode(MSG_NONE, p, &body, &len, &e), ERR_INVALID);
    assert_ptr_equal(body, sentinel);
    json_decref(p);
}

static void test_encode_refuses_a_body_a_consumer_would_refuse_as_too_large(void **state)
{
    json_t *p = valid_payload(MSG_PAYMENT_VOIDED_V1, "{\"order_id\":\"" ORDER "\"}");
    char *padding = malloc(MSG_MAX_BODY + 1);
    char *body = NULL;
    err_t e;
    (void)state;
    err_clear(&e);
    assert_non_null(padding);
    memset(padding, 'x', MSG_MAX_BODY);
    padding[MSG_MAX_BODY] = '\0';
    assert_int_equal(json_object_set_new(p, "padding", json_string(padding)), 0);
    assert_int_equal(msg_encode(MSG_PAYMENT_VOIDED_V1, p, &body, NULL, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "body too large"));
    assert_null(body);
    free(padding);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_valid_case_decodes_and_every_type_has_one),
        cmocka_unit_test(test_every_valid_case_survives_an_encode_decode_round_trip),
        cmocka_unit_test(test_every_invalid_case_is_rejected_with_its_error),
        cmocka_unit_test(test_every_schema_restates_its_field_table),
        cmocka_unit_test(test_every_schema_file_names_a_known_type),
        cmocka_unit_test(test_every_type_follows_the_naming_and_routing_rules),
        cmocka_unit_test(test_type_info_is_null_for_none_and_out_of_range_values),
        cmocka_unit_test(test_type_lookup_refuses_unknown_and_null_names),
        cmocka_unit_test(test_uuid_fields_accept_exactly_what_uuid_valid_accepts),
        cmocka_unit_test(test_datetime_helper_accepts_only_utc_calendar_times),
        cmocka_unit_test(test_decode_accepts_a_body_of_exactly_the_size_limit),
        cmocka_unit_test(test_decode_rejects_a_body_one_byte_over_the_size_limit),
        cmocka_unit_test(test_decode_reads_only_len_bytes_of_an_unterminated_body),
        cmocka_unit_test(test_decode_refuses_an_unknown_type_and_a_missing_body),
        cmocka_unit_test(test_decode_works_without_an_error_struct),
        cmocka_unit_test(test_decode_errors_quote_the_input_as_printable_ascii),
        cmocka_unit_test(test_validate_reports_the_first_violation_in_table_order),
        cmocka_unit_test(test_validate_refuses_a_string_with_an_embedded_nul),
        cmocka_unit_test(test_validate_refuses_a_payload_that_is_not_an_object),
        cmocka_unit_test(test_encode_is_compact_with_sorted_keys),
        cmocka_unit_test(test_encode_accepts_a_null_length_pointer),
        cmocka_unit_test(test_encode_refuses_an_invalid_payload_and_leaves_out_untouched),
        cmocka_unit_test(test_encode_refuses_a_body_a_consumer_would_refuse_as_too_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
