/* SPDX-License-Identifier: MIT
 *
 * Per-request context, routing and the reply functions. A struct rd_req is allocated when
 * the server core (httpd.h) hands us a complete request, or a refusal of its own, and
 * freed by the one reply function that answers it: exactly one reply per request, always,
 * even when the client has gone (the core keeps the request until it is answered).
 *
 * Owns: the parsed body (json_t), the parsed redeem request, the coupon being edited, the
 * key buffers the Redis call borrows. Borrows: the worker and the struct rd_hreq.
 * Thread: the worker's.
 */
#ifndef RD_HTTP_H
#define RD_HTTP_H

#include <event2/buffer.h>
#include <jansson.h>
#include <stdint.h>

#include "httpd.h"
#include "pgpool.h"
#include "rd/coupon.h"
#include "rd/http_parse.h"
#include "rd/keys.h"
#include "rd/listing.h"
#include "rd/request.h"
#include "rd/status.h"
#include "worker.h"

struct rd_req {
    struct rd_worker *w;
    struct rd_hreq *hr;
    char request_id[130];
    char client_ip[48];
    char key_id[RD_APIKEY_ID_LEN + 1];
    unsigned scopes;
    int64_t now_ms;
    int64_t start_us;
    int route;         /* index into the routing table (metrics label); RD_MROUTES - 1 if none */
    int status;        /* the HTTP status sent, for the metrics counted when r is freed */
    const char *param; /* the {code} or {id} path segment, borrowed from path */
    char path[512];
    json_t *body;
    int replayed;
    struct rd_rcall call;
    /* handler state */
    uint32_t bucket;
    char txn[RD_TXN_ID_LEN + 1];
    char keys[5][RD_KEY_MAX];
    char num[6][24];
    char fp[17];
    const char *idem;
    int redeem_mode;
    struct rd_redeem_req rq;
    struct rd_coupon coupon;
    int attempts;
    int64_t refund_amount; /* reverse of a voucher payment: 0 = all that is left */
    const char *action;
    char code[RD_CODE_MAX + 1];
    char scratch[RD_COUPON_SCRATCH];
    struct rd_lread *lr; /* owned; only requests that read the ledger have one */
};

/* The state of a ledger read (handlers_ledger.c), kept out of struct rd_req so that the
 * checkout path does not allocate and clear it on every request. */
struct listing;
struct rd_lread {
    const struct listing *ls; /* the columns being listed (handlers_ledger.c) */
    struct rd_pgq pgq;
    struct rd_query query; /* owned: the parsed query string */
    struct rd_stmt st;     /* owned: the statement and its parameters */
    struct rd_sbuf row;    /* owned: the row being written */
    int csv;
    int missing;   /* single answers: the error when no row comes back (enum rd_status) */
    int streaming; /* a chunked reply has started */
    long limit, rows;
    char last_cursor[160];
    struct evbuffer *chunk;         /* owned */
    int http;                       /* single answers: the status of a success (0 = 200) */
    void (*then)(struct rd_req *r); /* single answers: run instead of answering */
};

typedef void rd_handler(struct rd_req *r);

/** The core's request callback: builds the context, authenticates and routes. */
void rd_http_dispatch(struct rd_hreq *h, void *worker);
/** The core's refusal callback: answers st in the error envelope. */
void rd_http_refuse(struct rd_hreq *h, enum rd_status st, const char *msg, void *worker);
/** A request header's value, or NULL. */
const char *rd_req_header(const struct rd_req *r, const char *name);

/** Answers with body (borrowed) of content type ctype; frees r. */
void rd_reply_text(struct rd_req *r, int http, const char *ctype, const char *body, size_t len);
/** Answers with obj (stolen) as JSON; frees r. */
void rd_reply_json(struct rd_req *r, int http, json_t *obj);
/** Answers with body (borrowed, JSON) as is; frees r. */
void rd_reply_raw(struct rd_req *r, int http, const char *body, size_t len);
/** Answers with the error envelope; details is stolen and may be NULL; message may be NULL. */
void rd_reply_error(struct rd_req *r, enum rd_status st, const char *message, json_t *details);
/** 400 invalid_request naming e->field. */
void rd_reply_verr(struct rd_req *r, const struct rd_verr *e);
/**
 * Answers for a Redis reply that is not a success: NULL (outcome unknown) and "unavailable"
 * errors give 503, anything else is logged and gives 500.
 */
void rd_reply_redis_failure(struct rd_req *r, const redisReply *reply, const char *what);

/* Elements of a script's flat string array reply: "" (or -1) when absent. */
const char *rd_el(const redisReply *reply, size_t i);
int64_t rd_el_num(const redisReply *reply, size_t i);
/** A remaining count: the number, or null for "no limit" (""). New reference. */
json_t *rd_opt_count(const redisReply *reply, size_t i);
/** An RFC 3339 string for ms. New reference. */
json_t *rd_time_json(int64_t ms);
/** A fresh transaction id for r->bucket into r->txn. */
void rd_req_new_txn(struct rd_req *r);
/**
 * The start of every money or use script's answer: hints the shipper when the script wrote
 * to the outbox, answers failures and a reused Idempotency-Key itself (returns NULL then),
 * else returns the status element. what names the call ("validate" writes only for
 * unknown codes).
 */
const char *rd_script_status(struct rd_req *r, const redisReply *reply, const char *what);

/** Starts r->call (already filled) or answers 503 if Redis is not ready. */
void rd_req_call(struct rd_req *r, rd_redis_cb *cb);
/** Sets r->call's argument i to s (borrowed). */
void rd_req_arg(struct rd_req *r, int i, const char *s);
void rd_req_argn(struct rd_req *r, int i, const char *s, size_t n);

/* Handlers (handlers_*.c). */
void rd_h_healthz(struct rd_req *r);
void rd_h_readyz(struct rd_req *r);
void rd_h_coupon_create(struct rd_req *r);
void rd_h_coupon_get(struct rd_req *r);
void rd_h_coupon_patch(struct rd_req *r);
void rd_h_coupon_disable(struct rd_req *r);
void rd_h_coupon_enable(struct rd_req *r);
void rd_h_coupon_share(struct rd_req *r);
void rd_h_validate(struct rd_req *r);
void rd_h_redeem(struct rd_req *r);
void rd_h_redemption_get(struct rd_req *r);
void rd_h_reverse(struct rd_req *r);
void rd_h_transactions(struct rd_req *r);
void rd_h_metrics(struct rd_req *r);
void rd_h_stats(struct rd_req *r);
void rd_h_coupons_list(struct rd_req *r);
void rd_h_voucher_balance(struct rd_req *r);
void rd_h_voucher_pay(struct rd_req *r);
void rd_h_voucher_recharge(struct rd_req *r);
void rd_h_batch_create(struct rd_req *r);
void rd_h_batches_list(struct rd_req *r);
void rd_h_batch_get(struct rd_req *r);
void rd_h_batch_cancel(struct rd_req *r);
void rd_h_batch_codes(struct rd_req *r);
/**
 * Refunds the voucher payment r->param (its record names code and user): amount, or all that
 * is left of it when amount is 0. Needs r->idem. Answers r.
 */
void rd_voucher_refund(struct rd_req *r, const char *code, const char *user, int64_t amount);
/**
 * Fills r->keys, r->txn, r->fp, r->num[0..3] (now, amount, idempotency and record TTLs) and
 * the first 6 arguments of r->call for redeem.lua or pay.lua (same 5 keys) on code in
 * r->bucket; r->rq holds the parsed request. The caller adds the script's own arguments.
 */
void rd_use_prepare(struct rd_req *r, int script, const char *code, const char *idem);
/**
 * Fills r->call for reverse.lua or refund.lua (same keys, same first 9 arguments) on the
 * record r->param of code and user (both copied). The caller adds any further argument.
 */
void rd_undo_prepare(struct rd_req *r, int script, const char *code, const char *user);
/**
 * Normalises the {code} path segment into r->code and names its coupon and outbox keys
 * (r->keys[0], r->keys[1]); a code that cannot exist answers coupon_not_found (-1).
 */
int rd_path_code(struct rd_req *r);
/** Parses a hash reply (flat field/value pairs from element `from`) into r->coupon. */
int rd_coupon_from_reply(struct rd_req *r, const redisReply *reply, size_t from);
/**
 * Past max_backlog the ledger is too far behind to risk more entries: answers 503 (safe to
 * retry with the same key) and returns 1; 0 otherwise.
 */
int rd_ledger_backlogged(struct rd_req *r);
/** The label of route i (its path pattern), for /metrics; NULL past the last route. */
const char *rd_http_route_name(int i);
/** Answers GET /v1/redemptions/{id} from the ledger (the Redis record has expired). */
void rd_redemption_from_ledger(struct rd_req *r);
/** Answers GET /v1/coupons/{code} for a code archived out of Redis, from the mirror. */
void rd_coupon_from_ledger(struct rd_req *r);
/*
 * Back-office reads and writes in PostgreSQL (handlers_ledger.c), through the worker's pool.
 * rd_lread_new() gives r its read state; r->lr->st.sql is the statement. rd_lread_param()
 * copies v (NULL: SQL NULL) as the next parameter and returns its number ($n); _owned takes
 * v over (freed with r). Past RD_PGQ_MAXPARAMS nothing is written and the read answers 500
 * (a handler's bug: every listing parameter is one statement parameter, whatever its number
 * of values). rd_lread_object() runs the statement: its row callback puts the answer into
 * r->body; no row answers missing; r->lr->http sets the status of a success and
 * r->lr->then, if set, runs instead of answering.
 */
void rd_lread_new(struct rd_req *r);
int rd_lread_param(struct rd_req *r, const char *v);
int rd_lread_param_owned(struct rd_req *r, char *v);
void rd_lread_object(struct rd_req *r, rd_pgq_row_cb *row_cb, enum rd_status missing);
/** Streams the codes of batch r->param as CSV (one "code" column). */
void rd_lread_codes_csv(struct rd_req *r);

/** Frees r after a streamed reply ended (or was cut off). */
void rd_req_free_streamed(struct rd_req *r);
/** Ends r whose client has gone (counted with status 499, as nginx logs it); frees r. */
void rd_req_abandon(struct rd_req *r);

#endif
