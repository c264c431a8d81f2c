/* Unit tests of the inventory's answers: for every command and every state of the order's
 * reservation, which messages are emitted, with which payloads (each checked
 * against its contract), and which states are reported as anomalies or races. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plan.h"

#define ORDER "0190a3c2-7d4e-7b1a-9c3d-1e2f3a4b5c6d"
#define PET1 "0190a3c2-7d4e-7b1a-9c3d-000000000001"
#define PET2 "0190a3c2-7d4e-7b1a-9c3d-000000000002"
#define PET3 "0190a3c2-7d4e-7b1a-9c3d-000000000003"

typedef struct fixture {
    json_t *pets;        /* [PET1, PET2] */
    json_t *changed;     /* [[PET1, 2], [PET2, 5]] */
    json_t *unavailable; /* [PET3] */
    json_t *empty;       /* [] */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->pets = json_pack("[s,s]", PET1, PET2);
    f->changed = json_pack("[[s,i],[s,i]]", PET1, 2, PET2, 5);
    f->unavailable = json_pack("[s]", PET3);
    f->empty = json_array();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    json_decref(f->pets);
    json_decref(f->changed);
    json_decref(f->unavailable);
    json_decref(f->empty);
    free(f);
    return 0;
}

static inv_outcome_t outcome(inv_res_t prior, inv_res_t status, const json_t *pets,
                             const json_t *unavailable, const json_t *changed)
{
    inv_outcome_t o = {prior, status, pets, unavailable, changed};
    return o;
}

static void plan_ok(inv_cmd_t cmd, const inv_outcome_t *o, inv_plan_t *p)
{
    err_t e;
    err_clear(&e);
    int rc = inv_plan(cmd, ORDER, o, p, &e);
    if (rc != 0)
        fail_msg("inv_plan failed: %s", e.msg);
    for (size_t i = 0; i < p->n; i++) {
        assert_int_equal(msg_validate(p->msgs[i].type, p->msgs[i].payload, &e), 0);
        assert_string_equal(json_string_value(json_object_get(p->msgs[i].payload, "order_id")),
                            ORDER);
    }
}

static void assert_ids(const json_t *payload, const char *key, const json_t *want)
{
    assert_true(json_equal(json_object_get(payload, key), want));
}

/* The reply names the pets it changed with their new versions, in the order given; steals
 * want. */
static void assert_pets(const json_t *payload, json_t *want)
{
    assert_non_null(want);
    if (!json_equal(json_object_get(payload, "pets"), want)) {
        char *got = json_dumps(json_object_get(payload, "pets"), JSON_COMPACT);
        fail_msg("pets: %s", got != NULL ? got : "(absent)");
    }
    json_decref(want);
}

/* [{PET1, 2}, {PET2, 5}]: the fixture's changed, as the reply names it. */
static json_t *both_changed(void)
{
    return json_pack("[{s:s,s:i},{s:s,s:i}]", "pet_id", PET1, "version", 2, "pet_id", PET2,
                     "version", 5);
}

static void test_reservation_statuses_read_back_their_names(void **state)
{
    (void)state;
    for (int r = INV_RES_NONE; r <= INV_RES_SOLD; r++) {
        inv_res_t back = INV_RES_SOLD + 1;
        assert_int_equal(inv_res_parse(inv_res_name((inv_res_t)r), &back), 0);
        assert_int_equal(back, r);
    }
    inv_res_t untouched = INV_RES_RESERVED;
    assert_int_equal(inv_res_parse("pending", &untouched), ERR_INVALID);
    assert_int_equal(inv_res_parse(NULL, &untouched), ERR_INVALID);
    assert_int_equal(untouched, INV_RES_RESERVED);
}

static void test_a_fresh_reservation_replies_reserved_naming_each_pet_it_changed(void **state)
{
    fixture_t *f = *state;
    inv_outcome_t o = outcome(INV_RES_NONE, INV_RES_RESERVED, f->pets, f->empty, f->changed);
    inv_plan_t p;
    plan_ok(INV_CMD_RESERVE, &o, &p);
    assert_int_equal(p.n, 1); /* no event per pet: the reply carries the changes */
    assert_int_equal(p.msgs[0].type, MSG_INVENTORY_RESERVED_V1);
    assert_ids(p.msgs[0].payload, "pet_ids", f->pets);
    assert_pets(p.msgs[0].payload, both_changed());
    assert_false(p.raced);
    assert_null(p.anomaly);
    inv_plan_clear(&p);
}

static void test_a_fresh_rejection_names_the_unavailable_pets_and_changes_nothing(void **state)
{
    fixture_t *f = *state;
    inv_outcome_t o = outcome(INV_RES_NONE, INV_RES_REJECTED, f->pets, f->unavailable, f->empty);
    inv_plan_t p;
    plan_ok(INV_CMD_RESERVE, &o, &p);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.msgs[0].type, MSG_INVENTORY_RESERVATION_REJECTED_V1);
    assert_ids(p.msgs[0].payload, "unavailable_pet_ids", f->unavailable);
    inv_plan_clear(&p);
}

static void test_a_repeated_reserve_of_a_reserved_or_sold_order_replies_reserved_again(void **s)
{
    fixture_t *f = *s;
    const inv_res_t priors[] = {INV_RES_RESERVED, INV_RES_SOLD};
    for (size_t i = 0; i < 2; i++) {
        inv_outcome_t o = outcome(priors[i], priors[i], f->pets, f->empty, f->empty);
        inv_plan_t p;
        plan_ok(INV_CMD_RESERVE, &o, &p);
        assert_int_equal(p.n, 1);
        assert_int_equal(p.msgs[0].type, MSG_INVENTORY_RESERVED_V1);
        assert_ids(p.msgs[0].payload, "pet_ids", f->pets);
        assert_pets(p.msgs[0].payload, json_array()); /* nothing changed this time */
        inv_plan_clear(&p);
    }
}

static void test_a_reserve_after_its_release_or_rejection_is_rejected_again(void **state)
{
    fixture_t *f = *state;
    /* A tombstone has no unavailable pets; a rejection remembers its own. */
    inv_outcome_t tomb = outcome(INV_RES_RELEASED, INV_RES_RELEASED, f->empty, f->empty, NULL);
    inv_outcome_t rejected =
        outcome(INV_RES_REJECTED, INV_RES_REJECTED, f->pets, f->unavailable, NULL);
    inv_plan_t p;
    plan_ok(INV_CMD_RESERVE, &tomb, &p);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.msgs[0].type, MSG_INVENTORY_RESERVATION_REJECTED_V1);
    assert_ids(p.msgs[0].payload, "unavailable_pet_ids", f->empty);
    inv_plan_clear(&p);
    plan_ok(INV_CMD_RESERVE, &rejected, &p);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.msgs[0].type, MSG_INVENTORY_RESERVATION_REJECTED_V1);
    assert_ids(p.msgs[0].payload, "unavailable_pet_ids", f->unavailable);
    inv_plan_clear(&p);
}

static void test_a_command_that_raced_a_concurrent_insert_asks_to_run_again(void **state)
{
    fixture_t *f = *state;
    inv_outcome_t o = outcome(INV_RES_NONE, INV_RES_NONE, f->pets, f->empty, f->empty);
    const inv_cmd_t cmds[] = {INV_CMD_RESERVE, INV_CMD_RELEASE};
    for (size_t i = 0; i < 2; i++) {
        inv_plan_t p;
        plan_ok(cmds[i], &o, &p);
        assert_true(p.raced);
        assert_int_equal(p.n, 0);
        inv_plan_clear(&p);
    }
}

static void test_a_reservation_that_took_only_some_pets_is_refused(void **state)
{
    fixture_t *f = *state;
    json_t *one = json_pack("[[s,i]]", PET1, 2);
    inv_outcome_t o = outcome(INV_RES_NONE, INV_RES_RESERVED, f->pets, f->empty, one);
    inv_plan_t p;
    err_t e;
    err_clear(&e);
    assert_int_equal(inv_plan(INV_CMD_RESERVE, ORDER, &o, &p, &e), ERR_INVALID);
    assert_int_equal(p.n, 0);
    assert_non_null(strstr(e.msg, "reserved 1"));
    json_decref(one);
}

static void test_malformed_changed_entries_are_refused(void **state)
{
    fixture_t *f = *state;
    json_t *bad[] = {json_pack("[[s]]", PET1), json_pack("[[s,i]]", PET1, 0),
                     json_pack("[[i,i]]", 1, 2), json_pack("{}")};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        inv_outcome_t o = outcome(INV_RES_RESERVED, INV_RES_SOLD, f->pets, NULL, bad[i]);
        inv_plan_t p;
        assert_int_equal(inv_plan(INV_CMD_CONFIRM_SALE, ORDER, &o, &p, NULL), ERR_INVALID);
        assert_int_equal(p.n, 0);
        json_decref(bad[i]);
    }
}

static void test_release_of_a_reservation_frees_the_pets_it_held(void **state)
{
    fixture_t *f = *state;
    inv_outcome_t o = outcome(INV_RES_RESERVED, INV_RES_RELEASED, f->pets, NULL, f->changed);
    inv_plan_t p;
    plan_ok(INV_CMD_RELEASE, &o, &p);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.msgs[0].type, MSG_INVENTORY_RELEASED_V1);
    assert_ids(p.msgs[0].payload, "pet_ids", f->pets);
    assert_pets(p.msgs[0].payload, both_changed());
    assert_null(p.anomaly);
    inv_plan_clear(&p);
}

static void test_release_names_only_the_pets_still_held_and_reports_the_others(void **state)
{
    fixture_t *f = *state;
    json_t *one = json_pack("[[s,i]]", PET2, 7);
    json_t *want = json_pack("[s]", PET2);
    inv_outcome_t o = outcome(INV_RES_RESERVED, INV_RES_RELEASED, f->pets, NULL, one);
    inv_plan_t p;
    plan_ok(INV_CMD_RELEASE, &o, &p);
    assert_int_equal(p.n, 1);
    assert_ids(p.msgs[0].payload, "pet_ids", want);
    assert_pets(p.msgs[0].payload, json_pack("[{s:s,s:i}]", "pet_id", PET2, "version", 7));
    assert_non_null(p.anomaly);
    inv_plan_clear(&p);
    json_decref(one);
    json_decref(want);
}

static void test_release_without_a_held_reservation_replies_released_with_no_pets(void **state)
{
    fixture_t *f = *state;
    const struct {
        inv_res_t prior, status;
    } cases[] = {
        {INV_RES_NONE, INV_RES_RELEASED}, /* the tombstone was just written */
        {INV_RES_RELEASED, INV_RES_RELEASED},
        {INV_RES_REJECTED, INV_RES_REJECTED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        inv_outcome_t o = outcome(cases[i].prior, cases[i].status, f->pets, NULL, f->empty);
        inv_plan_t p;
        plan_ok(INV_CMD_RELEASE, &o, &p);
        assert_int_equal(p.n, 1);
        assert_int_equal(p.msgs[0].type, MSG_INVENTORY_RELEASED_V1);
        assert_ids(p.msgs[0].payload, "pet_ids", f->empty);
        assert_pets(p.msgs[0].payload, json_array());
        assert_null(p.anomaly);
        inv_plan_clear(&p);
    }
}

static void test_release_of_a_sold_order_emits_nothing_and_names_the_anomaly(void **state)
{
    fixture_t *f = *state;
    inv_outcome_t o = outcome(INV_RES_SOLD, INV_RES_SOLD, f->pets, NULL, f->empty);
    inv_plan_t p;
    plan_ok(INV_CMD_RELEASE, &o, &p);
    assert_int_equal(p.n, 0);
    assert_false(p.raced);
    assert_non_null(p.anomaly);
    inv_plan_clear(&p);
}

static void test_confirm_sale_sells_the_reserved_pets(void **state)
{
    fixture_t *f = *state;
    inv_outcome_t o = outcome(INV_RES_RESERVED, INV_RES_SOLD, f->pets, NULL, f->changed);
    inv_plan_t p;
    plan_ok(INV_CMD_CONFIRM_SALE, &o, &p);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.msgs[0].type, MSG_INVENTORY_SALE_CONFIRMED_V1);
    assert_ids(p.msgs[0].payload, "pet_ids", f->pets);
    assert_pets(p.msgs[0].payload, both_changed());
    assert_null(p.anomaly);
    inv_plan_clear(&p);
}

static void test_confirm_sale_of_a_sold_order_replies_again_without_changes(void **state)
{
    fixture_t *f = *state;
    inv_outcome_t o = outcome(INV_RES_SOLD, INV_RES_SOLD, f->pets, NULL, f->empty);
    inv_plan_t p;
    plan_ok(INV_CMD_CONFIRM_SALE, &o, &p);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.msgs[0].type, MSG_INVENTORY_SALE_CONFIRMED_V1);
    assert_ids(p.msgs[0].payload, "pet_ids", f->pets);
    assert_pets(p.msgs[0].payload, json_array());
    inv_plan_clear(&p);
}

static void test_confirm_sale_without_a_live_reservation_emits_nothing_and_names_it(void **state)
{
    fixture_t *f = *state;
    const inv_res_t priors[] = {INV_RES_NONE, INV_RES_REJECTED, INV_RES_RELEASED};
    for (size_t i = 0; i < sizeof(priors) / sizeof(priors[0]); i++) {
        inv_outcome_t o = outcome(priors[i], priors[i], f->empty, NULL, f->empty);
        inv_plan_t p;
        plan_ok(INV_CMD_CONFIRM_SALE, &o, &p);
        assert_int_equal(p.n, 0);
        assert_false(p.raced);
        assert_non_null(p.anomaly);
        inv_plan_clear(&p);
    }
}

static void test_clearing_a_plan_twice_or_a_null_plan_is_harmless(void **state)
{
    fixture_t *f = *state;
    inv_outcome_t o = outcome(INV_RES_NONE, INV_RES_RESERVED, f->pets, f->empty, f->changed);
    inv_plan_t p;
    plan_ok(INV_CMD_RESERVE, &o, &p);
    inv_plan_clear(&p);
    assert_int_equal(p.n, 0);
    inv_plan_clear(&p);
    inv_plan_clear(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reservation_statuses_read_back_their_names),
        cmocka_unit_test(test_a_fresh_reservation_replies_reserved_naming_each_pet_it_changed),
        cmocka_unit_test(test_a_fresh_rejection_names_the_unavailable_pets_and_changes_nothing),
        cmocka_unit_test(
            test_a_repeated_reserve_of_a_reserved_or_sold_order_replies_reserved_again),
        cmocka_unit_test(test_a_reserve_after_its_release_or_rejection_is_rejected_again),
        cmocka_unit_test(test_a_command_that_raced_a_concurrent_insert_asks_to_run_again),
        cmocka_unit_test(test_a_reservation_that_took_only_some_pets_is_refused),
        cmocka_unit_test(test_malformed_changed_entries_are_refused),
        cmocka_unit_test(test_release_of_a_reservation_frees_the_pets_it_held),
        cmocka_unit_test(test_release_names_only_the_pets_still_held_and_reports_the_others),
        cmocka_unit_test(test_release_without_a_held_reservation_replies_released_with_no_pets),
        cmocka_unit_test(test_release_of_a_sold_order_emits_nothing_and_names_the_anomaly),
        cmocka_unit_test(test_confirm_sale_sells_the_reserved_pets),
        cmocka_unit_test(test_confirm_sale_of_a_sold_order_replies_again_without_changes),
        cmocka_unit_test(test_confirm_sale_without_a_live_reservation_emits_nothing_and_names_it),
        cmocka_unit_test(test_clearing_a_plan_twice_or_a_null_plan_is_harmless),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
