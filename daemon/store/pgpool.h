/* SPDX-License-Identifier: MIT
 *
 * A worker's PostgreSQL read pool: pg_read_conns nonblocking libpq connections on the
 * worker's event_base, opened on first use and reopened with backoff after a failure, so a
 * query never blocks the loop that also answers redemptions. They read the ledger and write
 * only the batch queue (rd_batch_create, rd_batch_cancel); every statement is parameterised.
 * Rows are delivered one at a time (single-row mode); a row callback can pause delivery until
 * the consumer (a slow HTTP client) catches up, so an export of any size runs in constant
 * memory.
 *
 * Reads cannot stall each other:
 *   - lanes: heavy queries (stats, listings, exports) hold at most pg_read_conns - 1
 *     connections, so single rows and ledger pages always find one;
 *   - time limits: a statement_timeout per class (read_timeout_ms, export_timeout_ms), set
 *     on a connection when the class it serves changes;
 *   - a queue deadline: a query not started within read_queue_ms fails (the request answers
 *     503 with Retry-After) instead of waiting behind others;
 *   - real cancellation: a query abandoned (its client gone) is cancelled in PostgreSQL
 *     through the cancel thread (pgcancel.h) while its connection reads and drops what is
 *     left; client_connection_check_interval makes the server notice a closed socket too.
 *
 * Owns the PGconns. A struct rd_pgq is owned by the caller and must stay alive until its
 * done callback has run (or it was abandoned); callbacks never run from inside
 * rd_pgpool_submit().
 * Thread: the worker's.
 */
#ifndef RD_PGPOOL_H
#define RD_PGPOOL_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdint.h>

#include "store/pgconn.h"
#include "rd/config.h"

#define RD_PGPOOL_MAX_CONNS 16
#define RD_PGQ_MAXPARAMS    16

/*
 * What a query costs, which decides its lane and its time limit:
 *   LIGHT   single rows and ledger pages: read_timeout_ms, any connection
 *   HEAVY   stats, coupon listings: read_timeout_ms, at most pg_read_conns - 1 at once
 *   EXPORT  CSV streams of any size: export_timeout_ms, in the heavy lane
 */
enum rd_pgq_class { RD_PGQ_LIGHT = 0, RD_PGQ_HEAVY, RD_PGQ_EXPORT };

/* Why a query failed (set before its done callback runs with ok = 0). */
enum rd_pgq_fail {
    RD_PGQ_OK = 0,
    RD_PGQ_E_DOWN,     /* PostgreSQL not reachable, or the connection was lost */
    RD_PGQ_E_TIMEOUT,  /* its statement_timeout passed */
    RD_PGQ_E_QUEUE,    /* not started within read_queue_ms */
    RD_PGQ_E_QUERY,    /* PostgreSQL refused the statement */
    RD_PGQ_E_SHUTDOWN, /* the worker is stopping */
};

struct rd_pgq;
/** One row (borrowed, valid during the call). Return 1 to pause until rd_pgq_resume(). */
typedef int rd_pgq_row_cb(struct rd_pgq *q, const PGresult *row);
/** The end: ok, or an error message (borrowed) and q->fail. The query is finished with. */
typedef void rd_pgq_done_cb(struct rd_pgq *q, int ok, const char *err);

struct rd_pgq {
    enum rd_pgq_class cls;
    int test_sleep_ms; /* tests only: the connection is held this long first, in PostgreSQL,
                          as by a slow query (pg_sleep, under the same time limit) */
    const char *sql;   /* borrowed until sent */
    int nparams;
    const char *params[RD_PGQ_MAXPARAMS]; /* borrowed until sent (libpq copies) */
    rd_pgq_row_cb *on_row;
    rd_pgq_done_cb *on_done;
    void *arg;
    enum rd_pgq_fail fail;
    /* private */
    struct rd_pgpool *_pool;
    struct rd_pgq_conn *_conn;
    struct rd_pgq *_next;
    int _paused;
    int64_t _queued_ms;
    char _err[256];
};

struct rd_pgq_conn;
struct rd_pgpool {
    struct event_base *base;
    const struct rd_config *cfg;
    struct rd_pgparams params;
    int nconns;
    struct rd_pgq_conn *conns[RD_PGPOOL_MAX_CONNS];
    struct rd_pgq *queue_head, *queue_tail;
    struct event *kick_ev;  /* runs queued work outside the caller's stack */
    struct event *check_ev; /* queue deadlines and cancels that take too long */
    int closing;            /* rd_pgpool_free() is failing what is left */
    /* read by /metrics on any worker */
    atomic_ullong connects, failures, queue_timeouts, statement_timeouts, cancels;
};

int rd_pgpool_init(struct rd_pgpool *p, struct event_base *base, const struct rd_config *cfg);
/** Fails every query still queued or running (RD_PGQ_E_SHUTDOWN), then closes. */
void rd_pgpool_free(struct rd_pgpool *p);
/** Queues q; its callbacks run later. (The queue is bounded by the worker's max_inflight.) */
void rd_pgpool_submit(struct rd_pgpool *p, struct rd_pgq *q);
/** Resumes row delivery after a row callback returned 1. */
void rd_pgq_resume(struct rd_pgq *q);
/**
 * Abandons q (its client went away): a queued query is dropped, a running one is cancelled
 * in PostgreSQL and its connection drains what is left. No callback runs for q after this.
 */
void rd_pgq_abandon(struct rd_pgq *q);

#endif
