/* SPDX-License-Identifier: MIT
 *
 * What the API handlers (daemon/api/) share beyond the request core of http.h: the state
 * they keep in a request, their script calls and the answers' shapes (script_call.c), and
 * the parts that redeem, pay, reverse and refund have in common (uses.c).
 *
 * Dependencies run one way: handlers -> uses.c, script_call.c -> http.h and the stores;
 * reverse.c is the one handler that hands a request to another group's code (a
 * voucher payment's refund).
 *
 * Owns: nothing beyond struct rd_api, which lives in the request (r->state) and is freed
 * with it. Thread: the worker's.
 */
#ifndef RD_API_H
#define RD_API_H

#include "server/http.h"
#include "store/pgpool.h"
#include "rd/coupon.h"
#include "rd/http_parse.h"
#include "rd/listing.h"
#include "rd/lua_script_ids.h"
#include "rd/request.h"
#include "rd/shards.h"
#include "store/redis_client.h"

/*
 * A use (a redemption or a voucher payment) as reversals, refunds and reads need it: its
 * facts, from its outbox entry while that waits to be shipped (or from redeemd 0.1's record)
 * and from the ledger after, and what has been given back of it.
 */
struct rd_use {
    int pay;         /* a voucher payment, else a redemption */
    int from_ledger; /* the facts came from PostgreSQL */
    char code[RD_CODE_MAX + 1], user[RD_USER_ID_MAX + 1], order[RD_ORDER_ID_MAX + 1];
    char currency[4], campaign[RD_CAMPAIGN_MAX + 1];
    char day[24], week[24]; /* the period indexes the use counted in ("" unknown) */
    int64_t created_ms;
    int64_t amount;        /* a redemption's order amount, a payment's amount */
    int64_t discount;      /* a redemption's */
    int64_t balance_after; /* a payment's */
    /* given back: "" (nothing), reversed, refunded, partially_refunded; when, by which row */
    char given[24];
    int64_t given_at;
    char given_by[RD_TXN_ID_MAX + 1];
    int64_t refunded; /* a payment's refunded total */
};

/* A request's work on a hot coupon's shards (shards.c): where it goes and the steps of a
 * move, a sync or a read of every shard, one Redis call at a time. */
struct rd_hot {
    struct rd_shard_layout layout; /* known once the home hash or the cache named it */
    int on;                        /* the use goes to shard `shard`, not the home hash */
    int shard;
    int final;     /* borrowing found nothing: the shard rejects at zero */
    int hops;      /* "noshard" answers so far */
    int phase;     /* of a sync: definitions, then budgets */
    int step;      /* the shard a sync or read is at */
    int tries;     /* sources asked in this borrow */
    int start;     /* the first source asked */
    int src, dst;  /* the move under way */
    int64_t want;  /* what it may take, -1: half the source's budget */
    int64_t moved; /* what it took */
    char move_id[RD_MOVE_ID_LEN + 1];
    int64_t budget[RD_SHARDS_MAX], used[RD_SHARDS_MAX];
    void (*moved_cb)(struct rd_req *r, int64_t n);
    void (*then)(struct rd_req *r);
    void (*failed)(struct rd_req *r, const redisReply *reply);
};

/* A request's guessing budgets (guess.c): the budget asked or counted, and the answer held
 * back until the failed lookup is counted. */
#define RD_GUESS_BUDGETS 4 /* customer address, user, session, API key */
struct rd_guess {
    char ip[48];      /* the customer's address (when it is theirs) */
    uint32_t bucket;  /* of the budget last called */
    int at;           /* the budget being asked or counted */
    int refused;      /* the first budget that refused, -1: none */
    int64_t retry_ms; /* when one more failure will be allowed */
    json_t *deferred; /* owned: the answer to send if no budget refuses */
    enum rd_status reason;
    int as_error;    /* deferred is an error's details (else a 200 body) */
    const char *msg; /* static */
    void (*then)(struct rd_req *r);
};

/* The state of an API handler, in r->state: set up by the first rd_api(r). */
struct rd_api {
    uint32_t bucket;                /* the hash-tag bucket of the code or id worked on */
    struct rd_txn_ref ref;          /* the {id} path segment, parsed (rd_path_txn) */
    struct rd_use *use;             /* reversals, refunds, reads of a use (owned) */
    void (*then)(struct rd_req *r); /* what runs once the use is read */
    char code[RD_CODE_MAX + 1];     /* the coupon code worked on, normalised */
    const char *idem;               /* the Idempotency-Key header (borrowed from the request) */
    int redeem;                     /* validate (0) or redeem (1) */
    int64_t refund_amount;          /* reverse of a voucher payment: 0 = all that is left */
    int attempts;                   /* coupon create: >= 1 when the code is generated */
    const char *action;             /* coupon writes: the ledger kind (coupon_create, ...) */
    struct rd_redeem_req rq;        /* validate, redeem, pay, recharge: the parsed body */
    struct rd_coupon coupon;        /* coupon and voucher reads and writes */
    struct rd_hot hot;              /* a hot coupon's shards (shards.c) */
    struct rd_guess guess;          /* guessing budgets (guess.c) */
};

struct rd_api *rd_api(struct rd_req *r);

/* ---- script calls and their answers (script_call.c) ------------------------------------ */

/**
 * Sends cmd for r (its callback cb gets r). A Redis that is not ready answers 503, a command
 * that breaks its script's contract 500; cb does not run then.
 */
void rd_req_send(struct rd_req *r, const struct rd_cmd *cmd, rd_redis_cb *cb);
/* The same for a use or a money movement: with min_replica_acks set, its reply waits for
 * that many replicas to confirm it (redis_client.h: WAIT, grouped per connection). */
void rd_req_send_durable(struct rd_req *r, const struct rd_cmd *cmd, rd_redis_cb *cb);

/*
 * A script's ok answer may come packed, one string of '\0'-joined values (redeem.lua,
 * pay.lua: Redis returns it cheaper than an array). rd_reply_view gives the array it stands
 * for, in view (the caller's, valid while reply is); any other reply is returned as it is.
 * More than RD_REPLY_VIEW_MAX values is no answer of ours: the string is returned, and
 * rd_script_status treats it as a failure.
 */
#define RD_REPLY_VIEW_MAX 16
struct rd_reply_view {
    redisReply array, values[RD_REPLY_VIEW_MAX], *elements[RD_REPLY_VIEW_MAX];
};
const redisReply *rd_reply_view(const redisReply *reply, struct rd_reply_view *view);

/* Elements of a script's flat string array reply: "" (or -1) when absent. */
const char *rd_el(const redisReply *reply, size_t i);
int64_t rd_el_num(const redisReply *reply, size_t i);
/** A remaining count: the number, or null for "no limit" (""). New reference. */
json_t *rd_opt_count(const redisReply *reply, size_t i);
/** An RFC 3339 string for ms. New reference. */
json_t *rd_time_json(int64_t ms);
/**
 * The start of every money or use script's answer: hints the shipper when the script wrote
 * to the outbox (wrote: 1, or -1 to tell from a validate's answer), answers failures and a
 * reused Idempotency-Key itself (returns NULL then), else returns the status element.
 */
const char *rd_script_status(struct rd_req *r, const redisReply *reply, int wrote,
                             const char *what);
/**
 * Answers for a Redis reply that is not a success: NULL (outcome unknown) and "unavailable"
 * errors give 503, anything else is logged and gives 500.
 */
void rd_reply_redis_failure(struct rd_req *r, const redisReply *reply, const char *what);
/** Parses a hash reply (flat field/value pairs from element `from`) into rd_api(r)->coupon. */
int rd_coupon_from_reply(struct rd_req *r, const redisReply *reply, size_t from);
/**
 * Normalises the {code} path segment into rd_api(r)->code and its bucket; a code that cannot
 * exist answers coupon_not_found (-1).
 */
int rd_path_code(struct rd_req *r);
/**
 * The {id} path segment of a redemption or payment: into rd_api(r)->ref (and its bucket
 * into ->bucket); an id this service cannot have issued answers redemption_not_found (-1).
 */
int rd_path_txn(struct rd_req *r);
/** A fresh transaction id for bucket into out. */
void rd_req_new_txn(struct rd_req *r, uint32_t bucket, char out[RD_TXN_ID_LEN + 1]);
/**
 * Past max_backlog the ledger is too far behind to risk more entries: answers 503 (safe to
 * retry with the same key) and returns 1; 0 otherwise.
 */
int rd_ledger_backlogged(struct rd_req *r);
/** Checks the Idempotency-Key into rd_api(r)->idem; required: answers when it is missing. */
int rd_req_idem(struct rd_req *r, int required);
/**
 * The customer behind r: their address into ip (customer.ip, else what X-Forwarded-For from
 * a trusted proxy says, else the peer's) and the context an outbox entry keeps into cx ("" when
 * the request says nothing about its customer; cx NULL: not wanted). Returns 1 if the address
 * is the customer's own (given or forwarded), 0 if it is only the peer's.
 */
int rd_req_customer(struct rd_req *r, const struct rd_customer *c, char ip[48], char cx[RD_CX_MAX]);

/* ---- the use path: redeem.lua and pay.lua, reverse.lua and refund.lua (uses.c) --------- */

/*
 * A use call being built, on the caller's stack: the keys and numbers the call's strings
 * point into live here until it is sent.
 */
struct rd_use_call {
    struct rd_cmd cmd;
    char keys[7][RD_KEY_MAX];
    char now[24], amount[24], slice[24], created[24], window[24], used[24];
    char txn[RD_TXN_ID_LEN + 1];
    uint8_t fp[8], digest[RD_IDEM_DIGEST_LEN];
    char ip[48], cx[RD_CX_MAX]; /* the customer's address and context (rd_req_customer) */
};

/**
 * The parts of a call that an Idempotency-Key idem on rd_api(r)->rq makes: the keys of its
 * record (k_idem, k_idem_v1, and k_prev, k_prev + 1 for the two slices before k_idem's:
 * where they go in u->keys), the fingerprint, the record's field
 * and slice, and also now, the amount and a fresh transaction id in rd_api(r)->bucket, whose
 * tag comes from the key's digest (the id a use gets is rebuilt the same on a replay).
 */
void rd_idem_prepare(struct rd_req *r, struct rd_use_call *u, int k_idem, int k_idem_v1, int k_prev,
                     const char *idem);
/**
 * Starts u as a call of redeem.lua or pay.lua (the same keys, and these arguments: now,
 * user, amount, currency, fingerprint, transaction, idempotency record, order, client, key,
 * request, Idempotency-Key, code) for rd_api(r)->rq on its code; the caller adds the
 * script's own. With rd_api(r)->hot.on the keys are those of the user's shard.
 */
void rd_use_prepare(struct rd_req *r, struct rd_use_call *u, enum rd_lua_id script,
                    const char *idem);
/**
 * Starts u as a call of reverse.lua or refund.lua (the same keys and first arguments) on
 * the use rd_api(r)->use (read by rd_use_read); the caller adds any further argument.
 */
void rd_undo_prepare(struct rd_req *r, struct rd_use_call *u, enum rd_lua_id script);
/**
 * Reads the use r->param names into rd_api(r)->use: use_read.lua, then the ledger if its
 * entry has been shipped. Runs then(r) once it is read; answers r itself when there is no
 * such use (404) or it cannot be read (503).
 */
void rd_use_read(struct rd_req *r, void (*then)(struct rd_req *r));

/* ---- guessing budgets (guess.c) --------------------------------------------------------- */

/* Before a lookup by code: refuses r (429 rate_limited, Retry-After) if a budget it falls
 * under is spent, asking only budgets this worker saw fail lately; else runs then(r). */
void rd_guess_check(struct rd_req *r, void (*then)(struct rd_req *r));
/* Answers a lookup whose outcome was reason: obj is the error's details (as_error, with msg
 * or the status' message) or a 200 body. A failure that counts (unknown, archived or disabled
 * code, wrong kind) is first counted in each budget of r; if one is spent the answer is 429
 * instead. Owns obj. */
void rd_guess_answer(struct rd_req *r, enum rd_status reason, int as_error, const char *msg,
                     json_t *obj);
/* Whether reason counts as a failed lookup. */
int rd_guess_counts(enum rd_status reason);
/* Whether r's API key is exempt (guess_exempt_keys). */
int rd_guess_exempt(const struct rd_req *r);

/* ---- hot coupons: a use on the user's shard, moves, syncs (shards.c) -------------------- */

/* Routes a use of code through this worker's cache of layouts: a code known to be sharded
 * goes to the shard of rd_api(r)->rq.user_id (hot.on), anything else to its home hash. */
void rd_hot_route(struct rd_req *r, const char *code);
/* The home hash answered "sharded" with layout: remembers it and routes to the user's
 * shard. -1 if layout is not one for code (the caller answers 500). */
int rd_hot_learn(struct rd_req *r, const char *code, const char *layout);
/* The user's shard answered "noshard": forgets the layout once (the coupon may be gone, or
 * recreated), then repairs the shard from the home hash. then(r) sends the use again;
 * failures answer r. */
void rd_hot_noshard(struct rd_req *r, const char *code, void (*then)(struct rd_req *r));
/* The user's shard has no budget left: moves budget there from the others, one after
 * another, until one gives some. then(r) sends the use again, with hot.final set when none
 * had any; failures answer r. */
void rd_hot_borrow(struct rd_req *r, void (*then)(struct rd_req *r));
/* After a write of a sharded coupon (rd_api(r)->coupon as written): brings every shard to
 * its definition, moves a new coupon's budget out to its shards, pays back a budget below
 * zero from the others; then(r) answers. A new coupon that could not be spread still works
 * (shards are repaired and borrow on demand); any other write answers 503 (retry it). */
void rd_hot_sync(struct rd_req *r, void (*then)(struct rd_req *r));
/* Reads every shard's budget and used count (hot.budget, hot.used); then(r). */
void rd_hot_read(struct rd_req *r, void (*then)(struct rd_req *r));
/* The shards' part of a coupon's JSON (count, budgets, used) from hot.budget and hot.used. */
void rd_hot_json(struct rd_req *r, json_t *coupon);
/* The uses of every shard, summed (after rd_hot_read or rd_hot_sync). */
int64_t rd_hot_used(struct rd_req *r);

/*
 * The answer to an accepted redemption or payment. Built from the script's answer, or from
 * the ledger for a replay of one already shipped: the same bytes either way.
 */
struct rd_use_answer {
    const char *id, *code, *user, *currency, *order; /* order "" for none */
    int64_t created_ms, amount;
    int64_t discount;      /* a redemption's */
    int64_t balance_after; /* a payment's */
    int64_t rem[4];        /* remaining total, user, daily, weekly; -1 for no limit */
};
json_t *rd_redeem_answer_json(const struct rd_use_answer *x);
/** {"total", "user", "user_daily", "user_weekly"}: counts left, null for no limit. */
json_t *rd_remaining_json(const int64_t rem[4]);
json_t *rd_pay_answer_json(const struct rd_use_answer *x);
/** The same answer as JSON text appended to b (pay: a payment's), without building it. */
void rd_use_answer_text(struct rd_sbuf *b, const struct rd_use_answer *x, int pay);
/**
 * Answers a replay (the Idempotency-Key's record says id) of a redemption or payment whose
 * outbox entry has been shipped: from its ledger row, 201 and the first answer's body.
 */
void rd_use_replay_from_ledger(struct rd_req *r, const char *id, int pay);

/* The state of a ledger read (ledger.c), allocated only by requests that read the
 * ledger: the checkout path does not allocate or clear it. */
struct listing;
struct rd_lread {
    const struct listing *ls; /* the columns being listed (ledger.c) */
    struct rd_pgq pgq;
    struct rd_query query; /* owned: the parsed query string */
    struct rd_stmt st;     /* owned: the statement and its parameters */
    struct rd_sbuf row;    /* owned: the row being written */
    int csv;
    int missing;   /* single answers: the error when no row comes back (enum rd_status) */
    int streaming; /* a chunked reply has started */
    long limit, rows;
    char last_cursor[160];
    char id[RD_TXN_ID_MAX + 1];     /* single answers: the id the row is read for */
    struct evbuffer *chunk;         /* owned */
    int http;                       /* single answers: the status of a success (0 = 200) */
    void (*then)(struct rd_req *r); /* single answers: run instead of answering */
};

/*
 * Back-office reads and writes in PostgreSQL (ledger.c), through the worker's pool.
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

/* ---- across handler groups -------------------------------------------------------------- */

/**
 * Refunds the voucher payment rd_api(r)->use (read by rd_use_read): amount, or all that is
 * left of it when amount is 0. Needs rd_api(r)->idem. Answers r. (vouchers.c)
 */
void rd_voucher_refund(struct rd_req *r, int64_t amount);
/**
 * Reads the facts of use r->param from the ledger into rd_api(r)->use (and, unless its
 * mark said, what was given back of it), then runs then(r); no row answers 404.
 */
void rd_use_from_ledger(struct rd_req *r, void (*then)(struct rd_req *r));
/** Answers GET /v1/coupons/{code} for a code archived out of Redis, from the mirror. */
void rd_coupon_from_ledger(struct rd_req *r);

#endif
