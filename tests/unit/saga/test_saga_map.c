/* Unit tests of the saga's message mapping: which input each message is, how decline reasons
 * map, and that every payload the saga builds passes its contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "map.h"

#define ORDER "0190a3c2-7d4e-7b1a-9c3d-1e2f3a4b5c6d"
#define USER "0190a3c2-7d4e-7b1a-9c3d-aaaaaaaaaaaa"
#define PET1 "0190a3c2-7d4e-7b1a-9c3d-000000000001"
#define PET2 "0190a3c2-7d4e-7b1a-9c3d-000000000002"
#define SEALED "c2VhbGVkIGNhcmQgbnVtYmVyIGJ5dGVz"
#define NOW "2024-05-01T12:00:00.123456Z"

static json_t *placed_payload(long long total)
{
    json_t *p = json_pack("{s:s,s:s,s:[s,s],s:I,s:s,s:s}", "order_id", ORDER, "user_id", USER,
                          "pet_ids", PET1, PET2, "total_cents", (json_int_t)total, "card_sealed",
                          SEALED, "card_last4", "4242");
    assert_non_null(p);
    assert_int_equal(msg_validate(MSG_ORDER_PLACED_V1, p, NULL), 0);
    return p;
}

static saga_row_t placed_row(long long total)
{
    json_t *p = placed_payload(total);
    saga_row_t row;
    memset(&row, 0, sizeof(row));
    assert_int_equal(saga_row_from_placed(p, &row, NULL), 0);
    json_decref(p);
    return row;
}

static void test_every_reply_the_saga_waits_for_maps_to_its_input(void **state)
{
    (void)state;
    static const struct {
        msg_type_t type;
        saga_event_t event;
    } cases[] = {
        {MSG_ORDER_PLACED_V1, SAGA_EV_PLACED},
        {MSG_ORDER_CANCEL_REQUESTED_V1, SAGA_EV_CANCEL},
        {MSG_INVENTORY_RESERVED_V1, SAGA_EV_RESERVED},
        {MSG_INVENTORY_RESERVATION_REJECTED_V1, SAGA_EV_REJECTED},
        {MSG_INVENTORY_RELEASED_V1, SAGA_EV_RELEASED},
        {MSG_INVENTORY_SALE_CONFIRMED_V1, SAGA_EV_SALE_CONFIRMED},
        {MSG_PAYMENT_CHARGED_V1, SAGA_EV_CHARGED},
        {MSG_PAYMENT_DECLINED_V1, SAGA_EV_DECLINED},
        {MSG_PAYMENT_REFUNDED_V1, SAGA_EV_REFUNDED},
        {MSG_PAYMENT_VOIDED_V1, SAGA_EV_REFUNDED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        saga_event_t ev = SAGA_EVENT_COUNT;
        assert_int_equal(saga_event_for_type(cases[i].type, &ev), 0);
        assert_int_equal(ev, cases[i].event);
    }
}

static void test_messages_the_saga_does_not_act_on_map_to_nothing(void **state)
{
    (void)state;
    static const msg_type_t others[] = {
        MSG_NONE,
        MSG_INVENTORY_LIST_PET_V1,
        MSG_INVENTORY_RESERVE_V1,
        MSG_PAYMENT_CHARGE_V1,
        MSG_INVENTORY_PET_LISTED_V1,
        MSG_INVENTORY_PET_STATUS_CHANGED_V1,
        MSG_SAGA_ORDER_STATUS_CHANGED_V1,
        MSG__COUNT,
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        saga_event_t ev = SAGA_EVENT_COUNT;
        assert_int_equal(saga_event_for_type(others[i], &ev), -1);
        assert_int_equal(ev, SAGA_EVENT_COUNT);
    }
}

static void test_card_decline_reasons_carry_over_to_the_order(void **state)
{
    (void)state;
    assert_int_equal(saga_reason_from_decline("CARD_INVALID"), SAGA_REASON_CARD_INVALID);
    assert_int_equal(saga_reason_from_decline("CARD_UNKNOWN"), SAGA_REASON_CARD_UNKNOWN);
    assert_int_equal(saga_reason_from_decline("INSUFFICIENT_FUNDS"),
                     SAGA_REASON_INSUFFICIENT_FUNDS);
}

static void test_late_payment_declines_are_a_timeout_for_the_order(void **state)
{
    (void)state;
    assert_int_equal(saga_reason_from_decline("ORDER_CLOSED"), SAGA_REASON_TIMEOUT);
    assert_int_equal(saga_reason_from_decline("EXPIRED"), SAGA_REASON_TIMEOUT);
    assert_int_equal(saga_reason_from_decline("SOMETHING_NEW"), SAGA_REASON_TIMEOUT);
    assert_int_equal(saga_reason_from_decline(NULL), SAGA_REASON_TIMEOUT);
}

static void test_each_command_bit_names_one_command_type(void **state)
{
    (void)state;
    assert_int_equal(saga_command_type(SAGA_CMD_RESERVE), MSG_INVENTORY_RESERVE_V1);
    assert_int_equal(saga_command_type(SAGA_CMD_CHARGE), MSG_PAYMENT_CHARGE_V1);
    assert_int_equal(saga_command_type(SAGA_CMD_CONFIRM), MSG_INVENTORY_CONFIRM_SALE_V1);
    assert_int_equal(saga_command_type(SAGA_CMD_RELEASE), MSG_INVENTORY_RELEASE_V1);
    assert_int_equal(saga_command_type(SAGA_CMD_REFUND_OR_VOID), MSG_PAYMENT_REFUND_OR_VOID_V1);
    assert_int_equal(saga_command_type(SAGA_CMD_RELEASE | SAGA_CMD_REFUND_OR_VOID), MSG_NONE);
    assert_int_equal(saga_command_type(0), MSG_NONE);
}

static void test_placed_order_becomes_a_pending_saga_at_version_one(void **state)
{
    (void)state;
    saga_row_t row = placed_row(2500);
    assert_string_equal(row.order_id, ORDER);
    assert_string_equal(row.user_id, USER);
    assert_int_equal(row.state.status, SAGA_PENDING);
    assert_int_equal(row.state.reason, SAGA_REASON_NONE);
    assert_int_equal(row.state.pending, 0);
    assert_int_equal(row.state.attempts, 0);
    assert_int_equal(row.version, 1);
    assert_int_equal(row.total_cents, 2500);
    assert_string_equal(row.card_sealed, SEALED);
    assert_string_equal(row.card_last4, "4242");
    assert_int_equal(json_array_size(row.pet_ids), 2);
    assert_string_equal(json_string_value(json_array_get(row.pet_ids, 1)), PET2);
    saga_row_clear(&row);
    assert_null(row.pet_ids);
    assert_null(row.card_sealed);
    saga_row_clear(NULL);
}

static void test_placed_payload_without_a_card_is_refused(void **state)
{
    (void)state;
    json_t *p = placed_payload(100);
    json_object_del(p, "card_sealed");
    saga_row_t row;
    memset(&row, 0, sizeof(row));
    err_t e;
    err_clear(&e);
    assert_int_equal(saga_row_from_placed(p, &row, &e), ERR_INVALID);
    assert_int_equal(e.code, ERR_INVALID);
    assert_null(row.pet_ids);
    json_decref(p);
}

static void test_every_command_payload_passes_its_contract(void **state)
{
    (void)state;
    static const unsigned cmds[] = {SAGA_CMD_RESERVE, SAGA_CMD_CHARGE, SAGA_CMD_CONFIRM,
                                    SAGA_CMD_RELEASE, SAGA_CMD_REFUND_OR_VOID};
    saga_row_t row = placed_row(2500);
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        json_t *p = NULL;
        err_t e;
        err_clear(&e);
        assert_int_equal(saga_command_payload(cmds[i], &row, NOW, &p, &e), 0);
        if (msg_validate(saga_command_type(cmds[i]), p, &e) != 0)
            fail_msg("command 0x%x: %s", cmds[i], e.msg);
        assert_string_equal(json_string_value(json_object_get(p, "order_id")), ORDER);
        json_decref(p);
    }
    saga_row_clear(&row);
}

static void test_reserve_asks_for_the_pets_of_the_order(void **state)
{
    (void)state;
    saga_row_t row = placed_row(2500);
    json_t *p = NULL;
    assert_int_equal(saga_command_payload(SAGA_CMD_RESERVE, &row, NULL, &p, NULL), 0);
    assert_true(json_equal(json_object_get(p, "pet_ids"), row.pet_ids));
    json_decref(p);
    saga_row_clear(&row);
}

static void test_charge_carries_the_total_the_sealed_card_and_the_deadline(void **state)
{
    (void)state;
    saga_row_t row = placed_row(2500);
    json_t *p = NULL;
    assert_int_equal(saga_command_payload(SAGA_CMD_CHARGE, &row, NOW, &p, NULL), 0);
    assert_int_equal(json_integer_value(json_object_get(p, "amount_cents")), 2500);
    assert_string_equal(json_string_value(json_object_get(p, "card_sealed")), SEALED);
    assert_string_equal(json_string_value(json_object_get(p, "card_last4")), "4242");
    assert_string_equal(json_string_value(json_object_get(p, "expires_at")), NOW);
    json_decref(p);
    saga_row_clear(&row);
}

static void test_charge_without_a_card_or_an_amount_is_a_bug(void **state)
{
    (void)state;
    saga_row_t row = placed_row(0);
    json_t *p = NULL;
    assert_int_equal(saga_command_payload(SAGA_CMD_CHARGE, &row, NOW, &p, NULL), ERR_INTERNAL);
    assert_null(p);
    row.total_cents = 100;
    free(row.card_sealed);
    row.card_sealed = NULL;
    assert_int_equal(saga_command_payload(SAGA_CMD_CHARGE, &row, NOW, &p, NULL), ERR_INTERNAL);
    assert_int_equal(saga_command_payload(1u << 9, &row, NOW, &p, NULL), ERR_INTERNAL);
    assert_null(p);
    saga_row_clear(&row);
}

static void test_status_change_passes_its_contract_with_and_without_a_reason(void **state)
{
    (void)state;
    saga_row_t row = placed_row(2500);
    row.state.status = SAGA_RESERVING;
    row.version = 2;
    json_t *p = NULL;
    err_t e;
    err_clear(&e);
    assert_int_equal(saga_status_payload(&row, NOW, &p, &e), 0);
    if (msg_validate(MSG_SAGA_ORDER_STATUS_CHANGED_V1, p, &e) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(json_string_value(json_object_get(p, "status")), "RESERVING");
    assert_true(json_is_null(json_object_get(p, "reason")));
    assert_int_equal(json_integer_value(json_object_get(p, "version")), 2);
    assert_int_equal(json_integer_value(json_object_get(p, "total_cents")), 2500);
    assert_string_equal(json_string_value(json_object_get(p, "user_id")), USER);
    assert_string_equal(json_string_value(json_object_get(p, "card_last4")), "4242");
    assert_string_equal(json_string_value(json_object_get(p, "occurred_at")), NOW);
    json_decref(p);

    row.state.status = SAGA_CANCELLED;
    row.state.reason = SAGA_REASON_INSUFFICIENT_FUNDS;
    row.version = 5;
    assert_int_equal(saga_status_payload(&row, NOW, &p, &e), 0);
    if (msg_validate(MSG_SAGA_ORDER_STATUS_CHANGED_V1, p, &e) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(json_string_value(json_object_get(p, "reason")), "INSUFFICIENT_FUNDS");
    json_decref(p);
    saga_row_clear(&row);
}

/* The storefront accepts POST /orders/{id}/cancel while the order's status is cancellable
 * (order_status.def), so the machine must act on the cancellation in exactly those statuses.
 * PENDING included: it is the storefront's word for an order whose saga has not started, and a
 * cancellation that reached the saga before the order is fed to the new saga while it is still
 * PENDING (handlers.c). */
static void test_the_saga_acts_on_a_cancellation_exactly_where_the_order_is_cancellable(void **st)
{
    (void)st;
    saga_limits_t limits;
    saga_limits_default(&limits);
    for (int s = 0; s < SAGA_STATUS_COUNT; s++) {
        saga_state_t cur = {(saga_status_t)s, SAGA_REASON_NONE, 0, 0};
        saga_input_t in = {SAGA_EV_CANCEL, SAGA_REASON_NONE};
        saga_output_t out;
        saga_step(&cur, &in, &limits, &out);
        int cancellable = order_status_is_cancellable((order_status_t)s);
        if ((out.outcome == SAGA_APPLIED) != cancellable)
            fail_msg("%s: the order is%s cancellable but the machine %s the cancellation",
                     saga_status_name((saga_status_t)s), cancellable ? "" : " not",
                     out.outcome == SAGA_APPLIED ? "applies" : "ignores");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_reply_the_saga_waits_for_maps_to_its_input),
        cmocka_unit_test(test_messages_the_saga_does_not_act_on_map_to_nothing),
        cmocka_unit_test(test_card_decline_reasons_carry_over_to_the_order),
        cmocka_unit_test(test_late_payment_declines_are_a_timeout_for_the_order),
        cmocka_unit_test(test_each_command_bit_names_one_command_type),
        cmocka_unit_test(test_placed_order_becomes_a_pending_saga_at_version_one),
        cmocka_unit_test(test_placed_payload_without_a_card_is_refused),
        cmocka_unit_test(test_every_command_payload_passes_its_contract),
        cmocka_unit_test(test_reserve_asks_for_the_pets_of_the_order),
        cmocka_unit_test(test_charge_carries_the_total_the_sealed_card_and_the_deadline),
        cmocka_unit_test(test_charge_without_a_card_or_an_amount_is_a_bug),
        cmocka_unit_test(test_status_change_passes_its_contract_with_and_without_a_reason),
        cmocka_unit_test(
            test_the_saga_acts_on_a_cancellation_exactly_where_the_order_is_cancellable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
