/* SPDX-License-Identifier: MIT
 *
 * GET /metrics: what an operator watches, in the Prometheus text format.
 *
 * Each worker counts into its own struct rd_wmetrics (relaxed atomics, written only by that
 * worker, so counting costs no lock and no shared cache line); the rendering worker sums
 * every worker's block, the shipper's counters and the process figures. The registry of
 * workers is filled once by main() before any thread starts and read-only afterwards.
 */
#ifndef RD_DAEMON_METRICS_H
#define RD_DAEMON_METRICS_H

#include <stdio.h>

#include "rd/metrics.h"
#include "rd/status.h"

#define RD_MROUTES 48 /* routes of http.c plus "unmatched"; checked there */

struct rd_wmetrics {
    atomic_ullong requests[RD_MROUTES][RD_MSTATUS_N];
    struct rd_mhist latency[RD_MROUTES];
    atomic_ullong errors[RD_STATUS__COUNT];
    atomic_ullong limited[4]; /* refusals by guessing budget: ip, user, session, key */
};

struct rd_worker;
/** main(), before the workers start: the workers whose counters /metrics sums. */
void rd_metrics_register(struct rd_worker *workers, int n);
/** Adds every worker's Redis round-trip histogram to s. Any thread. */
void rd_metrics_redis_rtt(struct rd_mhist_snap *s);
/** Whether every worker has its Redis ready, and its API keys loaded (any thread). */
void rd_workers_ready(int *redis, int *keys);
/** Writes the whole exposition to f. Any worker thread. */
void rd_metrics_render(FILE *f);

#endif
