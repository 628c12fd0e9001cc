/* SPDX-License-Identifier: MIT
 *
 * Hot coupons (rd/shards.h), the daemon's side: routing a use to the user's shard, moving
 * budget between shards when one runs out, keeping shards in step with the home hash after
 * every write, and reading them all for GET. Every step is one Redis call of the request
 * (r->call), made after the previous one answered: a request never has two calls out.
 *
 * Owns: this worker's cache of layouts (thread-local, fixed size): a code's layout never
 * changes while the coupon exists, and a stale entry is found out by its shard's
 * "noshard" answer (then forgotten), or expires after CACHE_TTL_MS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "rd/log.h"

#define CACHE_SLOTS  256
#define CACHE_TTL_MS 60000
#define NOSHARD_HOPS 3 /* noshard answers before a use gives up (503) */

struct cached {
    char code[RD_CODE_MAX + 1];
    struct rd_shard_layout layout;
    int64_t until_ms;
};
static _Thread_local struct cached cache[CACHE_SLOTS];

static struct cached *slot_of(const char *code)
{
    return &cache[rd_bucket_of(code, strlen(code), CACHE_SLOTS)];
}

static struct rd_hot *hot(struct rd_req *r)
{
    return &rd_api(r)->hot;
}

static void to_user_shard(struct rd_req *r, const char *code)
{
    struct rd_api *a = rd_api(r);
    snprintf(a->code, sizeof(a->code), "%s", code); /* the shards' keys are made from it */
    const char *u = a->rq.user_id ? a->rq.user_id : "";
    a->hot.on = 1;
    a->hot.shard = rd_shard_of_user(u, strlen(u), a->hot.layout.n);
}

void rd_hot_route(struct rd_req *r, const char *code)
{
    struct cached *c = slot_of(code);
    if (c->layout.n && strcmp(c->code, code) == 0 && c->until_ms > r->now_ms) {
        hot(r)->layout = c->layout;
        to_user_shard(r, code);
    }
}

int rd_hot_learn(struct rd_req *r, const char *code, const char *layout)
{
    struct rd_hot *h = hot(r);
    uint32_t nb = (uint32_t)r->w->cfg->buckets;
    if (rd_shard_layout_parse(layout, strlen(layout), nb, &h->layout) < 0 ||
        h->layout.bucket[0] != rd_bucket_of(code, strlen(code), nb)) {
        rd_error("event=shard_layout_bad req=%s code=%s layout=\"%s\"", r->request_id, code,
                 layout);
        return -1;
    }
    struct cached *c = slot_of(code);
    snprintf(c->code, sizeof(c->code), "%s", code);
    c->layout = h->layout;
    c->until_ms = r->now_ms + CACHE_TTL_MS;
    to_user_shard(r, code);
    return 0;
}

static void forget(const char *code)
{
    struct cached *c = slot_of(code);
    if (strcmp(c->code, code) == 0)
        c->layout.n = 0;
}

/* ---- one call of a step --------------------------------------------------------------- */

static void shard_key(struct rd_req *r, int i, char key[RD_KEY_MAX])
{
    rd_key_shard(key, RD_KEY_MAX, hot(r)->layout.bucket[i], rd_api(r)->code);
}

static void fail(struct rd_req *r, const redisReply *reply)
{
    struct rd_hot *h = hot(r);
    if (h->failed)
        h->failed(r, reply);
    else
        rd_reply_redis_failure(r, reply, "shards");
}

static int bad(const redisReply *reply)
{
    return !reply || reply->type == REDIS_REPLY_ERROR;
}

/* ---- moves: take at src, give at dst, done at src ---------------------------------------- */

static void send_move(struct rd_req *r, int at, const char *op, const char *amount, int peer,
                      rd_redis_cb *cb)
{
    struct rd_hot *h = hot(r);
    char key[RD_KEY_MAX], peer_s[16], now[24];
    shard_key(r, at, key);
    snprintf(peer_s, sizeof(peer_s), "%u", h->layout.bucket[peer]);
    snprintf(now, sizeof(now), "%lld", (long long)r->now_ms);
    struct rd_cmd cmd;
    rd_cmd_script(&cmd, RD_LUA_SHARD_MOVE);
    rd_cmd_key(&cmd, RD_SHARD_MOVE_K_SHARD, key);
    rd_cmd_arg(&cmd, RD_SHARD_MOVE_A_OP, op);
    rd_cmd_arg(&cmd, RD_SHARD_MOVE_A_ID, h->move_id);
    rd_cmd_arg(&cmd, RD_SHARD_MOVE_A_AMOUNT, amount);
    rd_cmd_arg(&cmd, RD_SHARD_MOVE_A_PEER, peer_s);
    rd_cmd_arg(&cmd, RD_SHARD_MOVE_A_NOW_MS, now);
    /* a take must be replicated before its give goes out: a failover that forgot the take
     * but kept the give would have created budget */
    rd_req_send_durable(r, &cmd, cb);
}

static void on_done(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    if (bad(reply)) /* the budget has arrived; reconcile clears the source's record */
        rd_warn("event=shard_move_done_failed req=%s move=%s", r->request_id, hot(r)->move_id);
    hot(r)->moved_cb(r, hot(r)->moved);
}

static void on_give(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    struct rd_hot *h = hot(r);
    (void)redis;
    if (bad(reply) || reply->type != REDIS_REPLY_STRING) {
        rd_warn("event=shard_move_unfinished req=%s move=%s n=%lld (reconcile returns it)",
                r->request_id, h->move_id, (long long)h->moved);
        fail(r, reply);
        return;
    }
    if (strcmp(reply->str, "void") == 0) { /* reconcile got there first: it returns it */
        h->moved = 0;
        h->moved_cb(r, 0);
        return;
    }
    send_move(r, h->src, "done", "", h->dst, on_done);
}

static void on_take(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    struct rd_hot *h = hot(r);
    (void)redis;
    if (bad(reply) || reply->type != REDIS_REPLY_INTEGER) {
        fail(r, reply);
        return;
    }
    h->moved = reply->integer;
    if (h->moved <= 0) {
        h->moved_cb(r, 0);
        return;
    }
    char n[24];
    snprintf(n, sizeof(n), "%lld", (long long)h->moved);
    send_move(r, h->dst, "give", n, h->src, on_give);
}

/* Moves up to h->want (-1: half) from shard src to shard dst; cb gets what arrived. */
static void move(struct rd_req *r, int src, int dst, int64_t want,
                 void (*cb)(struct rd_req *r, int64_t n))
{
    struct rd_hot *h = hot(r);
    uint8_t rnd[RD_MOVE_ID_LEN / 2];
    rd_worker_random(r->w, rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(h->move_id + 2 * i, 3, "%02x", rnd[i]);
    h->src = src;
    h->dst = dst;
    h->want = want;
    h->moved = 0;
    h->moved_cb = cb;
    char w[24] = "";
    if (want >= 0)
        snprintf(w, sizeof(w), "%lld", (long long)want);
    send_move(r, src, "take", w, dst, on_take);
}

/* ---- borrowing -------------------------------------------------------------------------- */

static void next_source(struct rd_req *r);

static void borrowed(struct rd_req *r, int64_t n)
{
    if (n > 0)
        hot(r)->then(r);
    else
        next_source(r);
}

static void next_source(struct rd_req *r)
{
    struct rd_hot *h = hot(r);
    int others = h->layout.n - 1;
    if (h->tries >= others) {
        h->final = 1;
        h->then(r);
        return;
    }
    int k = (h->start + h->tries++) % others;
    move(r, k >= h->shard ? k + 1 : k, h->shard, -1, borrowed);
}

void rd_hot_borrow(struct rd_req *r, void (*then)(struct rd_req *r))
{
    struct rd_hot *h = hot(r);
    uint8_t rnd;
    rd_worker_random(r->w, &rnd, 1);
    h->then = then;
    h->failed = NULL;
    h->tries = 0;
    /* a random first source: shards that run dry at once spread their asks */
    h->start = rnd % (h->layout.n - 1);
    next_source(r);
}

/* ---- syncing a shard's definition --------------------------------------------------------- */

static void send_sync(struct rd_req *r, int i, rd_redis_cb *cb)
{
    struct rd_api *a = rd_api(r);
    char key[RD_KEY_MAX], users[RD_KEY_MAX], ver[24], scratch[RD_COUPON_SCRATCH];
    const char *names[RD_COUPON_NFIELDS], *values[RD_COUPON_NFIELDS];
    shard_key(r, i, key);
    rd_key_users(users, sizeof(users), a->hot.layout.bucket[i], a->code);
    snprintf(ver, sizeof(ver), "%lld", (long long)a->coupon.ver);
    rd_coupon_fields(&a->coupon, names, values, scratch);
    struct rd_cmd cmd;
    rd_cmd_script(&cmd, RD_LUA_SHARD_SYNC);
    rd_cmd_key(&cmd, RD_SHARD_SYNC_K_SHARD, key);
    rd_cmd_key(&cmd, RD_SHARD_SYNC_K_USERS, users);
    rd_cmd_arg(&cmd, RD_SHARD_SYNC_A_GEN, a->coupon.gen);
    rd_cmd_arg(&cmd, RD_SHARD_SYNC_A_VER, ver);
    for (int f = 0; f < RD_COUPON_NFIELDS; f++) {
        rd_cmd_push(&cmd, names[f], strlen(names[f]));
        rd_cmd_push(&cmd, values[f], strlen(values[f]));
    }
    rd_req_send_durable(r, &cmd, cb);
}

static int synced(struct rd_req *r, const redisReply *reply, int i)
{
    struct rd_hot *h = hot(r);
    if (bad(reply) || reply->type != REDIS_REPLY_ARRAY || reply->elements < RD_SHARD_SYNC_OK__LEN)
        return -1;
    h->budget[i] = rd_el_num(reply, RD_SHARD_SYNC_OK_BUDGET);
    h->used[i] = rd_el_num(reply, RD_SHARD_SYNC_OK_USED);
    return 0;
}

/* ---- a shard that is missing ------------------------------------------------------------ */

static void on_repaired(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    if (synced(r, reply, hot(r)->shard) < 0) {
        fail(r, reply);
        return;
    }
    hot(r)->then(r);
}

static void on_home_read(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    struct rd_api *a = rd_api(r);
    (void)redis;
    if (bad(reply) || reply->type != REDIS_REPLY_ARRAY) {
        fail(r, reply);
        return;
    }
    if (reply->elements == 0 || rd_coupon_from_reply(r, reply, 0) < 0 || !a->coupon.shards[0]) {
        /* gone (archived), or no longer sharded: the home hash answers */
        a->hot.on = 0;
        a->hot.then(r);
        return;
    }
    send_sync(r, a->hot.shard, on_repaired);
}

void rd_hot_noshard(struct rd_req *r, const char *code, void (*then)(struct rd_req *r))
{
    struct rd_api *a = rd_api(r);
    struct rd_hot *h = &a->hot;
    forget(code);
    h->then = then;
    h->failed = NULL;
    if (++h->hops > NOSHARD_HOPS) {
        rd_error("event=shard_unrepairable req=%s code=%s shard=%d", r->request_id, code, h->shard);
        rd_reply_error(r, RD_E_UNAVAILABLE, "the coupon's shard is not reachable; retry shortly",
                       NULL);
        return;
    }
    if (h->hops == 1) { /* the cache may be stale: ask the home hash again */
        h->on = 0;
        then(r);
        return;
    }
    char key[RD_KEY_MAX];
    rd_key_coupon(key, sizeof(key), h->layout.bucket[0], code);
    struct rd_cmd cmd;
    rd_cmd_script(&cmd, RD_LUA_COUPON_READ);
    rd_cmd_key(&cmd, RD_COUPON_READ_K_COUPON, key);
    rd_req_send(r, &cmd, on_home_read);
}

/* ---- after a write ---------------------------------------------------------------------- */

static void sync_step(struct rd_req *r);

static void spread_next(struct rd_req *r, int64_t n)
{
    struct rd_hot *h = hot(r);
    h->budget[0] -= n;
    h->budget[h->step++] += n;
    sync_step(r);
}

static void on_synced(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    if (synced(r, reply, hot(r)->step) < 0) {
        fail(r, reply);
        return;
    }
    hot(r)->step++;
    sync_step(r);
}

static void repay_next(struct rd_req *r, int64_t n)
{
    struct rd_hot *h = hot(r);
    h->budget[0] += n;
    h->budget[h->step++] -= n;
    sync_step(r);
}

/* phase 0: every shard's definition; 1: a new coupon's parts out of shard 0; 2: shard 0's
 * debt (a lowered total) paid back from the others */
static void sync_step(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    struct rd_hot *h = &a->hot;
    int n = h->layout.n;
    for (;;) {
        if (h->phase == 0 && h->step < n) {
            send_sync(r, h->step, on_synced);
            return;
        }
        if (h->phase == 0) {
            h->phase = strcmp(a->action, "coupon_create") == 0 ? 1 : 2;
            h->step = 1;
            continue;
        }
        if (h->phase == 1 && h->step < n) {
            int64_t part = rd_shard_share(a->coupon.limit_total, n, h->step) - h->budget[h->step];
            if (part > 0) {
                move(r, 0, h->step, part, spread_next);
                return;
            }
            h->step++;
            continue;
        }
        if (h->phase == 2 && h->step < n && h->budget[0] < 0) {
            if (h->budget[h->step] > 0) {
                move(r, h->step, 0, -h->budget[0], repay_next);
                return;
            }
            h->step++;
            continue;
        }
        break;
    }
    h->then(r);
}

static void sync_failed(struct rd_req *r, const redisReply *reply)
{
    struct rd_api *a = rd_api(r);
    rd_warn("event=shard_sync_failed req=%s code=%s action=%s shard=%d", r->request_id, a->code,
            a->action, a->hot.step);
    if (strcmp(a->action, "coupon_create") == 0) {
        a->hot.then(r); /* it exists and works: shards are made and fed on demand */
        return;
    }
    (void)reply;
    rd_reply_error(r, RD_E_UNAVAILABLE,
                   "the change is saved but not yet on every shard of this coupon; send it "
                   "again",
                   NULL);
}

void rd_hot_sync(struct rd_req *r, void (*then)(struct rd_req *r))
{
    struct rd_api *a = rd_api(r);
    struct rd_hot *h = &a->hot;
    uint32_t nb = (uint32_t)r->w->cfg->buckets;
    if (rd_shard_layout_parse(a->coupon.shards, strlen(a->coupon.shards), nb, &h->layout) < 0) {
        rd_error("event=shard_layout_bad req=%s code=%s", r->request_id, a->code);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    h->then = then;
    h->failed = sync_failed;
    h->phase = 0;
    h->step = 0;
    sync_step(r);
}

/* ---- reading every shard ---------------------------------------------------------------- */

static void read_step(struct rd_req *r);

static void on_shard_read(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    struct rd_hot *h = hot(r);
    (void)redis;
    if (bad(reply) || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
        fail(r, reply);
        return;
    }
    h->budget[h->step] = rd_el_num(reply, 0);
    h->used[h->step] = rd_el_num(reply, 1);
    h->step++;
    read_step(r);
}

static void read_step(struct rd_req *r)
{
    struct rd_hot *h = hot(r);
    if (h->step >= h->layout.n) {
        h->then(r);
        return;
    }
    char key[RD_KEY_MAX];
    shard_key(r, h->step, key);
    struct rd_cmd cmd;
    rd_cmd_script(&cmd, RD_LUA_COUPON_READ);
    rd_cmd_key(&cmd, RD_COUPON_READ_K_COUPON, key);
    rd_cmd_push(&cmd, "budget", 6);
    rd_cmd_push(&cmd, "used", 4);
    rd_req_send(r, &cmd, on_shard_read);
}

void rd_hot_read(struct rd_req *r, void (*then)(struct rd_req *r))
{
    struct rd_api *a = rd_api(r);
    struct rd_hot *h = &a->hot;
    if (rd_shard_layout_parse(a->coupon.shards, strlen(a->coupon.shards),
                              (uint32_t)r->w->cfg->buckets, &h->layout) < 0) {
        rd_error("event=shard_layout_bad req=%s code=%s", r->request_id, a->code);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    h->then = then;
    h->failed = NULL;
    h->step = 0;
    read_step(r);
}

void rd_hot_json(struct rd_req *r, json_t *o)
{
    struct rd_hot *h = hot(r);
    json_t *budget = json_array(), *used = json_array();
    for (int i = 0; i < h->layout.n; i++) {
        /* a budget below zero is a lowered total being paid back: nothing to grant */
        json_array_append_new(budget, json_integer(h->budget[i] > 0 ? h->budget[i] : 0));
        json_array_append_new(used, json_integer(h->used[i] > 0 ? h->used[i] : 0));
    }
    json_object_set_new(
        o, "shards",
        json_pack("{s:i, s:o, s:o}", "count", h->layout.n, "budget", budget, "used", used));
}

int64_t rd_hot_used(struct rd_req *r)
{
    struct rd_hot *h = hot(r);
    int64_t sum = 0;
    for (int i = 0; i < h->layout.n; i++)
        sum += h->used[i] > 0 ? h->used[i] : 0;
    return sum;
}
