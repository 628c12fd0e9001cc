/* SPDX-License-Identifier: MIT
 *
 * The status table: wire code, HTTP status and default message, in enum order.
 */
#include <string.h>

#include "rd/status.h"

struct status_row {
    const char *name;
    int http;
    int business; /* a validate call answers these as {"valid": false} */
    const char *message;
};

static const struct status_row rows[RD_STATUS__COUNT] = {
    [RD_OK] = {"ok", 200, 0, "ok"},
    [RD_E_INVALID_REQUEST] = {"invalid_request", 400, 0, "the request is not valid"},
    [RD_E_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413, 0, "the request body is too large"},
    [RD_E_UNAUTHORIZED] = {"unauthorized", 401, 0, "missing or invalid API key"},
    [RD_E_FORBIDDEN] = {"forbidden", 403, 0, "the API key lacks the scope for this call"},
    [RD_E_NOT_FOUND] = {"not_found", 404, 0, "no such endpoint"},
    [RD_E_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405, 0,
                                 "method not allowed on this endpoint"},
    [RD_E_HEADERS_TOO_LARGE] = {"headers_too_large", 431, 0, "the request header is too large"},
    [RD_E_REQUEST_TIMEOUT] = {"request_timeout", 408, 0,
                              "the request did not arrive in time; send it again"},
    [RD_E_UNSUPPORTED_MEDIA] = {"unsupported_media_type", 415, 0,
                                "the body must be application/json"},
    [RD_E_EXPECTATION_FAILED] = {"expectation_failed", 417, 0,
                                 "only Expect: 100-continue is served"},
    [RD_E_NOT_IMPLEMENTED] = {"not_implemented", 501, 0, "not implemented by this server"},
    [RD_E_HTTP_VERSION] = {"http_version_not_supported", 505, 0,
                           "only HTTP/1.0 and HTTP/1.1 are served"},
    [RD_E_COUPON_NOT_FOUND] = {"coupon_not_found", 404, 0, "no such coupon"},
    [RD_E_REDEMPTION_NOT_FOUND] = {"redemption_not_found", 404, 0, "no such redemption"},
    [RD_E_COUPON_EXISTS] = {"coupon_exists", 409, 0, "a coupon with this code already exists"},
    [RD_E_COUPON_NOT_STARTED] = {"coupon_not_started", 422, 1, "the coupon is not valid yet"},
    [RD_E_COUPON_EXPIRED] = {"coupon_expired", 422, 1, "the coupon has expired"},
    [RD_E_COUPON_DISABLED] = {"coupon_disabled", 422, 1, "the coupon is disabled"},
    [RD_E_LIMIT_TOTAL] = {"limit_total_reached", 422, 1, "the coupon has been used up"},
    [RD_E_LIMIT_USER] = {"limit_user_reached", 422, 1,
                         "this user has used the coupon as often as allowed"},
    [RD_E_LIMIT_DAILY] = {"limit_user_daily_reached", 422, 1,
                          "this user has used the coupon as often as allowed today"},
    [RD_E_LIMIT_WEEKLY] = {"limit_user_weekly_reached", 422, 1,
                           "this user has used the coupon as often as allowed this week"},
    [RD_E_MIN_ORDER] = {"min_order_not_met", 422, 1, "the order is below the coupon's minimum"},
    [RD_E_CURRENCY] = {"currency_mismatch", 422, 1, "the order currency differs from the coupon's"},
    [RD_E_INSUFFICIENT_BALANCE] = {"insufficient_balance", 422, 1,
                                   "the voucher balance is too low"},
    [RD_E_KIND_MISMATCH] = {"kind_mismatch", 422, 1,
                            "this code is of the other kind (discount coupon or voucher)"},
    [RD_E_BALANCE_LIMIT] = {"balance_limit_exceeded", 422, 0,
                            "the balance would exceed the maximum a voucher may hold"},
    [RD_E_REFUND_EXCEEDS] = {"refund_exceeds_payment", 422, 0,
                             "the refund is larger than what is left of the payment"},
    [RD_E_BATCH_NOT_FOUND] = {"batch_not_found", 404, 0, "no such batch"},
    [RD_E_FORMAT_TOO_SMALL] = {"format_too_small", 422, 0,
                               "the code format cannot hold that many codes"},
    [RD_E_BATCH_FINISHED] = {"batch_finished", 409, 0, "the batch has already ended"},
    [RD_E_WEBHOOK_NOT_FOUND] = {"webhook_not_found", 404, 0, "no such webhook"},
    [RD_E_DELIVERY_NOT_FOUND] = {"delivery_not_found", 404, 0, "no such delivery of this webhook"},
    [RD_E_IDEM_REQUIRED] = {"idempotency_key_required", 400, 0,
                            "an Idempotency-Key header is required"},
    [RD_E_IDEM_REUSED] = {"idempotency_key_reused", 409, 0,
                          "this Idempotency-Key was used with a different request"},
    [RD_E_ALREADY_REVERSED] = {"already_reversed", 409, 0, "the redemption is already reversed"},
    [RD_E_REVERSAL_WINDOW] = {"reversal_window_passed", 422, 0,
                              "the use is older than the reversal window; it can no longer be "
                              "given back"},
    [RD_E_CONFLICT] = {"conflict", 409, 0, "the coupon changed concurrently; retry"},
    [RD_E_RATE_LIMITED] = {"rate_limited", 429, 0, "too many requests"},
    [RD_E_UNAVAILABLE] = {"unavailable", 503, 0,
                          "temporarily unavailable; safe to retry with the same Idempotency-Key"},
    [RD_E_INTERNAL] = {"internal", 500, 0, "internal error"},
};

const char *rd_status_name(enum rd_status st)
{
    return (unsigned)st < RD_STATUS__COUNT ? rows[st].name : rows[RD_E_INTERNAL].name;
}

int rd_status_http(enum rd_status st)
{
    return (unsigned)st < RD_STATUS__COUNT ? rows[st].http : 500;
}

const char *rd_status_message(enum rd_status st)
{
    return (unsigned)st < RD_STATUS__COUNT ? rows[st].message : rows[RD_E_INTERNAL].message;
}

int rd_status_is_business(enum rd_status st)
{
    return (unsigned)st < RD_STATUS__COUNT && rows[st].business;
}

enum rd_status rd_status_from_name(const char *name)
{
    for (int i = 0; i < RD_STATUS__COUNT; i++)
        if (strcmp(rows[i].name, name) == 0)
            return (enum rd_status)i;
    return RD_E_INTERNAL;
}
