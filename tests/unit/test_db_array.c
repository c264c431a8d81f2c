/* Unit tests of PostgreSQL's array text form (db_array.h). Pure: no server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "db_array.h"

static void test_arrays_are_written_with_every_element_quoted(void **state)
{
    (void)state;
    json_t *ids = json_pack("[s,s,n,i]", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "a,\"b\"\\c", 7);
    char *text = db_array_from_json(ids);
    assert_string_equal(
        text, "{\"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\",\"a,\\\"b\\\"\\\\c\",NULL,\"\"}");
    free(text);
    json_decref(ids);
    json_t *empty = json_array();
    text = db_array_from_json(empty);
    assert_string_equal(text, "{}");
    free(text);
    json_decref(empty);
}

static void test_arrays_are_read_bare_quoted_and_null(void **state)
{
    (void)state;
    json_t *got =
        db_array_to_json("{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b,\"a,\\\"b\\\"\\\\c\",NULL,abc}");
    json_t *want =
        json_pack("[s,s,n,s]", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "a,\"b\"\\c", "abc");
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
}

static void test_a_written_array_reads_back_the_same(void **state)
{
    (void)state;
    json_t *in = json_pack("[s,s,s]", "x y", "{}", "");
    char *text = db_array_from_json(in);
    json_t *out = db_array_to_json(text);
    assert_true(json_equal(in, out));
    free(text);
    json_decref(in);
    json_decref(out);
}

static void test_malformed_or_missing_text_reads_as_no_elements_past_the_damage(void **state)
{
    (void)state;
    json_t *none = db_array_to_json(NULL);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    json_t *empty = db_array_to_json("{}");
    assert_int_equal(json_array_size(empty), 0);
    json_decref(empty);
    json_t *cut = db_array_to_json("{a,\"unterminated");
    assert_int_equal(json_array_size(cut), 1);
    json_decref(cut);
    json_t *junk = db_array_to_json("not an array");
    assert_int_equal(json_array_size(junk), 0);
    json_decref(junk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arrays_are_written_with_every_element_quoted),
        cmocka_unit_test(test_arrays_are_read_bare_quoted_and_null),
        cmocka_unit_test(test_a_written_array_reads_back_the_same),
        cmocka_unit_test(test_malformed_or_missing_text_reads_as_no_elements_past_the_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
