/* SPDX-License-Identifier: MIT
 * The load generator's histogram: slot layout, precision bound, percentiles, merge. */
#include "test_util.h"

#include <stdlib.h>

#include "rd/hist.h"

static void slots_are_contiguous_and_ordered(void **state)
{
    (void)state;
    /* every value lies inside its slot, and slots tile the value range without gaps */
    uint64_t prev_high = 0;
    for (int s = 0; s < RD_HIST_SLOTS; s++) {
        uint64_t hi = rd_hist_slot_high(s);
        if (s > 0)
            assert_true(hi > prev_high);
        assert_int_equal(rd_hist_slot_of(hi), s);
        if (s > 0)
            assert_int_equal(rd_hist_slot_of(prev_high + 1), s);
        prev_high = hi;
    }
    assert_int_equal(prev_high, UINT64_MAX);
    assert_int_equal(rd_hist_slot_of(UINT64_MAX), RD_HIST_SLOTS - 1);
}

static void precision_within_one_point_six_percent(void **state)
{
    (void)state;
    for (uint64_t v = 1; v < (1ULL << 40); v = v * 3 + 1) {
        uint64_t hi = rd_hist_slot_high(rd_hist_slot_of(v));
        assert_true(hi >= v);
        assert_true((double)(hi - v) <= (double)v / 64.0);
    }
}

static void percentiles_of_known_data(void **state)
{
    (void)state;
    struct rd_hist *h = malloc(sizeof(*h));
    rd_hist_init(h);
    assert_int_equal(rd_hist_percentile(h, 50), 0);
    for (uint64_t v = 1; v <= 100; v++)
        rd_hist_record(h, v);
    assert_int_equal(h->count, 100);
    assert_int_equal(rd_hist_percentile(h, 50), 50);
    assert_int_equal(rd_hist_percentile(h, 99), 99);
    assert_int_equal(rd_hist_percentile(h, 99.9), 100);
    assert_int_equal(rd_hist_percentile(h, 100), 100);
    assert_int_equal(rd_hist_percentile(h, 0), 1);
    assert_true(rd_hist_mean(h) > 50.49 && rd_hist_mean(h) < 50.51);
    /* one slow outlier: p99.9 of 1001 values is the outlier, capped at the exact max */
    rd_hist_record(h, 1234567);
    for (int i = 0; i < 900; i++)
        rd_hist_record(h, 10);
    assert_int_equal(rd_hist_percentile(h, 99.95), 1234567);
    assert_int_equal(h->max, 1234567);
    assert_int_equal(h->min, 1);
    free(h);
}

static void large_values_never_reported_low(void **state)
{
    (void)state;
    struct rd_hist *h = malloc(sizeof(*h));
    rd_hist_init(h);
    for (int i = 0; i < 1000; i++)
        rd_hist_record(h, 5000 + (uint64_t)i);
    uint64_t p50 = rd_hist_percentile(h, 50);
    assert_true(p50 >= 5499 && p50 <= 5499 + 5499 / 64);
    free(h);
}

static void merge_adds_up(void **state)
{
    (void)state;
    struct rd_hist *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    rd_hist_init(a);
    rd_hist_init(b);
    for (int i = 0; i < 10; i++)
        rd_hist_record(a, 7);
    for (int i = 0; i < 30; i++)
        rd_hist_record(b, 300);
    rd_hist_merge(a, b);
    assert_int_equal(a->count, 40);
    assert_int_equal(a->min, 7);
    assert_int_equal(a->max, 300);
    assert_int_equal(rd_hist_percentile(a, 25), 7);
    assert_true(rd_hist_percentile(a, 26) >= 300);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slots_are_contiguous_and_ordered),
        cmocka_unit_test(precision_within_one_point_six_percent),
        cmocka_unit_test(percentiles_of_known_data),
        cmocka_unit_test(large_values_never_reported_low),
        cmocka_unit_test(merge_adds_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
