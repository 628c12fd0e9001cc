/* SPDX-License-Identifier: MIT
 *
 * Discount arithmetic. All values are bounded by RD_AMOUNT_MAX (10^15) and RD_BP_MAX (10^4),
 * so order * bp < 10^19 would overflow int64; the percent is split into whole and partial
 * ten-thousandths to stay exact without wider types.
 */
#include <string.h>

#include "rd/discount.h"

enum rd_status rd_discount_compute(const struct rd_discount *d, int64_t order_amount, int64_t *out)
{
    if (order_amount < 0 || order_amount > RD_AMOUNT_MAX)
        return RD_E_INVALID_REQUEST;
    if (d->min_order > 0 && order_amount < d->min_order)
        return RD_E_MIN_ORDER;

    int64_t v;
    switch (d->type) {
    case RD_DISCOUNT_PERCENT:
        if (d->value < 0 || d->value > RD_BP_MAX)
            return RD_E_INVALID_REQUEST;
        /* floor(order * bp / 10000) without overflow: order = q * 10000 + r. */
        v = (order_amount / RD_BP_MAX) * d->value +
            ((order_amount % RD_BP_MAX) * d->value) / RD_BP_MAX;
        break;
    case RD_DISCOUNT_FIXED:
        if (d->value < 0 || d->value > RD_AMOUNT_MAX)
            return RD_E_INVALID_REQUEST;
        v = d->value;
        break;
    default:
        v = 0;
        break;
    }
    if (d->max_amount >= 0 && v > d->max_amount)
        v = d->max_amount;
    if (v > order_amount)
        v = order_amount;
    *out = v;
    return RD_OK;
}

const char *rd_dtype_name(enum rd_dtype t)
{
    switch (t) {
    case RD_DISCOUNT_PERCENT:
        return "percent";
    case RD_DISCOUNT_FIXED:
        return "fixed";
    default:
        return "none";
    }
}

enum rd_dtype rd_dtype_parse(const char *s)
{
    if (!strcmp(s, "percent"))
        return RD_DISCOUNT_PERCENT;
    if (!strcmp(s, "fixed"))
        return RD_DISCOUNT_FIXED;
    return RD_DISCOUNT_NONE;
}
