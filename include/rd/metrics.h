/* SPDX-License-Identifier: MIT
 *
 * Operator metrics: fixed-bucket latency histograms and the Prometheus text format.
 *
 * A struct rd_mhist is written by one thread (a worker, the shipper) and read by whichever
 * worker renders /metrics, so its cells are relaxed atomics: a counter may be a few updates
 * behind another, never torn. Rendering sums the histograms of every thread first.
 */
#ifndef RD_METRICS_H
#define RD_METRICS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

/* Upper bounds (Prometheus "le") in microseconds; one more bucket is +Inf. */
#define RD_MH_BUCKETS 15
extern const uint32_t rd_mh_bounds_us[RD_MH_BUCKETS];

struct rd_mhist {
    atomic_ullong bucket[RD_MH_BUCKETS + 1]; /* not cumulative; the last is +Inf */
    atomic_ullong sum_us;
};

/** A plain sum of histograms, for rendering. */
struct rd_mhist_snap {
    unsigned long long bucket[RD_MH_BUCKETS + 1];
    unsigned long long sum_us;
};

static inline void rd_counter_inc(atomic_ullong *c, unsigned long long n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline unsigned long long rd_counter_get(const atomic_ullong *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

void rd_mhist_observe(struct rd_mhist *h, uint64_t us);
/** Adds h's current values to s. */
void rd_mhist_add(struct rd_mhist_snap *s, const struct rd_mhist *h);
/** Total observations in s. */
unsigned long long rd_mhist_count(const struct rd_mhist_snap *s);

/**
 * A batch job's extra rest, in chunk times, after a chunk: prev, doubled (from at least 0.25,
 * up to 8) when more than 1 % of at least 20 round trips observed between before and now
 * took longer than slow_us, else halved back towards 0. slow_us counts from the histogram
 * bound at or above it; 0 never backs off. (Checkouts first: see daemon/jobs/batcher.c.)
 */
double rd_batch_pace(double prev, const struct rd_mhist_snap *before,
                     const struct rd_mhist_snap *now, uint32_t slow_us);

/**
 * Writes s as the _bucket/_sum/_count series of histogram name (in seconds). labels is ""
 * or a label list without braces, e.g. route="/v1/validate" (already escaped).
 */
void rd_prom_histogram(FILE *f, const char *name, const char *labels,
                       const struct rd_mhist_snap *s);
/** Writes the # HELP and # TYPE lines. */
void rd_prom_header(FILE *f, const char *name, const char *type, const char *help);
/** Writes s as a label value: backslash, double quote and newline escaped. */
void rd_prom_label_value(FILE *f, const char *s);

/* The HTTP statuses counted one by one; anything else is counted as "other". */
#define RD_MSTATUS_N 23
extern const int rd_mstatus_codes[RD_MSTATUS_N]; /* the last slot is 0 = other */
/** The slot of an HTTP status in rd_mstatus_codes. */
int rd_mstatus_slot(int http);

#endif
