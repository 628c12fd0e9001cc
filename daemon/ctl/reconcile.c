/* SPDX-License-Identifier: MIT
 *
 * redeemctl reconcile: compares the Redis counters with the ledger and reports every
 * difference; --repair rewrites Redis from the ledger (after Redis data loss, say).
 *
 * Expected state, per coupon and user: accepted redemptions not reversed and voucher
 * payments not refunded in full (lifetime), and of those the ones taken in the current day
 * and ISO week of the coupon's offset, exactly what the scripts keep; per voucher, loaded
 * (creation plus recharges), spent, refunded and the balance they give. The ledger is PostgreSQL
 * plus the entries still waiting in the outbox streams (an entry already committed but not yet
 * acknowledged is counted once). Redis is read with SCAN/HGETALL, so run it while traffic is quiet:
 * a redemption landing between the two reads shows up as a difference (run again to confirm), and
 * --repair should run with redemptions paused.
 *
 * Hot coupons (rd/shards.h): the uses and per-user counts are the sums over the shards. A move
 * taken from one shard and not received by another for SETTLE_MS is reported; --repair
 * voids it at its destination and returns it to its source. A shard behind the home hash's
 * version is brought up to it, and a sum of budgets that differs from what the total leaves
 * (total - uses) is corrected on the first shard, once no move is under way.
 */
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd/keys.h"
#include "rd/ledger.h"
#include "rd/lua_scripts.h"
#include "rd/shards.h"
#include "store/redis_sync.h"
#include "rd/rdtime.h"
#include "ctl/reconcile.h"
#include "store/redis_client.h"

/* ---- a small string-keyed table ----------------------------------------------------------- */

struct rec {
    char *key;                         /* code, or code "\x1f" user */
    long long live, today, week;       /* from the ledger */
    long long r_live, r_today, r_week; /* from Redis */
    int r_v1;                          /* user: Redis holds redeemd 0.1's three fields */
    int off;                           /* coupon: utc offset minutes */
    int in_redis;                      /* coupon: hash exists; user: its "u:" field */
    char *definition;                  /* coupon: mirror JSON from PostgreSQL */
    int archived; /* coupon: taken out of Redis by redeemctl archive (the mirror says so) */
    /* vouchers: balance, loaded, spent, refunded (minor units) */
    int voucher;          /* a voucher in the ledger (creation row) or in Redis */
    long long money[4];   /* from the ledger */
    long long r_money[4]; /* from Redis */
    /* a hot coupon (rd/shards.h): its layout, total and version from the home hash */
    char *shards;
    long long l_total, ver;
};

enum { M_BAL, M_LOADED, M_SPENT, M_REFUNDED };
static const char *const money_fields[4] = {"bal", "loaded", "spent", "refunded"};

struct table {
    struct rec **slot;
    size_t cap, n;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

static struct rec *get(struct table *t, const char *key, int create)
{
    if (t->n * 2 >= t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 1024;
        struct rec **ns = calloc(ncap, sizeof(*ns));
        if (!ns)
            abort();
        for (size_t i = 0; i < t->cap; i++)
            if (t->slot[i]) {
                size_t j = hash(t->slot[i]->key) & (ncap - 1);
                while (ns[j])
                    j = (j + 1) & (ncap - 1);
                ns[j] = t->slot[i];
            }
        free(t->slot);
        t->slot = ns;
        t->cap = ncap;
    }
    size_t j = hash(key) & (t->cap - 1);
    while (t->slot[j]) {
        if (strcmp(t->slot[j]->key, key) == 0)
            return t->slot[j];
        j = (j + 1) & (t->cap - 1);
    }
    if (!create)
        return NULL;
    struct rec *r = calloc(1, sizeof(*r));
    if (!r || !(r->key = strdup(key)))
        abort();
    t->slot[j] = r;
    t->n++;
    return r;
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->slot[i]) {
            free(t->slot[i]->key);
            free(t->slot[i]->definition);
            free(t->slot[i]->shards);
            free(t->slot[i]);
        }
    free(t->slot);
}

static struct rec *pair(struct table *t, const char *code, const char *user)
{
    char key[512];
    snprintf(key, sizeof(key), "%s\x1f%s", code, user);
    return get(t, key, 1);
}

/* ---- reading ------------------------------------------------------------------------------- */

struct ctx {
    struct rd_rsc *rc;
    PGconn *pg;
    uint32_t buckets;
    int64_t now;
    struct table coupons, users;
};

static int off_of(struct ctx *c, const char *code)
{
    struct rec *cp = get(&c->coupons, code, 0);
    return cp ? cp->off : 0;
}

/* Whether a use counts in the current day (or week). The script records the period it
 * counted the use in (day_index, week_index); older rows fall back to their time. */
static int same_period(const char *recorded, int64_t ts, int64_t now, int off, int week)
{
    int64_t now_idx = week ? rd_time_week_index(now, off) : rd_time_day_index(now, off);
    if (recorded && *recorded)
        return atoll(recorded) == now_idx;
    return (week ? rd_time_week_index(ts, off) : rd_time_day_index(ts, off)) == now_idx;
}

static long long period_count(const char *v, int64_t want_idx)
{
    long long idx, n;
    if (!v || sscanf(v, "%lld:%lld", &idx, &n) != 2 || idx != want_idx)
        return 0;
    return n;
}

static int read_users(struct ctx *c, struct rec *cp, uint32_t b);

static int read_redis(struct ctx *c)
{
    char cursor[32] = "0";
    /* batch codes keep their definition in a template: read through it, as the scripts do */
    const struct rd_lua_script *s = &rd_lua_scripts[RD_LUA_COUPON_READ];
    int loaded = 1;
    const struct rd_lua_script *each[] = {s, &rd_lua_scripts[RD_LUA_SHARD_MOVE],
                                          &rd_lua_scripts[RD_LUA_SHARD_SYNC]};
    for (int k = 0; k < 3; k++) {
        redisReply *ld = rd_rsc_command(c->rc, "SCRIPT LOAD %b", each[k]->body, each[k]->len);
        loaded &= ld && ld->type == REDIS_REPLY_STRING;
        freeReplyObject(ld);
    }
    if (!loaded) {
        fprintf(stderr, "redeemctl: cannot load its scripts\n");
        return -1;
    }
    /* SCAN walks one node: each primary of a cluster in turn */
    for (int node = 0; node < rd_rsc_nodes(c->rc); node++) {
        do {
            redisReply *r =
                rd_rsc_command_node(c->rc, node, "SCAN %s MATCH {*}:c:* COUNT 1000", cursor);
            if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                fprintf(stderr, "redeemctl: SCAN failed\n");
                return -1;
            }
            snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
            for (size_t i = 0; i < r->element[1]->elements; i++) {
                const char *key = r->element[1]->element[i]->str;
                static const char *const fields[] = {"code",   "used",    "utc_off", "kind",
                                                     "bal",    "loaded",  "spent",   "refunded",
                                                     "shards", "l_total", "ver"};
                struct rd_cmd cmd;
                const char *why;
                rd_cmd_script(&cmd, RD_LUA_COUPON_READ);
                rd_cmd_key(&cmd, RD_COUPON_READ_K_COUPON, key);
                for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
                    rd_cmd_push(&cmd, fields[f], strlen(fields[f]));
                redisReply *h = rd_rsync_call(c->rc, &cmd, &why);
                if (h && h->type == REDIS_REPLY_ARRAY &&
                    h->element[0]->type == REDIS_REPLY_STRING) {
                    struct rec *cp = get(&c->coupons, h->element[0]->str, 1);
                    cp->in_redis = 1;
                    cp->r_live = h->element[1]->str ? atoll(h->element[1]->str) : 0;
                    cp->off = h->element[2]->str ? atoi(h->element[2]->str) : 0;
                    if (h->element[3]->str && strcmp(h->element[3]->str, "voucher") == 0) {
                        cp->voucher = 1;
                        for (int m = 0; m < 4; m++)
                            cp->r_money[m] =
                                h->element[4 + m]->str ? atoll(h->element[4 + m]->str) : 0;
                    }
                    if (h->element[8]->str && !cp->shards) {
                        cp->shards = strdup(h->element[8]->str);
                        cp->l_total = h->element[9]->str ? atoll(h->element[9]->str) : 0;
                        cp->ver = h->element[10]->str ? atoll(h->element[10]->str) : 0;
                    }
                }
                freeReplyObject(h);
            }
            freeReplyObject(r);
        } while (strcmp(cursor, "0") != 0);
    }

    for (size_t i = 0; i < c->coupons.cap; i++) {
        struct rec *cp = c->coupons.slot[i];
        if (!cp || !cp->in_redis)
            continue;
        struct rd_shard_layout l = {1, {rd_bucket_of(cp->key, strlen(cp->key), c->buckets)}};
        if (cp->shards &&
            rd_shard_layout_parse(cp->shards, strlen(cp->shards), c->buckets, &l) < 0) {
            fprintf(stderr, "redeemctl: coupon %s: bad shards \"%s\"\n", cp->key, cp->shards);
            return -1;
        }
        if (cp->shards)
            cp->r_live = 0; /* the sum of its shards' (read_shards) */
        for (int k = 0; k < l.n; k++)
            if (read_users(c, cp, l.bucket[k]) < 0)
                return -1;
    }
    return 0;
}

/* A coupon's per-user counts in bucket b (a hot coupon's: of one shard). */
static int read_users(struct ctx *c, struct rec *cp, uint32_t b)
{
    {
        char key[RD_KEY_MAX];
        rd_key_users(key, sizeof(key), b, cp->key);
        redisReply *h = rd_rsc_command(c->rc, "HGETALL %s", key);
        int64_t day = rd_time_day_index(c->now, cp->off),
                week = rd_time_week_index(c->now, cp->off);
        /* a user's "u:" field wins over redeemd 0.1's fields, as in the scripts: two passes */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t j = 0; h && h->type == REDIS_REPLY_ARRAY && j + 1 < h->elements; j += 2) {
                const char *f = h->element[j]->str, *v = h->element[j + 1]->str;
                if (strlen(f) < 3 || f[1] != ':')
                    continue;
                struct rd_user_counts uc;
                if (pass == 0 && f[0] == 'u' && rd_user_counts_parse(v, &uc) == 0) {
                    struct rec *u = pair(&c->users, cp->key, f + 2);
                    u->r_live = uc.total;
                    u->r_today = uc.day == day ? uc.day_uses : 0;
                    u->r_week = uc.week == week ? uc.week_uses : 0;
                    u->in_redis = 1;
                } else if (pass == 1 && (f[0] == 't' || f[0] == 'd' || f[0] == 'w')) {
                    struct rec *u = pair(&c->users, cp->key, f + 2);
                    if (u->in_redis)
                        continue;
                    u->r_v1 = 1;
                    if (f[0] == 't')
                        u->r_live = atoll(v);
                    else if (f[0] == 'd')
                        u->r_today = period_count(v, day);
                    else
                        u->r_week = period_count(v, week);
                }
            }
        }
        freeReplyObject(h);
    }
    return 0;
}

/* ---- hot coupons' shards ------------------------------------------------------------------ */

#define SETTLE_MS 60000 /* a move older than this is no longer under way */

static redisReply *move_op(struct ctx *c, uint32_t at, const char *code, const char *op,
                           const char *id, const char *amount, uint32_t peer)
{
    char key[RD_KEY_MAX], peer_s[16], now[24];
    rd_key_shard(key, sizeof(key), at, code);
    snprintf(peer_s, sizeof(peer_s), "%u", peer);
    snprintf(now, sizeof(now), "%lld", (long long)c->now);
    struct rd_cmd cmd;
    const char *why;
    rd_cmd_script(&cmd, RD_LUA_SHARD_MOVE);
    rd_cmd_key(&cmd, RD_SHARD_MOVE_K_SHARD, key);
    rd_cmd_arg(&cmd, RD_SHARD_MOVE_A_OP, op);
    rd_cmd_arg(&cmd, RD_SHARD_MOVE_A_ID, id);
    rd_cmd_arg(&cmd, RD_SHARD_MOVE_A_AMOUNT, amount);
    rd_cmd_arg(&cmd, RD_SHARD_MOVE_A_PEER, peer_s);
    rd_cmd_arg(&cmd, RD_SHARD_MOVE_A_NOW_MS, now);
    return rd_rsync_call(c->rc, &cmd, &why);
}

/* Settles one move taken at shard bucket src: void it at its destination, then give it
 * back to src (or, if it was received, clear src's record). Returns what was returned. */
static long long settle(struct ctx *c, const char *code, uint32_t src, const char *id, uint32_t dst)
{
    long long back = 0;
    redisReply *v = move_op(c, dst, code, "void", id, "", src);
    if (v && v->type == REDIS_REPLY_STRING) {
        int voided = strcmp(v->str, "voided") == 0;
        redisReply *x = move_op(c, src, code, voided ? "return" : "done", id, "", dst);
        back = voided && x && x->type == REDIS_REPLY_STRING && !strcmp(x->str, "returned");
        freeReplyObject(x);
    }
    freeReplyObject(v);
    return back;
}

/* Brings shard bucket b of coupon code up to the home hash (home bucket h). */
static int sync_shard(struct ctx *c, const char *code, uint32_t home, uint32_t b)
{
    static const char *const f[] = {
        "code",      "kind",       "dtype",      "dvalue", "dmax",    "min_order", "currency",
        "starts_at", "expires_at", "utc_off",    "l_user", "l_daily", "l_weekly",  "status",
        "campaign",  "created_at", "updated_at", "gen",    "ver"};
    const size_t nf = sizeof(f) / sizeof(f[0]);
    char key[RD_KEY_MAX];
    rd_key_coupon(key, sizeof(key), home, code);
    struct rd_cmd cmd;
    const char *why;
    rd_cmd_script(&cmd, RD_LUA_COUPON_READ);
    rd_cmd_key(&cmd, RD_COUPON_READ_K_COUPON, key);
    for (size_t i = 0; i < nf; i++)
        rd_cmd_push(&cmd, f[i], strlen(f[i]));
    redisReply *h = rd_rsync_call(c->rc, &cmd, &why);
    int rc = -1;
    if (h && h->type == REDIS_REPLY_ARRAY && h->elements == nf && h->element[nf - 1]->str &&
        h->element[nf - 2]->str) {
        char users[RD_KEY_MAX];
        rd_key_shard(key, sizeof(key), b, code);
        rd_key_users(users, sizeof(users), b, code);
        rd_cmd_script(&cmd, RD_LUA_SHARD_SYNC);
        rd_cmd_key(&cmd, RD_SHARD_SYNC_K_SHARD, key);
        rd_cmd_key(&cmd, RD_SHARD_SYNC_K_USERS, users);
        rd_cmd_arg(&cmd, RD_SHARD_SYNC_A_GEN, h->element[nf - 2]->str);
        rd_cmd_arg(&cmd, RD_SHARD_SYNC_A_VER, h->element[nf - 1]->str);
        for (size_t i = 0; i + 2 < nf; i++) {
            const char *v = h->element[i]->str ? h->element[i]->str : "";
            rd_cmd_push(&cmd, f[i], strlen(f[i]));
            rd_cmd_push(&cmd, v, strlen(v));
        }
        redisReply *r = rd_rsync_call(c->rc, &cmd, &why);
        rc = r && r->type == REDIS_REPLY_ARRAY ? 0 : -1;
        freeReplyObject(r);
    }
    freeReplyObject(h);
    return rc;
}

/*
 * Every sharded coupon: outstanding moves (settled with repair), shards behind the home
 * hash (synced with repair), the sum of the budgets against what the total leaves, and the
 * uses summed into r_live. Returns the differences found, or -1 if Redis could not be read.
 */
static long long hot_coupons(struct ctx *c, int repair)
{
    long long diffs = 0;
    for (size_t i = 0; i < c->coupons.cap; i++) {
        struct rec *cp = c->coupons.slot[i];
        struct rd_shard_layout l;
        if (!cp || !cp->shards ||
            rd_shard_layout_parse(cp->shards, strlen(cp->shards), c->buckets, &l) < 0)
            continue;
        long long budget = 0, used = 0, young = 0;
        for (int pass = 0; pass < 2; pass++) {
            budget = used = young = 0;
            int changed = 0;
            for (int s = 0; s < l.n; s++) {
                redisReply *ls = move_op(c, l.bucket[s], cp->key, "list", "0", "", 0);
                if (!ls || ls->type != REDIS_REPLY_ARRAY || ls->elements < 4) {
                    freeReplyObject(ls);
                    return -1;
                }
                const char *ver = ls->element[RD_SHARD_MOVE_LIST_VER]->str;
                if (pass == 0 && (!ver || !*ver || atoll(ver) < cp->ver)) {
                    diffs++;
                    printf("coupon %s: shard %u %s (version %s, home %lld)%s\n", cp->key,
                           l.bucket[s], ver && *ver ? "behind" : "missing",
                           ver && *ver ? ver : "none", cp->ver, repair ? ": synced" : "");
                    if (repair && sync_shard(c, cp->key, l.bucket[0], l.bucket[s]) < 0)
                        fprintf(stderr, "redeemctl: syncing %s shard %u failed\n", cp->key,
                                l.bucket[s]);
                    changed = 1;
                }
                budget += atoll(ls->element[RD_SHARD_MOVE_LIST_BUDGET]->str);
                used += atoll(ls->element[RD_SHARD_MOVE_LIST_USED]->str);
                for (size_t j = 4; j + 1 < ls->elements; j += 2) {
                    const char *id = ls->element[j]->str + 2; /* "o:<id>" */
                    long long n = 0, ts = 0;
                    unsigned dst = 0;
                    if (sscanf(ls->element[j + 1]->str, "%lld:%u:%lld", &n, &dst, &ts) != 3)
                        continue;
                    if (c->now - ts < SETTLE_MS) {
                        young += n;
                        continue;
                    }
                    if (pass == 0) {
                        /* received ones only lost their last step: not a difference */
                        diffs++;
                        printf("coupon %s: move %s of %lld from shard %u to %u unfinished%s\n",
                               cp->key, id, n, l.bucket[s], dst, repair ? ": settled" : "");
                    }
                    if (repair) {
                        settle(c, cp->key, l.bucket[s], id, dst);
                        changed = 1;
                    } else {
                        young += n; /* counted as held, not lost */
                    }
                }
                freeReplyObject(ls);
            }
            if (!changed)
                break;
        }
        cp->r_live = used;
        if (young == 0 && budget + used != cp->l_total) {
            diffs++;
            printf("coupon %s: shards' budgets hold %lld, the total leaves %lld (total %lld, "
                   "used %lld)%s\n",
                   cp->key, budget, cp->l_total - used, cp->l_total, used,
                   repair ? ": first shard corrected" : "");
            if (repair) {
                char key[RD_KEY_MAX];
                rd_key_shard(key, sizeof(key), l.bucket[0], cp->key);
                redisReply *r = rd_rsc_command(c->rc, "HINCRBY %s budget %lld", key,
                                               cp->l_total - used - budget);
                freeReplyObject(r);
            }
        }
    }
    return diffs;
}

static PGresult *q(struct ctx *c, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(c->pg, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "redeemctl: query failed: %s", PQerrorMessage(c->pg));
        PQclear(res);
        return NULL;
    }
    return res;
}

static int read_ledger(struct ctx *c)
{
    PGresult *res = q(c,
                      "SELECT code, definition::text, coalesce((definition->>'utc_off')::int, 0), "
                      "(definition ? 'archived_at')::int FROM coupons",
                      0, NULL);
    if (!res)
        return -1;
    for (int i = 0; i < PQntuples(res); i++) {
        struct rec *cp = get(&c->coupons, PQgetvalue(res, i, 0), 1);
        cp->definition = strdup(PQgetvalue(res, i, 1));
        cp->archived = atoi(PQgetvalue(res, i, 3));
        if (!cp->in_redis)
            cp->off = atoi(PQgetvalue(res, i, 2));
    }
    PQclear(res);

    /* vouchers: what was loaded (at creation, then by recharges), spent and refunded */
    res = q(c,
            "SELECT code, (details->'after'->>'bal')::bigint FROM transactions WHERE kind = "
            "'coupon_create' AND outcome = 'accepted' AND details->'after' ? 'bal' UNION ALL "
            "SELECT c.code, (b.template->>'bal')::bigint FROM coupon_rows c JOIN batches b ON "
            "b.id = c.batch_id WHERE b.template ? 'bal'", /* codes of voucher batches */
            0, NULL);
    if (!res)
        return -1;
    for (int i = 0; i < PQntuples(res); i++) {
        struct rec *cp = get(&c->coupons, PQgetvalue(res, i, 0), 1);
        cp->voucher = 1;
        cp->money[M_LOADED] += atoll(PQgetvalue(res, i, 1));
    }
    PQclear(res);
    res = q(c,
            "SELECT code, kind, sum(paid_amount) FROM transactions WHERE outcome = 'accepted' "
            "AND kind IN ('pay', 'refund', 'recharge') GROUP BY code, kind",
            0, NULL);
    if (!res)
        return -1;
    for (int i = 0; i < PQntuples(res); i++) {
        struct rec *cp = get(&c->coupons, PQgetvalue(res, i, 0), 1);
        const char *kind = PQgetvalue(res, i, 1);
        int m = strcmp(kind, "pay") == 0      ? M_SPENT
                : strcmp(kind, "refund") == 0 ? M_REFUNDED
                                              : M_LOADED;
        cp->money[m] += atoll(PQgetvalue(res, i, 2));
    }
    PQclear(res);

    /* every live use with its time: redemptions not reversed, and voucher payments not
     * refunded in full (a partly refunded payment still counts as a use) */
    res = q(c,
            "SELECT t.code, t.user_id, (extract(epoch FROM t.ts) * 1000)::bigint, t.day_index, "
            "t.week_index FROM transactions t WHERE t.outcome = 'accepted' AND ((t.kind = "
            "'redeem' AND NOT EXISTS (SELECT 1 FROM transactions v WHERE v.ref_id = t.txn_id "
            "AND v.kind = 'reverse' AND v.outcome = 'accepted')) OR (t.kind = 'pay' AND "
            "coalesce((SELECT sum(v.paid_amount) FROM transactions v WHERE v.ref_id = t.txn_id "
            "AND v.kind = 'refund' AND v.outcome = 'accepted'), 0) < t.paid_amount))",
            0, NULL);
    if (!res)
        return -1;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *code = PQgetvalue(res, i, 0);
        int64_t ts = atoll(PQgetvalue(res, i, 2));
        int off = off_of(c, code);
        struct rec *u = pair(&c->users, code, PQgetvalue(res, i, 1));
        u->live++;
        u->today += same_period(PQgetvalue(res, i, 3), ts, c->now, off, 0);
        u->week += same_period(PQgetvalue(res, i, 4), ts, c->now, off, 1);
        get(&c->coupons, code, 1)->live++;
    }
    PQclear(res);
    return 0;
}

static int in_ledger(struct ctx *c, const char *txn)
{
    const char *p[] = {txn};
    PGresult *res = q(c, "SELECT 1 FROM transactions WHERE txn_id = $1", 1, p);
    int found = res && PQntuples(res) > 0;
    PQclear(res);
    return found;
}

/* The value of field name in an outbox entry's flat field list f, packed or not (see
 * rd/ledger.h: its values end with '\0', so each is a C string); "" when absent. */
static const char *efield(const redisReply *f, const char *name)
{
    if (f->elements == 2 && f->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(f->element[0]->str, RD_ENTRY_PACKED) == 0 && f->element[1]->str) {
        const char *names[RD_ENTRY_NFIELDS], *values[RD_ENTRY_NFIELDS];
        size_t nl[RD_ENTRY_NFIELDS], vl[RD_ENTRY_NFIELDS];
        size_t n = rd_entry_unpack(f->element[1]->str, f->element[1]->len, names, nl, values, vl,
                                   RD_ENTRY_NFIELDS);
        for (size_t i = 0; i < n; i++)
            if (strcmp(names[i], name) == 0)
                return values[i];
        return "";
    }
    return rd_redis_field(f, name);
}

/* Entries not yet shipped count too: redemptions add, reversals take away. */
/* An outbox entry's transaction id: its "id" field, or for a use, the id its place names. */
static const char *entry_id(uint32_t bucket, const redisReply *e, char out[RD_TXN_ID_MAX + 1])
{
    const redisReply *f = e->element[1];
    const char *id = efield(f, "id"), *tag = efield(f, "tag");
    if (*id || e->element[0]->type != REDIS_REPLY_STRING)
        return id;
    if (rd_use_id_format(out, bucket, e->element[0]->str, e->element[0]->len, tag, strlen(tag)) < 0)
        return "";
    return out;
}

static int read_streams(struct ctx *c)
{
    char key[RD_KEY_MAX];
    long long unshipped = 0;
    for (uint32_t b = 0; b < c->buckets; b++) {
        rd_key_log(key, sizeof(key), b);
        redisReply *r = rd_rsc_command(c->rc, "XRANGE %s - +", key);
        for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
            const redisReply *f = r->element[i]->element[1];
            const char *kind = efield(f, "kind"), *outcome = efield(f, "outcome");
            /* (whether a refund still in the stream completes its payment is not worked out:
             * reconcile runs on a quiet system, where the streams are empty) */
            int is_use = strcmp(kind, "redeem") == 0 || strcmp(kind, "pay") == 0;
            int money = strcmp(kind, "pay") == 0        ? M_SPENT
                        : strcmp(kind, "refund") == 0   ? M_REFUNDED
                        : strcmp(kind, "recharge") == 0 ? M_LOADED
                                                        : -1;
            if (strcmp(outcome, "accepted") != 0 ||
                (!is_use && money < 0 && strcmp(kind, "reverse") != 0))
                continue;
            char idbuf[RD_TXN_ID_MAX + 1];
            if (in_ledger(c, entry_id(b, r->element[i], idbuf)))
                continue; /* committed, acknowledgement still to come */
            unshipped++;
            const char *code = efield(f, "code");
            if (money >= 0)
                get(&c->coupons, code, 1)->money[money] += atoll(efield(f, "paid"));
            if (!is_use && strcmp(kind, "reverse") != 0)
                continue;
            int off = off_of(c, code);
            struct rec *u = pair(&c->users, code, efield(f, "user"));
            struct rec *cp = get(&c->coupons, code, 1);
            if (is_use) {
                int64_t ts = atoll(efield(f, "ts"));
                u->live++;
                u->today += same_period(efield(f, "day"), ts, c->now, off, 0);
                u->week += same_period(efield(f, "week"), ts, c->now, off, 1);
                cp->live++;
                continue;
            }
            /* a reversal: the redemption it reverses is in the ledger or in this bucket */
            const char *p[] = {efield(f, "ref")};
            PGresult *res = q(c,
                              "SELECT (extract(epoch FROM ts) * 1000)::bigint, "
                              "coalesce(day_index::text, ''), coalesce(week_index::text, '') "
                              "FROM transactions WHERE txn_id = $1 AND kind = 'redeem'",
                              1, p);
            int64_t ts = -1;
            char day[24] = "", week[24] = "";
            if (res && PQntuples(res) > 0) {
                ts = atoll(PQgetvalue(res, 0, 0));
                snprintf(day, sizeof(day), "%s", PQgetvalue(res, 0, 1));
                snprintf(week, sizeof(week), "%s", PQgetvalue(res, 0, 2));
            }
            PQclear(res);
            for (size_t j = 0; ts < 0 && j < r->elements; j++) {
                const redisReply *g = r->element[j]->element[1];
                if (strcmp(entry_id(b, r->element[j], idbuf), p[0]) == 0) {
                    ts = atoll(efield(g, "ts"));
                    snprintf(day, sizeof(day), "%s", efield(g, "day"));
                    snprintf(week, sizeof(week), "%s", efield(g, "week"));
                }
            }
            if (ts < 0)
                continue;
            u->live--;
            u->today -= same_period(day, ts, c->now, off, 0);
            u->week -= same_period(week, ts, c->now, off, 1);
            cp->live--;
        }
        freeReplyObject(r);
    }
    if (unshipped)
        fprintf(stderr, "counted %lld accepted entries not yet shipped\n", unshipped);
    return 0;
}

/* ---- compare and repair ------------------------------------------------------------------- */

/* Puts a coupon lost from Redis back from the PostgreSQL mirror (the hash fields as last
 * written), with the ledger's use count. */
static int restore_coupon(struct ctx *c, const struct rec *cp, const char *key)
{
    json_t *def = json_loads(cp->definition, 0, NULL);
    if (!json_is_object(def) || json_object_size(def) > 60) {
        json_decref(def);
        return -1;
    }
    const char *argv[130];
    size_t n = 0;
    char used[24];
    snprintf(used, sizeof(used), "%lld", cp->live);
    argv[n++] = "HSET";
    argv[n++] = key;
    const char *f;
    json_t *v;
    json_object_foreach(def, f, v)
    {
        if (!json_is_string(v) || !strcmp(f, "used") || !strcmp(f, "ver"))
            continue;
        argv[n++] = f;
        argv[n++] = json_string_value(v);
    }
    argv[n++] = "used";
    argv[n++] = used;
    argv[n++] = "ver";
    argv[n++] = "1";
    redisReply *r = rd_rsc_command_argv(c->rc, (int)n, argv, NULL);
    int ok = r && r->type == REDIS_REPLY_INTEGER;
    freeReplyObject(r);
    json_decref(def);
    return ok ? 0 : -1;
}

static void set_money(struct ctx *c, struct rec *cp, const char *key)
{
    cp->money[M_BAL] = cp->money[M_LOADED] - cp->money[M_SPENT] + cp->money[M_REFUNDED];
    redisReply *r = rd_rsc_command(c->rc, "HSET %s bal %lld loaded %lld spent %lld refunded %lld",
                                   key, cp->money[M_BAL], cp->money[M_LOADED], cp->money[M_SPENT],
                                   cp->money[M_REFUNDED]);
    freeReplyObject(r);
}

static long long compare(struct ctx *c, int repair)
{
    long long diffs = 0;
    char key[RD_KEY_MAX];
    for (size_t i = 0; i < c->coupons.cap; i++) {
        struct rec *cp = c->coupons.slot[i];
        if (!cp)
            continue;
        rd_key_coupon(key, sizeof(key), rd_bucket_of(cp->key, strlen(cp->key), c->buckets),
                      cp->key);
        if (!cp->in_redis) {
            if ((!cp->definition && cp->live == 0) || cp->archived)
                continue; /* only failed attempts on an unknown code; or archived */
            diffs++;
            printf("coupon %s: missing in Redis (ledger: %lld uses)%s\n", cp->key, cp->live,
                   cp->definition ? "" : ", and no definition in the mirror to restore");
            if (repair && cp->definition && restore_coupon(c, cp, key) < 0)
                fprintf(stderr, "redeemctl: restoring %s failed\n", cp->key);
            else if (repair && cp->definition && cp->voucher)
                set_money(c, cp, key);
            continue;
        }
        if (cp->voucher) {
            int changed = 0;
            cp->money[M_BAL] = cp->money[M_LOADED] - cp->money[M_SPENT] + cp->money[M_REFUNDED];
            for (int m = 0; m < 4; m++)
                if (cp->money[m] != cp->r_money[m]) {
                    diffs++;
                    changed = 1;
                    printf("voucher %s: %s redis=%lld ledger=%lld\n", cp->key, money_fields[m],
                           cp->r_money[m], cp->money[m]);
                }
            if (changed && repair)
                set_money(c, cp, key);
        }
        if (cp->r_live != cp->live) {
            diffs++;
            printf("coupon %s: used redis=%lld ledger=%lld%s\n", cp->key, cp->r_live, cp->live,
                   cp->shards ? " (sharded: its shards' counts are not rewritten)" : "");
            if (repair && !cp->shards) {
                redisReply *r = rd_rsc_command(c->rc, "HSET %s used %lld", key, cp->live);
                freeReplyObject(r);
            }
        }
    }
    for (size_t i = 0; i < c->users.cap; i++) {
        struct rec *u = c->users.slot[i];
        if (!u)
            continue;
        char *sep = strchr(u->key, '\x1f');
        *sep = '\0';
        const char *code = u->key, *user = sep + 1;
        struct rec *cp = get(&c->coupons, code, 0);
        int off = cp ? cp->off : 0;
        static const char *const names[] = {"total", "today", "week"};
        long long want[] = {u->live, u->today, u->week},
                  have[] = {u->r_live, u->r_today, u->r_week};
        int changed = 0;
        for (int k = 0; k < 3; k++)
            if (want[k] != have[k]) {
                diffs++;
                changed = 1;
                printf("coupon %s user %s: %s redis=%lld ledger=%lld\n", code, user, names[k],
                       have[k], want[k]);
            }
        if (changed && repair) {
            uint32_t b = rd_bucket_of(code, strlen(code), c->buckets);
            struct rd_shard_layout l;
            if (cp && cp->shards &&
                rd_shard_layout_parse(cp->shards, strlen(cp->shards), c->buckets, &l) == 0)
                b = l.bucket[rd_shard_of_user(user, strlen(user), l.n)];
            rd_key_users(key, sizeof(key), b, code);
            struct rd_user_counts uc = {u->live, rd_time_day_index(c->now, off), u->today,
                                        rd_time_week_index(c->now, off), u->week};
            char v[128];
            rd_user_counts_format(&uc, v, sizeof(v));
            redisReply *r = rd_rsc_command(c->rc, "HSET %s u:%s %s", key, user, v);
            freeReplyObject(r);
            if (u->r_v1) {
                r = rd_rsc_command(c->rc, "HDEL %s t:%s d:%s w:%s", key, user, user, user);
                freeReplyObject(r);
            }
        }
        *sep = '\x1f';
    }
    return diffs;
}

int rd_reconcile(struct rd_rsc *rc, PGconn *pg, uint32_t buckets, int64_t now_ms, int repair)
{
    struct ctx c;
    memset(&c, 0, sizeof(c));
    c.rc = rc;
    c.pg = pg;
    c.buckets = buckets;
    c.now = now_ms;
    int rc_ = 2;
    /* Redis first: the ledger then contains at least everything Redis has counted */
    long long hot = -1;
    if (read_redis(&c) == 0 && (hot = hot_coupons(&c, repair)) >= 0 && read_ledger(&c) == 0 &&
        read_streams(&c) == 0) {
        long long diffs = hot + compare(&c, repair);
        if (diffs == 0)
            printf("no differences: Redis counters match the ledger\n");
        else
            printf("%lld difference%s%s\n", diffs, diffs == 1 ? "" : "s",
                   repair ? " repaired" : "");
        rc_ = diffs == 0 || repair ? 0 : 1;
    }
    table_free(&c.coupons);
    table_free(&c.users);
    return rc_;
}
