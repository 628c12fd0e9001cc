/* SPDX-License-Identifier: MIT
 *
 * A worker's PostgreSQL connections: a few nonblocking libpq connections on the worker's
 * event_base, opened on first use and reopened with backoff after a failure, so a query never
 * blocks the loop that also answers redemptions. They read the ledger and write only the
 * batch queue (rd_batch_create, rd_batch_cancel); every statement is parameterised. Rows are
 * delivered one at a time (single-row mode); a row callback can pause delivery until the consumer
 * (a slow HTTP client) catches up, so an export of any size runs in constant memory.
 *
 * Owns the PGconns. A struct rd_pgq is owned by the caller and must stay alive until its
 * done callback has run; callbacks never run from inside rd_pgpool_submit().
 * Thread: the worker's.
 */
#ifndef RD_PGPOOL_H
#define RD_PGPOOL_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdatomic.h>

#include "pgconn.h"
#include "rd/config.h"

#define RD_PGPOOL_CONNS  2
#define RD_PGQ_MAXPARAMS 16

/*
 * What a query costs, which decides its lane and its time limit:
 *   LIGHT   single rows and ledger pages: read_timeout_ms, and always a connection of their
 *           own (heavy queries never hold every connection)
 *   HEAVY   stats, coupon listings: read_timeout_ms, at most pg_read_conns - 1 at once
 *   EXPORT  CSV streams of any size: export_timeout_ms, in the heavy lane
 */
enum rd_pgq_class { RD_PGQ_LIGHT = 0, RD_PGQ_HEAVY, RD_PGQ_EXPORT };

struct rd_pgq;
/** One row (borrowed, valid during the call). Return 1 to pause until rd_pgq_resume(). */
typedef int rd_pgq_row_cb(struct rd_pgq *q, const PGresult *row);
/** The end: ok, or an error message (borrowed). The query is finished with. */
typedef void rd_pgq_done_cb(struct rd_pgq *q, int ok, const char *err);

struct rd_pgq {
    enum rd_pgq_class cls;
    const char *sql; /* borrowed until sent */
    int nparams;
    const char *params[RD_PGQ_MAXPARAMS]; /* borrowed until sent (libpq copies) */
    rd_pgq_row_cb *on_row;
    rd_pgq_done_cb *on_done;
    void *arg;
    /* private */
    struct rd_pgpool *_pool;
    struct rd_pgq_conn *_conn;
    struct rd_pgq *_next;
    int _paused;
    char _err[256];
};

struct rd_pgq_conn;
struct rd_pgpool {
    struct event_base *base;
    const struct rd_config *cfg;
    struct rd_pgparams params;
    struct rd_pgq_conn *conns[RD_PGPOOL_CONNS];
    struct rd_pgq *queue_head, *queue_tail;
    struct event *kick_ev;            /* runs queued work outside the caller's stack */
    int closing;                      /* rd_pgpool_free() is failing what is left */
    atomic_ullong connects, failures; /* read by /metrics on any worker */
};

int rd_pgpool_init(struct rd_pgpool *p, struct event_base *base, const struct rd_config *cfg);
void rd_pgpool_free(struct rd_pgpool *p);
/** Queues q; its callbacks run later. (The queue is bounded by the worker's max_inflight.) */
void rd_pgpool_submit(struct rd_pgpool *p, struct rd_pgq *q);
/** Resumes row delivery after a row callback returned 1. */
void rd_pgq_resume(struct rd_pgq *q);
/**
 * Abandons q (its client went away): the connection is closed rather than cancelled
 * (PQcancel blocks) and reopened later. No callback runs for q after this.
 */
void rd_pgq_abandon(struct rd_pgq *q);

#endif
