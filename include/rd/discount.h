/* SPDX-License-Identifier: MIT
 *
 * Discount arithmetic in integer minor units. The Redis script decides whether a redemption
 * is allowed; this one function decides how much it is worth, for the response, the stored
 * record and the ledger alike, so the amount can never differ between them.
 */
#ifndef RD_DISCOUNT_H
#define RD_DISCOUNT_H

#include <stdint.h>

#include "rd/status.h"

/* Largest amount (minor units) redeemd accepts anywhere: 10^15, far inside 2^53, so amounts
 * survive a trip through Lua numbers unchanged. */
#define RD_AMOUNT_MAX 1000000000000000LL
#define RD_BP_MAX     10000 /* 100.00 % in basis points */

enum rd_dtype { RD_DISCOUNT_NONE = 0, RD_DISCOUNT_PERCENT, RD_DISCOUNT_FIXED };

struct rd_discount {
    enum rd_dtype type;
    int64_t value;      /* basis points for percent, minor units for fixed */
    int64_t max_amount; /* cap, or -1 for none */
    int64_t min_order;  /* or -1 for none */
};

/**
 * Computes the discount for an order: percent rounds down, then the cap of max_amount, then
 * never more than the order. Returns RD_OK with *out set, RD_E_MIN_ORDER if the order is below
 * min_order, RD_E_INVALID_REQUEST for out-of-range inputs.
 */
enum rd_status rd_discount_compute(const struct rd_discount *d, int64_t order_amount, int64_t *out);

const char *rd_dtype_name(enum rd_dtype t);
/** "percent" or "fixed"; returns RD_DISCOUNT_NONE for anything else. */
enum rd_dtype rd_dtype_parse(const char *s);

#endif
