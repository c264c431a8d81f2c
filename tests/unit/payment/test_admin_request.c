/* Unit tests of the card admin API's body check (services/payment/admin_request.c): what
 * POST /v1/cards accepts, and which field its 422 names first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "admin_request.h"

/* The field the check names for the JSON text body, or "" when it accepts it. */
static const char *first_problem(const char *text)
{
    static char field[32];
    const char *f = NULL, *detail = NULL;
    json_t *body = json_loads(text, 0, NULL);
    assert_non_null(body);
    int rc = admin_card_request_check(body, &f, &detail);
    if (rc == 0) {
        field[0] = '\0';
    } else {
        assert_int_equal(rc, ERR_INVALID);
        assert_non_null(detail);
        assert_non_null(strstr(detail, f));
        strcpy(field, f);
    }
    json_decref(body);
    return field;
}

static void test_a_card_needs_a_luhn_valid_number_and_a_balance(void **state)
{
    (void)state;
    assert_string_equal(first_problem("{\"card_number\":\"4111111111111111\",\"balance_cents\":0}"),
                        "");
    assert_string_equal(
        first_problem("{\"card_number\":\"4111111111111111\",\"balance_cents\":1000000000000}"),
        "");
    assert_string_equal(first_problem("{\"card_number\":\"4111111111111112\",\"balance_cents\":0}"),
                        "card_number");
    assert_string_equal(first_problem("{\"card_number\":4111111111111111,\"balance_cents\":0}"),
                        "card_number");
}

static void test_the_card_number_is_named_before_the_balance(void **state)
{
    (void)state;
    assert_string_equal(first_problem("{\"balance_cents\":-1}"), "card_number");
    assert_string_equal(
        first_problem("{\"card_number\":\"4111111111111111\",\"balance_cents\":1000000000001}"),
        "balance_cents");
    assert_string_equal(
        first_problem("{\"card_number\":\"4111111111111111\",\"balance_cents\":1.0}"),
        "balance_cents");
    assert_string_equal(first_problem("{\"card_number\":\"4111111111111111\"}"), "balance_cents");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_card_needs_a_luhn_valid_number_and_a_balance),
        cmocka_unit_test(test_the_card_number_is_named_before_the_balance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
