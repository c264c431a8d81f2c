/* Unit tests of identifier generation and validation. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "uuid.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The 48-bit millisecond timestamp of a v7 id: its first 12 hex digits. */
static uint64_t v7_ms(const char *id)
{
    char hex[13];
    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    hex[12] = '\0';
    return strtoull(hex, NULL, 16);
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_v7_ids_carry_version_7_and_the_rfc_variant(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++) {
        char id[UUID_STR_LEN];
        uuid_v7(id);
        assert_int_equal(strlen(id), 36);
        assert_true(uuid_valid(id));
        assert_int_equal(id[14], '7');
        assert_non_null(strchr("89ab", id[19]));
    }
}

static void test_v7_ids_made_in_one_process_are_strictly_increasing(void **state)
{
    (void)state;
    char prev[UUID_STR_LEN] = "";
    for (int i = 0; i < 5000; i++) {
        char id[UUID_STR_LEN];
        uuid_v7(id);
        if (strcmp(prev, id) >= 0)
            fail_msg("id %d \"%s\" does not sort after \"%s\"", i, id, prev);
        memcpy(prev, id, sizeof(id));
    }
}

static void test_a_v7_id_starts_with_the_current_unix_milliseconds(void **state)
{
    (void)state;
    uint64_t before = now_ms();
    char id[UUID_STR_LEN];
    uuid_v7(id);
    uint64_t after = now_ms();
    /* The counter may push the stamp a little ahead of the clock, never behind it. */
    assert_true(v7_ms(id) >= before);
    assert_true(v7_ms(id) <= after + 1000);
}

#define PER_THREAD 2000
#define THREADS 4

static void *make_ids(void *arg)
{
    char(*ids)[UUID_STR_LEN] = arg;
    for (int i = 0; i < PER_THREAD; i++)
        uuid_v7(ids[i]);
    return NULL;
}

static void test_v7_ids_from_several_threads_are_unique_and_ordered_per_thread(void **state)
{
    (void)state;
    char(*ids)[UUID_STR_LEN] = calloc(THREADS * PER_THREAD, UUID_STR_LEN);
    assert_non_null(ids);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, make_ids, ids + i * PER_THREAD), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int k = 0; k < THREADS; k++)
        for (int i = 1; i < PER_THREAD; i++)
            assert_true(strcmp(ids[k * PER_THREAD + i - 1], ids[k * PER_THREAD + i]) < 0);
    qsort(ids, THREADS * PER_THREAD, UUID_STR_LEN, cmp_ids);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

static void test_v4_ids_carry_version_4_the_rfc_variant_and_do_not_repeat(void **state)
{
    (void)state;
    char(*ids)[UUID_STR_LEN] = calloc(2000, UUID_STR_LEN);
    assert_non_null(ids);
    for (int i = 0; i < 2000; i++) {
        uuid_v4(ids[i]);
        assert_true(uuid_valid(ids[i]));
        assert_int_equal(ids[i][14], '4');
        assert_non_null(strchr("89ab", ids[i][19]));
    }
    qsort(ids, 2000, UUID_STR_LEN, cmp_ids);
    for (int i = 1; i < 2000; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

static void test_only_the_canonical_lower_case_form_is_valid(void **state)
{
    (void)state;
    assert_true(uuid_valid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
    assert_true(uuid_valid("00000000-0000-0000-0000-000000000000"));
    const char *bad[] = {
        "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B",  /* upper case: refused by design */
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5",   /* 35 characters */
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b0", /* 37 characters */
        "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b1234",  /* no dashes */
        "{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}", "0190a1b2-c3d4-7e5f-8a9b_0c1d2e3f4a5b",
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4g5b", /* g is not hex */
        " 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",  "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (uuid_valid(bad[i]))
            fail_msg("accepted \"%s\"", bad[i]);
    assert_false(uuid_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v7_ids_carry_version_7_and_the_rfc_variant),
        cmocka_unit_test(test_v7_ids_made_in_one_process_are_strictly_increasing),
        cmocka_unit_test(test_a_v7_id_starts_with_the_current_unix_milliseconds),
        cmocka_unit_test(test_v7_ids_from_several_threads_are_unique_and_ordered_per_thread),
        cmocka_unit_test(test_v4_ids_carry_version_4_the_rfc_variant_and_do_not_repeat),
        cmocka_unit_test(test_only_the_canonical_lower_case_form_is_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
