/* Unit tests of the saga tool's pure parts: the command line (what each verb accepts and
 * requires), durations as text, what a saga waits for, the last line of show, and when an
 * operator's action counts as confirmed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sagatool.h"

#define ORDER "0190a8a0-1234-7abc-8def-0123456789ab"
#define ORDER2 "0190a8a0-1234-7abc-8def-0123456789ac"

static int parse(sagatool_args_t *a, err_t *e, int argc, char **argv)
{
    err_clear(e);
    return sagatool_args_parse(argv[0], argc, argv, 1, a, e);
}

#define PARSE(a, e, ...)                                                                           \
    parse((a), (e), (int)(sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)),                       \
          (char *[]){__VA_ARGS__})

static void test_durations_print_in_a_readable_unit(void **state)
{
    (void)state;
    char out[32];
    sagatool_format_duration(850, out, sizeof(out));
    assert_string_equal(out, "850 ms");
    sagatool_format_duration(12000, out, sizeof(out));
    assert_string_equal(out, "12 s");
    sagatool_format_duration(300000, out, sizeof(out));
    assert_string_equal(out, "5 min");
    sagatool_format_duration(3 * 3600000LL, out, sizeof(out));
    assert_string_equal(out, "3 h");
    sagatool_format_duration(3 * 86400000LL, out, sizeof(out));
    assert_string_equal(out, "3 d");
}

static void test_a_write_verb_requires_a_reason(void **state)
{
    (void)state;
    sagatool_args_t a;
    err_t e;
    assert_int_equal(PARSE(&a, &e, "retry", ORDER), ERR_INVALID);
    assert_non_null(strstr(e.msg, "--reason"));
    assert_int_equal(PARSE(&a, &e, "resume", ORDER, "--reason", ""), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "resume", ORDER, "--reason", "inventory is back"), 0);
    assert_string_equal(a.reason, "inventory is back");
    assert_int_equal(a.n_orders, 1);
    assert_int_equal(a.wait_s, SAGATOOL_DEFAULT_WAIT_S);
    assert_int_equal(PARSE(&a, &e, "compensate", ORDER, "--reason=stuck"), 0);
    assert_string_equal(a.reason, "stuck");
}

static void test_a_write_verb_takes_orders_or_selectors_but_not_both(void **state)
{
    (void)state;
    sagatool_args_t a;
    err_t e;
    assert_int_equal(PARSE(&a, &e, "retry", "--reason", "x"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "retry", ORDER, ORDER2, "--reason", "x", "--yes", "--rate", "2",
                           "--wait", "5", "--dry-run", "--json"),
                     0);
    assert_int_equal(a.n_orders, 2);
    assert_true(a.yes && a.dry_run && a.json);
    assert_true(a.rate == 2.0);
    assert_int_equal(a.wait_s, 5);
    assert_int_equal(PARSE(&a, &e, "resume", "--needs-operator", "--reason", "x"), 0);
    assert_true(a.needs_operator);
    assert_int_equal(
        PARSE(&a, &e, "retry", "--state", "PAYING", "--stuck-for", "2m", "--reason", "x"), 0);
    assert_true(a.has_state);
    assert_int_equal(a.state, SAGA_PAYING);
    assert_int_equal(a.stuck_for_ms, 120000);
    assert_int_equal(PARSE(&a, &e, "retry", ORDER, "--state", "PAYING", "--reason", "x"),
                     ERR_INVALID);
}

static void test_bad_values_and_misplaced_options_are_usage_errors(void **state)
{
    (void)state;
    sagatool_args_t a;
    err_t e;
    assert_int_equal(PARSE(&a, &e, "list", "--state", "STUCK"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "list", "--stuck-for", "soon"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "list", "--limit", "0"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "list", "--reason", "x"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "list", ORDER), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "list", "--frobnicate"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "show"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "show", ORDER, ORDER2), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "show", "not-a-uuid"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "show", ORDER, "--dry-run"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "retry", ORDER, "--reason", "x", "--rate", "0"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "retry", ORDER, "--reason", "x", "--yes=1"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "retry", ORDER, "--reason"), ERR_INVALID);
    assert_int_equal(PARSE(&a, &e, "list", "--needs-operator", "--limit", "5", "--json"), 0);
    assert_int_equal(a.limit, 5);
}

static void test_help_is_answered_before_any_check(void **state)
{
    (void)state;
    sagatool_args_t a;
    err_t e;
    assert_int_equal(PARSE(&a, &e, "retry", "--help"), 0);
    assert_true(a.help);
    assert_int_equal(PARSE(&a, &e, "show", "-h"), 0);
    assert_true(a.help);
    assert_true(sagatool_verb_writes("resume"));
    assert_false(sagatool_verb_writes("show"));
}

static void test_what_a_saga_waits_for_follows_its_state(void **state)
{
    (void)state;
    char out[128];
    saga_state_t s = {SAGA_PAYING, SAGA_REASON_NONE, 0, 0};
    sagatool_waiting_for(&s, out, sizeof(out));
    assert_string_equal(out, "payment.charged");
    s = (saga_state_t){SAGA_COMPENSATING, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 1};
    sagatool_waiting_for(&s, out, sizeof(out));
    assert_string_equal(out, "inventory.released");
    s.pending |= SAGA_PENDING_REFUND;
    sagatool_waiting_for(&s, out, sizeof(out));
    assert_string_equal(out, "inventory.released and payment.refunded (or voided)");
    s = (saga_state_t){SAGA_NEEDS_OPERATOR, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 3};
    sagatool_waiting_for(&s, out, sizeof(out));
    assert_string_equal(out, "an operator");
    s = (saga_state_t){SAGA_COMPLETED, SAGA_REASON_NONE, 0, 0};
    sagatool_waiting_for(&s, out, sizeof(out));
    assert_string_equal(out, "nothing");
}

static void test_the_last_line_says_what_happens_next(void **state)
{
    (void)state;
    char out[600];
    sagatool_view_t v = {ORDER, {SAGA_RESERVING, SAGA_REASON_NONE, 0, 0}, "T0", "T1", NULL};
    sagatool_last_line(&v, out, sizeof(out));
    assert_string_equal(out, "waiting for inventory.reserved until T1");

    v.state = (saga_state_t){SAGA_CANCELLED, SAGA_REASON_TIMEOUT, 0, 0};
    v.deadline = NULL;
    sagatool_last_line(&v, out, sizeof(out));
    assert_string_equal(out, "finished: CANCELLED at T0, reason TIMEOUT");

    v.state = (saga_state_t){SAGA_NEEDS_OPERATOR, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 3};
    sagatool_last_line(&v, out, sizeof(out));
    assert_non_null(strstr(out, "parked: needs an operator since T0"));
    assert_non_null(strstr(out, "try: petstore-saga resume " ORDER " --reason"));

    v.state = (saga_state_t){SAGA_CONFIRMING, SAGA_REASON_NONE, 0, 0};
    v.deadline = "T1";
    v.timer_parked_at = "T2";
    sagatool_last_line(&v, out, sizeof(out));
    assert_non_null(strstr(out, "parked at T2"));
    assert_non_null(strstr(out, "petstore-saga retry " ORDER));
}

static void test_an_action_is_confirmed_only_once_published_and_moved_on(void **state)
{
    (void)state;
    sagatool_progress_t p;
    memset(&p, 0, sizeof(p));
    p.state = (saga_state_t){SAGA_COMPENSATING, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 0};
    p.timer_armed = 1;
    p.unsent = 1;
    /* Not published yet: nothing counts. */
    assert_false(sagatool_confirmed(SAGA_EV_OPERATOR_RETRY, &p));
    p.unsent = 0;
    /* Published, timer armed: every verb still waits for the step's reply. */
    assert_false(sagatool_confirmed(SAGA_EV_OPERATOR_RETRY, &p));
    assert_false(sagatool_confirmed(SAGA_EV_OPERATOR_RESUME, &p));
    assert_false(sagatool_confirmed(SAGA_EV_OPERATOR_COMPENSATE, &p));
    /* A reply came: the re-sent step happened. Resume and compensate undo or finish the
     * order, which one acknowledgement of two does not. */
    p.reply_after = 1;
    assert_true(sagatool_confirmed(SAGA_EV_OPERATOR_RETRY, &p));
    assert_false(sagatool_confirmed(SAGA_EV_OPERATOR_RESUME, &p));
    assert_false(sagatool_confirmed(SAGA_EV_OPERATOR_COMPENSATE, &p));
    p.reply_after = 0;
    p.state.status = SAGA_CANCELLED;
    assert_true(sagatool_confirmed(SAGA_EV_OPERATOR_RESUME, &p));
    assert_true(sagatool_confirmed(SAGA_EV_OPERATOR_COMPENSATE, &p));
    p.state.status = SAGA_COMPLETED;
    assert_true(sagatool_confirmed(SAGA_EV_OPERATOR_RESUME, &p));
    /* Parked again: not what anyone asked for. */
    p.state = (saga_state_t){SAGA_NEEDS_OPERATOR, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 3};
    p.timer_armed = 0;
    assert_false(sagatool_confirmed(SAGA_EV_OPERATOR_RETRY, &p));
    assert_false(sagatool_confirmed(SAGA_EV_OPERATOR_RESUME, &p));

    char out[300];
    p.unsent = 2;
    p.parked = 0;
    snprintf(p.deadline, sizeof(p.deadline), "T9");
    p.state = (saga_state_t){SAGA_COMPENSATING, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 0};
    sagatool_pending_text(&p, out, sizeof(out));
    assert_non_null(strstr(out, "saga is COMPENSATING, waiting for inventory.released until T9"));
    assert_non_null(strstr(out, "2 of its messages not yet published"));
}

static void test_each_write_verb_is_an_operator_input_of_the_machine(void **state)
{
    (void)state;
    saga_event_t ev;
    assert_int_equal(sagatool_verb_event("retry", &ev), 0);
    assert_int_equal(ev, SAGA_EV_OPERATOR_RETRY);
    assert_int_equal(sagatool_verb_event("compensate", &ev), 0);
    assert_int_equal(ev, SAGA_EV_OPERATOR_COMPENSATE);
    assert_int_equal(sagatool_verb_event("resume", &ev), 0);
    assert_int_equal(ev, SAGA_EV_OPERATOR_RESUME);
    assert_int_equal(sagatool_verb_event("list", &ev), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations_print_in_a_readable_unit),
        cmocka_unit_test(test_a_write_verb_requires_a_reason),
        cmocka_unit_test(test_a_write_verb_takes_orders_or_selectors_but_not_both),
        cmocka_unit_test(test_bad_values_and_misplaced_options_are_usage_errors),
        cmocka_unit_test(test_help_is_answered_before_any_check),
        cmocka_unit_test(test_what_a_saga_waits_for_follows_its_state),
        cmocka_unit_test(test_the_last_line_says_what_happens_next),
        cmocka_unit_test(test_an_action_is_confirmed_only_once_published_and_moved_on),
        cmocka_unit_test(test_each_write_verb_is_an_operator_input_of_the_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
