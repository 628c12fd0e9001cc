/* SPDX-License-Identifier: MIT
 *
 * The one status vocabulary of redeemd. Every outcome a client can see, business rejection
 * or failure, is one of these; rd_status_http() is the single place that maps it to an HTTP
 * status and rd_status_name() to the wire code of DESIGN.md §3. Lua scripts return the wire
 * names, which rd_status_from_name() maps back.
 */
#ifndef RD_STATUS_H
#define RD_STATUS_H

enum rd_status {
    RD_OK = 0,
    RD_E_INVALID_REQUEST,
    RD_E_PAYLOAD_TOO_LARGE,
    RD_E_UNAUTHORIZED,
    RD_E_FORBIDDEN,
    RD_E_NOT_FOUND, /* no such route */
    RD_E_METHOD_NOT_ALLOWED,
    /* transport-level refusals: the request as HTTP, before any route sees it */
    RD_E_HEADERS_TOO_LARGE,
    RD_E_REQUEST_TIMEOUT,
    RD_E_UNSUPPORTED_MEDIA,
    RD_E_EXPECTATION_FAILED,
    RD_E_NOT_IMPLEMENTED,
    RD_E_HTTP_VERSION,
    RD_E_COUPON_NOT_FOUND,
    RD_E_REDEMPTION_NOT_FOUND,
    RD_E_COUPON_EXISTS,
    RD_E_COUPON_NOT_STARTED,
    RD_E_COUPON_EXPIRED,
    RD_E_COUPON_DISABLED,
    RD_E_LIMIT_TOTAL,
    RD_E_LIMIT_USER,
    RD_E_LIMIT_DAILY,
    RD_E_LIMIT_WEEKLY,
    RD_E_MIN_ORDER,
    RD_E_CURRENCY,
    RD_E_INSUFFICIENT_BALANCE,
    RD_E_KIND_MISMATCH,  /* a voucher used as a discount coupon, or the other way round */
    RD_E_BALANCE_LIMIT,  /* a recharge would take the balance over voucher_max_balance */
    RD_E_REFUND_EXCEEDS, /* a refund above what is left of the payment */
    RD_E_BATCH_NOT_FOUND,
    RD_E_FORMAT_TOO_SMALL, /* a batch's code format cannot hold the count asked for */
    RD_E_BATCH_FINISHED,   /* cancel of a batch that has already ended */
    RD_E_WEBHOOK_NOT_FOUND,
    RD_E_DELIVERY_NOT_FOUND,
    RD_E_IDEM_REQUIRED,
    RD_E_IDEM_REUSED,
    RD_E_ALREADY_REVERSED,
    RD_E_REVERSAL_WINDOW, /* the use is older than reversal_window_s */
    RD_E_CONFLICT,        /* concurrent admin update; retried internally */
    RD_E_RATE_LIMITED,
    RD_E_UNAVAILABLE,
    RD_E_INTERNAL,
    RD_STATUS__COUNT
};

/** Wire code, e.g. "limit_user_reached". Never NULL. */
const char *rd_status_name(enum rd_status st);
/** HTTP status code for the error envelope; 200 for RD_OK. */
int rd_status_http(enum rd_status st);
/** A default human-readable message. Never NULL. */
const char *rd_status_message(enum rd_status st);
/** Maps a wire code back; returns RD_E_INTERNAL for an unknown name. */
enum rd_status rd_status_from_name(const char *name);
/** True for the rejections a validate call reports as {"valid": false} rather than an error. */
int rd_status_is_business(enum rd_status st);

#endif
