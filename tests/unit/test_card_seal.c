/* Unit tests of the sealed-card format of the message contract (contracts/seal/card_seal.h):
 * standard base64 of a libsodium sealed box of the card's ASCII digits, opened here with
 * libsodium directly, as any holder of the secret key could; and the numbers it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "card_seal.h"

static unsigned char pk[crypto_box_PUBLICKEYBYTES];
static unsigned char sk[crypto_box_SECRETKEYBYTES];

static int make_keys(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    crypto_box_keypair(pk, sk);
    return 0;
}

/* Opens sealed (base64) into out; the length of the opened text, or -1. */
static long open_sealed(const char *sealed, char *out, size_t size)
{
    unsigned char box[CARD_NUMBER_MAX + crypto_box_SEALBYTES];
    size_t len = 0;
    if (sodium_base642bin(box, sizeof(box), sealed, strlen(sealed), NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len < crypto_box_SEALBYTES || len - crypto_box_SEALBYTES >= size)
        return -1;
    if (crypto_box_seal_open((unsigned char *)out, box, len, pk, sk) != 0)
        return -1;
    out[len - crypto_box_SEALBYTES] = '\0';
    return (long)(len - crypto_box_SEALBYTES);
}

static void test_the_sealed_text_is_base64_of_a_box_holding_just_the_digits(void **state)
{
    (void)state;
    const char *cases[] = {"123456789015", "4111111111111111", "1234567890123456785"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char sealed[CARD_SEALED_B64_SIZE];
        char opened[CARD_NUMBER_MAX + 1];
        assert_int_equal(card_seal(pk, cases[i], sealed), 0);
        assert_null(strstr(sealed, cases[i]));
        assert_int_equal(strspn(sealed, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789+/="),
                         strlen(sealed));
        assert_int_equal(open_sealed(sealed, opened, sizeof(opened)), (long)strlen(cases[i]));
        assert_string_equal(opened, cases[i]);
    }
}

static void test_the_longest_number_fits_the_buffer_size(void **state)
{
    (void)state;
    char sealed[CARD_SEALED_B64_SIZE];
    assert_int_equal(card_seal(pk, "1234567890123456785", sealed), 0);
    assert_int_equal(strlen(sealed) + 1, CARD_SEALED_B64_SIZE);
}

static void test_sealing_twice_gives_different_texts(void **state)
{
    (void)state;
    char a[CARD_SEALED_B64_SIZE], b[CARD_SEALED_B64_SIZE];
    assert_int_equal(card_seal(pk, "4111111111111111", a), 0);
    assert_int_equal(card_seal(pk, "4111111111111111", b), 0);
    assert_string_not_equal(a, b);
}

static void test_seal_refuses_what_is_not_12_to_19_digits(void **state)
{
    (void)state;
    char sealed[CARD_SEALED_B64_SIZE];
    assert_int_equal(card_seal(pk, "79927398713", sealed), -1);
    assert_string_equal(sealed, "");
    assert_int_equal(card_seal(pk, "12345678901234567894", sealed), -1);
    assert_string_equal(sealed, "");
    assert_int_equal(card_seal(pk, "4111 1111 1111 1111", sealed), -1);
    assert_int_equal(card_seal(pk, "4111111111111111x", sealed), -1);
    assert_int_equal(card_seal(pk, "", sealed), -1);
    assert_int_equal(card_seal(pk, NULL, sealed), -1);
    assert_int_equal(card_seal(NULL, "4111111111111111", sealed), -1);
    assert_string_equal(sealed, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_sealed_text_is_base64_of_a_box_holding_just_the_digits),
        cmocka_unit_test(test_the_longest_number_fits_the_buffer_size),
        cmocka_unit_test(test_sealing_twice_gives_different_texts),
        cmocka_unit_test(test_seal_refuses_what_is_not_12_to_19_digits),
    };
    return cmocka_run_group_tests(tests, make_keys, NULL);
}
