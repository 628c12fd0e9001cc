/* SPDX-License-Identifier: MIT
 *
 * Blocking Redis for the shipper, the batch thread, reconcile and redeemctl: one hiredis
 * connection to the one Redis, or, with redis_cluster set, one to each primary of a Redis
 * Cluster, each command sent to the primary that serves its key's slot
 * (rd_cluster_command_slot). Callers pipeline as on one connection: commands appended in
 * any order over any keys are read back in that order. Redis answers a pipeline in order, so
 * a reply left unread is the answer the next command on that connection gets: every reader
 * here reads all n replies, also when one of them is an error, and a transport error leaves
 * the whole rd_rsc to be dropped (rd_rsc_free, then connect again).
 *
 * Cluster: the slot map comes from CLUSTER SLOTS at connect, and again after a MOVED.
 * A MOVED or ASK reply is followed (the command did not run there), and TRYAGAIN and
 * CLUSTERDOWN are tried again after a pause, at most RD_RSC_REDIRECTS_MAX times; the last
 * reply is the caller's. A command without keys (SCRIPT LOAD) goes to every primary.
 *
 * Owns: its connections, the slot map and the formatted commands not yet read; the replies
 * written to out are the caller's (free them with rd_rsync_free). Thread: one thread at a
 * time.
 */
#ifndef RD_REDIS_SYNC_H
#define RD_REDIS_SYNC_H

#include <hiredis/hiredis.h>

#include "rd/config.h"
#include "store/redis_cmd.h"

#define RD_RSC_REDIRECTS_MAX 16

struct rd_rsc;

/**
 * Connects to the Redis of cfg (redis_cluster, else redis_host:redis_port): each connect
 * waits at most connect_ms, each reply timeout_ms (0: no limit). NULL with err on failure,
 * also when a primary of the cluster cannot be reached.
 */
struct rd_rsc *rd_rsc_connect(const struct rd_config *cfg, int connect_ms, int timeout_ms,
                              char *err, size_t errlen);
void rd_rsc_free(struct rd_rsc *c);
/** Why the last transport error happened ("" if none). */
const char *rd_rsc_errstr(const struct rd_rsc *c);
/** The primaries (1 for one Redis): SCAN and other per-node walks go to each in turn. */
int rd_rsc_nodes(const struct rd_rsc *c);

/**
 * Appends a command (printf-like, as redisAppendCommand, or as words) to the pipeline,
 * routed by its key. 0, or -1 if it cannot be formatted or its node is unknown.
 */
int rd_rsc_append(struct rd_rsc *c, const char *fmt, ...);
int rd_rsc_append_argv(struct rd_rsc *c, int argc, const char **argv, const size_t *lens);

/**
 * Reads the replies of the n commands appended so far into out[0..n). Returns 0 when all n
 * were read (any of them may be an error reply), or -1 on a transport error: then out[]
 * holds only NULLs and c must be dropped (rd_rsc_errstr says why). n must be the number
 * appended since the last read.
 */
int rd_rsync_read(struct rd_rsc *c, int n, redisReply **out) __attribute__((warn_unused_result));

/** One command: append and read. NULL on a transport error (drop c). A command without keys
 * goes to every primary: the first error reply, or the last reply. */
redisReply *rd_rsc_command(struct rd_rsc *c, const char *fmt, ...);
redisReply *rd_rsc_command_argv(struct rd_rsc *c, int argc, const char **argv, const size_t *lens);
/** One command for primary node (0 .. rd_rsc_nodes - 1), whatever its key: SCAN. */
redisReply *rd_rsc_command_node(struct rd_rsc *c, int node, const char *fmt, ...);

/**
 * On every primary this rd_rsc sent a command to since the last rd_rsc_wait, all at once: a
 * marker write (rd:ack:{n}, expiring) and WAIT replicas timeout_ms, which then covers every
 * write that primary had. The fewest replicas any of them confirmed, replicas when there was
 * nothing to wait for, or -1 on a transport error (drop c).
 */
int rd_rsc_wait(struct rd_rsc *c, int replicas, int timeout_ms);

/** Frees out[0..n) (NULLs are skipped) and sets them to NULL. */
void rd_rsync_free(redisReply **out, int n);

/** 1 if r is an error reply starting with prefix ("LOADING", "BUSYGROUP"). */
int rd_rsync_is_err(const redisReply *r, const char *prefix);

/**
 * Sends cmd and returns its reply (new), or appends it to c's pipeline (rd_rsync_append:
 * 0, read it with rd_rsync_read). A command that breaks its script's contract is not sent:
 * NULL (or -1), with *why; a transport error gives NULL with why NULL (rd_rsc_errstr says).
 */
redisReply *rd_rsync_call(struct rd_rsc *c, const struct rd_cmd *cmd, const char **why);
int rd_rsync_append(struct rd_rsc *c, const struct rd_cmd *cmd, const char **why);

#endif
