/* SPDX-License-Identifier: MIT
 *
 * The ledger shipper: a thread with its own event loop that moves the outbox streams
 * ({NNNN}:log, consumer group "pgsink") into PostgreSQL, exactly once per transaction id.
 *
 *   read    XREADGROUP per bucket (its own pending list first after a start, then new
 *           entries), plus, every few seconds, entries another consumer left pending longer
 *           than ship_claim_idle_ms (XPENDING + XCLAIM); an entry delivered
 *           ship_max_deliveries times, or one that is not a ledger row, is copied to the
 *           bucket's dead-letter stream {NNNN}:dead and acknowledged, never dropped.
 *   write   one transaction: COPY into a temporary staging table, then
 *           INSERT ... ON CONFLICT DO NOTHING into the partitioned transactions table, the
 *           audit log and the coupon mirror (libpq nonblocking on this thread's loop).
 *   ack     only after COMMIT: XACK and trim below the oldest pending entry
 *           (scripts/lua/ship_ack.lua), never MAXLEN.
 *
 * A crash anywhere leaves the entries pending; they are shipped again and the unique key
 * (txn_id, ts) turns the second copy into a no-op. While PostgreSQL is down the batch waits
 * and the streams grow; the backlog (sum of XLEN) is published for /readyz and for the
 * workers, which answer redemptions 503 above max_backlog.
 *
 * Owns its Redis context (synchronous hiredis: this thread does nothing else), its PGconn
 * and the batch. Other threads read only the atomics behind rd_shipper_backlog() and
 * rd_shipper_rows().
 */
#ifndef RD_SHIPPER_H
#define RD_SHIPPER_H

#include <stdint.h>

#include "rd/config.h"
#include "rd/metrics.h"

/** A snapshot for /metrics and /readyz. */
struct rd_shipper_stats {
    long long backlog;        /* -1: unknown (not counted yet, or Redis cannot be asked) */
    long long backlog_at_ms;  /* wall clock of the count behind backlog (0: never counted) */
    long long backlog_seq;    /* counts taken so far: a later count has a higher number */
    long long last_commit_ms; /* wall clock of the last batch committed (0: none yet) */
    long long started_ms;     /* wall clock of the shipper's start */
    unsigned long long rows, batches, dead_letters;
    unsigned long long pg_connects, pg_failures, redis_failures;
    double rows_per_sec; /* over the last second */
    struct rd_mhist_snap batch_time;
};

int rd_shipper_start(const struct rd_config *cfg);
/** Any thread: stops the loop and joins. An unacknowledged batch stays pending in Redis. */
void rd_shipper_stop(void);
/**
 * Entries not yet shipped, summed over the bucket streams every 500 ms; -1 while unknown
 * (before the first count, or while Redis cannot be asked: never a partial sum).
 */
long long rd_shipper_backlog(void);
/**
 * A worker wrote to bucket's outbox stream (any thread, lock-free): the shipper reads that
 * stream next instead of waiting for its round of all streams.
 */
void rd_shipper_hint(uint32_t bucket);
/** Rows committed to PostgreSQL since start. */
unsigned long long rd_shipper_rows(void);
/** Any thread: the shipper's counters. */
void rd_shipper_stats(struct rd_shipper_stats *st);

#endif
