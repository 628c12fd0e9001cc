/* SPDX-License-Identifier: MIT
 *
 * Log-linear histogram (see rd/hist.h).
 */
#include "rd/hist.h"

#include <string.h>

int rd_hist_slot_of(uint64_t v)
{
    if (v < 128)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6; /* v >> shift is in [64, 127] */
    return 128 + (shift - 1) * 64 + (int)((v >> shift) - 64);
}

uint64_t rd_hist_slot_high(int slot)
{
    if (slot < 128)
        return (uint64_t)slot;
    int k = slot - 128, shift = k / 64 + 1;
    uint64_t m = (uint64_t)(k % 64 + 64);
    if (shift >= 57 && m == 127)
        return UINT64_MAX;
    return ((m + 1) << shift) - 1;
}

void rd_hist_init(struct rd_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void rd_hist_record(struct rd_hist *h, uint64_t v)
{
    h->slot[rd_hist_slot_of(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void rd_hist_merge(struct rd_hist *dst, const struct rd_hist *src)
{
    for (int i = 0; i < RD_HIST_SLOTS; i++)
        dst->slot[i] += src->slot[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t rd_hist_percentile(const struct rd_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p >= 100)
        return h->max;
    /* the rank of the value at p: ceil(p% of count), at least 1 */
    double want = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want || rank == 0)
        rank++;
    uint64_t seen = 0;
    for (int i = 0; i < RD_HIST_SLOTS; i++) {
        seen += h->slot[i];
        if (seen >= rank) {
            uint64_t hi = rd_hist_slot_high(i);
            return hi < h->max ? hi : h->max;
        }
    }
    return h->max;
}

double rd_hist_mean(const struct rd_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0;
}
