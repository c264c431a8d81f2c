/* Unit tests of the order's vocabulary (contracts/codec/order_status.def): the names are
 * written out here by hand from DESIGN.md section 4, independently of the table, and every
 * name must round-trip, be accepted by the saga.order_status_changed.v1 contract, and carry the
 * meaning (finished, still cancellable) the design gives it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "msg.h"
#include "order_status.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const design_statuses[] = {
    "PENDING",   "RESERVING",    "PAYING",    "CONFIRMING",
    "COMPLETED", "COMPENSATING", "CANCELLED", "NEEDS_OPERATOR",
};

static const char *const design_reasons[] = {
    "PET_UNAVAILABLE", "INSUFFICIENT_FUNDS", "CARD_INVALID",
    "CARD_UNKNOWN",    "CANCELLED_BY_USER",  "TIMEOUT",
};

static void test_the_statuses_are_those_of_the_design(void **state)
{
    (void)state;
    assert_int_equal(ORDER_STATUS_COUNT, COUNT(design_statuses));
    for (size_t i = 0; i < COUNT(design_statuses); i++) {
        order_status_t s = ORDER_STATUS_COUNT;
        if (order_status_parse(design_statuses[i], &s) != 0)
            fail_msg("%s is not an order status", design_statuses[i]);
        assert_string_equal(order_status_name(s), design_statuses[i]);
    }
}

static void test_the_reasons_are_those_of_the_design(void **state)
{
    (void)state;
    assert_int_equal(ORDER_REASON_COUNT, COUNT(design_reasons) + 1); /* + ORDER_REASON_NONE */
    for (size_t i = 0; i < COUNT(design_reasons); i++) {
        order_reason_t r = ORDER_REASON_NONE;
        if (order_reason_parse(design_reasons[i], &r) != 0)
            fail_msg("%s is not an order reason", design_reasons[i]);
        assert_int_not_equal(r, ORDER_REASON_NONE);
        assert_string_equal(order_reason_name(r), design_reasons[i]);
    }
}

static void test_every_value_names_itself_and_parses_back(void **state)
{
    (void)state;
    for (int i = 0; i < ORDER_STATUS_COUNT; i++) {
        order_status_t s = ORDER_STATUS_COUNT;
        assert_int_equal(order_status_parse(order_status_name((order_status_t)i), &s), 0);
        assert_int_equal(s, i);
    }
    for (int i = ORDER_REASON_NONE + 1; i < ORDER_REASON_COUNT; i++) {
        order_reason_t r = ORDER_REASON_NONE;
        assert_int_equal(order_reason_parse(order_reason_name((order_reason_t)i), &r), 0);
        assert_int_equal(r, i);
    }
}

static void test_unknown_names_are_refused_and_leave_the_output_alone(void **state)
{
    (void)state;
    order_status_t s = ORDER_PAYING;
    order_reason_t r = ORDER_REASON_TIMEOUT;
    assert_int_equal(order_status_parse("BOGUS", &s), ERR_INVALID);
    assert_int_equal(order_status_parse("paying", &s), ERR_INVALID); /* names are exact */
    assert_int_equal(order_status_parse("", &s), ERR_INVALID);
    assert_int_equal(order_status_parse(NULL, &s), ERR_INVALID);
    assert_int_equal(order_status_parse("TIMEOUT", &s), ERR_INVALID); /* a reason, not a status */
    assert_int_equal(s, ORDER_PAYING);
    assert_int_equal(order_reason_parse("PAYING", &r), ERR_INVALID); /* a status, not a reason */
    assert_int_equal(order_reason_parse("NONE", &r), ERR_INVALID);
    assert_int_equal(order_reason_parse(NULL, &r), ERR_INVALID);
    assert_int_equal(r, ORDER_REASON_TIMEOUT);
}

static void test_values_out_of_range_have_no_name_and_no_meaning(void **state)
{
    (void)state;
    assert_string_equal(order_status_name(ORDER_STATUS_COUNT), "UNKNOWN");
    assert_string_equal(order_status_name((order_status_t)-1), "UNKNOWN");
    assert_false(order_status_is_terminal(ORDER_STATUS_COUNT));
    assert_false(order_status_is_cancellable(ORDER_STATUS_COUNT));
    assert_null(order_reason_name(ORDER_REASON_NONE));
    assert_null(order_reason_name(ORDER_REASON_COUNT));
    assert_null(order_reason_name((order_reason_t)-1));
}

static void test_only_completed_and_cancelled_are_terminal(void **state)
{
    (void)state;
    for (int i = 0; i < ORDER_STATUS_COUNT; i++) {
        const char *name = order_status_name((order_status_t)i);
        int expected = strcmp(name, "COMPLETED") == 0 || strcmp(name, "CANCELLED") == 0;
        if (order_status_is_terminal((order_status_t)i) != expected)
            fail_msg("%s should%s be terminal", name, expected ? "" : " not");
    }
    /* A parked saga still finishes when the late acknowledgements arrive. */
    assert_false(order_status_is_terminal(ORDER_NEEDS_OPERATOR));
}

static void test_an_order_is_cancellable_only_until_it_is_paid(void **state)
{
    (void)state;
    for (int i = 0; i < ORDER_STATUS_COUNT; i++) {
        const char *name = order_status_name((order_status_t)i);
        int expected = strcmp(name, "PENDING") == 0 || strcmp(name, "RESERVING") == 0 ||
                       strcmp(name, "PAYING") == 0;
        if (order_status_is_cancellable((order_status_t)i) != expected)
            fail_msg("%s should%s be cancellable", name, expected ? "" : " not");
    }
}

static json_t *status_change(const char *status, const char *reason)
{
    json_t *p = json_pack("{s:s,s:s,s:i,s:s}", "order_id", "0190a3c2-7d4e-7b1a-9c3d-1e2f3a4b5c6d",
                          "status", status, "version", 2, "occurred_at", "2024-05-01T12:00:00Z");
    assert_non_null(p);
    assert_int_equal(json_object_set_new(p, "reason", reason ? json_string(reason) : json_null()),
                     0);
    return p;
}

static void test_the_status_change_contract_accepts_exactly_the_table(void **state)
{
    (void)state;
    err_t e;
    for (int i = 0; i < ORDER_STATUS_COUNT; i++) {
        json_t *p = status_change(order_status_name((order_status_t)i), NULL);
        if (msg_validate(MSG_SAGA_ORDER_STATUS_CHANGED_V1, p, &e) != 0)
            fail_msg("%s: %s", order_status_name((order_status_t)i), e.msg);
        json_decref(p);
    }
    for (int i = ORDER_REASON_NONE + 1; i < ORDER_REASON_COUNT; i++) {
        json_t *p = status_change("CANCELLED", order_reason_name((order_reason_t)i));
        if (msg_validate(MSG_SAGA_ORDER_STATUS_CHANGED_V1, p, &e) != 0)
            fail_msg("%s: %s", order_reason_name((order_reason_t)i), e.msg);
        json_decref(p);
    }
    json_t *p = status_change("UNKNOWN", NULL);
    assert_int_equal(msg_validate(MSG_SAGA_ORDER_STATUS_CHANGED_V1, p, NULL), ERR_INVALID);
    json_decref(p);
    p = status_change("CANCELLED", "PAYING");
    assert_int_equal(msg_validate(MSG_SAGA_ORDER_STATUS_CHANGED_V1, p, NULL), ERR_INVALID);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_statuses_are_those_of_the_design),
        cmocka_unit_test(test_the_reasons_are_those_of_the_design),
        cmocka_unit_test(test_every_value_names_itself_and_parses_back),
        cmocka_unit_test(test_unknown_names_are_refused_and_leave_the_output_alone),
        cmocka_unit_test(test_values_out_of_range_have_no_name_and_no_meaning),
        cmocka_unit_test(test_only_completed_and_cancelled_are_terminal),
        cmocka_unit_test(test_an_order_is_cancellable_only_until_it_is_paid),
        cmocka_unit_test(test_the_status_change_contract_accepts_exactly_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
