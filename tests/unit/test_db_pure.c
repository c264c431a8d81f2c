/* Unit tests of the database layer's pure parts: SQLSTATE classes and outbox partitions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "db.h"
#include "db_array.h"
#include "outbox.h"

static void test_sqlstates_map_to_what_the_caller_should_do(void **state)
{
    (void)state;
    assert_int_equal(db_sqlstate_to_err("40001"), ERR_RETRY); /* serialization failure */
    assert_int_equal(db_sqlstate_to_err("40P01"), ERR_RETRY); /* deadlock */
    assert_int_equal(db_sqlstate_to_err("08006"), ERR_RETRY); /* connection failure */
    assert_int_equal(db_sqlstate_to_err("57P01"), ERR_RETRY); /* admin shutdown */
    assert_int_equal(db_sqlstate_to_err("55P03"), ERR_RETRY); /* lock not available */
    assert_int_equal(db_sqlstate_to_err(NULL), ERR_RETRY);    /* no result: connection lost */
    assert_int_equal(db_sqlstate_to_err("23505"), ERR_DUPLICATE);
    assert_int_equal(db_sqlstate_to_err("23514"), ERR_CONFLICT); /* check violation */
    assert_int_equal(db_sqlstate_to_err("23503"), ERR_CONFLICT); /* foreign key */
    assert_int_equal(db_sqlstate_to_err("22P02"), ERR_INVALID);  /* bad text representation */
    assert_int_equal(db_sqlstate_to_err("42P01"), ERR_INTERNAL); /* undefined table */
}

static void test_one_key_always_lands_in_the_same_partition(void **state)
{
    (void)state;
    /* FNV-1a is part of the row contract: these values must never change. */
    assert_int_equal(outbox_partition(""), (int)(2166136261u % OUTBOX_PARTITIONS));
    int p = outbox_partition("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    for (int i = 0; i < 10; i++)
        assert_int_equal(outbox_partition("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), p);
    int seen[OUTBOX_PARTITIONS] = {0};
    for (int i = 0; i < 1000; i++) {
        char key[40];
        snprintf(key, sizeof(key), "order-%d", i);
        int q = outbox_partition(key);
        assert_true(q >= 0 && q < OUTBOX_PARTITIONS);
        seen[q]++;
    }
    for (int q = 0; q < OUTBOX_PARTITIONS; q++)
        assert_true(seen[q] > 20); /* spread over every partition */
}

static void test_arrays_round_trip_through_their_text_form(void **state)
{
    (void)state;
    json_t *ids = db_array_to_json("{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b,abc}");
    assert_int_equal(json_array_size(ids), 2);
    assert_string_equal(json_string_value(json_array_get(ids, 1)), "abc");
    char *text = db_array_from_json(ids);
    assert_string_equal(text, "{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b,abc}");
    free(text);
    json_decref(ids);
    json_t *empty = db_array_to_json("{}");
    assert_int_equal(json_array_size(empty), 0);
    text = db_array_from_json(empty);
    assert_string_equal(text, "{}");
    free(text);
    json_decref(empty);
    json_t *none = db_array_to_json(NULL);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlstates_map_to_what_the_caller_should_do),
        cmocka_unit_test(test_one_key_always_lands_in_the_same_partition),
        cmocka_unit_test(test_arrays_round_trip_through_their_text_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
