/* SPDX-License-Identifier: MIT
 *
 * redeem-bench: a load generator for redeemd that also proves the answers were exact.
 *
 * One thread, one event_base, N persistent keep-alive connections speaking just enough
 * HTTP/1.1 (redeemd always answers with Content-Length). Every logical request keeps its
 * Idempotency-Key across retries (503 or a lost connection), so the outcome of every
 * redemption is known at the end, as a real checkout client would know it; those outcomes
 * feed the invariant checks (track.c).
 *
 * Owns: everything below; nothing is shared with other threads.
 */
#ifndef RD_BENCH_H
#define RD_BENCH_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdint.h>

#include "rd/hist.h"

enum op { OP_VALIDATE, OP_REDEEM, OP_REVERSE, OP_UNKNOWN, OP_PAY, OP__COUNT };

enum workload { WL_VALIDATE, WL_REDEEM_HOT, WL_REDEEM_MANY, WL_MIXED, WL_UNKNOWN, WL_VOUCHER };

struct opts {
    char host[64];
    int port;
    char key[128];       /* scopes redeem (and admin unless admin_key is set) */
    char admin_key[128]; /* "" = key */
    enum workload wl;
    int conns;
    double rate; /* > 0: open loop at this many requests per second */
    double duration_s;
    long long requests; /* > 0: stop after this many (measured) requests instead */
    double warmup_s;
    int coupons;        /* redeem-many, mixed */
    long long users;    /* 0 = a new user for every request */
    long long total;    /* coupon limit; 0 = none */
    long long per_user; /* 0 = none */
    int shards;         /* the coupons' "shards" (0 = none) */
    long long balance;  /* voucher-pay: each voucher's initial balance */
    long long amount;   /* voucher-pay: each payment */
    int json;
    int quiet;
    char pg[512];     /* conninfo for the ledger check; "" skips it */
    char redis[1024]; /* host:port, or a cluster's nodes host:port,host:port,...: the
                         per-user counter check; "" skips it */
    double drain_timeout_s;
    int check; /* run the invariant checks (default on) */
    int max_retries;
};

/* One logical request: retried with the same identity until it has a conclusive answer. */
struct job {
    enum op op;
    uint32_t coupon;    /* index into the run's coupons */
    uint64_t user;      /* user number */
    uint64_t seq;       /* unique per run: idempotency key, unknown code */
    int64_t intended;   /* open loop: when it should have been sent (us) */
    int64_t sent;       /* this attempt */
    int32_t redemption; /* OP_REVERSE: index into the accepted redemptions */
    int tries;
};

struct bench;

struct conn {
    struct bench *b;
    struct bufferevent *bev;
    struct event *retry_ev;
    int busy;
    int connected;
    struct job job;
    /* response parse state */
    int have_head;
    int status;
    long clen;
    int replayed;
    int close_after;
    size_t head_len;
};

/* Counts of answers by HTTP status and error code, during the measured window. */
#define MAX_CODES 48
struct counts {
    uint64_t status[600];
    char code_name[MAX_CODES][40];
    uint64_t code_n[MAX_CODES];
    int ncodes;
    uint64_t transport_errors;
    uint64_t retries;
};

/* Client-side record of what redeemd answered (filled always, warm-up included). */
struct coupon_track {
    char code[48];
    uint64_t accepted, reversed, rejected, unknown;
    uint64_t exhausted; /* refusals that said limit_total_reached */
};

struct redemption {
    char id[64];
    uint32_t coupon;
    uint64_t user;
    int reversed;
};

struct bench {
    struct opts o;
    struct event_base *base;
    struct sockaddr_in addr;
    char run[16]; /* run id: codes, users and keys of this run carry it */
    struct conn *conns;
    struct event *tick_ev;
    int64_t t0, measure_from, measure_to; /* us, monotonic */
    int measuring, stopping, finished;
    uint64_t next_seq;
    uint64_t started, completed, measured;
    uint64_t rng;
    /* open loop */
    uint64_t scheduled;
    int64_t *queue; /* intended send times waiting for a free connection */
    size_t qhead, qtail, qcap;
    uint64_t queue_max;
    /* results */
    struct rd_hist *hist;
    struct rd_hist *op_hist[OP__COUNT];
    struct counts counts;
    uint64_t op_done[OP__COUNT];
    /* progress */
    uint64_t last_measured;
    struct rd_hist *sec_hist;
    int64_t last_progress;
    /* tracking */
    struct coupon_track *coupons;
    int ncoupons;
    struct redemption *reds;
    size_t nreds, capreds, next_reverse;
    struct usermap *users;
    uint64_t ledger_expect[OP__COUNT][2]; /* [op][accepted?] rows the ledger must hold */
    uint64_t unknown_outcomes;
    uint64_t limited;    /* unknown workload: 429 from a guessing budget */
    uint64_t unexpected; /* answers that no correct run should see (400, 500...) */
    /* server figures from /metrics */
    double cpu_before, cpu_after;
    long long backlog_max, backlog_end;
    int metrics_ok;
};

/* http.c */
int conn_open(struct conn *c);
void conn_send(struct conn *c);
/** Blocking request for setup and checks. Returns the status or -1; *body is malloc'd. */
int sync_http(const struct bench *b, const char *method, const char *path, const char *key,
              const char *json, char **body);
double metrics_value(const char *text, const char *name);

/* main.c */
void bench_write_request(struct conn *c, struct evbuffer *out);
void bench_on_answer(struct conn *c, int status, const char *body, size_t len, int replayed);
void bench_on_transport_error(struct conn *c);
uint64_t bench_rand(struct bench *b);

/* track.c */
struct usermap *usermap_new(void);
void usermap_free(struct usermap *m);
size_t usermap_size(const struct usermap *m);
/** Adds delta to (coupon, user)'s net count of uses; returns the new value. */
int64_t usermap_add(struct usermap *m, uint32_t coupon, uint64_t user, int64_t delta);
void track_answer(struct bench *b, const struct job *j, int status, const char *body, size_t len);
void track_unknown(struct bench *b, const struct job *j);
/** Runs every invariant check; prints what it finds. Returns the number of violations. */
int check_invariants(struct bench *b);
void user_id(const struct bench *b, uint64_t user, char *out, size_t n);

#endif
