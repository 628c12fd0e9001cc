/* SPDX-License-Identifier: MIT
 *
 * What redeemd answered, kept client-side, and the checks that compare it with what Redis
 * and the ledger hold after the run. Any difference is a bug in redeemd (or in this file)
 * and fails the run.
 */
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "rd/config.h"
#include "rd/keys.h"
#include "rd/shards.h"
#include "store/redis_sync.h"
#include "rd/rdtime.h"

/* ---- (coupon, user) -> net uses: open addressing, grows at 50 % ------------------------ */

struct uentry {
    uint64_t key; /* coupon << 40 | user, + 1 so that 0 means empty */
    int64_t net;
};

struct usermap {
    struct uentry *t;
    size_t cap, n;
};

struct usermap *usermap_new(void)
{
    struct usermap *m = calloc(1, sizeof(*m));
    m->cap = 1 << 16;
    m->t = calloc(m->cap, sizeof(*m->t));
    if (!m->t)
        abort();
    return m;
}

void usermap_free(struct usermap *m)
{
    if (m) {
        free(m->t);
        free(m);
    }
}

static size_t slot_for(const struct usermap *m, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;
    size_t i = (size_t)(h >> 20) & (m->cap - 1);
    while (m->t[i].key && m->t[i].key != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

int64_t usermap_add(struct usermap *m, uint32_t coupon, uint64_t user, int64_t delta)
{
    if (m->n * 2 >= m->cap) {
        struct usermap old = *m;
        m->cap *= 2;
        m->t = calloc(m->cap, sizeof(*m->t));
        if (!m->t)
            abort();
        for (size_t i = 0; i < old.cap; i++)
            if (old.t[i].key)
                m->t[slot_for(m, old.t[i].key)] = old.t[i];
        free(old.t);
    }
    uint64_t key = ((uint64_t)coupon << 40 | user) + 1;
    size_t i = slot_for(m, key);
    if (!m->t[i].key) {
        m->t[i].key = key;
        m->n++;
    }
    m->t[i].net += delta;
    return m->t[i].net;
}

size_t usermap_size(const struct usermap *m)
{
    return m->n;
}

void user_id(const struct bench *b, uint64_t user, char *out, size_t n)
{
    snprintf(out, n, "u%s-%llu", b->run, (unsigned long long)user);
}

/* ---- answers --------------------------------------------------------------------------- */

static void push_redemption(struct bench *b, const struct job *j, const char *body, size_t len)
{
    const char *p = memmem(body, len, "\"id\":\"", 6);
    if (!p) {
        b->unexpected++;
        return;
    }
    p += 6;
    const char *q = memchr(p, '"', len - (size_t)(p - body));
    if (!q || q - p >= 64) {
        b->unexpected++;
        return;
    }
    if (b->nreds == b->capreds) {
        b->capreds = b->capreds ? b->capreds * 2 : 4096;
        b->reds = realloc(b->reds, b->capreds * sizeof(*b->reds));
        if (!b->reds)
            abort();
    }
    struct redemption *r = &b->reds[b->nreds++];
    memcpy(r->id, p, (size_t)(q - p));
    r->id[q - p] = '\0';
    r->coupon = j->coupon;
    r->user = j->user;
    r->reversed = 0;
}

void track_answer(struct bench *b, const struct job *j, int status, const char *body, size_t len)
{
    struct coupon_track *ct = j->op == OP_UNKNOWN ? NULL : &b->coupons[j->coupon];
    switch (j->op) {
    case OP_REDEEM:
        if (status == 201) {
            ct->accepted++;
            usermap_add(b->users, j->coupon, j->user, 1);
            b->ledger_expect[OP_REDEEM][1]++;
            if (b->o.wl == WL_MIXED)
                push_redemption(b, j, body, len);
        } else if (status == 422) {
            ct->rejected++;
            ct->exhausted += memmem(body, len, "\"limit_total_reached\"", 21) != NULL;
            b->ledger_expect[OP_REDEEM][0]++;
        } else {
            b->unexpected++;
        }
        break;
    case OP_VALIDATE:
        if (status != 200)
            b->unexpected++;
        break;
    case OP_UNKNOWN:
        if (status == 404)
            b->ledger_expect[OP_UNKNOWN][0]++;
        else if (status == 429)
            b->limited++; /* a guessing budget spent (looked up or not: 0 or 1 row) */
        else
            b->unexpected++;
        break;
    case OP_PAY:
        if (status == 201) {
            ct->accepted++;
            usermap_add(b->users, j->coupon, j->user, 1);
            b->ledger_expect[OP_PAY][1]++;
        } else if (status == 422) {
            ct->rejected++;
            b->ledger_expect[OP_PAY][0]++;
        } else {
            b->unexpected++;
        }
        break;
    case OP_REVERSE:
        if (status == 200) {
            ct->reversed++;
            usermap_add(b->users, j->coupon, j->user, -1);
            b->ledger_expect[OP_REVERSE][1]++;
        } else {
            b->unexpected++;
        }
        break;
    default:
        break;
    }
}

void track_unknown(struct bench *b, const struct job *j)
{
    b->unknown_outcomes++;
    if (j->op != OP_UNKNOWN)
        b->coupons[j->coupon].unknown++;
}

/* ---- checks ---------------------------------------------------------------------------- */

static int violations;

__attribute__((format(printf, 1, 2))) static void violation(const char *fmt, ...)
{
    if (violations++ >= 20)
        return; /* the first ones say enough */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "INVARIANT VIOLATED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void check_coupons(struct bench *b)
{
    char path[128];
    for (int i = 0; i < b->ncoupons; i++) {
        struct coupon_track *ct = &b->coupons[i];
        snprintf(path, sizeof(path), "/v1/coupons/%s", ct->code);
        char *body;
        int st = sync_http(b, "GET", path, b->o.admin_key, NULL, &body);
        json_t *o = st == 200 ? json_loads(body, 0, NULL) : NULL;
        free(body);
        if (!o) {
            violation("coupon %s unreadable after the run (HTTP %d)", ct->code, st);
            continue;
        }
        long long used = json_integer_value(json_object_get(json_object_get(o, "used"), "total"));
        json_t *bal = json_object_get(o, "balance");
        if (bal && b->o.wl == WL_VOUCHER) {
            /* money: what is left is what was loaded less what the answers say was paid */
            long long have = json_integer_value(bal);
            long long loaded = json_integer_value(json_object_get(o, "loaded"));
            long long want = loaded - (long long)ct->accepted * b->o.amount;
            if (have < 0 || have > want || have < want - (long long)ct->unknown * b->o.amount)
                violation("voucher %s: balance %lld, loaded %lld less the answered payments "
                          "is %lld",
                          ct->code, have, loaded, want);
        }
        json_decref(o);
        long long net = (long long)(ct->accepted - ct->reversed);
        if (used < net || used > net + (long long)ct->unknown)
            violation("coupon %s: Redis says used=%lld, the answers say accepted-reversed=%lld",
                      ct->code, used, net);
        if (b->o.total && net > b->o.total)
            violation("coupon %s: %lld uses accepted over a total limit of %lld", ct->code, net,
                      b->o.total);
        /* refused as used up while uses are never given back: the whole total was used
         * (a hot coupon's shards must have lent each other every last unit) */
        if (b->o.total && ct->exhausted && !ct->reversed && !ct->unknown && net != b->o.total)
            violation("coupon %s: refused as used up, but %lld of a total of %lld were used",
                      ct->code, net, b->o.total);
    }
    if (b->o.per_user) {
        for (size_t i = 0; i < b->users->cap; i++) {
            const struct uentry *e = &b->users->t[i];
            if (e->key && e->net > b->o.per_user)
                violation("coupon %s: one user was granted %lld uses over a limit of %lld",
                          b->coupons[(e->key - 1) >> 40].code, (long long)e->net, b->o.per_user);
        }
    }
}

static void check_redis_users(struct bench *b)
{
    /* "host:port", or a cluster's nodes "host:port,host:port,..." */
    struct rd_config cfg;
    rd_config_defaults(&cfg);
    if (strchr(b->o.redis, ',')) {
        snprintf(cfg.redis_cluster, sizeof(cfg.redis_cluster), "%s", b->o.redis);
    } else {
        snprintf(cfg.redis_host, sizeof(cfg.redis_host), "%.*s", (int)sizeof(cfg.redis_host) - 1,
                 b->o.redis);
        char *colon = strrchr(cfg.redis_host, ':');
        cfg.redis_port = colon ? atoi(colon + 1) : 6379;
        if (colon)
            *colon = '\0';
    }
    char err[200];
    struct rd_rsc *rc = rd_rsc_connect(&cfg, 2000, 10000, err, sizeof(err));
    if (!rc) {
        violation("cannot connect to Redis at %s: %s", b->o.redis, err);
        return;
    }
    redisReply *r = rd_rsc_command(rc, "HGET rd:meta buckets");
    uint32_t nb = r && r->type == REDIS_REPLY_STRING ? (uint32_t)atoi(r->str) : 0;
    if (r)
        freeReplyObject(r);
    if (nb == 0) {
        violation("Redis at %s holds no redeemd install", b->o.redis);
        rd_rsc_free(rc);
        return;
    }
    /* hot coupons: where each one's shards are */
    struct rd_shard_layout *layouts = NULL;
    if (b->o.shards > 1) {
        layouts = calloc((size_t)b->ncoupons, sizeof(*layouts));
        char hk[RD_KEY_MAX];
        for (int i = 0; layouts && i < b->ncoupons; i++) {
            const char *code = b->coupons[i].code;
            rd_key_coupon(hk, sizeof(hk), rd_bucket_of(code, strlen(code), nb), code);
            r = rd_rsc_command(rc, "HGET %s shards", hk);
            if (!r || r->type != REDIS_REPLY_STRING ||
                rd_shard_layout_parse(r->str, r->len, nb, &layouts[i]) < 0)
                violation("coupon %s: created with shards, but Redis names none", code);
            if (r)
                freeReplyObject(r);
        }
    }
    /* pipelined in chunks: one HGET per (coupon, user) this run touched */
    enum { CHUNK = 1000 };
    size_t idx[CHUNK], n = 0;
    static redisReply *rs[CHUNK];
    char key[RD_KEY_MAX], field[96];
    for (size_t i = 0; i <= b->users->cap; i++) {
        if (i < b->users->cap && b->users->t[i].key) {
            const struct uentry *e = &b->users->t[i];
            const struct coupon_track *ct = &b->coupons[(e->key - 1) >> 40];
            uint32_t bucket = rd_bucket_of(ct->code, strlen(ct->code), nb);
            char uid[64];
            user_id(b, (e->key - 1) & ((1ULL << 40) - 1), uid, sizeof(uid));
            struct rd_shard_layout *l = layouts ? &layouts[(e->key - 1) >> 40] : NULL;
            if (l && l->n) /* a hot coupon: the user's counts are on the user's shard */
                bucket = l->bucket[rd_shard_of_user(uid, strlen(uid), l->n)];
            rd_key_users(key, sizeof(key), bucket, ct->code);
            snprintf(field, sizeof(field), "u:%s", uid);
            rd_rsc_append(rc, "HGET %s %s", key, field);
            idx[n++] = i;
        }
        if (n == CHUNK || (i == b->users->cap && n > 0)) {
            if (rd_rsync_read(rc, (int)n, rs) < 0) {
                violation("Redis connection lost during the check");
                rd_rsc_free(rc);
                return;
            }
            for (size_t k = 0; k < n; k++) {
                const struct uentry *e = &b->users->t[idx[k]];
                const struct coupon_track *ct = &b->coupons[(e->key - 1) >> 40];
                struct rd_user_counts uc = {0, 0, 0, 0, 0};
                r = rs[k];
                if (r->type == REDIS_REPLY_STRING && rd_user_counts_parse(r->str, &uc) < 0)
                    uc.total = -1; /* not a count: reported below */
                long long got = uc.total;
                if (got < e->net || got > e->net + (long long)ct->unknown)
                    violation("coupon %s: a user's Redis count is %lld, the answers say %lld",
                              ct->code, got, (long long)e->net);
            }
            rd_rsync_free(rs, (int)n);
            n = 0;
        }
    }
    free(layouts);
    rd_rsc_free(rc);
}

/* The backlog, and the number of the count it comes from (-1 from a daemon without it). */
static long long backlog_now(const struct bench *b, long long *count)
{
    char *body;
    int st = sync_http(b, "GET", "/metrics", NULL, NULL, &body);
    long long v = st == 200 ? (long long)metrics_value(body, "redeemd_outbox_backlog") : -2;
    if (count)
        *count =
            st == 200 ? (long long)metrics_value(body, "redeemd_outbox_backlog_counts_total") : -1;
    free(body);
    return v;
}

static const char *kind_of(int op)
{
    static const char *const k[] = {"validate", "redeem", "reverse", "validate", "pay"};
    return k[op];
}

static void check_ledger(struct bench *b)
{
    /* The ledger is complete once the outbox is empty, as counted after the last answer:
     * the shipper counts the backlog now and then, and a count from before the run's
     * entries reads 0 (a slow shipper, an ASan build: the check found no rows at all). */
    int64_t deadline = rd_mono_ms() + (int64_t)(b->o.drain_timeout_s * 1000);
    long long bl, count, count0;
    backlog_now(b, &count0);
    while (((bl = backlog_now(b, &count)) != 0 || (count0 >= 0 && count <= count0)) &&
           rd_mono_ms() < deadline)
        usleep(100000);
    if (bl != 0 || (count0 >= 0 && count <= count0)) {
        violation("the outbox did not drain (backlog %lld, %lld counts since the run, after "
                  "%.0f s)",
                  bl, count - count0, b->o.drain_timeout_s);
        return;
    }
    PGconn *pg = PQconnectdb(b->o.pg);
    if (PQstatus(pg) != CONNECTION_OK) {
        violation("cannot connect to PostgreSQL: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return;
    }
    char like[40];
    snprintf(like, sizeof(like), "RB%s-%%", b->run);
    const char *params[] = {like};
    PGresult *res = PQexecParams(pg,
                                 "SELECT kind, outcome, count(*), count(DISTINCT txn_id) FROM "
                                 "transactions WHERE code LIKE $1 AND kind IN ('redeem', "
                                 "'reverse', 'validate', 'pay') GROUP BY 1, 2",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        violation("ledger query failed: %s", PQerrorMessage(pg));
        PQclear(res);
        PQfinish(pg);
        return;
    }
    long long got[4][2] = {{0}}; /* validate, redeem, reverse, pay */
    for (int i = 0; i < PQntuples(res); i++) {
        const char *kind = PQgetvalue(res, i, 0);
        int acc = strcmp(PQgetvalue(res, i, 1), "accepted") == 0;
        int k = strcmp(kind, "redeem") == 0    ? 1
                : strcmp(kind, "reverse") == 0 ? 2
                : strcmp(kind, "pay") == 0     ? 3
                                               : 0;
        got[k][acc] = atoll(PQgetvalue(res, i, 2));
        if (atoll(PQgetvalue(res, i, 3)) != got[k][acc])
            violation("ledger: %s rows with repeated transaction ids (%lld rows, %lld ids)", kind,
                      got[k][acc], atoll(PQgetvalue(res, i, 3)));
    }
    PQclear(res);
    long long want[4][2] = {
        {(long long)b->ledger_expect[OP_UNKNOWN][0], 0},
        {(long long)b->ledger_expect[OP_REDEEM][0], (long long)b->ledger_expect[OP_REDEEM][1]},
        {(long long)b->ledger_expect[OP_REVERSE][0], (long long)b->ledger_expect[OP_REVERSE][1]},
        {(long long)b->ledger_expect[OP_PAY][0], (long long)b->ledger_expect[OP_PAY][1]},
    };
    static const int op_of[] = {OP_UNKNOWN, OP_REDEEM, OP_REVERSE, OP_PAY};
    long long slack = (long long)b->unknown_outcomes;
    for (int k = 0; k < 4; k++)
        for (int a = 0; a < 2; a++)
            if (got[k][a] < want[k][a] ||
                got[k][a] > want[k][a] + slack + (k == 0 ? (long long)b->limited : 0)) {
                char what[64];
                snprintf(what, sizeof(what), "%s/%s", kind_of(op_of[k]),
                         a ? "accepted" : "rejected");
                violation("ledger: %s rows %lld, answers %lld", what, got[k][a], want[k][a]);
            }
    /* and coupon by coupon: accepted redemptions and reversals */
    res =
        PQexecParams(pg,
                     "SELECT code, count(*) FILTER (WHERE kind IN ('redeem', 'pay') AND "
                     "outcome = 'accepted'), count(*) FILTER (WHERE kind = 'reverse' AND outcome = "
                     "'accepted') FROM transactions WHERE code LIKE $1 GROUP BY code",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        long long seen = 0;
        for (int i = 0; i < PQntuples(res); i++) {
            const char *code = PQgetvalue(res, i, 0);
            for (int c = 0; c < b->ncoupons; c++) {
                const struct coupon_track *ct = &b->coupons[c];
                if (strcmp(ct->code, code) != 0)
                    continue;
                seen++;
                long long acc = atoll(PQgetvalue(res, i, 1));
                long long rev = atoll(PQgetvalue(res, i, 2));
                if (acc < (long long)ct->accepted || acc > (long long)(ct->accepted + ct->unknown))
                    violation("ledger: coupon %s has %lld accepted rows, answers %lld", code, acc,
                              (long long)ct->accepted);
                if (rev != (long long)ct->reversed)
                    violation("ledger: coupon %s has %lld reversal rows, answers %lld", code, rev,
                              (long long)ct->reversed);
            }
        }
        (void)seen;
    }
    PQclear(res);
    PQfinish(pg);
}

int check_invariants(struct bench *b)
{
    violations = 0;
    check_coupons(b);
    if (b->o.redis[0])
        check_redis_users(b);
    if (b->o.pg[0])
        check_ledger(b);
    return violations;
}
