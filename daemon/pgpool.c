/* SPDX-License-Identifier: MIT
 *
 * Per-worker nonblocking PostgreSQL connections for reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgpool.h"
#include "rd/log.h"
#include "worker.h"

enum cstate { C_DOWN = 0, C_CONNECTING, C_IDLE, C_BUSY };

struct rd_pgq_conn {
    struct rd_pgpool *pool;
    PGconn *pg;
    enum cstate state;
    struct event *ev;
    short waiting;
    int64_t retry_ms;
    int backoff_ms;
    struct rd_pgq *q; /* the query running here */
};

static void run_queue(struct rd_pgpool *p);
static void conn_io(evutil_socket_t fd, short what, void *arg);

static void conn_wait(struct rd_pgq_conn *c, short what)
{
    if (c->ev)
        event_free(c->ev);
    c->ev = event_new(c->pool->base, PQsocket(c->pg), what, conn_io, c);
    c->waiting = what;
    event_add(c->ev, NULL);
}

static void conn_close(struct rd_pgq_conn *c)
{
    if (c->ev)
        event_free(c->ev); /* before PQfinish closes the socket it watches */
    c->ev = NULL;
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    c->state = C_DOWN;
}

static void finish(struct rd_pgq_conn *c, int ok, const char *err)
{
    struct rd_pgq *q = c->q;
    c->q = NULL;
    if (c->state == C_BUSY)
        c->state = C_IDLE;
    if (c->state == C_IDLE)
        conn_wait(c, EV_READ); /* notice a server-side close while idle */
    if (q) {
        q->_conn = NULL;
        q->on_done(q, ok, err);
    }
    event_active(c->pool->kick_ev, EV_TIMEOUT, 0);
}

static void conn_fail(struct rd_pgq_conn *c, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", why && *why ? why : "connection failed");
    msg[strcspn(msg, "\n")] = '\0';
    rd_warn("event=pg_read_conn_failed err=\"%s\"", msg);
    atomic_fetch_add_explicit(&c->pool->failures, 1, memory_order_relaxed);
    conn_close(c);
    c->retry_ms = rd_mono_ms() + c->backoff_ms;
    c->backoff_ms = c->backoff_ms * 2 > 5000 ? 5000 : c->backoff_ms * 2;
    if (c->q)
        finish(c, 0, msg);
}

static void send_query(struct rd_pgq_conn *c)
{
    struct rd_pgq *q = c->q;
    if (!PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0) ||
        !PQsetSingleRowMode(c->pg)) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = C_BUSY;
    q->_err[0] = '\0';
    conn_wait(c, PQflush(c->pg) == 1 ? EV_READ | EV_WRITE : EV_READ);
}

/* Hands out results until libpq needs more input, the consumer pauses, or the end. */
static void drain(struct rd_pgq_conn *c)
{
    while (c->q && !c->q->_paused && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        if (!res) {
            finish(c, c->q->_err[0] == '\0', c->q->_err);
            return;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE) {
            if (c->q->on_row(c->q, res) == 1)
                c->q->_paused = 1;
        } else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && c->q->_err[0] == '\0') {
            snprintf(c->q->_err, sizeof(c->q->_err), "%s", PQresultErrorMessage(res));
            c->q->_err[strcspn(c->q->_err, "\n")] = '\0';
            if (!c->q->_err[0])
                snprintf(c->q->_err, sizeof(c->q->_err), "query failed");
        }
        PQclear(res);
    }
    if (c->q && !c->q->_paused)
        conn_wait(c, EV_READ);
}

static void conn_io(evutil_socket_t fd, short what, void *arg)
{
    struct rd_pgq_conn *c = arg;
    (void)fd;
    if (c->state == C_CONNECTING) {
        switch (PQconnectPoll(c->pg)) {
        case PGRES_POLLING_READING:
            conn_wait(c, EV_READ);
            return;
        case PGRES_POLLING_WRITING:
            conn_wait(c, EV_WRITE);
            return;
        case PGRES_POLLING_OK:
            PQsetnonblocking(c->pg, 1);
            c->backoff_ms = 100;
            event_free(c->ev);
            c->ev = NULL;
            c->state = C_IDLE;
            if (c->q)
                send_query(c);
            else
                event_active(c->pool->kick_ev, EV_TIMEOUT, 0);
            return;
        default:
            conn_fail(c, PQerrorMessage(c->pg));
            return;
        }
    }
    if (what & EV_WRITE) {
        int f = PQflush(c->pg);
        if (f < 0) {
            conn_fail(c, PQerrorMessage(c->pg));
            return;
        }
        if (f == 1) {
            conn_wait(c, EV_READ | EV_WRITE);
            return;
        }
    }
    if (!PQconsumeInput(c->pg)) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->q)
        drain(c);
    else
        conn_wait(c, EV_READ); /* idle: notice a server-side close */
}

static void conn_start(struct rd_pgq_conn *c)
{
    atomic_fetch_add_explicit(&c->pool->connects, 1, memory_order_relaxed);
    c->pg = rd_pg_connect_start(&c->pool->params);
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
        return;
    }
    c->state = C_CONNECTING;
    conn_wait(c, EV_WRITE);
}

static struct rd_pgq *pop(struct rd_pgpool *p)
{
    struct rd_pgq *q = p->queue_head;
    p->queue_head = q->_next;
    if (!p->queue_head)
        p->queue_tail = NULL;
    q->_next = NULL;
    return q;
}

static void run_queue(struct rd_pgpool *p)
{
    while (p->queue_head) {
        struct rd_pgq_conn *idle = NULL, *down = NULL;
        int64_t now = rd_mono_ms();
        for (int i = 0; i < RD_PGPOOL_CONNS; i++) {
            struct rd_pgq_conn *c = p->conns[i];
            if (c->state == C_IDLE && !c->q && !idle)
                idle = c;
            if (c->state == C_DOWN && now >= c->retry_ms && !down)
                down = c;
        }
        struct rd_pgq_conn *c = idle ? idle : down;
        if (!c) {
            /* all busy or backing off: if none can ever take it soon, fail fast */
            int any_live = 0;
            for (int i = 0; i < RD_PGPOOL_CONNS; i++)
                any_live |= p->conns[i]->state != C_DOWN;
            if (any_live)
                return;
            struct rd_pgq *q = pop(p);
            q->on_done(q, 0, "PostgreSQL is not reachable");
            continue;
        }
        struct rd_pgq *q = pop(p);
        q->_conn = c;
        c->q = q;
        if (c->state == C_IDLE) {
            if (c->ev) {
                event_free(c->ev);
                c->ev = NULL;
            }
            send_query(c);
        } else {
            conn_start(c); /* the query goes out once connected */
        }
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_queue(arg);
}

int rd_pgpool_init(struct rd_pgpool *p, struct event_base *base, const struct rd_config *cfg)
{
    memset(p, 0, sizeof(*p));
    p->base = base;
    p->cfg = cfg;
    char settings[128], err[300];
    snprintf(settings, sizeof(settings), "-c statement_timeout=%d -c TimeZone=UTC",
             cfg->query_timeout_ms);
    if (rd_pgparams_init(&p->params, cfg->pg_conninfo, "redeemd-read", settings, err, sizeof(err)) <
        0) {
        rd_error("event=pg_conninfo_invalid err=\"%s\"", err);
        return -1;
    }
    p->kick_ev = event_new(base, -1, 0, on_kick, p);
    if (!p->kick_ev)
        return -1;
    for (int i = 0; i < RD_PGPOOL_CONNS; i++) {
        p->conns[i] = calloc(1, sizeof(*p->conns[i]));
        if (!p->conns[i])
            return -1;
        p->conns[i]->pool = p;
        p->conns[i]->backoff_ms = 100;
    }
    return 0;
}

void rd_pgpool_free(struct rd_pgpool *p)
{
    /* every query still running or queued ends, so that its request is answered; a done
     * callback that submits again (a read that leads to another) ends here too */
    p->closing = 1;
    for (int i = 0; i < RD_PGPOOL_CONNS; i++) {
        struct rd_pgq_conn *c = p->conns[i];
        struct rd_pgq *q = c ? c->q : NULL;
        if (q) {
            c->q = NULL;
            q->_conn = NULL;
            q->on_done(q, 0, "shutting down");
        }
    }
    while (p->queue_head) {
        struct rd_pgq *q = pop(p);
        q->on_done(q, 0, "shutting down");
    }
    for (int i = 0; i < RD_PGPOOL_CONNS; i++) {
        if (!p->conns[i])
            continue;
        conn_close(p->conns[i]);
        free(p->conns[i]);
    }
    if (p->kick_ev)
        event_free(p->kick_ev);
    rd_pgparams_free(&p->params);
    memset(p, 0, sizeof(*p));
}

void rd_pgpool_submit(struct rd_pgpool *p, struct rd_pgq *q)
{
    q->_next = NULL;
    q->_paused = 0;
    q->_conn = NULL;
    q->_pool = p;
    if (p->queue_tail)
        p->queue_tail->_next = q;
    else
        p->queue_head = q;
    p->queue_tail = q;
    if (!p->closing)
        event_active(p->kick_ev, EV_TIMEOUT, 0);
}

void rd_pgq_resume(struct rd_pgq *q)
{
    struct rd_pgq_conn *c = q->_conn;
    q->_paused = 0;
    if (c) {
        drain(c);
        if (c->q == q && !q->_paused && PQisBusy(c->pg))
            conn_wait(c, EV_READ);
    }
}

void rd_pgq_abandon(struct rd_pgq *q)
{
    struct rd_pgq_conn *c = q->_conn;
    if (!c) {
        struct rd_pgpool *p = q->_pool;
        struct rd_pgq **pp = &p->queue_head, *prev = NULL;
        while (*pp && *pp != q) {
            prev = *pp;
            pp = &(*pp)->_next;
        }
        if (*pp) { /* still queued: unlink it */
            *pp = q->_next;
            if (p->queue_tail == q)
                p->queue_tail = prev;
        }
        return;
    }
    c->q = NULL;
    q->_conn = NULL;
    conn_close(c); /* PQcancel would block the loop; a fresh connection is cheaper */
    c->retry_ms = 0;
}
