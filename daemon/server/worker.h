/* SPDX-License-Identifier: MIT
 *
 * A worker: one pthread that owns one event_base, its HTTP server core (httpd.h) with a
 * SO_REUSEPORT listener, one Redis connection, a PostgreSQL read pool and one API-key cache.
 * Workers share nothing mutable: the config is read-only and a request is finished on the
 * thread that accepted it.
 *
 * The only cross-thread call is rd_worker_request_stop(), which activates the worker's
 * control event (evthread_use_pthreads() is called before any base is created).
 *
 * Shutdown: stop accepting and close idle connections; answer new requests on open ones
 * with 503 and close them after every answer; wait for in-flight requests (up to
 * shutdown_timeout_s). Then, in this order: drop Redis and fail the PostgreSQL reads still
 * pending (their requests are answered 503), and only then close the connections: no
 * callback may answer a request whose connection is gone.
 */
#ifndef RD_WORKER_H
#define RD_WORKER_H

#include <event2/event.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "api/apikeys.h"
#include "server/httpd.h"
#include "server/metrics.h"
#include "store/pgpool.h"
#include "rd/config.h"
#include "rd/rdtime.h"
#include "store/redis_client.h"

struct rd_req;

struct rd_worker {
    int idx;
    char name[16];
    pthread_t thread;
    const struct rd_config *cfg; /* borrowed, immutable */
    struct event_base *base;
    struct rd_httpd *http;
    struct evconnlistener *listener; /* until handed to http */
    struct event *ctl_ev;
    struct event *drain_ev;
    struct event *relisten_ev;
    struct rd_redis redis;
    struct rd_apikeys keys;
    struct rd_pgpool pgpool;
    struct rd_wmetrics m;
    struct rd_httpd_stats hstats; /* written by http, read by /metrics on any worker */
    int stopping;
    int64_t stop_deadline_ms;
    atomic_int inflight;  /* read by /metrics on any worker */
    struct rd_req *spare; /* freed request contexts, reused: 1.6 KB each, past the sizes
                             malloc serves from its per-thread cache */
    int nspare;
    uint8_t rnd[4096]; /* getrandom() pool: one syscall per 4 KiB of ids */
    size_t rnd_used;
};

/** Builds the worker's base, server and listener on port (0 = any); *bound_port gets it. */
int rd_worker_init(struct rd_worker *w, int idx, const struct rd_config *cfg, int port,
                   int *bound_port);
/** Starts the thread (which connects to Redis and serves until stopped). */
int rd_worker_start(struct rd_worker *w);
/** Any thread: asks the worker to drain and stop. */
void rd_worker_request_stop(struct rd_worker *w);
/** Joins the thread and frees what it owned. */
void rd_worker_join(struct rd_worker *w);

/** Fills buf with n CSPRNG bytes from the worker's pool. Worker thread only. */
void rd_worker_random(struct rd_worker *w, void *buf, size_t n);
/** Same, shaped for rd_code_generate(). */
int rd_worker_random_cb(void *buf, size_t n, void *arg);

#endif
