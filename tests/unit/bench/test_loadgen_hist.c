/* Unit tests of the load generator's log-linear latency histogram (tests/bench/lg_hist.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "lg_hist.h"

static lg_hist_t *new_hist(void)
{
    lg_hist_t *h = malloc(sizeof(*h));
    assert_non_null(h);
    lg_hist_init(h);
    return h;
}

static void test_small_values_are_counted_exactly(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < LG_HIST_SUB; v++) {
        assert_int_equal(lg_hist_index(v), v);
        assert_int_equal(lg_hist_upper(lg_hist_index(v)), v);
    }
}

static void test_every_bucket_holds_its_values_within_the_relative_error(void **state)
{
    (void)state;
    /* Walk values across every power of two up to the limit: each lands in a bucket whose upper
     * edge is at least the value and at most 1/256 above it, and buckets never go backwards. */
    unsigned last = 0;
    for (unsigned bit = 0; bit < LG_HIST_MAX_BITS; bit++) {
        uint64_t base = UINT64_C(1) << bit;
        uint64_t probes[] = {base, base + base / 3, base + base / 2, 2 * base - 1};
        for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
            uint64_t v = probes[i];
            unsigned idx = lg_hist_index(v);
            assert_true(idx < LG_HIST_BUCKETS);
            assert_true(idx >= last);
            last = idx;
            uint64_t up = lg_hist_upper(idx);
            assert_true(up >= v);
            assert_true((double)(up - v) <= (double)v / LG_HIST_SUB);
            if (idx > 0)
                assert_true(lg_hist_upper(idx - 1) < v);
        }
    }
}

static void test_values_beyond_the_limit_go_to_the_last_bucket_and_max_stays_exact(void **state)
{
    (void)state;
    lg_hist_t *h = new_hist();
    assert_int_equal(lg_hist_index(LG_HIST_MAX_US), LG_HIST_BUCKETS - 1);
    assert_int_equal(lg_hist_index(UINT64_MAX), LG_HIST_BUCKETS - 1);
    lg_hist_record(h, UINT64_C(1) << 50);
    assert_int_equal(h->max, UINT64_C(1) << 50);
    assert_int_equal(lg_hist_percentile(h, 100.0), UINT64_C(1) << 50);
    free(h);
}

static void test_percentiles_of_one_to_ten_thousand_match_the_ranks(void **state)
{
    (void)state;
    lg_hist_t *h = new_hist();
    for (uint64_t v = 1; v <= 10000; v++)
        lg_hist_record(h, v);
    assert_int_equal(h->count, 10000);
    assert_int_equal(lg_hist_percentile(h, 0.0), 1);
    assert_int_equal(lg_hist_percentile(h, 100.0), 10000);
    double ps[] = {50.0, 90.0, 99.0, 99.9};
    uint64_t want[] = {5000, 9000, 9900, 9990};
    for (size_t i = 0; i < 4; i++) {
        uint64_t got = lg_hist_percentile(h, ps[i]);
        assert_true(got >= want[i]);
        assert_true((double)(got - want[i]) <= (double)want[i] / LG_HIST_SUB);
    }
    assert_true(lg_hist_mean(h) > 5000.49 && lg_hist_mean(h) < 5000.51);
    free(h);
}

static void test_a_rare_slow_value_shows_only_in_the_high_percentiles(void **state)
{
    (void)state;
    lg_hist_t *h = new_hist();
    for (int i = 0; i < 999; i++)
        lg_hist_record(h, 2000); /* 2 ms */
    lg_hist_record(h, 3000000);  /* one 3 s outlier */
    assert_int_equal(lg_hist_percentile(h, 50.0), lg_hist_upper(lg_hist_index(2000)));
    assert_int_equal(lg_hist_percentile(h, 99.9), lg_hist_upper(lg_hist_index(2000)));
    assert_int_equal(lg_hist_percentile(h, 99.95), 3000000);
    assert_int_equal(h->min, 2000);
    free(h);
}

static void test_an_empty_histogram_answers_zero(void **state)
{
    (void)state;
    lg_hist_t *h = new_hist();
    assert_int_equal(lg_hist_percentile(h, 50.0), 0);
    assert_int_equal(lg_hist_percentile(h, 100.0), 0);
    assert_true(lg_hist_mean(h) == 0.0);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_values_are_counted_exactly),
        cmocka_unit_test(test_every_bucket_holds_its_values_within_the_relative_error),
        cmocka_unit_test(test_values_beyond_the_limit_go_to_the_last_bucket_and_max_stays_exact),
        cmocka_unit_test(test_percentiles_of_one_to_ten_thousand_match_the_ranks),
        cmocka_unit_test(test_a_rare_slow_value_shows_only_in_the_high_percentiles),
        cmocka_unit_test(test_an_empty_histogram_answers_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
