/* SPDX-License-Identifier: MIT
 *
 * Pipelines on a blocking hiredis connection (the shipper, the batch thread, reconcile and
 * redeemctl). Redis answers a pipeline in order, so a reply left unread is the answer the
 * next command on that connection gets: every reader here reads all n replies, also when one
 * of them is an error, and a transport error leaves the connection to be dropped.
 *
 * Owns nothing beyond the call: the replies written to out are the caller's (free them with
 * rd_rsync_free). Thread: any, one connection per thread.
 */
#ifndef RD_REDIS_SYNC_H
#define RD_REDIS_SYNC_H

#include <hiredis/hiredis.h>

#include "store/redis_cmd.h"

/**
 * Reads the replies of the n commands already appended to c into out[0..n). Returns 0 when
 * all n were read (any of them may be an error reply), or -1 on a transport error: then
 * out[] holds only NULLs and c must be dropped (c->errstr says why).
 */
int rd_rsync_read(redisContext *c, int n, redisReply **out) __attribute__((warn_unused_result));

/** Frees out[0..n) (NULLs are skipped) and sets them to NULL. */
void rd_rsync_free(redisReply **out, int n);

/** 1 if r is an error reply starting with prefix ("LOADING", "BUSYGROUP"). */
int rd_rsync_is_err(const redisReply *r, const char *prefix);

/**
 * Sends cmd and returns its reply (new), or appends it to c's pipeline (rd_rsync_append:
 * 0, read it with rd_rsync_read). A command that breaks its script's contract is not sent:
 * NULL (or -1), with *why; a transport error gives NULL with why NULL (c->errstr says).
 */
redisReply *rd_rsync_call(redisContext *c, const struct rd_cmd *cmd, const char **why);
int rd_rsync_append(redisContext *c, const struct rd_cmd *cmd, const char **why);

#endif
