/* SPDX-License-Identifier: MIT
 *
 * Fixed-bucket histograms and Prometheus text helpers (see rd/metrics.h).
 */
#include "rd/metrics.h"

#include <string.h>

/* Dense below 5 ms, where the checkout path is expected to answer, sparse above. */
const uint32_t rd_mh_bounds_us[RD_MH_BUCKETS] = {
    100,   250,   500,    1000,   2000,   3000,    5000,    10000,
    25000, 50000, 100000, 250000, 500000, 1000000, 5000000,
};

const int rd_mstatus_codes[RD_MSTATUS_N] = {200, 201, 202, 204, 400, 401, 403, 404,
                                            405, 408, 409, 413, 415, 417, 422, 429,
                                            431, 499, 500, 501, 503, 505, 0};

void rd_mhist_observe(struct rd_mhist *h, uint64_t us)
{
    int i = 0;
    while (i < RD_MH_BUCKETS && us > rd_mh_bounds_us[i])
        i++;
    rd_counter_inc(&h->bucket[i], 1);
    rd_counter_inc(&h->sum_us, us);
}

void rd_mhist_add(struct rd_mhist_snap *s, const struct rd_mhist *h)
{
    for (int i = 0; i <= RD_MH_BUCKETS; i++)
        s->bucket[i] += rd_counter_get(&h->bucket[i]);
    s->sum_us += rd_counter_get(&h->sum_us);
}

unsigned long long rd_mhist_count(const struct rd_mhist_snap *s)
{
    unsigned long long n = 0;
    for (int i = 0; i <= RD_MH_BUCKETS; i++)
        n += s->bucket[i];
    return n;
}

void rd_prom_header(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void rd_prom_label_value(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        if (*s == '\n') {
            fputs("\\n", f);
            continue;
        }
        fputc(*s, f);
    }
}

void rd_prom_histogram(FILE *f, const char *name, const char *labels, const struct rd_mhist_snap *s)
{
    const char *sep = labels[0] ? "," : "";
    unsigned long long cum = 0;
    for (int i = 0; i < RD_MH_BUCKETS; i++) {
        cum += s->bucket[i];
        fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, rd_mh_bounds_us[i] / 1e6,
                cum);
    }
    cum += s->bucket[RD_MH_BUCKETS];
    fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
    if (labels[0]) {
        fprintf(f, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, s->sum_us / 1e6, name,
                labels, cum);
    } else {
        fprintf(f, "%s_sum %.6f\n%s_count %llu\n", name, s->sum_us / 1e6, name, cum);
    }
}

int rd_mstatus_slot(int http)
{
    for (int i = 0; i < RD_MSTATUS_N - 1; i++)
        if (rd_mstatus_codes[i] == http)
            return i;
    return RD_MSTATUS_N - 1;
}

double rd_batch_pace(double prev, const struct rd_mhist_snap *before,
                     const struct rd_mhist_snap *now, uint32_t slow_us)
{
    unsigned long long total = 0, slow = 0;
    for (int b = 0; b <= RD_MH_BUCKETS; b++) {
        unsigned long long d = now->bucket[b] - before->bucket[b];
        total += d;
        /* bucket b holds (bound[b-1], bound[b]]: all of it is slower than its lower bound */
        if (b > 0 && rd_mh_bounds_us[b - 1] >= slow_us)
            slow += d;
    }
    if (slow_us > 0 && total >= 20 && slow * 100 > total)
        return prev < 0.25 ? 0.25 : (prev * 2 > 8 ? 8 : prev * 2);
    return prev < 0.05 ? 0 : prev / 2;
}
