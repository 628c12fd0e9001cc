/* SPDX-License-Identifier: MIT
 *
 * The batch thread: runs the jobs POST /v1/batches queues in PostgreSQL (table batches), one
 * at a time, off the redeem workers.
 *
 *   claim    a queued job, or one whose daemon stopped reporting for batch_lease_ms (its
 *            lease, renewed with every chunk), with FOR UPDATE SKIP LOCKED: any number of
 *            daemons may share the queue; each job runs on one.
 *   issue    per chunk (batch_chunk codes): draw codes from the job's format, COPY them into
 *            the coupon mirror (coupon_rows, ON CONFLICT DO NOTHING: codes the mirror knows,
 *            archived ones included, are skipped), commit, then create each new code in
 *            Redis (scripts/lua/batch_add.lua, pipelined: a code's hash holds only the batch
 *            id; the definition is the batch template {b}:t:<id>, written to a bucket in the
 *            same pipeline as the first code it gets). A code Redis already holds (created through
 * the API an instant ago) is withdrawn from the mirror and drawn again. PostgreSQL is written first
 * so that a crash can only leave codes listed but not yet in Redis; a resumed job re-issues every
 * code of its batch (batch_add is idempotent) before going on. throttle at most batch_rate codes a
 * second, and the thread rests after each chunk as long as Redis took for it, so a batch never
 * takes more than half of Redis. end      done / cancelled (POST .../cancel sets a flag read with
 * every lease renewal) / failed (the format ran out of free codes); a daemon stopping puts its job
 * back in the queue.
 *
 * Owns its Redis context, its PGconn and the job; other threads only call rd_batcher_kick().
 */
#ifndef RD_BATCHER_H
#define RD_BATCHER_H

#include "rd/config.h"

int rd_batcher_start(const struct rd_config *cfg);
/** Any thread: stops the thread between chunks (the job goes back to the queue) and joins. */
void rd_batcher_stop(void);
/** Any thread: a job was queued; look now rather than at the next poll. */
void rd_batcher_kick(void);

#endif
