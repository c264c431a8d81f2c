/* Unit tests of the saga state machine: every state x every input, plus the sequences that
 * matter (happy path, compensations, retries, parking, duplicates and late replies). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "machine.h"

static saga_limits_t limits(void)
{
    saga_limits_t l;
    saga_limits_default(&l);
    l.reserve_timeout_ms = 1000;
    l.pay_timeout_ms = 2000;
    l.confirm_timeout_ms = 3000;
    l.compensate_timeout_ms = 400;
    l.retry_max_ms = 5000;
    l.max_compensation_tries = 3;
    l.max_confirm_tries = 4;
    return l;
}

static saga_output_t step(saga_state_t *s, saga_event_t ev, saga_reason_t reason)
{
    saga_limits_t l = limits();
    saga_input_t in = {ev, reason};
    saga_output_t out;
    saga_step(s, &in, &l, &out);
    if (out.outcome == SAGA_APPLIED)
        *s = out.next;
    return out;
}

/* The expected next status for every state x event; -1 means "ignored". Written out by hand
 * from DESIGN.md section 4, independently of the table in machine.c. Compensating states are
 * entered with every compensation pending. */
static const int expected[SAGA_STATUS_COUNT][SAGA_EVENT_COUNT] = {
    /*                 PLACED  RESERVED  REJECTED  CHARGED  DECLINED  SALE_CONF  RELEASED  REFUNDED
       CANCEL  TIMEOUT */
    [SAGA_PENDING] = {SAGA_RESERVING, -1, -1, -1, -1, -1, -1, -1, SAGA_CANCELLED, -1},
    [SAGA_RESERVING] = {-1, SAGA_PAYING, SAGA_CANCELLED, -1, -1, -1, -1, -1, SAGA_COMPENSATING,
                        SAGA_COMPENSATING},
    [SAGA_PAYING] = {-1, -1, -1, SAGA_CONFIRMING, SAGA_COMPENSATING, -1, -1, -1, SAGA_COMPENSATING,
                     SAGA_COMPENSATING},
    [SAGA_CONFIRMING] = {-1, -1, -1, -1, -1, SAGA_COMPLETED, -1, -1, -1, SAGA_CONFIRMING},
    [SAGA_COMPLETED] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    [SAGA_COMPENSATING] = {-1, -1, -1, -1, -1, -1, SAGA_COMPENSATING, SAGA_COMPENSATING, -1,
                           SAGA_COMPENSATING},
    [SAGA_CANCELLED] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    [SAGA_NEEDS_OPERATOR] = {-1, -1, -1, -1, -1, -1, SAGA_NEEDS_OPERATOR, SAGA_NEEDS_OPERATOR, -1,
                             -1},
};

static void test_every_state_and_input_follows_the_design(void **state)
{
    (void)state;
    for (int s = 0; s < SAGA_STATUS_COUNT; s++) {
        for (int e = 0; e < SAGA_EVENT_COUNT; e++) {
            saga_state_t cur = {(saga_status_t)s, SAGA_REASON_NONE, 0, 0};
            if (s == SAGA_COMPENSATING || s == SAGA_NEEDS_OPERATOR) {
                cur.pending = SAGA_PENDING_RELEASE | SAGA_PENDING_REFUND;
                cur.reason = SAGA_REASON_TIMEOUT;
            }
            saga_state_t before = cur;
            saga_output_t out = step(&cur, (saga_event_t)e, SAGA_REASON_INSUFFICIENT_FUNDS);
            if (expected[s][e] < 0) {
                if (out.outcome != SAGA_IGNORED)
                    fail_msg("%s + %s should be ignored", saga_status_name((saga_status_t)s),
                             saga_event_name((saga_event_t)e));
                assert_int_equal(out.commands, 0);
                assert_int_equal(out.timer, SAGA_TIMER_KEEP);
                assert_int_equal(out.next.status, before.status);
                assert_non_null(out.why);
            } else {
                if (out.outcome != SAGA_APPLIED || (int)out.next.status != expected[s][e])
                    fail_msg("%s + %s: expected %s, got %s (%s)",
                             saga_status_name((saga_status_t)s), saga_event_name((saga_event_t)e),
                             saga_status_name((saga_status_t)expected[s][e]),
                             saga_status_name(out.next.status), out.why);
                assert_int_equal(out.status_changed, out.next.status != before.status);
            }
        }
    }
}

static void test_happy_path_reserves_charges_confirms_and_completes(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_PENDING, SAGA_REASON_NONE, 0, 0};
    saga_output_t out = step(&s, SAGA_EV_PLACED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_RESERVING);
    assert_int_equal(out.commands, SAGA_CMD_RESERVE);
    assert_int_equal(out.timer, SAGA_TIMER_SET);
    assert_int_equal(out.timer_ms, 1000);

    out = step(&s, SAGA_EV_RESERVED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_PAYING);
    assert_int_equal(out.commands, SAGA_CMD_CHARGE);
    assert_int_equal(out.timer_ms, 2000);

    out = step(&s, SAGA_EV_CHARGED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_CONFIRMING);
    assert_int_equal(out.commands, SAGA_CMD_CONFIRM);
    assert_int_equal(out.timer_ms, 3000);

    out = step(&s, SAGA_EV_SALE_CONFIRMED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPLETED);
    assert_int_equal(out.commands, 0);
    assert_int_equal(out.timer, SAGA_TIMER_CLEAR);
    assert_int_equal(s.reason, SAGA_REASON_NONE);
    assert_true(saga_status_terminal(s.status));
}

static void test_rejected_reservation_cancels_without_compensation(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_RESERVING, SAGA_REASON_NONE, 0, 0};
    saga_output_t out = step(&s, SAGA_EV_REJECTED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_CANCELLED);
    assert_int_equal(s.reason, SAGA_REASON_PET_UNAVAILABLE);
    assert_int_equal(out.commands, 0);
    assert_int_equal(out.timer, SAGA_TIMER_CLEAR);
}

static void test_decline_releases_the_pets_and_cancels_with_the_payment_reason(void **state)
{
    (void)state;
    saga_reason_t reasons[] = {SAGA_REASON_INSUFFICIENT_FUNDS, SAGA_REASON_CARD_INVALID,
                               SAGA_REASON_CARD_UNKNOWN};
    for (size_t i = 0; i < 3; i++) {
        saga_state_t s = {SAGA_PAYING, SAGA_REASON_NONE, 0, 0};
        saga_output_t out = step(&s, SAGA_EV_DECLINED, reasons[i]);
        assert_int_equal(s.status, SAGA_COMPENSATING);
        assert_int_equal(out.commands, SAGA_CMD_RELEASE);
        assert_int_equal(s.pending, SAGA_PENDING_RELEASE);
        assert_int_equal(s.reason, reasons[i]);
        out = step(&s, SAGA_EV_RELEASED, SAGA_REASON_NONE);
        assert_int_equal(s.status, SAGA_CANCELLED);
        assert_int_equal(s.reason, reasons[i]);
        assert_int_equal(out.timer, SAGA_TIMER_CLEAR);
        assert_true(out.status_changed);
    }
}

static void test_cancel_while_paying_refunds_and_releases_before_reporting_cancelled(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_PAYING, SAGA_REASON_NONE, 0, 0};
    saga_output_t out = step(&s, SAGA_EV_CANCEL, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPENSATING);
    assert_int_equal(s.reason, SAGA_REASON_CANCELLED_BY_USER);
    assert_int_equal(out.commands, SAGA_CMD_REFUND_OR_VOID | SAGA_CMD_RELEASE);

    /* A charge that was already on its way is ignored: the refund-or-void sent above undoes it. */
    out = step(&s, SAGA_EV_CHARGED, SAGA_REASON_NONE);
    assert_int_equal(out.outcome, SAGA_IGNORED);

    out = step(&s, SAGA_EV_REFUNDED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPENSATING);
    assert_false(out.status_changed);
    out = step(&s, SAGA_EV_REFUNDED, SAGA_REASON_NONE);
    assert_int_equal(out.outcome, SAGA_IGNORED);

    out = step(&s, SAGA_EV_RELEASED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_CANCELLED);
    assert_int_equal(s.reason, SAGA_REASON_CANCELLED_BY_USER);
}

static void test_cancel_while_reserving_releases_and_a_late_reservation_is_ignored(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_RESERVING, SAGA_REASON_NONE, 0, 0};
    saga_output_t out = step(&s, SAGA_EV_CANCEL, SAGA_REASON_NONE);
    assert_int_equal(out.commands, SAGA_CMD_RELEASE);
    out = step(&s, SAGA_EV_RESERVED, SAGA_REASON_NONE);
    assert_int_equal(out.outcome, SAGA_IGNORED);
    step(&s, SAGA_EV_RELEASED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_CANCELLED);
    assert_int_equal(s.reason, SAGA_REASON_CANCELLED_BY_USER);
}

static void test_payment_timeout_refunds_or_voids_and_releases(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_PAYING, SAGA_REASON_NONE, 0, 0};
    saga_output_t out = step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPENSATING);
    assert_int_equal(s.reason, SAGA_REASON_TIMEOUT);
    assert_int_equal(out.commands, SAGA_CMD_REFUND_OR_VOID | SAGA_CMD_RELEASE);
    assert_int_equal(out.timer, SAGA_TIMER_SET);
    assert_int_equal(out.timer_ms, 400);
    step(&s, SAGA_EV_RELEASED, SAGA_REASON_NONE);
    step(&s, SAGA_EV_REFUNDED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_CANCELLED);
    assert_int_equal(s.reason, SAGA_REASON_TIMEOUT);
}

static void test_compensation_timeouts_resend_only_what_is_pending_with_backoff(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_PAYING, SAGA_REASON_NONE, 0, 0};
    step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
    step(&s, SAGA_EV_RELEASED, SAGA_REASON_NONE);

    saga_output_t out = step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPENSATING);
    assert_int_equal(out.commands, SAGA_CMD_REFUND_OR_VOID);
    assert_int_equal(s.attempts, 1);
    assert_int_equal(out.timer_ms, 800);
    out = step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
    assert_int_equal(out.commands, SAGA_CMD_REFUND_OR_VOID);
    assert_int_equal(out.timer_ms, 1600);
}

static void test_compensation_that_keeps_failing_parks_the_saga_for_an_operator(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_PAYING, SAGA_REASON_NONE, 0, 0};
    step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
    saga_output_t out = {0};
    for (int i = 0; i < 3; i++)
        out = step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_NEEDS_OPERATOR);
    assert_true(out.status_changed);
    assert_int_equal(out.timer, SAGA_TIMER_CLEAR);
    assert_int_equal(out.commands, 0);
    assert_int_equal(s.reason, SAGA_REASON_TIMEOUT);

    /* Parked sagas take no more timeouts, but finish if the acknowledgements arrive after all. */
    out = step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
    assert_int_equal(out.outcome, SAGA_IGNORED);
    step(&s, SAGA_EV_REFUNDED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_NEEDS_OPERATOR);
    step(&s, SAGA_EV_RELEASED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_CANCELLED);
}

static void test_confirmation_is_retried_with_capped_backoff_and_never_compensated(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_CONFIRMING, SAGA_REASON_NONE, 0, 0};
    int last = 0;
    for (int i = 0; i < 3; i++) { /* max_confirm_tries - 1 */
        saga_output_t out = step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
        assert_int_equal(s.status, SAGA_CONFIRMING);
        assert_int_equal(out.commands, SAGA_CMD_CONFIRM);
        assert_true(out.timer_ms >= last);
        assert_true(out.timer_ms <= 5000);
        last = out.timer_ms;
    }
    assert_int_equal(last, 5000);
    saga_output_t out = step(&s, SAGA_EV_CANCEL, SAGA_REASON_NONE);
    assert_int_equal(out.outcome, SAGA_IGNORED);
    step(&s, SAGA_EV_SALE_CONFIRMED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPLETED);
}

static void test_a_confirmation_never_acknowledged_parks_and_a_late_one_completes(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_PAYING, SAGA_REASON_NONE, 0, 0};
    step(&s, SAGA_EV_CHARGED, SAGA_REASON_NONE);
    saga_output_t out = {0};
    for (int i = 0; i < 3; i++) {
        out = step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
        assert_int_equal(out.commands, SAGA_CMD_CONFIRM);
    }
    out = step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE); /* the fourth: max_confirm_tries */
    assert_int_equal(s.status, SAGA_NEEDS_OPERATOR);
    assert_true(out.status_changed);
    assert_int_equal(out.commands, 0);
    assert_int_equal(out.timer, SAGA_TIMER_CLEAR);
    assert_int_equal(s.pending, SAGA_PENDING_CONFIRM);
    assert_int_equal(s.reason, SAGA_REASON_NONE);

    /* Parked: no more timeouts, no compensation, no cancellation; the confirmation completes. */
    saga_event_t ignored[] = {SAGA_EV_TIMEOUT, SAGA_EV_CANCEL, SAGA_EV_RELEASED, SAGA_EV_REFUNDED,
                              SAGA_EV_CHARGED};
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
        assert_int_equal(step(&s, ignored[i], SAGA_REASON_NONE).outcome, SAGA_IGNORED);
    out = step(&s, SAGA_EV_SALE_CONFIRMED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPLETED);
    assert_int_equal(s.pending, 0);
    assert_int_equal(out.timer, SAGA_TIMER_CLEAR);
    assert_true(out.status_changed);
}

static void test_a_saga_parked_by_compensations_is_not_completed_by_a_confirmation(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_NEEDS_OPERATOR, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 3};
    assert_int_equal(step(&s, SAGA_EV_SALE_CONFIRMED, SAGA_REASON_NONE).outcome, SAGA_IGNORED);
    assert_int_equal(s.status, SAGA_NEEDS_OPERATOR);
}

static void test_a_cancel_before_the_order_cancels_with_nothing_to_undo(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_PENDING, SAGA_REASON_NONE, 0, 0};
    saga_output_t out = step(&s, SAGA_EV_CANCEL, SAGA_REASON_NONE);
    assert_int_equal(out.outcome, SAGA_APPLIED);
    assert_int_equal(s.status, SAGA_CANCELLED);
    assert_int_equal(s.reason, SAGA_REASON_CANCELLED_BY_USER);
    assert_int_equal(s.pending, 0);
    assert_int_equal(out.commands, 0);
    assert_int_equal(out.timer, SAGA_TIMER_CLEAR);
    assert_true(out.status_changed);
    assert_int_equal(step(&s, SAGA_EV_PLACED, SAGA_REASON_NONE).outcome, SAGA_IGNORED);
}

static void test_duplicate_and_late_replies_change_nothing(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_PENDING, SAGA_REASON_NONE, 0, 0};
    step(&s, SAGA_EV_PLACED, SAGA_REASON_NONE);
    assert_int_equal(step(&s, SAGA_EV_PLACED, SAGA_REASON_NONE).outcome, SAGA_IGNORED);
    step(&s, SAGA_EV_RESERVED, SAGA_REASON_NONE);
    assert_int_equal(step(&s, SAGA_EV_RESERVED, SAGA_REASON_NONE).outcome, SAGA_IGNORED);
    step(&s, SAGA_EV_CHARGED, SAGA_REASON_NONE);
    assert_int_equal(step(&s, SAGA_EV_CHARGED, SAGA_REASON_NONE).outcome, SAGA_IGNORED);
    assert_int_equal(step(&s, SAGA_EV_DECLINED, SAGA_REASON_CARD_INVALID).outcome, SAGA_IGNORED);
    step(&s, SAGA_EV_SALE_CONFIRMED, SAGA_REASON_NONE);
    for (int e = 0; e < SAGA_EVENT_COUNT; e++)
        assert_int_equal(step(&s, (saga_event_t)e, SAGA_REASON_NONE).outcome, SAGA_IGNORED);
    assert_int_equal(s.status, SAGA_COMPLETED);
}

static void test_names_parse_back_to_their_values(void **state)
{
    (void)state;
    for (int i = 0; i < SAGA_STATUS_COUNT; i++) {
        saga_status_t st;
        assert_int_equal(saga_status_parse(saga_status_name((saga_status_t)i), &st), 0);
        assert_int_equal(st, i);
    }
    for (int i = 1; i < SAGA_REASON_COUNT; i++) {
        saga_reason_t r;
        assert_int_equal(saga_reason_parse(saga_reason_name((saga_reason_t)i), &r), 0);
        assert_int_equal(r, i);
    }
    saga_status_t st;
    assert_int_equal(saga_status_parse("BOGUS", &st), -1);
    assert_int_equal(saga_status_parse(NULL, &st), -1);
    assert_null(saga_reason_name(SAGA_REASON_NONE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_state_and_input_follows_the_design),
        cmocka_unit_test(test_happy_path_reserves_charges_confirms_and_completes),
        cmocka_unit_test(test_rejected_reservation_cancels_without_compensation),
        cmocka_unit_test(test_decline_releases_the_pets_and_cancels_with_the_payment_reason),
        cmocka_unit_test(test_cancel_while_paying_refunds_and_releases_before_reporting_cancelled),
        cmocka_unit_test(test_cancel_while_reserving_releases_and_a_late_reservation_is_ignored),
        cmocka_unit_test(test_payment_timeout_refunds_or_voids_and_releases),
        cmocka_unit_test(test_compensation_timeouts_resend_only_what_is_pending_with_backoff),
        cmocka_unit_test(test_compensation_that_keeps_failing_parks_the_saga_for_an_operator),
        cmocka_unit_test(test_confirmation_is_retried_with_capped_backoff_and_never_compensated),
        cmocka_unit_test(test_a_confirmation_never_acknowledged_parks_and_a_late_one_completes),
        cmocka_unit_test(test_a_saga_parked_by_compensations_is_not_completed_by_a_confirmation),
        cmocka_unit_test(test_a_cancel_before_the_order_cancels_with_nothing_to_undo),
        cmocka_unit_test(test_duplicate_and_late_replies_change_nothing),
        cmocka_unit_test(test_names_parse_back_to_their_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
