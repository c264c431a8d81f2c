/* Unit tests of the one hex encoder: lower-case digits, high nibble first, always terminated,
 * and the same text PostgreSQL's encode(x, 'hex') and libsodium's sodium_bin2hex write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "hex.h"

static void test_bytes_become_lower_case_digits_high_nibble_first(void **state)
{
    (void)state;
    const unsigned char b[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 0x10, 0x09};
    char out[HEX_SIZE(sizeof(b))];
    assert_ptr_equal(hex_encode(b, sizeof(b), out), out);
    assert_string_equal(out, "00017f80abcdefff1009");
}

static void test_every_byte_value_round_trips_through_its_two_digits(void **state)
{
    (void)state;
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char out[HEX_SIZE(sizeof(all))];
    hex_encode(all, sizeof(all), out);
    assert_int_equal(strlen(out), 2 * sizeof(all));
    for (int i = 0; i < 256; i++) {
        char pair[3] = {out[2 * i], out[2 * i + 1], '\0'};
        char want[3];
        snprintf(want, sizeof(want), "%02x", i);
        assert_string_equal(pair, want);
    }
}

static void test_no_bytes_give_the_empty_string(void **state)
{
    (void)state;
    char out[HEX_SIZE(0)] = {'x'};
    hex_encode(NULL, 0, out);
    assert_string_equal(out, "");
}

static void test_only_two_digits_a_byte_and_the_nul_are_written(void **state)
{
    (void)state;
    const unsigned char b[] = {0xde, 0xad};
    char out[8];
    memset(out, '#', sizeof(out));
    hex_encode(b, sizeof(b), out);
    assert_memory_equal(out, "dead\0###", sizeof(out));
}

/* Callers replaced sodium_bin2hex with hex_encode: both must write the same text. */
static void test_the_text_equals_what_libsodium_writes(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    for (size_t len = 0; len <= 64; len++) {
        unsigned char b[64];
        randombytes_buf(b, sizeof(b));
        char ours[HEX_SIZE(64)], theirs[HEX_SIZE(64)];
        hex_encode(b, len, ours);
        sodium_bin2hex(theirs, sizeof(theirs), b, len);
        assert_string_equal(ours, theirs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_become_lower_case_digits_high_nibble_first),
        cmocka_unit_test(test_every_byte_value_round_trips_through_its_two_digits),
        cmocka_unit_test(test_no_bytes_give_the_empty_string),
        cmocka_unit_test(test_only_two_digits_a_byte_and_the_nul_are_written),
        cmocka_unit_test(test_the_text_equals_what_libsodium_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
