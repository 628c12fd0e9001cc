/* SPDX-License-Identifier: MIT
 *
 * Hot coupons split into shards, the arithmetic (free of sockets): where a sharded coupon's
 * sub-budgets live, which shard a user belongs to, how a total is split, and the move ids.
 *
 * A coupon created with "shards": K keeps its definition in its home hash {b0}:c:<CODE>
 * with the field "shards" = "b0,b1,...", and one shard hash {bi}:s:<CODE> per shard
 * (b0 is the home bucket itself): a copy of the definition, "budget" (uses this shard may
 * still grant) and "used". A user's counts live in {bi}:u:<CODE> of the user's shard, so
 * per-user, daily and weekly limits stay exact; the total is the sum of the budgets. A shard
 * that runs out borrows from another by a move: the source takes (budget -= n, and records
 * "o:<id>"), then the destination gives (budget += n, records "n:<id>") unless reconcile
 * has voided the move there ("v:<id>"). A crash between the two loses n until reconcile
 * voids the move and returns n to its source; no order of events creates budget.
 * (scripts/lua/shard_move.lua; the daemon's side: daemon/api/shards.c.)
 *
 * Owns: nothing. Thread: any.
 */
#ifndef RD_SHARDS_H
#define RD_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#define RD_SHARDS_MAX      16 /* a coupon's shards at most */
#define RD_SHARD_LAYOUT_SZ (RD_SHARDS_MAX * 5 + 1)
#define RD_MOVE_ID_LEN     16
#define RD_SHARD_GEN_MAX   64 /* a generation: the transaction id of the coupon's creation */

struct rd_shard_layout {
    int n;
    uint32_t bucket[RD_SHARDS_MAX]; /* bucket[0]: the home bucket */
};

/** Parses "b0,b1,..." (2..RD_SHARDS_MAX distinct buckets below nbuckets); 0 or -1. */
int rd_shard_layout_parse(const char *s, size_t len, uint32_t nbuckets,
                          struct rd_shard_layout *out);
/** "b0,b1,..." into buf (RD_SHARD_LAYOUT_SZ bytes); its length, or -1 if it does not fit. */
int rd_shard_layout_format(const struct rd_shard_layout *l, char *buf, size_t sz);

/** The shard of a user: the same user always lands on the same shard of a coupon. */
int rd_shard_of_user(const char *user, size_t len, int n);

/** Shard i's part of total when split n ways (the first total % n shards get one more). */
int64_t rd_shard_share(int64_t total, int n, int i);

/*
 * Chooses n buckets for a sharded code whose home is bucket home: home first, then buckets
 * drawn from the code (so every daemon draws the same ones), each on a node not yet used
 * while there is one (node_of says which node serves a bucket; NULL, or the same answer for
 * every bucket, without a cluster). Returns 0, or -1 for n outside 2..RD_SHARDS_MAX or fewer
 * than n buckets in all.
 */
int rd_shard_place(const char *code, uint32_t home, uint32_t nbuckets, int n,
                   int (*node_of)(uint32_t bucket, void *arg), void *arg,
                   struct rd_shard_layout *out);

/** Whether s[0..len) has the shape of a move id (RD_MOVE_ID_LEN lower-case hex digits). */
int rd_move_id_check(const char *s, size_t len);

#endif
