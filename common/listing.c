/* SPDX-License-Identifier: MIT
 *
 * Ledger statements and the two listings' statements (see rd/listing.h).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd/code.h"
#include "rd/ledger.h"
#include "rd/listing.h"
#include "rd/rdtime.h"
#include "rd/status.h"

/* ---- statements ------------------------------------------------------------------------ */

int rd_stmt_param_owned(struct rd_stmt *s, char *v)
{
    if (s->nparams >= RD_STMT_MAXPARAMS) {
        free(v);
        s->overflow = 1;
        return -1;
    }
    s->params[s->nparams++] = v;
    return s->nparams;
}

int rd_stmt_param(struct rd_stmt *s, const char *v)
{
    char *copy = NULL;
    if (v && !(copy = strdup(v)))
        abort();
    return rd_stmt_param_owned(s, copy);
}

void rd_stmt_free(struct rd_stmt *s)
{
    for (int i = 0; i < s->nparams; i++)
        free(s->params[i]);
    rd_sbuf_free(&s->sql);
    memset(s, 0, sizeof(*s));
}

/* ---- CSV ------------------------------------------------------------------------------- */

void rd_csv_field(struct rd_sbuf *out, const char *s, size_t len)
{
    size_t plain = 0;
    while (plain < len && s[plain] != ',' && s[plain] != '"' && s[plain] != '\r' &&
           s[plain] != '\n')
        plain++;
    if (plain == len) {
        rd_sbuf_add(out, s, len);
        return;
    }
    rd_sbuf_add(out, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '"')
            continue;
        rd_sbuf_add(out, s + start, i + 1 - start); /* up to and with the quote ... */
        rd_sbuf_add(out, "\"", 1);                  /* ... which is doubled */
        start = i + 1;
    }
    rd_sbuf_add(out, s + start, len - start);
    rd_sbuf_add(out, "\"", 1);
}

/* ---- listings -------------------------------------------------------------------------- */

/* A listing's parameters: a filter (many) is any of up to RD_FILTER_MAX_VALUES values. */
struct qrule {
    const char *name;
    int many;
};

struct qvals {
    int n;
    const char *v[RD_FILTER_MAX_VALUES];
};

/* What one build works on. */
struct build {
    struct rd_stmt *st;
    struct rd_verr *e;
};

static int bad(struct build *b, const char *field, const char *msg)
{
    rd_verr_set(b->e, field, "%s", msg);
    return -1;
}

/* Appends pre, parameter number n, then post: " AND code = $3". */
static void cond(struct build *b, const char *pre, int n, const char *post)
{
    rd_sbuf_addf(&b->st->sql, "%s%d%s", pre, n, post);
}

/* Decodes the query string and sorts its values by rule (vals[i] for rules[i]). */
static int gather(struct build *b, struct rd_query *q, const char *query, const struct qrule *rules,
                  struct qvals *vals)
{
    const char *why;
    if (rd_query_parse(query, q, &why) != RD_OK)
        return bad(b, "query", why);
    for (int i = 0; i < q->n; i++) {
        const char *k = q->names[i], *v = q->values[i];
        if (!*k)
            return bad(b, "query", "a parameter has no name");
        int rule = -1;
        for (int j = 0; rules[j].name; j++)
            if (!strcmp(rules[j].name, k))
                rule = j;
        if (rule < 0)
            return bad(b, k, "unknown parameter");
        if (strlen(v) == 0 || strlen(v) > 128)
            return bad(b, k, "must be 1 to 128 printable characters");
        struct qvals *qv = &vals[rule];
        if (!rules[rule].many && qv->n == 1)
            return bad(b, k, "may be given once");
        if (qv->n == RD_FILTER_MAX_VALUES) {
            char msg[96];
            snprintf(msg, sizeof(msg), "may be given at most %d times (any of them matches)",
                     RD_FILTER_MAX_VALUES);
            return bad(b, k, msg);
        }
        qv->v[qv->n++] = v;
    }
    return 0;
}

/* The values of one filter as one array parameter; its number. */
static int array_param(struct build *b, const char *const *v, int n, const char *suffix)
{
    struct rd_sbuf a;
    rd_sbuf_init(&a);
    rd_pg_text_array(&a, v, n, suffix);
    return rd_stmt_param_owned(b->st, a.buf); /* taken over */
}

/* A filter column = any of the values: " AND <col> <op> ANY($n::<type>[])". */
static void any_of(struct build *b, const char *col, const char *op, const char *type,
                   const struct qvals *qv)
{
    if (qv->n == 0)
        return;
    char pre[96], post[32];
    if (qv->n == 1) {
        /* plain "col op $n": an index on (col, page order) then yields the page in order,
         * which "col op ANY(array)" does not (PostgreSQL 15 sorts what the array matches) */
        snprintf(pre, sizeof(pre), " AND %s %s $", col, op);
        snprintf(post, sizeof(post), "::%s", type);
        cond(b, pre, rd_stmt_param(b->st, qv->v[0]), post);
        return;
    }
    snprintf(pre, sizeof(pre), " AND %s %s ANY($", col, op);
    snprintf(post, sizeof(post), "::%s[])", type);
    cond(b, pre, array_param(b, qv->v, qv->n, NULL), post);
}

/* A client ip filter: an address, or a CIDR block. */
static int valid_ip_filter(const char *s)
{
    char buf[64];
    unsigned char addr[16];
    if (strlen(s) >= sizeof(buf))
        return 0;
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/');
    int max = 128;
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1)
        max = 32;
    else if (inet_pton(AF_INET6, buf, addr) != 1)
        return 0;
    if (!slash)
        return 1;
    char *end;
    long bits = strtol(slash + 1, &end, 10);
    return *end == '\0' && slash[1] && bits >= 0 && bits <= max;
}

static int in(const char *v, const char *const *set)
{
    for (; *set; set++)
        if (!strcmp(v, *set))
            return 1;
    return 0;
}

/* Every value of qv must be in set; else a refusal with msg. */
static int all_in(struct build *b, const char *name, const struct qvals *qv, const char *const *set,
                  const char *msg)
{
    for (int i = 0; i < qv->n; i++)
        if (!in(qv->v[i], set))
            return bad(b, name, msg);
    return 0;
}

static int parse_limit(struct build *b, const struct qvals *qv, long *limit)
{
    if (qv->n == 0)
        return 0;
    char *end;
    long n = strtol(qv->v[0], &end, 10);
    if (*end || n < 1 || n > RD_PAGE_MAX)
        return bad(b, "limit", "must be an integer from 1 to 1000");
    *limit = n;
    return 0;
}

/* A time parameter, sent as RFC 3339 or (as_ms) epoch milliseconds. Returns its statement
 * parameter's number, 0 when absent, -1 when refused. */
static int time_param(struct build *b, const char *name, const struct qvals *qv, int as_ms,
                      const char *pre, const char *post)
{
    if (qv->n == 0)
        return 0;
    int64_t ms;
    if (rd_time_parse(qv->v[0], &ms) < 0)
        return bad(b, name, "must be an RFC 3339 time");
    char buf[RD_TIME_BUFSZ];
    if (as_ms)
        snprintf(buf, sizeof(buf), "%lld", (long long)ms);
    else
        rd_time_format(ms, buf);
    int n = rd_stmt_param(b->st, buf);
    cond(b, pre, n, post);
    return n > 0 ? n : 0; /* past the bound: st->overflow, never sent */
}

/* ---- GET /v1/transactions ---------------------------------------------------------------- */

/* Pages walk the inserting transaction's id first (txid), then the row's time and id: each
 * page stops below the oldest transaction still running, so a row committed after a cursor
 * was handed out always sorts after it: pages neither skip nor repeat rows while the
 * shipper keeps inserting. (txid, ts, txn_id) is the page index's own order (014): a time
 * window enters each shipping transaction it reaches at the window's start, so a transaction
 * that spans a day (a backlog shipped after an outage) costs the window's rows in it, not
 * all of its rows; a cursor seeks straight to its row. A filter with a page index of its own,
 * (filter, txid, txn_id), walks (txid, txn_id) instead when there is no window. The cursor
 * names the order's columns; ts in microseconds. */
#define TX_PAGE_KEY "txid::text || '.' || txn_id"
#define TX_TS_PAGE_KEY                                                                             \
    "txid::text || '.' || (extract(epoch FROM ts) * 1000000)::bigint || '.' || txn_id"
#define TX_COLUMNS                                                                                 \
    " AS page_key, txn_id, (extract(epoch FROM ts) * 1000)::bigint, kind, outcome, reason, code, " \
    "campaign, user_id, order_id, ref_id, order_amount, discount_amount, paid_amount, "            \
    "balance_after, currency, host(client_ip), api_key_id, request_id, host(peer_ip), "            \
    "session_id, device_id, email_hash FROM transactions "                                         \
    "WHERE txid < pg_snapshot_xmin(pg_current_snapshot())"

/* cursor "<txid>.<µs>.<txn_id>", or "<txid>.<txn_id>" when the listing walks (txid, txn_id) */
static int tx_cursor(struct build *b, const char *v, int ts_order)
{
    const char *bad_cursor = "is not a cursor this service issued";
    const char *d1 = strchr(v, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || (d2 != NULL) != (ts_order != 0))
        return bad(b, "cursor",
                   d1 ? "belongs to a listing with other filters; start again without it"
                      : bad_cursor);
    const char *id = ts_order ? d2 + 1 : d1 + 1;
    size_t tl = (size_t)(d1 - v);
    if (tl == 0 || tl > 20 || strspn(v, "0123456789") != tl || !*id ||
        strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(id))
        return bad(b, "cursor", bad_cursor);
    char txid[24], us[24];
    snprintf(txid, sizeof(txid), "%.*s", (int)tl, v);
    if (!ts_order) {
        cond(b, " AND (txid, txn_id) > ($", rd_stmt_param(b->st, txid), "::xid8, ");
        cond(b, "$", rd_stmt_param(b->st, id), ")");
        return 0;
    }
    size_t ul = (size_t)(d2 - d1 - 1);
    const char *u = d1 + 1;
    size_t neg = *u == '-';
    if (ul <= neg || ul > 17 || strspn(u + neg, "0123456789") != ul - neg)
        return bad(b, "cursor", bad_cursor);
    snprintf(us, sizeof(us), "%.*s", (int)ul, u);
    cond(b, " AND (txid, ts, txn_id) > ($", rd_stmt_param(b->st, txid), "::xid8, ");
    /* exact: |µs| < 2^53, and float8 holds such integers exactly */
    cond(b, "'epoch'::timestamptz + $", rd_stmt_param(b->st, us),
         "::bigint * interval '1 microsecond', ");
    cond(b, "$", rd_stmt_param(b->st, id), ")");
    return 0;
}

enum {
    TQ_CODE,
    TQ_USER,
    TQ_IP,
    TQ_KIND,
    TQ_OUTCOME,
    TQ_REASON,
    TQ_FROM,
    TQ_TO,
    TQ_LIMIT,
    TQ_CURSOR,
    TQ__COUNT
};
static const struct qrule tx_rules[TQ__COUNT + 1] = {
    [TQ_CODE] = {"code", 1},     [TQ_USER] = {"user_id", 1},    [TQ_IP] = {"client_ip", 1},
    [TQ_KIND] = {"kind", 1},     [TQ_OUTCOME] = {"outcome", 1}, [TQ_REASON] = {"reason", 1},
    [TQ_FROM] = {"from", 0},     [TQ_TO] = {"to", 0},           [TQ_LIMIT] = {"limit", 0},
    [TQ_CURSOR] = {"cursor", 0}, [TQ__COUNT] = {NULL, 0}};

static int build_transactions(struct build *b, struct rd_query *query, const char *qs, long *limit)
{
    static const char *const kinds[] = {"redeem",        "reverse",
                                        "validate",      "pay",
                                        "refund",        "recharge",
                                        "share",         "coupon_create",
                                        "coupon_update", "coupon_disable",
                                        "coupon_enable", "coupon_archive",
                                        "rate_limited",  NULL};
    static const char *const outcomes[] = {"accepted", "rejected", NULL};
    struct qvals q[TQ__COUNT] = {{0}};
    if (gather(b, query, qs, tx_rules, q) < 0)
        return -1;
    int ts_order = 1; /* (txid, ts, txn_id); else (txid, txn_id) */
    for (int f = TQ_CODE; f <= TQ_REASON && !q[TQ_FROM].n; f++)
        if (f != TQ_OUTCOME && q[f].n > 0)
            ts_order = 0; /* walks its filter's (filter, txid, txn_id) index */
    rd_sbuf_addstr(&b->st->sql, ts_order ? "SELECT " TX_TS_PAGE_KEY TX_COLUMNS
                                         : "SELECT " TX_PAGE_KEY TX_COLUMNS);

    char codes[RD_FILTER_MAX_VALUES][RD_CODE_MAX + 1];
    struct qvals qcodes = q[TQ_CODE];
    for (int i = 0; i < qcodes.n; i++) {
        if (rd_code_normalize(qcodes.v[i], strlen(qcodes.v[i]), codes[i]) < 0)
            return bad(b, "code", "is not a valid coupon code");
        qcodes.v[i] = codes[i];
    }
    for (int i = 0; i < q[TQ_IP].n; i++)
        if (!valid_ip_filter(q[TQ_IP].v[i]))
            return bad(b, "client_ip", "must be an IP address or a CIDR block");
    for (int i = 0; i < q[TQ_REASON].n; i++) {
        const char *v = q[TQ_REASON].v[i];
        if (rd_status_from_name(v) == RD_E_INTERNAL && strcmp(v, "internal") != 0)
            return bad(b, "reason", "is not an error code");
    }
    if (all_in(b, "kind", &q[TQ_KIND], kinds, "is not a transaction kind") < 0 ||
        all_in(b, "outcome", &q[TQ_OUTCOME], outcomes, "must be accepted or rejected") < 0 ||
        parse_limit(b, &q[TQ_LIMIT], limit) < 0)
        return -1;
    /* Several values of a filter with a page index: one arm per value, each its own page in
     * page order off that index, merged (the first such filter; a CSV export reads all). */
    static const struct {
        const char *col, *op, *type;
    } indexed[] = {[TQ_CODE] = {"code", "=", "text"},       [TQ_USER] = {"user_id", "=", "text"},
                   [TQ_IP] = {"client_ip", "<<=", "inet"},  [TQ_KIND] = {"kind", "=", "text"},
                   [TQ_OUTCOME] = {"outcome", "=", "text"}, [TQ_REASON] = {"reason", "=", "text"}};
    int split = -1;
    q[TQ_CODE] = qcodes;
    for (int f = TQ_CODE; f <= TQ_REASON; f++) {
        if (split < 0 && *limit > 0 && f != TQ_OUTCOME && q[f].n > 1)
            split = f;
        else
            any_of(b, indexed[f].col, indexed[f].op, indexed[f].type, &q[f]);
    }
    /* The bounds reach the planner as values it cannot see (an InitPlan): a window at the
     * ledger's end is past the histogram of the last ANALYZE, which estimated it at a few
     * rows, and the planner then sorted the window's 145,000 rows instead of walking the
     * page index in order (88 ms at 10M rows; 0.3 ms walking). Partitions are still pruned,
     * at run time. */
    int from = time_param(b, "from", &q[TQ_FROM], 0, " AND ts >= (SELECT $", "::timestamptz)");
    int to =
        from < 0 ? -1 : time_param(b, "to", &q[TQ_TO], 0, " AND ts < (SELECT $", "::timestamptz)");
    if (to < 0)
        return -1;
    if (from > 0) {
        /* the shipping transactions whose rows reach into the window (ledger_batches, 013):
         * their txids as an array on the page index's leading column, which a btree walks
         * in order, probing only those transactions instead of every row before the window */
        char to_cond[64] = "";
        if (to > 0)
            snprintf(to_cond, sizeof(to_cond), " AND min_ts < $%d::timestamptz", to);
        rd_sbuf_addf(&b->st->sql,
                     " AND txid = ANY(ARRAY(SELECT txid FROM ledger_batches WHERE max_ts >= "
                     "$%d::timestamptz%s))",
                     from, to_cond);
    }
    if (q[TQ_CURSOR].n && tx_cursor(b, q[TQ_CURSOR].v[0], ts_order) < 0)
        return -1;
    const char *order = ts_order ? " ORDER BY txid, ts, txn_id" : " ORDER BY txid, txn_id";
    if (split < 0) {
        rd_sbuf_addstr(&b->st->sql, order);
        return 0;
    }
    char *where = b->st->sql.buf; /* the select and every other condition */
    rd_sbuf_init(&b->st->sql);
    int arr = array_param(b, q[split].v, q[split].n, NULL);
    rd_sbuf_addstr(&b->st->sql, "SELECT * FROM (");
    for (int i = 0; i < q[split].n; i++)
        rd_sbuf_addf(&b->st->sql, "%s(%s AND %s %s ($%d::%s[])[%d]%s LIMIT %ld)",
                     i ? " UNION ALL " : "", where, indexed[split].col, indexed[split].op, arr,
                     indexed[split].type, i + 1, order, *limit + 1);
    rd_sbuf_addstr(&b->st->sql, ts_order ? ") t ORDER BY split_part(t.page_key, '.', 1)::numeric, "
                                           "split_part(t.page_key, '.', 2)::bigint, t.txn_id"
                                         : ") t ORDER BY split_part(t.page_key, '.', 1)::numeric, "
                                           "t.txn_id");
    free(where);
    return 0;
}

/* ---- GET /v1/coupons ------------------------------------------------------------------------ */

/* Per coupon: the mirror's definition (the Redis hash fields as written) and its usage
 * summary (coupon_usage, kept by the shipper: uses not given back, shares, voucher money);
 * the status is derived as rd_coupon_status() does. $1 is now (ms). */
#define COUPON_SELECT                                                                              \
    "SELECT x.code, x.code, x.kind, x.status, x.campaign, x.tags, x.used, x.shares, x.created, "   \
    "x.expires, x.balance, x.currency, x.batch_id FROM (SELECT m.code, y.kind, m.campaign, "       \
    "m.d_tags AS tags, y.used, y.shares, "                                                         \
    "(extract(epoch FROM m.created_at) * 1000)::bigint AS created, m.d_expires AS expires, "       \
    "m.d_currency AS currency, y.balance, m.batch_id, "                                            \
    "rd_coupon_state(m.archived, m.d_status, m.d_starts, m.d_expires, m.d_l_total, y.kind, "       \
    "y.used, y.balance, $1::bigint) AS status "                                                    \
    "FROM coupons m LEFT JOIN coupon_usage u ON u.code = m.code CROSS JOIN LATERAL (SELECT "       \
    "coalesce(m.kind, 'discount') AS kind, coalesce(u.used, 0) AS used, "                          \
    "coalesce(u.shares, 0) AS shares, CASE WHEN m.kind = 'voucher' THEN m.d_bal + "                \
    "coalesce(u.recharged, 0) - coalesce(u.spent, 0) + coalesce(u.refunded, 0) END AS balance) y " \
    "WHERE true"

enum {
    CQ_STATUS,
    CQ_KIND,
    CQ_CAMPAIGN,
    CQ_TAG,
    CQ_PREFIX,
    CQ_BATCH,
    CQ_CREATED_FROM,
    CQ_CREATED_TO,
    CQ_EXPIRES_FROM,
    CQ_EXPIRES_TO,
    CQ_SHARED,
    CQ_LIMIT,
    CQ_CURSOR,
    CQ__COUNT
};
static const struct qrule coupon_rules[CQ__COUNT + 1] = {[CQ_STATUS] = {"status", 1},
                                                         [CQ_KIND] = {"kind", 1},
                                                         [CQ_CAMPAIGN] = {"campaign", 1},
                                                         [CQ_TAG] = {"tag", 1},
                                                         [CQ_PREFIX] = {"prefix", 1},
                                                         [CQ_BATCH] = {"batch", 1},
                                                         [CQ_CREATED_FROM] = {"created_from", 0},
                                                         [CQ_CREATED_TO] = {"created_to", 0},
                                                         [CQ_EXPIRES_FROM] = {"expires_from", 0},
                                                         [CQ_EXPIRES_TO] = {"expires_to", 0},
                                                         [CQ_SHARED] = {"shared", 0},
                                                         [CQ_LIMIT] = {"limit", 0},
                                                         [CQ_CURSOR] = {"cursor", 0},
                                                         [CQ__COUNT] = {NULL, 0}};

/* Codes are A-Z 0-9 '-' (nothing in them is special to LIKE): v upper-cased into out. */
static int code_param(const char *v, char out[RD_CODE_MAX + 1])
{
    size_t n = strlen(v);
    if (n > RD_CODE_MAX ||
        strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != n)
        return -1;
    for (size_t i = 0; i <= n; i++)
        out[i] = (v[i] >= 'a' && v[i] <= 'z') ? (char)(v[i] - 32) : v[i];
    return 0;
}

static int build_coupons(struct build *b, struct rd_query *query, const char *qs, long *limit,
                         int64_t now_ms)
{
    static const char *const statuses[] = {"active",  "valid",    "scheduled", "exhausted",
                                           "expired", "disabled", "archived",  "used",
                                           "unused",  NULL};
    static const char *const kinds[] = {"discount", "voucher", NULL};
    struct qvals q[CQ__COUNT] = {{0}};
    if (gather(b, query, qs, coupon_rules, q) < 0)
        return -1;
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)now_ms);
    rd_stmt_param(b->st, now); /* $1 */
    rd_sbuf_addstr(&b->st->sql, COUPON_SELECT);

    if (all_in(b, "status", &q[CQ_STATUS], statuses,
               "must be active (or valid), scheduled, exhausted, expired, disabled, archived, "
               "used or unused") < 0 ||
        all_in(b, "kind", &q[CQ_KIND], kinds, "must be discount or voucher") < 0 ||
        parse_limit(b, &q[CQ_LIMIT], limit) < 0)
        return -1;
    char prefixes[RD_FILTER_MAX_VALUES][RD_CODE_MAX + 1], cursor[RD_CODE_MAX + 1];
    struct qvals pv = q[CQ_PREFIX];
    for (int i = 0; i < pv.n; i++) {
        if (code_param(pv.v[i], prefixes[i]) < 0)
            return bad(b, "prefix", "must be letters, digits and '-'");
        pv.v[i] = prefixes[i];
    }
    if (q[CQ_CURSOR].n && code_param(q[CQ_CURSOR].v[0], cursor) < 0)
        return bad(b, "cursor", "is not a cursor this service issued");
    const char *shared = q[CQ_SHARED].n ? q[CQ_SHARED].v[0] : NULL;
    if (shared && strcmp(shared, "true") != 0 && strcmp(shared, "false") != 0)
        return bad(b, "shared", "must be true or false");

    any_of(b, "y.kind", "=", "text", &q[CQ_KIND]);
    any_of(b, "m.campaign", "=", "text", &q[CQ_CAMPAIGN]);
    any_of(b, "m.batch_id", "=", "text", &q[CQ_BATCH]);
    if (q[CQ_TAG].n) /* any of the tags: jsonb ?| text[] */
        cond(b, " AND m.d_tags ?| $", array_param(b, q[CQ_TAG].v, q[CQ_TAG].n, NULL), "::text[]");
    if (pv.n)
        cond(b, " AND m.code LIKE ANY($", array_param(b, pv.v, pv.n, "%"), "::text[])");
    if (q[CQ_CURSOR].n)
        cond(b, " AND m.code > $", rd_stmt_param(b->st, cursor), "");
    if (time_param(b, "created_from", &q[CQ_CREATED_FROM], 0, " AND m.created_at >= $",
                   "::timestamptz") < 0 ||
        time_param(b, "created_to", &q[CQ_CREATED_TO], 0, " AND m.created_at < $",
                   "::timestamptz") < 0 ||
        time_param(b, "expires_from", &q[CQ_EXPIRES_FROM], 1, " AND m.d_expires >= $", "::bigint") <
            0 ||
        time_param(b, "expires_to", &q[CQ_EXPIRES_TO], 1, " AND m.d_expires < $", "::bigint") < 0)
        return -1;
    /* A necessary condition the indexes can serve, when every status asked for shares one,
     * so a page of a rare status walks the few coupons that can have it instead of every
     * coupon in code order: exhausted implies a live use (a total limit is at least 1 and a
     * voucher's balance starts at 1 or more), so used and exhausted walk coupon_usage_used;
     * archived, expired, scheduled and disabled the mirror's partial indexes (009, 010). */
    const char *need = NULL;
    for (int i = 0; i < q[CQ_STATUS].n; i++) {
        const char *v = q[CQ_STATUS].v[i], *c = NULL;
        if (!strcmp(v, "used") || !strcmp(v, "exhausted"))
            c = " AND u.used > 0";
        else if (!strcmp(v, "archived"))
            c = " AND m.archived";
        else if (!strcmp(v, "expired"))
            c = " AND m.eff_expires <= $1::bigint";
        else if (!strcmp(v, "scheduled"))
            c = " AND m.eff_starts > $1::bigint";
        else if (!strcmp(v, "disabled"))
            c = " AND m.eff_disabled";
        if (!c || (i > 0 && need != c)) {
            need = NULL;
            break;
        }
        need = c;
    }
    if (need)
        rd_sbuf_addstr(&b->st->sql, need);
    rd_sbuf_addstr(&b->st->sql, ") x WHERE true");
    if (q[CQ_STATUS].n) {
        /* any of: a derived status, or used / unused */
        const char *st[RD_FILTER_MAX_VALUES];
        int nst = 0, used = 0, unused = 0;
        for (int i = 0; i < q[CQ_STATUS].n; i++) {
            const char *v = q[CQ_STATUS].v[i];
            if (!strcmp(v, "used"))
                used = 1;
            else if (!strcmp(v, "unused"))
                unused = 1;
            else
                st[nst++] = !strcmp(v, "valid") ? "active" : v;
        }
        rd_sbuf_addstr(&b->st->sql, " AND (false");
        if (nst)
            cond(b, " OR x.status = ANY($", array_param(b, st, nst, NULL), "::text[])");
        if (used)
            rd_sbuf_addstr(&b->st->sql, " OR x.used > 0");
        if (unused)
            rd_sbuf_addstr(&b->st->sql, " OR x.used = 0");
        rd_sbuf_addstr(&b->st->sql, ")");
    }
    if (shared)
        rd_sbuf_addstr(&b->st->sql,
                       !strcmp(shared, "true") ? " AND x.shares > 0" : " AND x.shares = 0");
    rd_sbuf_addstr(&b->st->sql, " ORDER BY x.code");
    return 0;
}

int rd_listing_build(struct rd_stmt *st, struct rd_query *q, long *limit, enum rd_listing which,
                     const char *query, int csv, int64_t now_ms, struct rd_verr *e)
{
    struct build b = {st, e};
    *limit = csv ? -1 : RD_PAGE_DEFAULT;
    int rc = which == RD_LIST_TRANSACTIONS ? build_transactions(&b, q, query, limit)
                                           : build_coupons(&b, q, query, limit, now_ms);
    if (rc < 0)
        return -1;
    if (*limit > 0) /* one row more than asked tells whether there is a next page */
        rd_sbuf_addf(&st->sql, " LIMIT %ld", *limit + 1);
    return 0;
}
