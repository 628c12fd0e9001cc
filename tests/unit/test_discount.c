/* SPDX-License-Identifier: MIT
 * Discount arithmetic: rounding, caps, minimum order, overflow edges. */
#include "test_util.h"

#include "rd/discount.h"

static int64_t disc(enum rd_dtype t, int64_t v, int64_t max, int64_t min, int64_t order,
                    enum rd_status *st)
{
    struct rd_discount d = {t, v, max, min};
    int64_t out = -12345;
    *st = rd_discount_compute(&d, order, &out);
    return out;
}

static void percent_rounds_down(void **state)
{
    (void)state;
    enum rd_status st;
    assert_int_equal(disc(RD_DISCOUNT_PERCENT, 1000, -1, -1, 2599, &st), 259); /* 259.9 */
    assert_int_equal(st, RD_OK);
    assert_int_equal(disc(RD_DISCOUNT_PERCENT, 1, -1, -1, 9999, &st), 0); /* 0.9999 */
    assert_int_equal(disc(RD_DISCOUNT_PERCENT, 1, -1, -1, 10000, &st), 1);
    assert_int_equal(disc(RD_DISCOUNT_PERCENT, 3333, -1, -1, 100, &st), 33);
    assert_int_equal(disc(RD_DISCOUNT_PERCENT, 10000, -1, -1, 12345, &st), 12345);
}

static void percent_exact_at_largest_amounts(void **state)
{
    (void)state;
    enum rd_status st;
    /* 10^15 * 9999 overflows nothing and stays exact. */
    assert_int_equal(disc(RD_DISCOUNT_PERCENT, 9999, -1, -1, RD_AMOUNT_MAX, &st),
                     999900000000000LL);
    assert_int_equal(disc(RD_DISCOUNT_PERCENT, 7, -1, -1, 999999999999999LL, &st),
                     699999999999LL); /* floor(999999999999999 * 7 / 10000) */
    assert_int_equal(st, RD_OK);
}

static void caps(void **state)
{
    (void)state;
    enum rd_status st;
    assert_int_equal(disc(RD_DISCOUNT_PERCENT, 5000, 500, -1, 2000, &st), 500);
    assert_int_equal(disc(RD_DISCOUNT_PERCENT, 5000, 500, -1, 800, &st), 400);
    assert_int_equal(disc(RD_DISCOUNT_FIXED, 1500, -1, -1, 1000, &st), 1000); /* never > order */
    assert_int_equal(disc(RD_DISCOUNT_FIXED, 1500, -1, -1, 5000, &st), 1500);
    assert_int_equal(disc(RD_DISCOUNT_FIXED, 1500, 1000, -1, 5000, &st), 1000);
}

static void min_order(void **state)
{
    (void)state;
    enum rd_status st;
    disc(RD_DISCOUNT_FIXED, 500, -1, 3000, 2999, &st);
    assert_int_equal(st, RD_E_MIN_ORDER);
    assert_int_equal(disc(RD_DISCOUNT_FIXED, 500, -1, 3000, 3000, &st), 500);
    assert_int_equal(st, RD_OK);
}

static void bad_inputs(void **state)
{
    (void)state;
    enum rd_status st;
    disc(RD_DISCOUNT_PERCENT, 10001, -1, -1, 100, &st);
    assert_int_equal(st, RD_E_INVALID_REQUEST);
    disc(RD_DISCOUNT_FIXED, 1, -1, -1, -1, &st);
    assert_int_equal(st, RD_E_INVALID_REQUEST);
    disc(RD_DISCOUNT_FIXED, 1, -1, -1, RD_AMOUNT_MAX + 1, &st);
    assert_int_equal(st, RD_E_INVALID_REQUEST);
}

static void names(void **state)
{
    (void)state;
    assert_int_equal(rd_dtype_parse("percent"), RD_DISCOUNT_PERCENT);
    assert_int_equal(rd_dtype_parse("fixed"), RD_DISCOUNT_FIXED);
    assert_int_equal(rd_dtype_parse("Percent"), RD_DISCOUNT_NONE);
    assert_string_equal(rd_dtype_name(RD_DISCOUNT_FIXED), "fixed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(percent_rounds_down),
        cmocka_unit_test(percent_exact_at_largest_amounts),
        cmocka_unit_test(caps),
        cmocka_unit_test(min_order),
        cmocka_unit_test(bad_inputs),
        cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
