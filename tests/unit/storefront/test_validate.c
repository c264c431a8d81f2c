/* Unit tests of the storefront's input checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "storefront.h"

static void test_card_numbers_are_12_to_19_digits(void **state)
{
    (void)state;
    assert_true(sf_card_syntax_ok("411111111111"));
    assert_true(sf_card_syntax_ok("4111111111111111111"));
    assert_false(sf_card_syntax_ok("41111111111"));
    assert_false(sf_card_syntax_ok("41111111111111111111"));
    assert_false(sf_card_syntax_ok("4111 1111 1111 1111"));
    assert_false(sf_card_syntax_ok("4111-1111-1111-1111"));
    assert_false(sf_card_syntax_ok(""));
    assert_false(sf_card_syntax_ok(NULL));
}

static void test_usernames_and_passwords_have_bounds(void **state)
{
    (void)state;
    assert_true(sf_username_ok("alice"));
    assert_true(sf_username_ok("a.b_c-9"));
    assert_false(sf_username_ok("al"));
    assert_false(sf_username_ok("Alice"));
    assert_false(sf_username_ok("alice smith"));
    assert_false(sf_username_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    assert_true(sf_password_ok("12345678"));
    assert_false(sf_password_ok("1234567"));
    assert_false(sf_password_ok(NULL));
}

static void test_pet_ids_are_one_to_twenty_distinct_uuids(void **state)
{
    (void)state;
    char why[128];
    json_t *ok = json_pack("[s,s]", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                           "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c");
    assert_true(sf_pet_ids_ok(ok, why, sizeof(why)));
    json_t *dup = json_pack("[s,s]", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    assert_false(sf_pet_ids_ok(dup, why, sizeof(why)));
    assert_string_equal(why, "item 1 repeats item 0");
    json_t *empty = json_array();
    assert_false(sf_pet_ids_ok(empty, why, sizeof(why)));
    json_t *bad = json_pack("[s]", "not-a-uuid");
    assert_false(sf_pet_ids_ok(bad, why, sizeof(why)));
    json_t *many = json_array();
    for (int i = 0; i < 21; i++)
        json_array_append_new(many, json_string("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
    assert_false(sf_pet_ids_ok(many, why, sizeof(why)));
    json_t *num = json_pack("[i]", 5);
    assert_false(sf_pet_ids_ok(num, why, sizeof(why)));
    json_decref(ok);
    json_decref(dup);
    json_decref(empty);
    json_decref(bad);
    json_decref(many);
    json_decref(num);
}

#define PET_A "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
#define PET_B "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"

static void fingerprint_of(const json_t *pets, const char *card, char out[SF_FINGERPRINT_HEX])
{
    assert_int_equal(sf_order_fingerprint(pets, card, out), 0);
    assert_int_equal(strlen(out), SF_FINGERPRINT_HEX - 1);
}

static void test_the_fingerprint_ignores_the_order_of_the_pets(void **state)
{
    (void)state;
    char ab[SF_FINGERPRINT_HEX], ba[SF_FINGERPRINT_HEX];
    json_t *p_ab = json_pack("[s,s]", PET_A, PET_B), *p_ba = json_pack("[s,s]", PET_B, PET_A);
    fingerprint_of(p_ab, "4111111111111111", ab);
    fingerprint_of(p_ba, "4111111111111111", ba);
    assert_string_equal(ab, ba);
    json_decref(p_ab);
    json_decref(p_ba);
}

static void test_the_fingerprint_changes_with_the_pets_the_card_or_the_cart(void **state)
{
    (void)state;
    char base[SF_FINGERPRINT_HEX], other_pet[SF_FINGERPRINT_HEX], other_last4[SF_FINGERPRINT_HEX],
        longer[SF_FINGERPRINT_HEX], cart[SF_FINGERPRINT_HEX];
    json_t *a = json_pack("[s]", PET_A), *b = json_pack("[s]", PET_B);
    fingerprint_of(a, "4111111111111111", base);
    fingerprint_of(b, "4111111111111111", other_pet);
    fingerprint_of(a, "4111111111111112", other_last4);
    fingerprint_of(a, "41111111111111111", longer);
    fingerprint_of(NULL, "4111111111111111", cart);
    assert_string_not_equal(base, other_pet);
    assert_string_not_equal(base, other_last4);
    assert_string_not_equal(base, longer);
    assert_string_not_equal(base, cart);
    json_decref(a);
    json_decref(b);
}

static void test_the_fingerprint_never_depends_on_the_hidden_digits(void **state)
{
    (void)state;
    /* Only the last four digits and the length go in: the stored hash reveals nothing more. */
    char one[SF_FINGERPRINT_HEX], two[SF_FINGERPRINT_HEX];
    json_t *a = json_pack("[s]", PET_A);
    fingerprint_of(a, "4111111111111111", one);
    fingerprint_of(a, "5500000000001111", two);
    assert_string_equal(one, two);
    json_decref(a);
}

/* The fields named by the problems sf_check_* appended to errors, comma-separated. */
static void problem_fields(const json_t *errors, char *out, size_t n)
{
    size_t i;
    const json_t *p;
    out[0] = '\0';
    json_array_foreach(errors, i, p)
    {
        assert_non_null(json_string_value(json_object_get(p, "message")));
        size_t used = strlen(out);
        snprintf(out + used, n - used, "%s%s", i > 0 ? "," : "",
                 json_string_value(json_object_get(p, "field")));
    }
}

/* Runs check over the JSON text body and returns the fields it complains about. */
static const char *check_body(void (*check)(const json_t *, json_t *), const char *text)
{
    static char fields[128];
    json_t *body = json_loads(text, 0, NULL), *errors = json_array();
    assert_non_null(body);
    check(body, errors);
    problem_fields(errors, fields, sizeof(fields));
    json_decref(errors);
    json_decref(body);
    return fields;
}

static void check_signup(const json_t *body, json_t *errors)
{
    sf_check_credentials(body, 1, errors);
}

static void check_login(const json_t *body, json_t *errors)
{
    sf_check_credentials(body, 0, errors);
}

static void test_a_signup_body_needs_a_valid_username_and_password(void **state)
{
    (void)state;
    assert_string_equal(
        check_body(check_signup, "{\"username\":\"alice\",\"password\":\"12345678\"}"), "");
    assert_string_equal(check_body(check_signup, "{\"username\":\"Al\",\"password\":\"1234\"}"),
                        "username,password");
    assert_string_equal(check_body(check_signup, "{\"username\":5}"), "username,password");
}

static void test_a_login_body_needs_only_two_strings(void **state)
{
    (void)state;
    assert_string_equal(check_body(check_login, "{\"username\":\"Al\",\"password\":\"x\"}"), "");
    assert_string_equal(check_body(check_login, "{\"username\":\"alice\",\"password\":null}"),
                        "password");
}

static void test_a_new_pet_needs_a_name_a_species_and_a_price_in_cents(void **state)
{
    (void)state;
    assert_string_equal(
        check_body(sf_check_new_pet, "{\"name\":\"Rex\",\"species\":\"dog\",\"price_cents\":0}"),
        "");
    assert_string_equal(check_body(sf_check_new_pet,
                                   "{\"name\":\"\",\"species\":\"dog\",\"price_cents\":100000001}"),
                        "name,price_cents");
    assert_string_equal(check_body(sf_check_new_pet, "{\"name\":\"Rex\",\"price_cents\":1.0}"),
                        "species,price_cents");
}

static void test_an_order_body_needs_a_card_and_valid_pet_ids_if_any(void **state)
{
    (void)state;
    assert_string_equal(check_body(sf_check_order_body, "{\"card_number\":\"4111111111111111\"}"),
                        "");
    assert_string_equal(check_body(sf_check_order_body,
                                   "{\"card_number\":\"4111111111111111\",\"pet_ids\":[\"" PET_A
                                   "\"]}"),
                        "");
    assert_string_equal(
        check_body(sf_check_order_body, "{\"card_number\":\"4111\",\"pet_ids\":[]}"),
        "card_number,pet_ids");
    assert_string_equal(check_body(sf_check_order_body, "{\"pet_ids\":null}"),
                        "card_number,pet_ids");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_card_numbers_are_12_to_19_digits),
        cmocka_unit_test(test_usernames_and_passwords_have_bounds),
        cmocka_unit_test(test_pet_ids_are_one_to_twenty_distinct_uuids),
        cmocka_unit_test(test_the_fingerprint_ignores_the_order_of_the_pets),
        cmocka_unit_test(test_the_fingerprint_changes_with_the_pets_the_card_or_the_cart),
        cmocka_unit_test(test_the_fingerprint_never_depends_on_the_hidden_digits),
        cmocka_unit_test(test_a_signup_body_needs_a_valid_username_and_password),
        cmocka_unit_test(test_a_login_body_needs_only_two_strings),
        cmocka_unit_test(test_a_new_pet_needs_a_name_a_species_and_a_price_in_cents),
        cmocka_unit_test(test_an_order_body_needs_a_card_and_valid_pet_ids_if_any),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
