/* Unit tests of the payment service's card module: syntax and Luhn checks, last four digits, the
 * keyed hash, opening sealed boxes and keys. Sealing itself is the contracts' card_seal
 * (tests/unit/test_card_seal.c); here it only makes boxes to open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "card.h"
#include "card_seal.h"

static card_keys_t keys;

static int setup(void **state)
{
    (void)state;
    if (card_init() != 0 || card_keys_generate(&keys) != 0)
        return -1;
    return 0;
}

static void test_well_known_card_numbers_pass_the_luhn_check(void **state)
{
    (void)state;
    const char *valid[] = {"4111111111111111", "4242424242424242",   "5555555555554444",
                           "378282246310005",  "6011111111111117",   "79927398713",
                           "123456789015",     "1234567890123456785"};
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        assert_true(card_luhn_ok(valid[i]));
}

static void test_a_changed_digit_fails_the_luhn_check(void **state)
{
    (void)state;
    assert_false(card_luhn_ok("4111111111111112"));
    assert_false(card_luhn_ok("4242424242424241"));
    assert_false(card_luhn_ok("79927398710"));
    /* Swapping two adjacent digits is caught too (except 0<->9). */
    assert_false(card_luhn_ok("2442424242424242"));
    assert_int_equal(card_number_check("4111111111111112"), ERR_INVALID);
}

static void test_luhn_rejects_empty_and_non_digit_text(void **state)
{
    (void)state;
    assert_false(card_luhn_ok(""));
    assert_false(card_luhn_ok(NULL));
    assert_false(card_luhn_ok("4111-1111-1111-1111"));
    assert_false(card_luhn_ok("0x00"));
}

static void test_numbers_of_12_to_19_digits_are_syntactically_valid(void **state)
{
    (void)state;
    assert_true(card_syntax_ok("123456789015"));
    assert_true(card_syntax_ok("1234567890123456785"));
    assert_int_equal(card_number_check("123456789015"), 0);
    assert_int_equal(card_number_check("1234567890123456785"), 0);
    assert_int_equal(card_number_check("4111111111111111"), 0);
}

static void test_numbers_shorter_than_12_or_longer_than_19_digits_are_rejected(void **state)
{
    (void)state;
    /* Both pass Luhn: only the length is wrong. */
    assert_false(card_syntax_ok("79927398713"));
    assert_false(card_syntax_ok("12345678901234567894"));
    assert_int_equal(card_number_check("79927398713"), ERR_INVALID);
    assert_int_equal(card_number_check("12345678901234567894"), ERR_INVALID);
    assert_false(card_syntax_ok(""));
    assert_false(card_syntax_ok(NULL));
    assert_false(card_syntax_ok("123456789012345678901234567890"));
}

static void test_numbers_with_anything_but_digits_are_rejected(void **state)
{
    (void)state;
    assert_false(card_syntax_ok("4111 1111 1111 1111"));
    assert_false(card_syntax_ok("4111-1111-1111-1111"));
    assert_false(card_syntax_ok("411111111111111a"));
    assert_false(card_syntax_ok(" 4111111111111111"));
    assert_false(card_syntax_ok("4111111111111111\n"));
    assert_false(
        card_syntax_ok("\xd9\xa4\xd9\xa1\xd9\xa1\xd9\xa1\xd9\xa1\xd9\xa1")); /* Arabic-Indic */
    assert_int_equal(card_number_check("4111 1111 1111 1111"), ERR_INVALID);
}

static void test_last4_is_the_last_four_digits(void **state)
{
    (void)state;
    char last4[5];
    card_last4("4111111111111234", last4);
    assert_string_equal(last4, "1234");
    card_last4("123", last4);
    assert_string_equal(last4, "");
}

static void test_a_sealed_number_opens_with_the_matching_key(void **state)
{
    (void)state;
    char sealed[CARD_SEALED_B64_SIZE];
    char number[CARD_NUMBER_SIZE];
    const char *cases[] = {"4111111111111111", "123456789015", "1234567890123456785"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(card_seal(keys.public_key, cases[i], sealed), 0);
        assert_null(strstr(sealed, cases[i]));
        assert_int_equal(card_open(&keys, sealed, number), 0);
        assert_string_equal(number, cases[i]);
    }
}

static void test_a_box_sealed_for_another_key_does_not_open(void **state)
{
    (void)state;
    card_keys_t other;
    char sealed[CARD_SEALED_B64_SIZE];
    char number[CARD_NUMBER_SIZE];
    assert_int_equal(card_keys_generate(&other), 0);
    assert_int_equal(card_seal(other.public_key, "4111111111111111", sealed), 0);
    assert_int_equal(card_open(&keys, sealed, number), ERR_INVALID);
    assert_string_equal(number, "");
    assert_int_equal(card_open(&other, sealed, number), 0);
}

static void test_a_tampered_or_malformed_box_does_not_open(void **state)
{
    (void)state;
    char sealed[CARD_SEALED_B64_SIZE];
    char number[CARD_NUMBER_SIZE];
    assert_int_equal(card_seal(keys.public_key, "4111111111111111", sealed), 0);
    /* Flip one base64 character in the middle (stays valid base64, breaks the MAC). */
    sealed[20] = sealed[20] == 'A' ? 'B' : 'A';
    assert_int_equal(card_open(&keys, sealed, number), ERR_INVALID);
    assert_int_equal(card_open(&keys, "not base64!", number), ERR_INVALID);
    assert_int_equal(card_open(&keys, "", number), ERR_INVALID);
    assert_int_equal(card_open(&keys, NULL, number), ERR_INVALID);
    assert_int_equal(card_open(&keys, "QUJD", number), ERR_INVALID); /* too short for a box */
    char big[2 * CARD_SEALED_B64_SIZE];
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(card_open(&keys, big, number), ERR_INVALID);
}

static void test_an_opened_box_is_returned_even_if_it_is_not_a_card_number(void **state)
{
    (void)state;
    /* The front door checks syntax only: a Luhn failure must surface as CARD_INVALID after
     * opening, not as a box that does not open. */
    char sealed[CARD_SEALED_B64_SIZE];
    char number[CARD_NUMBER_SIZE];
    assert_int_equal(card_seal(keys.public_key, "4111111111111112", sealed), 0);
    assert_int_equal(card_open(&keys, sealed, number), 0);
    assert_int_equal(card_number_check(number), ERR_INVALID);
}

static void test_the_card_hash_is_stable_and_depends_on_number_and_key(void **state)
{
    (void)state;
    unsigned char h1[CARD_HASH_BYTES], h2[CARD_HASH_BYTES], h3[CARD_HASH_BYTES],
        h4[CARD_HASH_BYTES];
    card_keys_t other = keys;
    crypto_generichash_keygen(other.hash_key);
    card_hash(&keys, "4111111111111111", h1);
    card_hash(&keys, "4111111111111111", h2);
    card_hash(&keys, "4242424242424242", h3);
    card_hash(&other, "4111111111111111", h4);
    assert_memory_equal(h1, h2, CARD_HASH_BYTES);
    assert_memory_not_equal(h1, h3, CARD_HASH_BYTES);
    assert_memory_not_equal(h1, h4, CARD_HASH_BYTES);
}

static void test_the_card_hash_matches_keyed_blake2b(void **state)
{
    (void)state;
    /* Pin the construction: a change would orphan every stored card. */
    card_keys_t fixed;
    memset(&fixed, 0, sizeof(fixed));
    for (size_t i = 0; i < CARD_HASH_KEY_BYTES; i++)
        fixed.hash_key[i] = (unsigned char)i;
    unsigned char h[CARD_HASH_BYTES], want[CARD_HASH_BYTES];
    card_hash(&fixed, "4111111111111111", h);
    crypto_generichash(want, sizeof(want), (const unsigned char *)"4111111111111111", 16,
                       fixed.hash_key, CARD_HASH_KEY_BYTES);
    assert_memory_equal(h, want, CARD_HASH_BYTES);
}

/* Extracts the value of `export NAME=value` from text into out. */
static void export_value(const char *text, const char *name, char *out, size_t size)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "export %s=", name);
    const char *p = strstr(text, prefix);
    assert_non_null(p);
    p += strlen(prefix);
    size_t n = strcspn(p, "\n");
    assert_true(n < size);
    memcpy(out, p, n);
    out[n] = '\0';
}

static void test_formatted_keys_decode_back_to_the_same_keys(void **state)
{
    (void)state;
    char text[CARD_KEYS_TEXT_SIZE], sk[128], pk[128], hk[128];
    card_keys_t back;
    err_t e;
    err_clear(&e);
    assert_int_equal(card_keys_format(&keys, text, sizeof(text)), 0);
    export_value(text, "PAYMENT_SECRET_KEY", sk, sizeof(sk));
    export_value(text, "PAYMENT_PUBLIC_KEY", pk, sizeof(pk));
    export_value(text, "CARD_HASH_KEY", hk, sizeof(hk));
    assert_int_equal(card_keys_decode(sk, pk, hk, &back, &e), 0);
    assert_memory_equal(&back, &keys, sizeof(keys));

    unsigned char pub[crypto_box_PUBLICKEYBYTES];
    assert_int_equal(card_public_key_decode(pk, pub, &e), 0);
    assert_memory_equal(pub, keys.public_key, sizeof(pub));
    assert_int_equal(card_public_key_decode("short", pub, &e), ERR_CONFIG);
}

static void test_key_problems_are_all_reported_without_the_values(void **state)
{
    (void)state;
    char text[CARD_KEYS_TEXT_SIZE], sk[128], pk[128];
    card_keys_t back, other;
    err_t e;
    err_clear(&e);

    assert_int_equal(card_keys_decode(NULL, "", "bm90IGEga2V5", &back, &e), ERR_CONFIG);
    assert_non_null(strstr(e.msg, "PAYMENT_SECRET_KEY is not set"));
    assert_non_null(strstr(e.msg, "PAYMENT_PUBLIC_KEY is not set"));
    assert_non_null(strstr(e.msg, "CARD_HASH_KEY is not base64 of 32 bytes"));

    /* A public key from another pair is refused. */
    assert_int_equal(card_keys_generate(&other), 0);
    assert_int_equal(card_keys_format(&keys, text, sizeof(text)), 0);
    export_value(text, "PAYMENT_SECRET_KEY", sk, sizeof(sk));
    char other_text[CARD_KEYS_TEXT_SIZE], hk[128];
    assert_int_equal(card_keys_format(&other, other_text, sizeof(other_text)), 0);
    export_value(other_text, "PAYMENT_PUBLIC_KEY", pk, sizeof(pk));
    export_value(other_text, "CARD_HASH_KEY", hk, sizeof(hk));
    assert_int_equal(card_keys_decode(sk, pk, hk, &back, &e), ERR_CONFIG);
    assert_non_null(strstr(e.msg, "does not belong"));
    assert_null(strstr(e.msg, sk));
    assert_null(strstr(e.msg, pk));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_known_card_numbers_pass_the_luhn_check),
        cmocka_unit_test(test_a_changed_digit_fails_the_luhn_check),
        cmocka_unit_test(test_luhn_rejects_empty_and_non_digit_text),
        cmocka_unit_test(test_numbers_of_12_to_19_digits_are_syntactically_valid),
        cmocka_unit_test(test_numbers_shorter_than_12_or_longer_than_19_digits_are_rejected),
        cmocka_unit_test(test_numbers_with_anything_but_digits_are_rejected),
        cmocka_unit_test(test_last4_is_the_last_four_digits),
        cmocka_unit_test(test_a_sealed_number_opens_with_the_matching_key),
        cmocka_unit_test(test_a_box_sealed_for_another_key_does_not_open),
        cmocka_unit_test(test_a_tampered_or_malformed_box_does_not_open),
        cmocka_unit_test(test_an_opened_box_is_returned_even_if_it_is_not_a_card_number),
        cmocka_unit_test(test_the_card_hash_is_stable_and_depends_on_number_and_key),
        cmocka_unit_test(test_the_card_hash_matches_keyed_blake2b),
        cmocka_unit_test(test_formatted_keys_decode_back_to_the_same_keys),
        cmocka_unit_test(test_key_problems_are_all_reported_without_the_values),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
