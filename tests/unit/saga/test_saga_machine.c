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
       CANCEL  TIMEOUT  OPERATOR_RETRY  OPERATOR_COMPENSATE  OPERATOR_RESUME */
    [SAGA_PENDING] = {SAGA_RESERVING, -1, -1, -1, -1, -1, -1, -1, SAGA_CANCELLED, -1, -1, -1, -1},
    [SAGA_RESERVING] = {-1, SAGA_PAYING, SAGA_CANCELLED, -1, -1, -1, -1, -1, SAGA_COMPENSATING,
                        SAGA_COMPENSATING, SAGA_RESERVING, SAGA_COMPENSATING, -1},
    [SAGA_PAYING] = {-1, -1, -1, SAGA_CONFIRMING, SAGA_COMPENSATING, -1, -1, -1, SAGA_COMPENSATING,
                     SAGA_COMPENSATING, SAGA_PAYING, SAGA_COMPENSATING, -1},
    [SAGA_CONFIRMING] = {-1, -1, -1, -1, -1, SAGA_COMPLETED, -1, -1, -1, SAGA_CONFIRMING,
                         SAGA_CONFIRMING, -1, -1},
    [SAGA_COMPLETED] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    [SAGA_COMPENSATING] = {-1, -1, -1, -1, -1, -1, SAGA_COMPENSATING, SAGA_COMPENSATING, -1,
                           SAGA_COMPENSATING, SAGA_COMPENSATING, -1, -1},
    [SAGA_CANCELLED] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    /* Parked while compensating: only resume applies (compensate: it already is). */
    [SAGA_NEEDS_OPERATOR] = {-1, -1, -1, -1, -1, -1, SAGA_NEEDS_OPERATOR, SAGA_NEEDS_OPERATOR, -1,
                             -1, -1, -1, SAGA_COMPENSATING},
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

/* ---- The operator's inputs (petstore-saga retry, compensate, resume) ---------------------- */

static void test_operator_retry_resends_the_current_step_with_a_fresh_timer(void **state)
{
    (void)state;
    const struct {
        saga_status_t status;
        unsigned command;
        int timer_ms;
    } cases[] = {
        {SAGA_RESERVING, SAGA_CMD_RESERVE, 1000},
        {SAGA_PAYING, SAGA_CMD_CHARGE, 2000},
        {SAGA_CONFIRMING, SAGA_CMD_CONFIRM, 3000},
    };
    for (size_t i = 0; i < 3; i++) {
        saga_state_t s = {cases[i].status, SAGA_REASON_NONE, 0, 2};
        saga_output_t out = step(&s, SAGA_EV_OPERATOR_RETRY, SAGA_REASON_NONE);
        assert_int_equal(out.outcome, SAGA_APPLIED);
        assert_int_equal(s.status, cases[i].status);
        assert_int_equal(out.commands, cases[i].command);
        assert_int_equal(out.timer, SAGA_TIMER_SET);
        assert_int_equal(out.timer_ms, cases[i].timer_ms);
        assert_int_equal(s.attempts, 0);
        assert_int_equal(s.pending, 0);
        assert_false(out.status_changed);
    }
}

static void test_operator_retry_while_compensating_resends_only_what_is_pending(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_COMPENSATING, SAGA_REASON_TIMEOUT, SAGA_PENDING_REFUND, 2};
    saga_output_t out = step(&s, SAGA_EV_OPERATOR_RETRY, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPENSATING);
    assert_int_equal(out.commands, SAGA_CMD_REFUND_OR_VOID);
    assert_int_equal(s.pending, SAGA_PENDING_REFUND);
    assert_int_equal(s.reason, SAGA_REASON_TIMEOUT);
    assert_int_equal(out.timer, SAGA_TIMER_SET);
    assert_int_equal(out.timer_ms, 400);
    assert_int_equal(s.attempts, 0);
}

static void test_operator_compensate_undoes_what_the_machine_would_with_reason_timeout(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_RESERVING, SAGA_REASON_NONE, 0, 1};
    saga_output_t out = step(&s, SAGA_EV_OPERATOR_COMPENSATE, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPENSATING);
    assert_int_equal(out.commands, SAGA_CMD_RELEASE);
    assert_int_equal(s.pending, SAGA_PENDING_RELEASE);
    assert_int_equal(s.reason, SAGA_REASON_TIMEOUT);
    assert_int_equal(out.timer_ms, 400);
    assert_int_equal(s.attempts, 0);
    assert_true(out.status_changed);

    s = (saga_state_t){SAGA_PAYING, SAGA_REASON_NONE, 0, 0};
    out = step(&s, SAGA_EV_OPERATOR_COMPENSATE, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPENSATING);
    assert_int_equal(out.commands, SAGA_CMD_REFUND_OR_VOID | SAGA_CMD_RELEASE);
    assert_int_equal(s.pending, SAGA_PENDING_REFUND | SAGA_PENDING_RELEASE);
    assert_int_equal(s.reason, SAGA_REASON_TIMEOUT);

    /* The acknowledgements finish it as for any compensation. */
    step(&s, SAGA_EV_RELEASED, SAGA_REASON_NONE);
    out = step(&s, SAGA_EV_REFUNDED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_CANCELLED);
    assert_int_equal(s.reason, SAGA_REASON_TIMEOUT);
}

static void test_operator_compensate_of_a_sale_never_confirmed_refunds_and_releases(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_NEEDS_OPERATOR, SAGA_REASON_NONE, SAGA_PENDING_CONFIRM, 4};
    saga_output_t out = step(&s, SAGA_EV_OPERATOR_COMPENSATE, SAGA_REASON_NONE);
    assert_int_equal(out.outcome, SAGA_APPLIED);
    assert_int_equal(s.status, SAGA_COMPENSATING);
    assert_int_equal(out.commands, SAGA_CMD_REFUND_OR_VOID | SAGA_CMD_RELEASE);
    assert_int_equal(s.pending, SAGA_PENDING_REFUND | SAGA_PENDING_RELEASE);
    assert_int_equal(s.reason, SAGA_REASON_TIMEOUT);
    assert_int_equal(out.timer, SAGA_TIMER_SET);
    assert_int_equal(s.attempts, 0);
    /* A late confirmation no longer completes it: the operator chose to undo. */
    out = step(&s, SAGA_EV_SALE_CONFIRMED, SAGA_REASON_NONE);
    assert_int_equal(out.outcome, SAGA_IGNORED);
}

static void test_operator_compensate_does_not_apply_to_confirming_or_compensating(void **state)
{
    (void)state;
    saga_state_t cases[] = {
        {SAGA_CONFIRMING, SAGA_REASON_NONE, 0, 0},
        {SAGA_COMPENSATING, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 0},
        {SAGA_NEEDS_OPERATOR, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 3},
        {SAGA_COMPLETED, SAGA_REASON_NONE, 0, 0},
    };
    for (size_t i = 0; i < 4; i++) {
        saga_output_t out = step(&cases[i], SAGA_EV_OPERATOR_COMPENSATE, SAGA_REASON_NONE);
        assert_int_equal(out.outcome, SAGA_IGNORED);
        assert_int_equal(out.commands, 0);
    }
}

static void test_operator_resume_of_parked_compensations_resends_them(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_NEEDS_OPERATOR, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 3};
    saga_output_t out = step(&s, SAGA_EV_OPERATOR_RESUME, SAGA_REASON_NONE);
    assert_int_equal(out.outcome, SAGA_APPLIED);
    assert_int_equal(s.status, SAGA_COMPENSATING);
    assert_int_equal(out.commands, SAGA_CMD_RELEASE);
    assert_int_equal(s.pending, SAGA_PENDING_RELEASE);
    assert_int_equal(s.reason, SAGA_REASON_TIMEOUT);
    assert_int_equal(out.timer, SAGA_TIMER_SET);
    assert_int_equal(out.timer_ms, 400);
    assert_int_equal(s.attempts, 0);
    assert_true(out.status_changed);
    out = step(&s, SAGA_EV_RELEASED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_CANCELLED);
    assert_int_equal(out.timer, SAGA_TIMER_CLEAR);
}

static void test_operator_resume_of_a_parked_confirmation_confirms_again(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_NEEDS_OPERATOR, SAGA_REASON_NONE, SAGA_PENDING_CONFIRM, 4};
    saga_output_t out = step(&s, SAGA_EV_OPERATOR_RESUME, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_CONFIRMING);
    assert_int_equal(out.commands, SAGA_CMD_CONFIRM);
    assert_int_equal(s.pending, 0);
    assert_int_equal(out.timer_ms, 3000);
    assert_int_equal(s.attempts, 0);
    out = step(&s, SAGA_EV_SALE_CONFIRMED, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_COMPLETED);
}

static void test_operator_resume_applies_only_to_a_parked_saga(void **state)
{
    (void)state;
    for (int st = 0; st < SAGA_STATUS_COUNT; st++) {
        if (st == SAGA_NEEDS_OPERATOR)
            continue;
        saga_state_t s = {(saga_status_t)st, SAGA_REASON_NONE, SAGA_PENDING_RELEASE, 0};
        saga_output_t out = step(&s, SAGA_EV_OPERATOR_RESUME, SAGA_REASON_NONE);
        assert_int_equal(out.outcome, SAGA_IGNORED);
    }
    /* Retry is not the way out of parking: resume is. */
    saga_state_t s = {SAGA_NEEDS_OPERATOR, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 3};
    assert_int_equal(step(&s, SAGA_EV_OPERATOR_RETRY, SAGA_REASON_NONE).outcome, SAGA_IGNORED);
}

static void test_a_resumed_saga_that_keeps_failing_parks_again(void **state)
{
    (void)state;
    saga_state_t s = {SAGA_NEEDS_OPERATOR, SAGA_REASON_TIMEOUT, SAGA_PENDING_RELEASE, 3};
    step(&s, SAGA_EV_OPERATOR_RESUME, SAGA_REASON_NONE);
    for (int i = 0; i < 2; i++) {
        step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
        assert_int_equal(s.status, SAGA_COMPENSATING);
    }
    saga_output_t out = step(&s, SAGA_EV_TIMEOUT, SAGA_REASON_NONE);
    assert_int_equal(s.status, SAGA_NEEDS_OPERATOR);
    assert_int_equal(out.commands, 0);
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
        cmocka_unit_test(test_operator_retry_resends_the_current_step_with_a_fresh_timer),
        cmocka_unit_test(test_operator_retry_while_compensating_resends_only_what_is_pending),
        cmocka_unit_test(
            test_operator_compensate_undoes_what_the_machine_would_with_reason_timeout),
        cmocka_unit_test(test_operator_compensate_of_a_sale_never_confirmed_refunds_and_releases),
        cmocka_unit_test(test_operator_compensate_does_not_apply_to_confirming_or_compensating),
        cmocka_unit_test(test_operator_resume_of_parked_compensations_resends_them),
        cmocka_unit_test(test_operator_resume_of_a_parked_confirmation_confirms_again),
        cmocka_unit_test(test_operator_resume_applies_only_to_a_parked_saga),
        cmocka_unit_test(test_a_resumed_saga_that_keeps_failing_parks_again),
        cmocka_unit_test(test_names_parse_back_to_their_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
