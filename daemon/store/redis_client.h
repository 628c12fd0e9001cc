/* SPDX-License-Identifier: MIT
 *
 * One worker's Redis connection: a hiredis 0.14 async context on the worker's event_base.
 *
 * Owns: the redisAsyncContext (nullable; hiredis frees it itself after an error, so we only
 * ever hold a pointer plus ac->data pointing back here), the reconnect and watchdog timers.
 * State: CLOSED -> CONNECTING -> READY. On every connect it pipelines the install check
 * (rd:meta buckets) and SCRIPT LOAD of every embedded script, comparing each SHA1 with the
 * one computed at build time; only then is it READY. While not READY, calls fail at once
 * (the caller answers 503), nothing is queued.
 *
 * hiredis 0.14 has no timeouts: a watchdog timer drops the whole connection when a reply is
 * overdue (RESP cannot cancel one command). Dropping completes every pending call with a
 * NULL reply, which callers must treat as "outcome unknown". Reconnects use exponential
 * backoff with jitter, always from a timer, never from inside a hiredis callback.
 *
 * Thread: the worker's thread only.
 */
#ifndef RD_REDIS_CLIENT_H
#define RD_REDIS_CLIENT_H

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/metrics.h"
#include "store/redis_cmd.h"

enum rd_redis_state {
    RD_REDIS_CLOSED = 0, /* no connection; a reconnect timer is armed */
    RD_REDIS_CONNECTING, /* connecting, or loading scripts on a fresh connection */
    RD_REDIS_READY,      /* scripts loaded and checked: calls go through */
};

struct rd_redis;
/** reply is borrowed (freed by hiredis after return) and NULL when the outcome is unknown. */
typedef void rd_redis_cb(struct rd_redis *r, redisReply *reply, void *arg);

/*
 * One call in flight, kept by the caller until its callback has run. The command is
 * formatted once when sent and kept (owned) until then, so that after a NOSCRIPT it goes
 * out again as it was: nothing the caller built it from needs to outlive the send.
 */
struct rd_rcall {
    struct rd_redis *redis;
    rd_redis_cb *cb;
    void *arg;
    int script; /* enum rd_lua_id, or -1 for a plain command */
    int retried;
    int64_t sent_us;
    char *cmd; /* owned: the RESP bytes, until the callback */
    int cmdlen;
};

struct rd_redis {
    struct event_base *base;
    const struct rd_config *cfg;
    redisAsyncContext *ac;
    enum rd_redis_state state;
    int loads_pending;
    int load_failed;
    struct event *reconnect_ev;
    struct event *watchdog_ev;
    int backoff_ms;
    uint64_t jitter; /* this connection's own generator for reconnect jitter (rand() is
                        shared by every thread) */
    int inflight;
    int64_t last_progress_ms;
    int64_t connect_started_ms;
    atomic_ullong reconnects; /* read by /metrics on any worker */
    struct rd_mhist rtt;      /* send to reply, per call */
    void (*on_ready)(struct rd_redis *r, void *arg);
    void *on_ready_arg;
};

/** Sets up timers and starts the first connect. on_ready runs each time it becomes READY. */
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
