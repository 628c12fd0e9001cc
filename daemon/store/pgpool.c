/* SPDX-License-Identifier: MIT
 *
 * Per-worker nonblocking PostgreSQL connections for reads (see pgpool.h).
 *
 * A connection serving a query goes through up to three statements: SET statement_timeout
 * (when the query's class needs another limit than the last one), pg_sleep (tests only),
 * then the query. An abandoned query's connection is CANCELLING until its results are
 * drained; a cancel that takes longer than CANCEL_MS closes it instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pgcancel.h"
#include "store/pgpool.h"
#include "rd/log.h"
#include "rd/metrics.h"
#include "rd/rdtime.h"

#define CHECK_MS  100  /* how often queue deadlines and cancels are looked at */
#define CANCEL_MS 5000 /* a cancelled query still running after this: close its connection */

enum cstate {
    C_DOWN = 0,
    C_CONNECTING,
    C_IDLE,
    C_SETUP, /* SET statement_timeout, or the test sleep, before the query */
    C_BUSY,
    C_CANCELLING, /* its query was abandoned and cancelled: results are dropped */
};

enum setup { S_NONE = 0, S_TIMEOUT, S_SLEEP };

struct rd_pgq_conn {
    struct rd_pgpool *pool;
    PGconn *pg;
    enum cstate state;
    struct event *ev;
    int64_t retry_ms;
    int backoff_ms;
    int timeout_ms; /* the statement_timeout the session has now */
    int heavy;      /* its query (or the cancelled one) is in the heavy lane */
    enum setup setup;
    int setup_failed;
    int saw_cancel; /* CANCELLING: our cancel reached the backend (it is not still on its way) */
    int64_t cancel_deadline_ms;
    struct rd_pgq *q; /* the query running here */
};

static void run_queue(struct rd_pgpool *p);
static void conn_io(evutil_socket_t fd, short what, void *arg);
static void next_statement(struct rd_pgq_conn *c);

static int want_timeout(const struct rd_pgpool *p, const struct rd_pgq *q)
{
    return q->cls == RD_PGQ_EXPORT ? p->cfg->query_timeout_ms : p->cfg->read_timeout_ms;
}

static void conn_wait(struct rd_pgq_conn *c, short what)
{
    if (c->ev)
        event_free(c->ev);
    c->ev = event_new(c->pool->base, PQsocket(c->pg), what, conn_io, c);
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
    c->setup = S_NONE;
}

static void kick(struct rd_pgpool *p)
{
    if (!p->closing)
        event_active(p->kick_ev, EV_TIMEOUT, 0);
}

static void finish(struct rd_pgq_conn *c, int ok, enum rd_pgq_fail why, const char *err)
{
    struct rd_pgq *q = c->q;
    c->q = NULL;
    c->setup = S_NONE;
    if (c->state == C_BUSY || c->state == C_SETUP || c->state == C_CANCELLING)
        c->state = C_IDLE;
    if (c->state == C_IDLE)
        conn_wait(c, EV_READ); /* notice a server-side close while idle */
    if (q) {
        q->_conn = NULL;
        q->fail = ok ? RD_PGQ_OK : why;
        if (q->fail == RD_PGQ_E_TIMEOUT)
            rd_counter_inc(&c->pool->statement_timeouts, 1);
        q->on_done(q, ok, err);
    }
    kick(c->pool);
}

static void conn_fail(struct rd_pgq_conn *c, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", why && *why ? why : "connection failed");
    msg[strcspn(msg, "\n")] = '\0';
    rd_warn("event=pg_read_conn_failed err=\"%s\"", msg);
    rd_counter_inc(&c->pool->failures, 1);
    conn_close(c);
    c->retry_ms = rd_mono_ms() + c->backoff_ms;
    c->backoff_ms = c->backoff_ms * 2 > 5000 ? 5000 : c->backoff_ms * 2;
    if (c->q)
        finish(c, 0, RD_PGQ_E_DOWN, msg);
    else
        kick(c->pool); /* queued queries may have nowhere to go now */
}

/* Sends a plain statement of ours (SET, the test sleep). */
static void send_simple(struct rd_pgq_conn *c, const char *sql, enum setup what)
{
    if (!PQsendQuery(c->pg, sql)) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = C_SETUP;
    c->setup = what;
    c->setup_failed = 0;
    conn_wait(c, PQflush(c->pg) == 1 ? EV_READ | EV_WRITE : EV_READ);
}

/* The next statement c->q needs: the time limit of its class, the test sleep, the query. */
static void next_statement(struct rd_pgq_conn *c)
{
    struct rd_pgq *q = c->q;
    char sql[64];
    int want = want_timeout(c->pool, q);
    if (c->timeout_ms != want) {
        snprintf(sql, sizeof(sql), "SET statement_timeout = %d", want);
        c->timeout_ms = want; /* as soon as the server has it; a failure closes c */
        send_simple(c, sql, S_TIMEOUT);
        return;
    }
    if (q->test_sleep_ms > 0 && c->setup != S_SLEEP) {
        snprintf(sql, sizeof(sql), "SELECT pg_sleep(%d / 1000.0)", q->test_sleep_ms);
        send_simple(c, sql, S_SLEEP);
        return;
    }
    c->setup = S_NONE;
    if (!PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0) ||
        !PQsetSingleRowMode(c->pg)) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = C_BUSY;
    q->_err[0] = '\0';
    conn_wait(c, PQflush(c->pg) == 1 ? EV_READ | EV_WRITE : EV_READ);
}

/* The failure of a result: a time limit (SQLSTATE 57014) or anything else. */
static enum rd_pgq_fail classify(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state && !strcmp(state, "57014") ? RD_PGQ_E_TIMEOUT : RD_PGQ_E_QUERY;
}

/* A statement ended by our cancel ("due to user request"), not by its time limit. */
static int cancelled_by_us(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    return state && !strcmp(state, "57014") && msg && strstr(msg, "user request");
}

/* Hands out results until libpq needs more input, the consumer pauses, or the end. */
static void drain(struct rd_pgq_conn *c)
{
    while (!PQisBusy(c->pg)) {
        if (c->state == C_BUSY && (!c->q || c->q->_paused))
            return;
        PGresult *res = PQgetResult(c->pg);
        if (!res)
            break;
        ExecStatusType st = PQresultStatus(res);
        if (c->state == C_BUSY && st == PGRES_SINGLE_TUPLE) {
            if (c->q->on_row(c->q, res) == 1)
                c->q->_paused = 1;
        } else if (c->state == C_CANCELLING) {
            c->saw_cancel |= cancelled_by_us(res);
        } else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            struct rd_pgq *q = c->q;
            if (c->state == C_SETUP)
                c->setup_failed = 1;
            if (q && q->_err[0] == '\0') {
                snprintf(q->_err, sizeof(q->_err), "%s", PQresultErrorMessage(res));
                q->_err[strcspn(q->_err, "\n")] = '\0';
                if (!q->_err[0])
                    snprintf(q->_err, sizeof(q->_err), "query failed");
                q->fail = classify(res);
            }
        }
        PQclear(res);
    }
    if (PQisBusy(c->pg)) {
        conn_wait(c, EV_READ);
        return;
    }
    /* the statement is complete */
    switch (c->state) {
    case C_CANCELLING:
        rd_counter_inc(&c->pool->cancels, 1);
        if (!c->saw_cancel) {
            /* the statement ended before our cancel reached it: the cancel may still be on
             * its way and would hit the next query here, so this connection is not reused */
            conn_close(c);
        } else {
            c->state = C_IDLE;
            conn_wait(c, EV_READ);
        }
        kick(c->pool);
        return;
    case C_SETUP:
        if (c->setup_failed) {
            finish(c, 0, c->q->fail, c->q->_err);
            return;
        }
        next_statement(c); /* after the sleep (setup stays S_SLEEP), the query itself */
        return;
    case C_BUSY:
        finish(c, c->q->_err[0] == '\0', c->q->fail, c->q->_err);
        return;
    default:
        return;
    }
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
            c->timeout_ms = c->pool->cfg->read_timeout_ms; /* from the connection's options */
            event_free(c->ev);
            c->ev = NULL;
            c->state = C_IDLE;
            if (c->q)
                next_statement(c);
            else
                kick(c->pool);
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
    if (c->state == C_IDLE)
        conn_wait(c, EV_READ); /* idle: notice a server-side close */
    else
        drain(c);
}

static void conn_start(struct rd_pgq_conn *c)
{
    rd_counter_inc(&c->pool->connects, 1);
    c->pg = rd_pg_connect_start(&c->pool->params);
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
        return;
    }
    c->state = C_CONNECTING;
    conn_wait(c, EV_WRITE);
}

static void unlink_q(struct rd_pgpool *p, struct rd_pgq *q, struct rd_pgq *prev)
{
    if (prev)
        prev->_next = q->_next;
    else
        p->queue_head = q->_next;
    if (p->queue_tail == q)
        p->queue_tail = prev;
    q->_next = NULL;
}

/* Connections in the heavy lane now. */
static int heavy_busy(const struct rd_pgpool *p)
{
    int n = 0;
    for (int i = 0; i < p->nconns; i++) {
        const struct rd_pgq_conn *c = p->conns[i];
        n += c->heavy && (c->state == C_SETUP || c->state == C_BUSY || c->state == C_CANCELLING ||
                          (c->state == C_CONNECTING && c->q));
    }
    return n;
}

static void run_queue(struct rd_pgpool *p)
{
    struct rd_pgq *prev = NULL, *q = p->queue_head;
    int64_t now = rd_mono_ms();
    while (q) {
        struct rd_pgq *next = q->_next;
        int heavy = q->cls != RD_PGQ_LIGHT;
        struct rd_pgq_conn *idle = NULL, *down = NULL;
        int any_live = 0;
        for (int i = 0; i < p->nconns; i++) {
            struct rd_pgq_conn *c = p->conns[i];
            if (c->state == C_IDLE && !c->q && !idle)
                idle = c;
            if (c->state == C_DOWN && now >= c->retry_ms && !down)
                down = c;
            any_live |= c->state != C_DOWN;
        }
        struct rd_pgq_conn *c = idle ? idle : down;
        if (!c && !any_live) {
            /* every connection is down and backing off: fail now rather than wait */
            unlink_q(p, q, prev);
            q->fail = RD_PGQ_E_DOWN;
            q->on_done(q, 0, "PostgreSQL is not reachable");
            q = next;
            continue;
        }
        if (!c)
            return; /* all busy: the first to finish runs the queue again */
        if (heavy && heavy_busy(p) >= p->nconns - 1) {
            prev = q; /* the heavy lane is full; a light query behind may still go */
            q = next;
            continue;
        }
        unlink_q(p, q, prev);
        q->_conn = c;
        c->q = q;
        c->heavy = heavy;
        if (c->state == C_IDLE) {
            if (c->ev) {
                event_free(c->ev);
                c->ev = NULL;
            }
            next_statement(c);
        } else {
            conn_start(c); /* the query goes out once connected */
        }
        q = next;
    }
}

/* The check runs while there is something to check: queued queries or a cancel. */
static void arm_check(struct rd_pgpool *p)
{
    if (!p->closing && !evtimer_pending(p->check_ev, NULL)) {
        struct timeval tv = {0, CHECK_MS * 1000};
        evtimer_add(p->check_ev, &tv);
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_queue(arg);
}

/* Queries waiting longer than read_queue_ms fail; cancels that take too long close. */
static void on_check(evutil_socket_t fd, short what, void *arg)
{
    struct rd_pgpool *p = arg;
    (void)fd;
    (void)what;
    int64_t now = rd_mono_ms();
    int again = 0;
    struct rd_pgq *prev = NULL, *q = p->queue_head;
    while (q) {
        struct rd_pgq *next = q->_next;
        if (now - q->_queued_ms > p->cfg->read_queue_ms) {
            unlink_q(p, q, prev);
            rd_counter_inc(&p->queue_timeouts, 1);
            q->fail = RD_PGQ_E_QUEUE;
            q->on_done(q, 0, "too many ledger reads are waiting");
        } else {
            prev = q;
            again = 1;
        }
        q = next;
    }
    for (int i = 0; i < p->nconns; i++) {
        struct rd_pgq_conn *c = p->conns[i];
        if (c->state != C_CANCELLING)
            continue;
        if (now > c->cancel_deadline_ms) {
            rd_warn("event=pg_cancel_slow action=close_connection");
            conn_close(c);
            kick(p);
        } else {
            again = 1;
        }
    }
    if (again)
        arm_check(p);
}

int rd_pgpool_init(struct rd_pgpool *p, struct event_base *base, const struct rd_config *cfg)
{
    memset(p, 0, sizeof(*p));
    p->base = base;
    p->cfg = cfg;
    p->nconns = cfg->pg_read_conns;
    /* client_connection_check_interval: a backend whose client socket closed stops its
     * query at the next check, should a cancel not reach it */
    char settings[160], err[300];
    snprintf(settings, sizeof(settings),
             "-c statement_timeout=%d -c TimeZone=UTC -c client_connection_check_interval=1000",
             cfg->read_timeout_ms);
    if (rd_pgparams_init(&p->params, cfg->pg_conninfo, "redeemd-read", settings, err, sizeof(err)) <
        0) {
        rd_error("event=pg_conninfo_invalid err=\"%s\"", err);
        return -1;
    }
    p->kick_ev = event_new(base, -1, 0, on_kick, p);
    p->check_ev = evtimer_new(base, on_check, p);
    if (!p->kick_ev || !p->check_ev)
        return -1;
    for (int i = 0; i < p->nconns; i++) {
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
    for (int i = 0; i < p->nconns; i++) {
        struct rd_pgq_conn *c = p->conns[i];
        struct rd_pgq *q = c ? c->q : NULL;
        if (q) {
            c->q = NULL;
            q->_conn = NULL;
            q->fail = RD_PGQ_E_SHUTDOWN;
            q->on_done(q, 0, "shutting down");
        }
    }
    while (p->queue_head) {
        struct rd_pgq *q = p->queue_head;
        unlink_q(p, q, NULL);
        q->fail = RD_PGQ_E_SHUTDOWN;
        q->on_done(q, 0, "shutting down");
    }
    for (int i = 0; i < p->nconns; i++) {
        if (!p->conns[i])
            continue;
        conn_close(p->conns[i]);
        free(p->conns[i]);
    }
    if (p->kick_ev)
        event_free(p->kick_ev);
    if (p->check_ev)
        event_free(p->check_ev);
    rd_pgparams_free(&p->params);
    memset(p, 0, sizeof(*p));
}

void rd_pgpool_submit(struct rd_pgpool *p, struct rd_pgq *q)
{
    q->_next = NULL;
    q->_paused = 0;
    q->_conn = NULL;
    q->_pool = p;
    q->_queued_ms = rd_mono_ms();
    q->fail = RD_PGQ_OK;
    if (p->queue_tail)
        p->queue_tail->_next = q;
    else
        p->queue_head = q;
    p->queue_tail = q;
    kick(p);
    arm_check(p);
}

void rd_pgq_resume(struct rd_pgq *q)
{
    struct rd_pgq_conn *c = q->_conn;
    q->_paused = 0;
    if (c && c->state == C_BUSY)
        drain(c);
}

void rd_pgq_abandon(struct rd_pgq *q)
{
    struct rd_pgq_conn *c = q->_conn;
    if (!c) {
        struct rd_pgpool *p = q->_pool;
        struct rd_pgq *prev = NULL;
        for (struct rd_pgq *x = p->queue_head; x; prev = x, x = x->_next)
            if (x == q) { /* still queued: unlink it */
                unlink_q(p, q, prev);
                break;
            }
        return;
    }
    c->q = NULL;
    q->_conn = NULL;
    if (c->state == C_CONNECTING) {
        conn_close(c); /* nothing sent yet */
        kick(c->pool);
        return;
    }
    /* the server stops the statement; the connection drops its results and is reused */
    rd_pgcancel_submit(PQgetCancel(c->pg));
    c->state = C_CANCELLING;
    c->saw_cancel = 0;
    c->cancel_deadline_ms = rd_mono_ms() + CANCEL_MS;
    arm_check(c->pool);
    drain(c); /* a paused export resumes reading, so that the backend can see the cancel */
}
