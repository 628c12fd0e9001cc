/* SPDX-License-Identifier: MIT
 *
 * One worker's Redis: hiredis 0.14 async connections on the worker's event_base, either to
 * the one Redis of redis_host:redis_port or, with redis_cluster set, to every primary of a
 * Redis Cluster, each call sent to the primary that serves its first key's slot.
 *
 * Owns: one rd_rconn per node (a redisAsyncContext, nullable: hiredis frees it itself after
 * an error, so we only hold a pointer plus ac->data pointing back), the slot map (cluster),
 * the timers, and the calls waiting to be sent again after a redirection. Per connection:
 * CLOSED -> CONNECTING -> READY; on every connect it SCRIPT LOADs every embedded script,
 * comparing each SHA1 with the one computed at build time. The install check (rd:meta
 * buckets) goes to the node that serves rd:meta, again whenever that connection is new.
 * While a call's node is not READY it fails at once (the caller answers 503).
 *
 * Cluster: the map comes from CLUSTER SLOTS, read every redis_cluster_refresh_ms and at once
 * after a redirection or a dropped connection. MOVED updates the slot and sends the call to
 * the new node; ASK sends it there once after ASKING; TRYAGAIN and CLUSTERDOWN send it again
 * after a pause. None of these ran the command, so resending is safe; after
 * RD_REDIS_REDIRECTS_MAX tries, or redis_timeout_ms, the caller gets NULL (503). NOSCRIPT
 * loads the script on that node and sends the call again, once.
 *
 * Acknowledged means replicated (min_replica_acks = N): a durable call's reply is held (a
 * copy) until a WAIT N replica_ack_timeout_ms on its connection confirms it; a WAIT covers
 * every write its connection sent before it, so the replies that arrive while one WAIT is
 * out wait for the next, one WAIT per group (group commit). Fewer than N replicas, or a lost
 * connection: the caller gets NULL (503, outcome unknown; the client retries with its
 * Idempotency-Key and gets the one true outcome). An error reply is not held: no script
 * writes before it fails.
 *
 * Calls go out at the end of the loop pass that made them (on_flush, one write per connection
 * for all of them), not when hiredis' write event fires in the next pass: that event, armed
 * and disarmed around every write, cost two epoll_ctl calls per pass (bench/README.md).
 *
 * hiredis 0.14 has no timeouts: a watchdog drops a connection whose reply is overdue (RESP
 * cannot cancel one command). Dropping completes every pending call with a NULL reply, which
 * callers must treat as "outcome unknown". Reconnects use exponential backoff with jitter,
 * always from a timer, never from inside a hiredis callback.
 *
 * Thread: the worker's thread only.
 */
#ifndef RD_REDIS_CLIENT_H
#define RD_REDIS_CLIENT_H

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>

#include "rd/cluster.h"
#include "rd/config.h"
#include "rd/metrics.h"
#include "store/redis_cmd.h"

#define RD_REDIS_REDIRECTS_MAX 16

enum rd_redis_state {
    RD_REDIS_CLOSED = 0, /* no connection; a reconnect timer is armed */
    RD_REDIS_CONNECTING, /* connecting, or loading scripts on a fresh connection */
    RD_REDIS_READY,      /* scripts loaded and checked: calls go through */
};

struct rd_redis;
struct rd_rconn;
/** reply is borrowed (freed by hiredis after return) and NULL when the outcome is unknown. */
typedef void rd_redis_cb(struct rd_redis *r, redisReply *reply, void *arg);

/*
 * One call in flight, kept by the caller until its callback has run. The command is
 * formatted once when sent and kept (owned) until then, so that after a NOSCRIPT or a
 * redirection it goes out again as it was: nothing the caller built it from needs to
 * outlive the send.
 */
struct rd_rcall {
    struct rd_redis *redis;
    struct rd_rconn *conn; /* where it was sent last */
    rd_redis_cb *cb;
    void *arg;
    int script; /* enum rd_lua_id, or -1 for a plain command */
    int retried;
    int redirects; /* MOVED, ASK, TRYAGAIN, CLUSTERDOWN so far */
    int target;    /* the node a redirection named (ASK), or -1: the slot's */
    int asking;
    int durable;      /* set by the caller: wait for min_replica_acks replicas */
    redisReply *held; /* durable: the reply (a copy, owned) until its WAIT answers */
    int unconfirmed;  /* NULL because too few replicas confirmed it, not a lost connection */
    int slot;         /* of its first key; -1: none (any node) */
    int64_t sent_us;
    int64_t due_ms;   /* waiting: when to send again */
    int64_t first_ms; /* when the caller sent it */
    char *cmd;        /* owned: the RESP bytes, until the callback */
    int cmdlen;
    struct rd_rcall *next_wait;
};

/* One connection to one node (internal to redis_client.c but for what /readyz reads). */
struct rd_rconn {
    struct rd_redis *owner;
    int idx;
    char host[RD_CLUSTER_HOST_MAX];
    int port;
    redisAsyncContext *ac;
    enum rd_redis_state state;
    int loads_pending;
    int load_failed;
    struct event *reconnect_ev;
    int backoff_ms;
    int inflight;
    int64_t last_progress_ms;
    int64_t connect_started_ms;
    struct rd_rcall *unwaited, **unwaited_tail; /* replies held, no WAIT sent for them yet */
    int wait_out;                               /* a WAIT is in flight */
    int unflushed; /* calls queued in hiredis' buffer since the last flush (on_flush) */
};

struct rd_redis {
    struct event_base *base;
    const struct rd_config *cfg;
    int cluster;
    struct rd_slotmap *map; /* cluster: slot -> conns[]; its nodes only ever grow */
    struct rd_rconn *conns[RD_CLUSTER_NODES_MAX];
    int nconns;
    enum rd_redis_state state; /* READY: install checked, and every slot's node READY */
    int meta_ok, meta_pending;
    struct rd_rcall meta_calls[2];
    struct event *watchdog_ev;
    struct event *resend_ev; /* the next redirected call due */
    struct event *flush_ev;  /* activated by the first call of a loop pass: on_flush */
    int flush_armed;
    int64_t resend_due_ms;
    int64_t next_refresh_ms;
    int refresh_pending; /* a CLUSTER SLOTS in flight */
    int refresh_soon;    /* asked for by a redirection or a dropped connection */
    struct rd_rcall refresh_call;
    struct rd_rcall *waiting; /* calls to send again (redirected, TRYAGAIN, CLUSTERDOWN) */
    uint64_t jitter;          /* this worker's own generator for reconnect jitter (rand() is shared
                                 by every thread) */
    atomic_ullong reconnects; /* read by /metrics on any worker */
    atomic_ullong redirects;  /* MOVED and ASK followed */
    atomic_ullong waits, waited_calls, wait_short; /* WAITs sent, replies they confirmed,
                                                      and replies failed for too few replicas */
    struct rd_mhist rtt;                           /* send to reply, per call */
    void (*on_ready)(struct rd_redis *r, void *arg);
    void *on_ready_arg;
};

/** Sets up timers and starts the first connects. on_ready runs each time it becomes READY. */
int rd_redis_start(struct rd_redis *r, struct event_base *base, const struct rd_config *cfg,
                   void (*on_ready)(struct rd_redis *, void *), void *arg);
/** Drops the connection (pending calls see NULL) and frees the timers. */
void rd_redis_stop(struct rd_redis *r);

/**
 * Sends cmd as call c (c->cb and c->arg set by the caller). Returns 0 if sent (c->cb will
 * run exactly once), -1 if Redis is not ready (answer 503), -2 if cmd breaks its contract
 * (logged; answer 500); c->cb does not run after -1 or -2.
 */
int rd_redis_call(struct rd_redis *r, const struct rd_cmd *cmd, struct rd_rcall *c);

/**
 * The value of field name in a flat field/value array reply (HGETALL, a stream entry's
 * fields): borrowed from reply, "" when absent.
 */
const char *rd_redis_field(const redisReply *flat, const char *name);

/** Classifies an error reply: 1 if it means "Redis unavailable" (LOADING, BUSY, OOM...). */
int rd_redis_error_is_unavailable(const redisReply *reply);

#endif
