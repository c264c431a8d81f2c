/* Unit tests of the growable byte buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void test_appends_accumulate_and_stay_nul_terminated(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(buf_puts(&b, "petstore"), 0);
    assert_int_equal(buf_append(&b, "-saga!", 5), 0);
    assert_int_equal(buf_printf(&b, " %d %s", 42, "pets"), 0);
    assert_string_equal(b.data, "petstore-saga 42 pets");
    assert_int_equal(b.len, strlen("petstore-saga 42 pets"));
    assert_true(b.cap > b.len);
    buf_free(&b);
}

static void test_an_empty_append_still_gives_a_string(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(buf_append(&b, NULL, 0), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_the_buffer_grows_across_many_appends_without_losing_bytes(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    for (int i = 0; i < 10000; i++)
        assert_int_equal(buf_printf(&b, "%04d,", i % 10000), 0);
    assert_int_equal(b.len, 50000);
    assert_memory_equal(b.data, "0000,0001,", 10);
    assert_memory_equal(b.data + b.len - 5, "9999,", 5);
    assert_int_equal(b.data[b.len], '\0');
    buf_free(&b);
}

static void test_binary_data_with_nul_bytes_is_kept_whole(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    static const char bytes[] = {'a', '\0', 'b', '\0'};
    assert_int_equal(buf_append(&b, bytes, sizeof(bytes)), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, bytes, 4);
    buf_free(&b);
}

static void test_reset_empties_but_keeps_the_memory(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(buf_puts(&b, "something long enough"), 0);
    char *before = b.data;
    size_t cap = b.cap;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_ptr_equal(b.data, before);
    assert_int_equal(b.cap, cap);
    assert_int_equal(buf_puts(&b, "again"), 0);
    assert_string_equal(b.data, "again");
    buf_free(&b);
}

static void test_free_leaves_a_reusable_empty_buffer_and_accepts_null(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(buf_puts(&b, "x"), 0);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(buf_puts(&b, "y"), 0);
    assert_string_equal(b.data, "y");
    buf_free(&b);
    buf_free(&b);
    buf_free(NULL);
    buf_t empty = BUF_INIT;
    buf_reset(&empty);
    assert_null(empty.data);
}

static void test_an_impossible_size_is_refused_and_the_buffer_is_unchanged(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(buf_puts(&b, "keep"), 0);
    assert_int_equal(buf_append(&b, "", SIZE_MAX), ERR_NOMEM);
    assert_int_equal(buf_append(&b, "", SIZE_MAX - 2), ERR_NOMEM);
    assert_string_equal(b.data, "keep");
    assert_int_equal(b.len, 4);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appends_accumulate_and_stay_nul_terminated),
        cmocka_unit_test(test_an_empty_append_still_gives_a_string),
        cmocka_unit_test(test_the_buffer_grows_across_many_appends_without_losing_bytes),
        cmocka_unit_test(test_binary_data_with_nul_bytes_is_kept_whole),
        cmocka_unit_test(test_reset_empties_but_keeps_the_memory),
        cmocka_unit_test(test_free_leaves_a_reusable_empty_buffer_and_accepts_null),
        cmocka_unit_test(test_an_impossible_size_is_refused_and_the_buffer_is_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
