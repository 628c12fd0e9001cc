/* SPDX-License-Identifier: MIT
 *
 * redeemctl retention: drops the ledger's monthly partitions that lie wholly before a
 * window (see retention.c).
 */
#ifndef RD_RETENTION_H
#define RD_RETENTION_H

#include <libpq-fe.h>
#include <stdint.h>

/**
 * Detaches and drops every partition of transactions whose rows all lie before cutoff_ms
 * (its upper bound at or before it); with dry, only says which. The summaries
 * (coupon_usage, usage_hourly, coupon_groups) and audit_log are not touched. Each drop is
 * recorded in audit_log (action ledger_retention). Borrows pg. Returns 0, or 2 on an error.
 */
int rd_retention(PGconn *pg, int64_t cutoff_ms, int dry);

#endif
