/* SPDX-License-Identifier: MIT
 *
 * redeemctl reconcile: Redis counters against the ledger (see reconcile.c).
 */
#ifndef RD_RECONCILE_H
#define RD_RECONCILE_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "store/redis_sync.h"

/**
 * Prints every difference between Redis and the ledger as of now_ms; with repair, rewrites
 * Redis from the ledger. Borrows both connections. Returns 0 (no differences, or repaired),
 * 1 (differences found), 2 (could not read).
 */
int rd_reconcile(struct rd_rsc *rc, PGconn *pg, uint32_t buckets, int64_t now_ms, int repair);

#endif
