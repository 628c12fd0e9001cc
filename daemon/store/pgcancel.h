/* SPDX-License-Identifier: MIT
 *
 * Cancel requests for PostgreSQL queries, sent from a thread of their own: libpq 15's
 * PQcancel() opens a connection to the server and waits for it, which no event loop may do
 * (PostgreSQL 17's nonblocking cancel API is not available). A worker whose client went away
 * hands over a PGcancel for the backend and goes on; the backend stops within moments
 * instead of running its query to the end.
 *
 * Owns the queue and every PGcancel handed to it (freed once sent or dropped). Any thread
 * may submit; the queue is bounded (past it a request is dropped and counted: the
 * statement_timeout still ends that query).
 */
#ifndef RD_PGCANCEL_H
#define RD_PGCANCEL_H

#include <libpq-fe.h>

int rd_pgcancel_start(void);
/** Sends what is queued, then stops the thread. */
void rd_pgcancel_stop(void);
/** Queues a cancel of the query cancel belongs to; takes cancel over. Any thread. */
void rd_pgcancel_submit(PGcancel *cancel);
/** Cancels sent, and dropped (queue full or not started), since start. Any thread. */
void rd_pgcancel_counts(unsigned long long *sent, unsigned long long *dropped);

#endif
