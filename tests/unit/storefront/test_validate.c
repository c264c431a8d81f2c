/* Unit tests of the storefront's input checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_card_numbers_are_12_to_19_digits),
        cmocka_unit_test(test_usernames_and_passwords_have_bounds),
        cmocka_unit_test(test_pet_ids_are_one_to_twenty_distinct_uuids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
