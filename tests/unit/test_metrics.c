/* SPDX-License-Identifier: MIT
 * /metrics building blocks: bucket edges, sums, the Prometheus text, label escaping. */
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

#include "rd/metrics.h"

static char *render(const struct rd_mhist_snap *s, const char *labels)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    rd_prom_histogram(f, "x_seconds", labels, s);
    fclose(f);
    return buf;
}

static void observe_lands_on_le_edges(void **state)
{
    (void)state;
    static struct rd_mhist h;
    rd_mhist_observe(&h, 0);
    rd_mhist_observe(&h, 100);     /* le 0.0001 is inclusive */
    rd_mhist_observe(&h, 101);     /* next bucket */
    rd_mhist_observe(&h, 9000000); /* +Inf */
    struct rd_mhist_snap s = {0};
    rd_mhist_add(&s, &h);
    rd_mhist_add(&s, &h);
    assert_int_equal(s.bucket[0], 4);
    assert_int_equal(s.bucket[1], 2);
    assert_int_equal(s.bucket[RD_MH_BUCKETS], 2);
    assert_int_equal(rd_mhist_count(&s), 8);
    assert_int_equal(s.sum_us, 2 * (100 + 101 + 9000000));
}

static void histogram_text_is_cumulative(void **state)
{
    (void)state;
    struct rd_mhist_snap s = {0};
    s.bucket[0] = 3;
    s.bucket[2] = 2;
    s.bucket[RD_MH_BUCKETS] = 1;
    s.sum_us = 1500000;
    char *t = render(&s, "route=\"/v1/validate\"");
    assert_non_null(strstr(t, "x_seconds_bucket{route=\"/v1/validate\",le=\"0.0001\"} 3\n"));
    assert_non_null(strstr(t, "x_seconds_bucket{route=\"/v1/validate\",le=\"0.00025\"} 3\n"));
    assert_non_null(strstr(t, "x_seconds_bucket{route=\"/v1/validate\",le=\"0.0005\"} 5\n"));
    assert_non_null(strstr(t, "x_seconds_bucket{route=\"/v1/validate\",le=\"5\"} 5\n"));
    assert_non_null(strstr(t, "x_seconds_bucket{route=\"/v1/validate\",le=\"+Inf\"} 6\n"));
    assert_non_null(strstr(t, "x_seconds_sum{route=\"/v1/validate\"} 1.500000\n"));
    assert_non_null(strstr(t, "x_seconds_count{route=\"/v1/validate\"} 6\n"));
    free(t);
    t = render(&s, "");
    assert_non_null(strstr(t, "x_seconds_bucket{le=\"+Inf\"} 6\n"));
    assert_non_null(strstr(t, "x_seconds_count 6\n"));
    free(t);
}

static void label_values_escaped(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    rd_prom_label_value(f, "a\"b\\c\nd");
    fclose(f);
    assert_string_equal(buf, "a\\\"b\\\\c\\nd");
    free(buf);
}

static void status_slots(void **state)
{
    (void)state;
    assert_int_equal(rd_mstatus_codes[rd_mstatus_slot(200)], 200);
    assert_int_equal(rd_mstatus_codes[rd_mstatus_slot(503)], 503);
    assert_int_equal(rd_mstatus_slot(418), RD_MSTATUS_N - 1);
    assert_int_equal(rd_mstatus_codes[RD_MSTATUS_N - 1], 0);
}

/* Bucket index of a bound in rd_mh_bounds_us (100, 250, 500, 1000, 2000, 3000, 5000, ...). */
static int bucket_of(uint32_t us)
{
    int i = 0;
    while (i < RD_MH_BUCKETS && us > rd_mh_bounds_us[i])
        i++;
    return i;
}

static void batch_pace_backs_off_and_recovers(void **state)
{
    (void)state;
    struct rd_mhist_snap before = {0}, now = {0};
    /* 1000 fast round trips and 10 of 5-10 ms: exactly 1 %, not more: no back-off */
    now.bucket[bucket_of(500)] = 1000;
    now.bucket[bucket_of(10000)] = 10;
    assert_true(rd_batch_pace(0, &before, &now, 5000) == 0);
    /* one more slow one tips it: the rest starts at a quarter chunk and doubles, up to 8 */
    now.bucket[bucket_of(10000)] = 11;
    assert_true(rd_batch_pace(0, &before, &now, 5000) == 0.25);
    assert_true(rd_batch_pace(0.25, &before, &now, 5000) == 0.5);
    assert_true(rd_batch_pace(6, &before, &now, 5000) == 8);
    assert_true(rd_batch_pace(8, &before, &now, 5000) == 8);
    /* 3-5 ms is not slower than 5 ms; only the window since the last chunk counts */
    struct rd_mhist_snap late = now;
    late.bucket[bucket_of(5000)] += 500;
    assert_true(rd_batch_pace(2, &now, &late, 5000) == 1);
    assert_true(rd_batch_pace(0.04, &now, &late, 5000) == 0);
    /* a threshold between bounds counts from the next bound up: 4 ms counts 5-10 ms only */
    assert_true(rd_batch_pace(0, &before, &now, 4000) == 0.25);
    /* too few round trips say nothing; 0 never backs off */
    struct rd_mhist_snap few = {0};
    few.bucket[RD_MH_BUCKETS] = 19; /* all of them past 5 s */
    assert_true(rd_batch_pace(1, &before, &few, 5000) == 0.5);
    assert_true(rd_batch_pace(0, &before, &now, 0) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(observe_lands_on_le_edges),
        cmocka_unit_test(histogram_text_is_cumulative),
        cmocka_unit_test(label_values_escaped),
        cmocka_unit_test(status_slots),
        cmocka_unit_test(batch_pace_backs_off_and_recovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
