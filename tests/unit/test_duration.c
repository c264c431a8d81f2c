/* duration_parse_ms: the operators' durations, as the tools read them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "duration.h"

static void test_a_duration_is_terms_with_units_added_up(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        long long ms;
    } good[] = {
        {"30s", 30000}, {"5m", 300000}, {"5min", 300000}, {"1h30m", 5400000}, {"2d", 172800000},
        {"250ms", 250}, {"0s", 0},      {"1m30s", 90000}, {"1d2h", 93600000}, {"10min5s", 605000},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        long long ms = -1;
        err_t e;
        assert_int_equal(duration_parse_ms(good[i].text, &ms, &e), 0);
        assert_int_equal(ms, good[i].ms);
    }
}

static void test_a_number_without_its_unit_or_anything_else_is_refused(void **state)
{
    (void)state;
    const char *bad[] = {"",    "30",  "s",   "-5s",          "5x",       "1.5h",
                         "5 m", "abc", "5s ", "99999999999s", "36600000d"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        long long ms = -1;
        err_t e;
        assert_int_equal(duration_parse_ms(bad[i], &ms, &e), ERR_INVALID);
        assert_int_equal(ms, -1);
        assert_true(e.msg[0] != '\0');
    }
    long long ms;
    err_t e;
    assert_int_equal(duration_parse_ms("5", &ms, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "unit"));
    assert_int_equal(duration_parse_ms(NULL, &ms, &e), ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_duration_is_terms_with_units_added_up),
        cmocka_unit_test(test_a_number_without_its_unit_or_anything_else_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
