/* SPDX-License-Identifier: MIT
 *
 * Guessing budgets: failed lookups (unknown or archived code, wrong kind, disabled) per
 * customer address, user, session and API key, each a GCRA in Redis (scripts/lua/guess.lua)
 * under a key hashed from the budget and its value, so budgets spread over a cluster.
 *
 * Honest traffic costs nothing: a lookup that succeeds never reaches Redis for a budget.
 * A failed lookup is counted in each of its budgets (one call each, after the answer is
 * known and before it is sent). Before a lookup, a budget is asked ("peek") only when this
 * daemon has seen a failure of the same value within the time the budget takes to refill:
 * a guesser is then refused (429) before its guess is looked up, while a customer who never
 * mistyped a code is never asked about. A value's first request on another daemon is not
 * asked: a guesser spread over D daemons gets at most D lookups beyond its budget per
 * refill, and each of them still counts.
 *
 * A refusal costs no Redis call while this worker knows the answer: Redis said the value's
 * budget is spent and when one more failure will be allowed, and spending never makes that
 * time earlier (refusals do not move a budget; other daemons' failures only push it later).
 * Until then the worker refuses the value itself, counting the refusals it answered, and
 * calls Redis again only for the refusal that the ledger samples (the 2nd, 4th, 8th ... of
 * the minute: the call carries the count answered here), so a flood costs Redis about log2
 * of it and the ledger rows are the same as if every refusal had asked.
 *
 * Owns: the daemon's table of recent failures (process-wide, fixed size, direct-mapped: a
 * collision forgets an entry, which costs at most one unasked lookup), and per worker
 * thread a table of budgets known spent (direct-mapped: a collision forgets what the worker
 * knew, which costs one more call, and the refusals it had not yet reported, at most half of
 * the minute's count; so does a new minute). Thread: workers.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "rd/log.h"
#include "rd/sha256.h"
#include "jobs/shipper.h"

#define SUSPECTS 4096

static const char *const budget_names[RD_GUESS_BUDGETS] = {"ip", "user", "session", "key"};

/* Shared by the workers (a value's failure on one makes every other ask too). Each field is
 * one relaxed atomic: a torn entry (one writer's hash, another's time) costs at most one
 * lookup asked or not asked about, never a wrong answer (Redis decides). */
struct suspect {
    atomic_uint_least64_t h;
    atomic_int_least64_t until_ms;
};
static struct suspect suspects[SUSPECTS];

/* A budget Redis said is spent, as this worker knows it. */
#define SPENT 1024
struct spent {
    uint64_t h;       /* hash_of(budget, value); 0: empty */
    int64_t until_ms; /* one more failure is allowed from then on */
    int64_t minute;   /* of the refusal Redis counted */
    int64_t count;    /* the minute's refusals as Redis counted them */
    int64_t skipped;  /* refusals answered here since, not yet reported to Redis */
};
static _Thread_local struct spent spent_tab[SPENT];

/* The table's hash: FNV-1a (64 bits) of budget and value. Not SHA-256: it runs before every
 * lookup of every checkout, and a collision only costs one peek asked for or not. */
static uint64_t hash_of(int b, const char *v)
{
    uint64_t h = 14695981039346656037ull ^ (uint64_t)b;
    for (; *v; v++)
        h = (h ^ (uint8_t)*v) * 1099511628211ull;
    return h;
}

static struct suspect *suspect_of(uint64_t h)
{
    return &suspects[h % SUSPECTS];
}

static struct spent *spent_of(uint64_t h)
{
    return &spent_tab[h % SPENT];
}

/* The budget's Redis key: SHA-256 of budget and value (a value is never in a key). Only on
 * the paths that call Redis about a budget. */
static void digest_of(int b, const char *v, uint8_t d[32])
{
    char in[16 + RD_CUSTOMER_FIELD_MAX + 1];
    int n = snprintf(in, sizeof(in), "%s:%s", budget_names[b], v);
    rd_sha256(in, n < 0 ? 0 : (size_t)n < sizeof(in) ? (size_t)n : sizeof(in) - 1, d);
}

static int64_t interval_ms(const struct rd_config *cfg, int b)
{
    int64_t t = 60000 / cfg->guess_per_min[b];
    return t > 0 ? t : 1;
}

int rd_guess_exempt(const struct rd_req *r)
{
    const char *list = r->w->cfg->guess_exempt_keys;
    size_t kl = strlen(r->key_id);
    if (!kl || !*list)
        return 0;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        const char *s = p;
        size_t m = n;
        while (m && *s == ' ')
            s++, m--;
        while (m && s[m - 1] == ' ')
            m--;
        if (m == kl && memcmp(s, r->key_id, kl) == 0)
            return 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

/* The budgets of r's lookup: which apply (set) and their values. */
static int budgets_of(struct rd_req *r, const char *v[RD_GUESS_BUDGETS])
{
    struct rd_api *a = rd_api(r);
    const struct rd_config *cfg = r->w->cfg;
    char ip[48];
    int own = rd_req_customer(r, &a->rq.customer, ip, NULL); /* every checkout: no context */
    snprintf(a->guess.ip, sizeof(a->guess.ip), "%s", ip);
    v[0] = own ? a->guess.ip : NULL; /* never the peer's: every customer of a checkout */
    v[1] = a->rq.user_id && *a->rq.user_id ? a->rq.user_id : NULL;
    v[2] = a->rq.customer.session_id;
    v[3] = r->key_id[0] ? r->key_id : NULL;
    int n = 0;
    for (int b = 0; b < RD_GUESS_BUDGETS; b++) {
        if (cfg->guess_per_min[b] <= 0)
            v[b] = NULL;
        n += v[b] != NULL;
    }
    return n;
}

static void send_guess(struct rd_req *r, int b, const char *op, rd_redis_cb *cb)
{
    struct rd_api *a = rd_api(r);
    const struct rd_config *cfg = r->w->cfg;
    const char *v[RD_GUESS_BUDGETS];
    budgets_of(r, v);
    uint8_t d[32];
    digest_of(b, v[b], d);
    uint32_t bucket = ((uint32_t)d[8] << 24 | (uint32_t)d[9] << 16 | (uint32_t)d[10] << 8 | d[11]) %
                      (uint32_t)cfg->buckets;
    char hex[33], key[RD_KEY_MAX], lim[RD_KEY_MAX], log[RD_KEY_MAX], txn[RD_TXN_ID_LEN + 1];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    snprintf(key, sizeof(key), "{%04u}:g:%s:%s", bucket, budget_names[b], hex);
    snprintf(lim, sizeof(lim), "{%04u}:gl:%s:%s:%lld", bucket, budget_names[b], hex,
             (long long)(r->now_ms / 60000));
    rd_key_log(log, sizeof(log), bucket);
    rd_req_new_txn(r, bucket, txn);
    char now[24], t[24], burst[24];
    snprintf(now, sizeof(now), "%lld", (long long)r->now_ms);
    snprintf(t, sizeof(t), "%lld", (long long)interval_ms(cfg, b));
    snprintf(burst, sizeof(burst), "%d", cfg->guess_burst[b]);
    struct rd_cmd cmd;
    rd_cmd_script(&cmd, RD_LUA_GUESS);
    rd_cmd_key(&cmd, RD_GUESS_K_BUDGET, key);
    rd_cmd_key(&cmd, RD_GUESS_K_LIMITED, lim);
    rd_cmd_key(&cmd, RD_GUESS_K_LOG, log);
    rd_cmd_arg(&cmd, RD_GUESS_A_OP, op);
    rd_cmd_arg(&cmd, RD_GUESS_A_NOW_MS, now);
    rd_cmd_arg(&cmd, RD_GUESS_A_INTERVAL_MS, t);
    rd_cmd_arg(&cmd, RD_GUESS_A_BURST, burst);
    rd_cmd_arg(&cmd, RD_GUESS_A_BUDGET, budget_names[b]);
    rd_cmd_arg(&cmd, RD_GUESS_A_CODE, a->rq.code[0] ? a->rq.code : a->code);
    rd_cmd_arg(&cmd, RD_GUESS_A_USER, v[1] ? v[1] : "");
    rd_cmd_arg(&cmd, RD_GUESS_A_IP, a->guess.ip);
    rd_cmd_arg(&cmd, RD_GUESS_A_KEY_ID, r->key_id);
    rd_cmd_arg(&cmd, RD_GUESS_A_REQUEST_ID, r->request_id);
    rd_cmd_arg(&cmd, RD_GUESS_A_TXN, txn);
    /* the refusals answered here this minute go with the call (a new minute drops them:
     * its count starts again) */
    uint64_t h = hash_of(b, v[b]);
    struct spent *sp = spent_of(h);
    int64_t extra = 0;
    if (sp->h == h) {
        extra = sp->minute == r->now_ms / 60000 ? sp->skipped : 0;
        sp->skipped = 0;
    }
    char xs[24];
    snprintf(xs, sizeof(xs), "%lld", (long long)extra);
    rd_cmd_arg(&cmd, RD_GUESS_A_EXTRA, xs);
    a->guess.bucket = bucket;
    rd_req_send(r, &cmd, cb);
}

/* 429 for budget b: Retry-After from when one more failure will be allowed. asked: Redis
 * counted it (and may have written a ledger row). */
static void refuse(struct rd_req *r, int b, int64_t retry_ms, int asked)
{
    struct rd_api *a = rd_api(r);
    if (asked)
        rd_shipper_hint(a->guess.bucket);
    rd_counter_inc(&r->w->m.limited[b], 1);
    json_decref(a->guess.deferred);
    a->guess.deferred = NULL;
    int64_t s = (retry_ms + 999) / 1000;
    r->retry_after_s = s < 1 ? 1 : s > 86400 ? 86400 : (int)s;
    char msg[160];
    snprintf(msg, sizeof(msg), "too many failed lookups for this %s; retry after %d s",
             b == 0   ? "customer address"
             : b == 1 ? "user"
             : b == 2 ? "session"
                      : "API key",
             r->retry_after_s);
    rd_reply_error(
        r, RD_E_RATE_LIMITED, msg,
        json_pack("{s:s, s:I}", "budget", budget_names[b], "retry_after_ms", (json_int_t)retry_ms));
}

/* 1 allowed, 0 refused (retry_ms, count set), -1 no answer. A refusal is remembered for the
 * worker's own answers until retry_ms has passed. */
static int guess_answer(struct rd_req *r, int b, const redisReply *reply, int64_t *retry_ms)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < RD_GUESS_OK__LEN)
        return -1;
    *retry_ms = rd_el_num(reply, RD_GUESS_OK_RETRY_MS);
    if (strcmp(rd_el(reply, RD_GUESS_OK_ALLOWED), "1") == 0)
        return 1;
    const char *v[RD_GUESS_BUDGETS];
    budgets_of(r, v);
    uint64_t h = hash_of(b, v[b]);
    struct spent *sp = spent_of(h);
    if (sp->h != h) /* refusals answered for what was here are not reported: see the top */
        sp->skipped = 0;
    sp->h = h;
    sp->until_ms = r->now_ms + (*retry_ms > 0 ? *retry_ms : 0);
    sp->minute = r->now_ms / 60000;
    sp->count = rd_el_num(reply, RD_GUESS_OK_COUNT);
    return 0;
}

/* Whether the worker answers this refusal itself: the budget is known spent until later,
 * in this minute, and the refusal is not one the ledger samples (count a power of two). */
static int refused_here(struct rd_req *r, int b, const char *v, int64_t *retry_ms)
{
    uint64_t h = hash_of(b, v);
    struct spent *sp = spent_of(h);
    if (sp->h != h || r->now_ms >= sp->until_ms || sp->minute != r->now_ms / 60000)
        return 0;
    int64_t next = sp->count + sp->skipped + 1;
    if ((next & (next - 1)) == 0)
        return 0;
    sp->skipped++;
    *retry_ms = sp->until_ms - r->now_ms;
    return 1;
}

static int suspected(struct rd_req *r, int b, const char *v)
{
    uint64_t h = hash_of(b, v);
    struct suspect *s = suspect_of(h);
    return atomic_load_explicit(&s->h, memory_order_relaxed) == h &&
           atomic_load_explicit(&s->until_ms, memory_order_relaxed) > r->now_ms;
}

static void suspect(struct rd_req *r, int b, const char *v)
{
    uint64_t h = hash_of(b, v);
    struct suspect *s = suspect_of(h);
    atomic_store_explicit(&s->h, h, memory_order_relaxed);
    /* as long as the budget takes to refill from empty */
    atomic_store_explicit(&s->until_ms,
                          r->now_ms + interval_ms(r->w->cfg, b) * (r->w->cfg->guess_burst[b] + 1),
                          memory_order_relaxed);
}

/* ---- before a lookup -------------------------------------------------------------------- */

static void peek_next(struct rd_req *r);

static void on_peek(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    struct rd_api *a = rd_api(r);
    (void)redis;
    int64_t retry;
    int ok = guess_answer(r, a->guess.at, reply, &retry);
    if (ok == 0) {
        refuse(r, a->guess.at, retry, 1);
        return;
    }
    if (ok < 0) /* a budget that cannot be read does not stop checkouts */
        rd_warn("event=guess_budget_unreadable req=%s budget=%s", r->request_id,
                budget_names[a->guess.at]);
    a->guess.at++;
    peek_next(r);
}

static void peek_next(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    const char *v[RD_GUESS_BUDGETS];
    budgets_of(r, v);
    for (; a->guess.at < RD_GUESS_BUDGETS; a->guess.at++) {
        if (v[a->guess.at] && suspected(r, a->guess.at, v[a->guess.at])) {
            int64_t retry;
            if (refused_here(r, a->guess.at, v[a->guess.at], &retry))
                refuse(r, a->guess.at, retry, 0);
            else
                send_guess(r, a->guess.at, "peek", on_peek);
            return;
        }
    }
    a->guess.then(r);
}

void rd_guess_check(struct rd_req *r, void (*then)(struct rd_req *r))
{
    struct rd_api *a = rd_api(r);
    a->guess.then = then;
    a->guess.at = 0;
    if (rd_guess_exempt(r)) {
        then(r);
        return;
    }
    peek_next(r);
}

/* ---- after a failed lookup -------------------------------------------------------------- */

int rd_guess_counts(enum rd_status st)
{
    return st == RD_E_COUPON_NOT_FOUND || st == RD_E_KIND_MISMATCH || st == RD_E_COUPON_DISABLED;
}

static void deliver(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    json_t *o = a->guess.deferred;
    a->guess.deferred = NULL;
    if (a->guess.as_error)
        rd_reply_error(r, a->guess.reason, a->guess.msg, o);
    else
        rd_reply_json(r, 200, o);
}

static void hit_next(struct rd_req *r);

static void on_hit(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    struct rd_api *a = rd_api(r);
    (void)redis;
    int64_t retry;
    int ok = guess_answer(r, a->guess.at, reply, &retry);
    if (ok < 0)
        rd_warn("event=guess_budget_unreadable req=%s budget=%s", r->request_id,
                budget_names[a->guess.at]);
    if (ok == 0 && a->guess.refused < 0) {
        a->guess.refused = a->guess.at;
        a->guess.retry_ms = retry;
    } else if (ok == 0 && retry > a->guess.retry_ms) {
        a->guess.retry_ms = retry;
    }
    a->guess.at++;
    hit_next(r);
}

static void hit_next(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    const char *v[RD_GUESS_BUDGETS];
    budgets_of(r, v);
    for (; a->guess.at < RD_GUESS_BUDGETS; a->guess.at++) {
        if (v[a->guess.at]) {
            suspect(r, a->guess.at, v[a->guess.at]);
            send_guess(r, a->guess.at, "hit", on_hit);
            return;
        }
    }
    if (a->guess.refused >= 0)
        refuse(r, a->guess.refused, a->guess.retry_ms, 1);
    else
        deliver(r);
}

void rd_guess_answer(struct rd_req *r, enum rd_status reason, int as_error, const char *msg,
                     json_t *obj)
{
    struct rd_api *a = rd_api(r);
    json_decref(a->guess.deferred);
    a->guess.deferred = obj;
    a->guess.reason = reason;
    a->guess.as_error = as_error;
    a->guess.msg = msg;
    if (!rd_guess_counts(reason) || rd_guess_exempt(r)) {
        deliver(r);
        return;
    }
    a->guess.at = 0;
    a->guess.refused = -1;
    a->guess.retry_ms = 0;
    hit_next(r);
}
