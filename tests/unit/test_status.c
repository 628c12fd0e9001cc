/* SPDX-License-Identifier: MIT
 * Error-code to HTTP mapping: every code of DESIGN.md §3 with its status. */
#include <string.h>

#include "test_util.h"

#include "rd/status.h"

static void mapping(void **state)
{
    (void)state;
    struct {
        const char *name;
        int http;
    } want[] = {
        {"invalid_request", 400},
        {"unauthorized", 401},
        {"forbidden", 403},
        {"coupon_not_found", 404},
        {"coupon_not_started", 422},
        {"coupon_expired", 422},
        {"coupon_disabled", 422},
        {"limit_total_reached", 422},
        {"limit_user_reached", 422},
        {"limit_user_daily_reached", 422},
        {"limit_user_weekly_reached", 422},
        {"min_order_not_met", 422},
        {"currency_mismatch", 422},
        {"insufficient_balance", 422},
        {"idempotency_key_required", 400},
        {"idempotency_key_reused", 409},
        {"already_reversed", 409},
        {"rate_limited", 429},
        {"unavailable", 503},
        {"internal", 500},
        {"payload_too_large", 413},
        {"coupon_exists", 409},
        {"redemption_not_found", 404},
        {"method_not_allowed", 405},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        enum rd_status st = rd_status_from_name(want[i].name);
        assert_string_equal(rd_status_name(st), want[i].name);
        assert_int_equal(rd_status_http(st), want[i].http);
    }
}

static void table_complete(void **state)
{
    (void)state;
    for (int st = 0; st < RD_STATUS__COUNT; st++) {
        assert_non_null(rd_status_name((enum rd_status)st));
        assert_true(strlen(rd_status_message((enum rd_status)st)) > 0);
        assert_int_equal(rd_status_from_name(rd_status_name((enum rd_status)st)), st);
        int h = rd_status_http((enum rd_status)st);
        assert_true(st == RD_OK ? h == 200 : h >= 400);
    }
    assert_int_equal(rd_status_from_name("no_such_code"), RD_E_INTERNAL);
    assert_int_equal(rd_status_http((enum rd_status)999), 500);
    /* validate answers these as {"valid": false}; an unknown code stays a 404 */
    assert_true(rd_status_is_business(RD_E_LIMIT_DAILY));
    assert_false(rd_status_is_business(RD_E_COUPON_NOT_FOUND));
    assert_false(rd_status_is_business(RD_E_UNAVAILABLE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mapping),
        cmocka_unit_test(table_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
