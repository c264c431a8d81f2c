/* Unit tests of the outbox partition rule (outbox.h): FNV-1a of the key modulo 16. The rule is
 * part of the row contract shared with the relay and with rows already in databases, so the
 * expected values are pinned here and must never change. Pure: no server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "outbox.h"

static void test_partitions_match_the_published_fnv1a_vectors(void **state)
{
    (void)state;
    /* FNV-1a 32: "" = 0x811c9dc5, "a" = 0xe40c292c, "foobar" = 0xbf9cf968. */
    assert_int_equal(outbox_partition(""), 0x811c9dc5u % OUTBOX_PARTITIONS);
    assert_int_equal(outbox_partition("a"), 0xe40c292cu % OUTBOX_PARTITIONS);
    assert_int_equal(outbox_partition("foobar"), 0xbf9cf968u % OUTBOX_PARTITIONS);
}

static void test_order_ids_land_in_their_pinned_partitions(void **state)
{
    (void)state;
    assert_int_equal(outbox_partition("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), 12);
    assert_int_equal(outbox_partition("00000000-0000-0000-0000-000000000000"), 1);
    assert_int_equal(outbox_partition("6f1c2a0e-5b7d-4c3e-9a8f-1d2e3f405162"), 13);
}

static void test_one_key_always_lands_in_the_same_partition(void **state)
{
    (void)state;
    int p = outbox_partition("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    for (int i = 0; i < 100; i++)
        assert_int_equal(outbox_partition("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), p);
}

static void test_keys_spread_over_every_partition(void **state)
{
    (void)state;
    int seen[OUTBOX_PARTITIONS] = {0};
    for (int i = 0; i < 1600; i++) {
        char key[40];
        snprintf(key, sizeof(key), "0190a1b2-c3d4-7e5f-8a9b-%012d", i);
        int q = outbox_partition(key);
        assert_true(q >= 0 && q < OUTBOX_PARTITIONS);
        seen[q]++;
    }
    for (int q = 0; q < OUTBOX_PARTITIONS; q++)
        assert_true(seen[q] > 50); /* 100 each on average */
}

static void test_bytes_above_ascii_hash_as_unsigned(void **state)
{
    (void)state;
    /* 0xe9 must be xored in as 233, not as a negative char. */
    uint32_t h = (2166136261u ^ 0xe9u) * 16777619u;
    assert_int_equal(outbox_partition("\xe9"), h % OUTBOX_PARTITIONS);
    assert_int_equal(outbox_partition(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partitions_match_the_published_fnv1a_vectors),
        cmocka_unit_test(test_order_ids_land_in_their_pinned_partitions),
        cmocka_unit_test(test_one_key_always_lands_in_the_same_partition),
        cmocka_unit_test(test_keys_spread_over_every_partition),
        cmocka_unit_test(test_bytes_above_ascii_hash_as_unsigned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
