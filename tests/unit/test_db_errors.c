/* Unit tests of the database layer's error vocabulary: what each SQLSTATE tells the caller to
 * do. Pure: no server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "db.h"

typedef struct sqlstate_case {
    const char *sqlstate;
    int code;
    const char *what;
} sqlstate_case_t;

static const sqlstate_case_t cases[] = {
    {"08000", ERR_RETRY, "connection exception"},
    {"08003", ERR_RETRY, "connection does not exist"},
    {"08006", ERR_RETRY, "connection failure"},
    {"08P01", ERR_RETRY, "protocol violation (class 08)"},
    {"57P01", ERR_RETRY, "admin shutdown"},
    {"57P02", ERR_RETRY, "crash shutdown"},
    {"57P03", ERR_RETRY, "cannot connect now"},
    {"53300", ERR_RETRY, "too many connections"},
    {"40001", ERR_RETRY, "serialization failure"},
    {"40P01", ERR_RETRY, "deadlock detected"},
    {"55P03", ERR_RETRY, "lock not available"},
    {"23505", ERR_DUPLICATE, "unique violation"},
    {"23503", ERR_CONFLICT, "foreign key violation"},
    {"23502", ERR_CONFLICT, "not null violation"},
    {"23514", ERR_CONFLICT, "check violation"},
    {"23P01", ERR_CONFLICT, "exclusion violation"},
    {"22P02", ERR_INVALID, "invalid text representation"},
    {"22003", ERR_INVALID, "numeric value out of range"},
    {"22001", ERR_INVALID, "string data right truncation"},
    {"22021", ERR_INVALID, "character not in repertoire"},
    {"42P01", ERR_INTERNAL, "undefined table"},
    {"42601", ERR_INTERNAL, "syntax error"},
    {"25P02", ERR_INTERNAL, "in failed sql transaction"},
    {"40002", ERR_INTERNAL, "integrity constraint violation at commit (class 40, not retried)"},
    {"57014", ERR_INTERNAL, "query canceled"},
    {"55000", ERR_INTERNAL, "object not in prerequisite state"},
    {"P0001", ERR_INTERNAL, "raise exception"},
    {"XX000", ERR_INTERNAL, "internal error"},
};

static void test_each_sqlstate_maps_to_what_the_caller_should_do(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = db_sqlstate_to_err(cases[i].sqlstate);
        if (got != cases[i].code)
            fail_msg("%s (%s): got %s, want %s", cases[i].sqlstate, cases[i].what, err_name(got),
                     err_name(cases[i].code));
    }
}

static void test_a_missing_sqlstate_means_the_connection_was_lost(void **state)
{
    (void)state;
    assert_int_equal(db_sqlstate_to_err(NULL), ERR_RETRY);
    assert_int_equal(db_sqlstate_to_err(""), ERR_RETRY);
}

static void test_only_unique_violations_are_duplicates(void **state)
{
    (void)state;
    char s[6];
    for (int i = 0; i < 36 * 36; i++) {
        const char *digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        snprintf(s, sizeof(s), "23%c%c%c", digits[i / 36], digits[i % 36], '0' + i % 10);
        int want = s[2] == '5' && s[3] == '0' && s[4] == '5' ? ERR_DUPLICATE : ERR_CONFLICT;
        assert_int_equal(db_sqlstate_to_err(s), want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_sqlstate_maps_to_what_the_caller_should_do),
        cmocka_unit_test(test_a_missing_sqlstate_means_the_connection_was_lost),
        cmocka_unit_test(test_only_unique_violations_are_duplicates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
