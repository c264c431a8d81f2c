/* Unit tests of the JSON <-> AMQP field table conversion (mq__table_from_json,
 * mq__table_to_json), through rabbitmq-c's own wire encoder and decoder: no broker needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mq_internal.h"

static amqp_field_value_t utf8(const char *s)
{
    amqp_field_value_t v = {.kind = AMQP_FIELD_KIND_UTF8};
    v.value.bytes = amqp_cstring_bytes(s);
    return v;
}

static amqp_table_entry_t entry(const char *key, amqp_field_value_t v)
{
    amqp_table_entry_t en = {.key = amqp_cstring_bytes(key), .value = v};
    return en;
}

static json_t *to_json(const amqp_table_t *t)
{
    json_t *out = NULL;
    err_t e;
    err_clear(&e);
    assert_int_equal(mq__table_to_json(t, &out, &e), 0);
    assert_true(json_is_object(out));
    return out;
}

static void assert_json(json_t *got, const char *expected_text)
{
    json_error_t je;
    json_t *want = json_loads(expected_text, JSON_DECODE_ANY, &je);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *s = json_dumps(got, JSON_SORT_KEYS);
        print_error("got %s\nwant %s\n", s, expected_text);
        free(s);
        fail();
    }
    json_decref(want);
}

static void test_headers_map_to_the_documented_field_kinds(void **state)
{
    (void)state;
    json_t *h = json_pack("{s:s,s:I,s:f,s:b,s:b,s:n}", "s", "text", "i", (json_int_t)-42, "r", 0.25,
                          "t", 1, "f", 0, "z");
    amqp_pool_t pool;
    init_amqp_pool(&pool, 512);
    amqp_table_t t;
    size_t wire = 0;
    err_t e;
    err_clear(&e);
    assert_int_equal(mq__table_from_json(h, &pool, &t, &wire, &e), 0);
    assert_int_equal(t.num_entries, 6);
    for (int i = 0; i < t.num_entries; i++) {
        const amqp_table_entry_t *en = &t.entries[i];
        char key = ((const char *)en->key.bytes)[0];
        assert_int_equal(en->key.len, 1);
        switch (key) {
        case 's':
            assert_int_equal(en->value.kind, AMQP_FIELD_KIND_UTF8);
            assert_int_equal(en->value.value.bytes.len, 4);
            assert_memory_equal(en->value.value.bytes.bytes, "text", 4);
            break;
        case 'i':
            assert_int_equal(en->value.kind, AMQP_FIELD_KIND_I64);
            assert_int_equal(en->value.value.i64, -42);
            break;
        case 'r':
            assert_int_equal(en->value.kind, AMQP_FIELD_KIND_F64);
            assert_true(en->value.value.f64 == 0.25);
            break;
        case 't':
        case 'f':
            assert_int_equal(en->value.kind, AMQP_FIELD_KIND_BOOLEAN);
            assert_int_equal(en->value.value.boolean, key == 't');
            break;
        case 'z':
            assert_int_equal(en->value.kind, AMQP_FIELD_KIND_VOID);
            break;
        default:
            fail();
        }
    }
    /* The size estimate used against frame_max is exactly what rabbitmq-c encodes. */
    unsigned char buf[1024];
    amqp_bytes_t out = {.len = sizeof(buf), .bytes = buf};
    size_t offset = 0;
    assert_int_equal(amqp_encode_table(out, &t, &offset), AMQP_STATUS_OK);
    assert_int_equal(wire, offset);
    empty_amqp_pool(&pool);
    json_decref(h);
}

static void test_headers_survive_the_wire_round_trip(void **state)
{
    (void)state;
    json_t *h =
        json_pack("{s:s,s:s,s:s#,s:I,s:I,s:f,s:b,s:n,s:s}", "cloudEvents_id",
                  "9b2f6f2e-3f2a-4c38-9a5e-1f0b8f3f0a01", "unicode", "caf\xc3\xa9 \xe2\x9c\x93",
                  "nul", "a\0b", (int)3, "min", (json_int_t)INT64_MIN, "max", (json_int_t)INT64_MAX,
                  "pi", 3.141592653589793, "yes", 1, "nothing", "empty", "");
    assert_non_null(h);
    amqp_pool_t pool;
    init_amqp_pool(&pool, 512);
    amqp_table_t t;
    err_t e;
    err_clear(&e);
    assert_int_equal(mq__table_from_json(h, &pool, &t, NULL, &e), 0);

    unsigned char buf[2048];
    amqp_bytes_t encoded = {.len = sizeof(buf), .bytes = buf};
    size_t offset = 0;
    assert_int_equal(amqp_encode_table(encoded, &t, &offset), AMQP_STATUS_OK);
    encoded.len = offset;
    amqp_table_t decoded;
    offset = 0;
    assert_int_equal(amqp_decode_table(encoded, &pool, &decoded, &offset), AMQP_STATUS_OK);

    json_t *back = to_json(&decoded);
    assert_true(json_equal(back, h));
    assert_int_equal(json_string_length(json_object_get(back, "nul")), 3);
    json_decref(back);
    empty_amqp_pool(&pool);
    json_decref(h);
}

static void test_nested_and_non_object_headers_are_invalid(void **state)
{
    (void)state;
    amqp_pool_t pool;
    init_amqp_pool(&pool, 512);
    amqp_table_t t;
    err_t e;
    err_clear(&e);

    json_t *nested = json_pack("{s:s,s:{s:i}}", "ok", "v", "x-death", "count", 1);
    assert_int_equal(mq__table_from_json(nested, &pool, &t, NULL, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "x-death"));
    json_decref(nested);

    json_t *array = json_pack("{s:[i]}", "list", 1);
    assert_int_equal(mq__table_from_json(array, &pool, &t, NULL, &e), ERR_INVALID);
    json_decref(array);

    json_t *not_object = json_pack("[s]", "a");
    assert_int_equal(mq__table_from_json(not_object, &pool, &t, NULL, &e), ERR_INVALID);
    json_decref(not_object);

    char key[300];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    json_t *long_key = json_object();
    json_object_set_new(long_key, key, json_true());
    assert_int_equal(mq__table_from_json(long_key, &pool, &t, NULL, &e), ERR_INVALID);
    json_decref(long_key);

    size_t wire = 0;
    assert_int_equal(mq__table_from_json(NULL, &pool, &t, &wire, &e), 0);
    assert_int_equal(t.num_entries, 0);
    assert_int_equal(wire, 4);
    empty_amqp_pool(&pool);
}

static void test_every_amqp_field_kind_converts_to_json(void **state)
{
    (void)state;
    amqp_field_value_t v[16];
    memset(v, 0, sizeof(v));
    v[0].kind = AMQP_FIELD_KIND_I8, v[0].value.i8 = -8;
    v[1].kind = AMQP_FIELD_KIND_U8, v[1].value.u8 = 200;
    v[2].kind = AMQP_FIELD_KIND_I16, v[2].value.i16 = -300;
    v[3].kind = AMQP_FIELD_KIND_U16, v[3].value.u16 = 60000;
    v[4].kind = AMQP_FIELD_KIND_I32, v[4].value.i32 = -70000;
    v[5].kind = AMQP_FIELD_KIND_U32, v[5].value.u32 = 4000000000u;
    v[6].kind = AMQP_FIELD_KIND_U64, v[6].value.u64 = 18446744073709551615ull;
    v[7].kind = AMQP_FIELD_KIND_TIMESTAMP, v[7].value.u64 = 1700000000;
    v[8].kind = AMQP_FIELD_KIND_F32, v[8].value.f32 = 0.5f;
    v[9].kind = AMQP_FIELD_KIND_DECIMAL, v[9].value.decimal.decimals = 2;
    v[9].value.decimal.value = 12345;
    v[10].kind = AMQP_FIELD_KIND_BYTES;
    v[10].value.bytes.bytes = "ok\xff\xfe";
    v[10].value.bytes.len = 4;
    v[11].kind = AMQP_FIELD_KIND_VOID;
    v[12].kind = AMQP_FIELD_KIND_F64, v[12].value.f64 = NAN;
    v[13] = utf8("caf\xc3\xa9");
    v[14].kind = AMQP_FIELD_KIND_BOOLEAN, v[14].value.boolean = 1;
    v[15].kind = AMQP_FIELD_KIND_I64, v[15].value.i64 = -5;
    static const char *const keys[16] = {"i8",  "u8",   "i16",  "u16", "i32",   "u32",
                                         "u64", "ts",   "f32",  "dec", "bytes", "void",
                                         "nan", "utf8", "bool", "i64"};
    amqp_table_entry_t entries[16];
    for (int i = 0; i < 16; i++)
        entries[i] = entry(keys[i], v[i]);
    amqp_table_t t = {.num_entries = 16, .entries = entries};
    json_t *j = to_json(&t);
    assert_json(j, "{\"i8\":-8,\"u8\":200,\"i16\":-300,\"u16\":60000,\"i32\":-70000,"
                   "\"u32\":4000000000,\"u64\":18446744073709551615.0,\"ts\":1700000000,"
                   "\"f32\":0.5,\"dec\":123.45,\"bytes\":\"ok??\",\"void\":null,\"nan\":null,"
                   "\"utf8\":\"caf\xc3\xa9\",\"bool\":true,\"i64\":-5}");
    assert_true(json_is_real(json_object_get(j, "u64")));
    json_decref(j);
}

static void test_x_death_arrays_of_tables_convert_recursively(void **state)
{
    (void)state;
    /* What RabbitMQ adds when it dead-letters a message. */
    amqp_field_value_t keys[1] = {utf8("orders")};
    amqp_field_value_t count = {.kind = AMQP_FIELD_KIND_I64};
    count.value.i64 = 2;
    amqp_field_value_t when = {.kind = AMQP_FIELD_KIND_TIMESTAMP};
    when.value.u64 = 1700000001;
    amqp_field_value_t rk = {.kind = AMQP_FIELD_KIND_ARRAY};
    rk.value.array.num_entries = 1;
    rk.value.array.entries = keys;
    amqp_table_entry_t death_entries[] = {
        entry("count", count),
        entry("reason", utf8("rejected")),
        entry("queue", utf8("saga.events")),
        entry("time", when),
        entry("exchange", utf8("petstore.events")),
        entry("routing-keys", rk),
    };
    amqp_field_value_t death = {.kind = AMQP_FIELD_KIND_TABLE};
    death.value.table.num_entries = 6;
    death.value.table.entries = death_entries;
    amqp_field_value_t deaths = {.kind = AMQP_FIELD_KIND_ARRAY};
    deaths.value.array.num_entries = 1;
    deaths.value.array.entries = &death;
    amqp_table_entry_t top[] = {entry("x-death", deaths),
                                entry("x-first-death-reason", utf8("rejected"))};
    amqp_table_t t = {.num_entries = 2, .entries = top};
    json_t *j = to_json(&t);
    assert_json(j, "{\"x-death\":[{\"count\":2,\"reason\":\"rejected\",\"queue\":\"saga.events\","
                   "\"time\":1700000001,\"exchange\":\"petstore.events\","
                   "\"routing-keys\":[\"orders\"]}],\"x-first-death-reason\":\"rejected\"}");
    json_decref(j);
}

static void test_absurdly_deep_tables_are_cut_off_instead_of_exhausting_the_stack(void **state)
{
    (void)state;
    enum { DEPTH = 200 };
    amqp_table_entry_t *e = calloc(DEPTH, sizeof(*e));
    assert_non_null(e);
    for (int i = 0; i < DEPTH; i++) {
        e[i].key = amqp_cstring_bytes("n");
        if (i + 1 < DEPTH) {
            e[i].value.kind = AMQP_FIELD_KIND_TABLE;
            e[i].value.value.table.num_entries = 1;
            e[i].value.value.table.entries = &e[i + 1];
        } else {
            e[i].value = utf8("bottom");
        }
    }
    amqp_table_t t = {.num_entries = 1, .entries = e};
    json_t *j = to_json(&t);
    int depth = 0;
    for (json_t *x = j; json_is_object(x) && json_object_get(x, "n"); x = json_object_get(x, "n"))
        depth++;
    assert_true(depth > 10 && depth < DEPTH);
    json_decref(j);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_map_to_the_documented_field_kinds),
        cmocka_unit_test(test_headers_survive_the_wire_round_trip),
        cmocka_unit_test(test_nested_and_non_object_headers_are_invalid),
        cmocka_unit_test(test_every_amqp_field_kind_converts_to_json),
        cmocka_unit_test(test_x_death_arrays_of_tables_convert_recursively),
        cmocka_unit_test(test_absurdly_deep_tables_are_cut_off_instead_of_exhausting_the_stack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
