/* SPDX-License-Identifier: MIT
 *
 * A high-resolution latency histogram for the load generator (HdrHistogram's log-linear
 * layout): values below 128 are exact, above that each power of two is split into 64
 * buckets, so any reported percentile is within 1.6 % of the true value, from 1 us to
 * hours, in a fixed 30 KB. Not thread safe: one per thread, merged at the end.
 */
#ifndef RD_HIST_H
#define RD_HIST_H

#include <stdint.h>

#define RD_HIST_SLOTS 3776

struct rd_hist {
    uint64_t count;
    uint64_t min, max;
    double sum;
    uint64_t slot[RD_HIST_SLOTS];
};

void rd_hist_init(struct rd_hist *h);
void rd_hist_record(struct rd_hist *h, uint64_t v);
void rd_hist_merge(struct rd_hist *dst, const struct rd_hist *src);
/**
 * The value at percentile p (0..100): the upper edge of the bucket holding it, capped at
 * the largest value seen, so a percentile is never reported lower than it was. 0 if empty.
 */
uint64_t rd_hist_percentile(const struct rd_hist *h, double p);
double rd_hist_mean(const struct rd_hist *h);

/* Exposed for the unit tests. */
int rd_hist_slot_of(uint64_t v);
uint64_t rd_hist_slot_high(int slot);

#endif
