/* SPDX-License-Identifier: MIT
 *
 * Reads of the PostgreSQL ledger on the worker loops, through the worker's nonblocking
 * pool (pgpool.h): GET /v1/transactions, and GET /v1/redemptions/{id} once the Redis record
 * has expired.
 *
 * Pagination walks (txid, txn_id): the inserting transaction's id, then the transaction id.
 * Each page stops below the oldest transaction still running, so a row committed after a
 * cursor was handed out always sorts after it: pages neither skip nor repeat rows while the
 * shipper keeps inserting. Rows therefore come in ledger order; ts is the event time.
 *
 * JSON pages hold at most 1000 rows. CSV (Accept: text/csv) is streamed in chunks; the query
 * pauses whenever a chunk is waiting for the client, so an export of any size runs in
 * constant memory, and a client that goes away ends the query.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "http.h"
#include "shipper.h"
#include "rd/ledger.h"
#include "rd/log.h"
#include "rd/rdtime.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX     1000
#define CHUNK_BYTES  65536
/* times a filter may be given ("any of"): each value is a comparison in PostgreSQL */
#define RD_FILTER_MAX_VALUES 20

/*
 * A listing: what its query returns and how each column is written. Column 0 of every row is
 * the cursor (not shown); columns 1.. are named and typed here: 's' text, 'n' number, 't'
 * epoch milliseconds written as RFC 3339, 'j' JSON text written as is.
 */
struct column {
    const char *name;
    char type;
};
struct listing {
    const struct column *cols; /* ends with a NULL name */
    int no_cursor;             /* CSV without the cursor column (the first column is the key) */
};

static const struct column tx_cols[] = {{"txn_id", 's'},
                                        {"ts", 't'},
                                        {"kind", 's'},
                                        {"outcome", 's'},
                                        {"reason", 's'},
                                        {"code", 's'},
                                        {"campaign", 's'},
                                        {"user_id", 's'},
                                        {"order_id", 's'},
                                        {"ref_id", 's'},
                                        {"order_amount", 'n'},
                                        {"discount_amount", 'n'},
                                        {"paid_amount", 'n'},
                                        {"balance_after", 'n'},
                                        {"currency", 's'},
                                        {"client_ip", 's'},
                                        {"api_key_id", 's'},
                                        {"request_id", 's'},
                                        {NULL, 0}};
static const struct listing tx_listing = {tx_cols, 0};

static const struct column coupon_cols[] = {
    {"code", 's'},     {"kind", 's'},       {"status", 's'},
    {"campaign", 's'}, {"tags", 'j'},       {"used", 'n'},
    {"shares", 'n'},   {"created_at", 't'}, {"expires_at", 't'},
    {"balance", 'n'},  {"currency", 's'},   {"batch", 's'},
    {NULL, 0}};
static const struct listing coupon_listing = {coupon_cols, 0};

static const struct column code_cols[] = {{"code", 's'}, {NULL, 0}};
static const struct listing code_listing = {code_cols, 1};

enum { COL_CURSOR = 0, COL_FIRST = 1 };

#define SELECT_LIST                                                                                \
    "SELECT txid::text || '.' || txn_id, txn_id, (extract(epoch FROM ts) * 1000)::bigint, kind, "  \
    "outcome, "                                                                                    \
    "reason, code, campaign, user_id, order_id, ref_id, order_amount, discount_amount, "           \
    "paid_amount, balance_after, currency, host(client_ip), api_key_id, request_id "               \
    "FROM transactions"

/* ---- statement parameters ---------------------------------------------------------------- */

int rd_lread_param_owned(struct rd_req *r, char *v)
{
    struct rd_lread *lr = r->lr;
    if (lr->pgq.nparams >= RD_PGQ_MAXPARAMS) {
        free(v);
        lr->overflow = 1;
        return -1;
    }
    int i = lr->pgq.nparams++;
    lr->params[i] = v;
    lr->pgq.params[i] = v;
    return i + 1;
}

int rd_lread_param(struct rd_req *r, const char *v)
{
    char *copy = NULL;
    if (v && !(copy = strdup(v)))
        abort();
    if (!v) { /* SQL NULL */
        if (r->lr->pgq.nparams >= RD_PGQ_MAXPARAMS) {
            r->lr->overflow = 1;
            return -1;
        }
        int i = r->lr->pgq.nparams++;
        r->lr->params[i] = NULL;
        r->lr->pgq.params[i] = NULL;
        return i + 1;
    }
    return rd_lread_param_owned(r, copy);
}

/* Appends pre, parameter number n, then post: " AND code = $3". */
static void cond(struct rd_req *r, const char *pre, int n, const char *post)
{
    rd_sbuf_addf(&r->lr->sql, "%s%d%s", pre, n, post);
}

static int bad(struct rd_req *r, const char *field, const char *msg)
{
    struct rd_verr e;
    rd_verr_set(&e, field, "%s", msg);
    rd_reply_verr(r, &e);
    return -1;
}

/* ---- query parameters ------------------------------------------------------------------------
 *
 * A listing's parameters come from a fixed table. A filter may be given up to
 * RD_FILTER_MAX_VALUES times and means "any of these" (?kind=pay&kind=refund); it becomes one
 * statement parameter, an array, however many values it has. Every other parameter (dates,
 * limit, cursor) may be given once. Beyond that: 400 naming the parameter. */

struct qrule {
    const char *name;
    int many; /* a filter: any of up to RD_FILTER_MAX_VALUES values */
};

struct qvals {
    int n;
    const char *v[RD_FILTER_MAX_VALUES];
};

/* Parses r's query string and sorts its values by rule (vals[i] for rules[i]). */
static int gather(struct rd_req *r, const struct qrule *rules, struct qvals *vals)
{
    const char *why;
    if (rd_query_parse(rd_hreq_head(r->hr)->query, &r->lr->query, &why) != RD_OK)
        return bad(r, "query", why);
    const struct rd_query *q = &r->lr->query;
    for (int i = 0; i < q->n; i++) {
        const char *k = q->names[i], *v = q->values[i];
        int rule = -1;
        for (int j = 0; rules[j].name; j++)
            if (!strcmp(rules[j].name, k))
                rule = j;
        if (rule < 0)
            return bad(r, k, "unknown parameter");
        if (strlen(v) == 0 || strlen(v) > 128)
            return bad(r, k, "must be 1 to 128 printable characters");
        struct qvals *qv = &vals[rule];
        if (!rules[rule].many && qv->n == 1)
            return bad(r, k, "may be given once");
        if (qv->n == RD_FILTER_MAX_VALUES) {
            char msg[96];
            snprintf(msg, sizeof(msg), "may be given at most %d times (any of them matches)",
                     RD_FILTER_MAX_VALUES);
            return bad(r, k, msg);
        }
        qv->v[qv->n++] = v;
    }
    return 0;
}

/* The values of one filter as one array parameter; its number, or -1. */
static int array_param(struct rd_req *r, const char *const *v, int n, const char *suffix)
{
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    rd_pg_text_array(&b, v, n, suffix);
    return rd_lread_param_owned(r, b.buf); /* taken over */
}

/* A filter column = any of the values: " AND <col> = ANY($n::<type>[])". */
static void any_of(struct rd_req *r, const char *col, const char *op, const char *type,
                   const struct qvals *qv)
{
    if (qv->n == 0)
        return;
    char pre[96], post[32];
    snprintf(pre, sizeof(pre), " AND %s %s ANY($", col, op);
    snprintf(post, sizeof(post), "::%s[])", type);
    cond(r, pre, array_param(r, qv->v, qv->n, NULL), post);
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

/* Every value of qv must be in set; else 400 with msg. */
static int all_in(struct rd_req *r, const char *name, const struct qvals *qv,
                  const char *const *set, const char *msg)
{
    for (int i = 0; i < qv->n; i++)
        if (!in(qv->v[i], set))
            return bad(r, name, msg);
    return 0;
}

static int parse_limit(struct rd_req *r, const struct qvals *qv)
{
    if (qv->n == 0)
        return 0;
    char *end;
    long n = strtol(qv->v[0], &end, 10);
    if (*end || n < 1 || n > PAGE_MAX)
        return bad(r, "limit", "must be an integer from 1 to 1000");
    r->lr->limit = n;
    return 0;
}

/* A time parameter as RFC 3339 (ts) or epoch ms (ms); 0 if absent, -1 answered. */
static int time_param(struct rd_req *r, const char *name, const struct qvals *qv, int as_ms,
                      const char *pre, const char *post)
{
    if (qv->n == 0)
        return 0;
    int64_t ms;
    if (rd_time_parse(qv->v[0], &ms) < 0)
        return bad(r, name, "must be an RFC 3339 time");
    char buf[RD_TIME_BUFSZ];
    if (as_ms)
        snprintf(buf, sizeof(buf), "%lld", (long long)ms);
    else
        rd_time_format(ms, buf);
    cond(r, pre, rd_lread_param(r, buf), post);
    return 0;
}

/* ---- GET /v1/transactions ------------------------------------------------------------------ */

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

static int build_query(struct rd_req *r)
{
    static const char *const kinds[] = {"redeem",
                                        "reverse",
                                        "validate",
                                        "pay",
                                        "refund",
                                        "recharge",
                                        "share",
                                        "coupon_create",
                                        "coupon_update",
                                        "coupon_disable",
                                        "coupon_enable",
                                        "coupon_archive",
                                        NULL};
    static const char *const outcomes[] = {"accepted", "rejected", NULL};
    struct qvals q[TQ__COUNT] = {{0}};
    r->lr->ls = &tx_listing;
    r->lr->limit = r->lr->csv ? -1 : PAGE_DEFAULT;
    if (gather(r, tx_rules, q) < 0)
        return -1;
    rd_sbuf_addstr(&r->lr->sql,
                   SELECT_LIST " WHERE txid < pg_snapshot_xmin(pg_current_snapshot())");

    char codes[RD_FILTER_MAX_VALUES][RD_CODE_MAX + 1];
    const char *cv[RD_FILTER_MAX_VALUES];
    for (int i = 0; i < q[TQ_CODE].n; i++) {
        const char *v = q[TQ_CODE].v[i];
        if (rd_code_normalize(v, strlen(v), codes[i]) < 0)
            return bad(r, "code", "is not a valid coupon code");
        cv[i] = codes[i];
    }
    struct qvals qcodes = q[TQ_CODE];
    memcpy(qcodes.v, cv, sizeof(cv[0]) * (size_t)qcodes.n);
    for (int i = 0; i < q[TQ_IP].n; i++)
        if (!valid_ip_filter(q[TQ_IP].v[i]))
            return bad(r, "client_ip", "must be an IP address or a CIDR block");
    for (int i = 0; i < q[TQ_REASON].n; i++) {
        const char *v = q[TQ_REASON].v[i];
        if (rd_status_from_name(v) == RD_E_INTERNAL && strcmp(v, "internal") != 0)
            return bad(r, "reason", "is not an error code");
    }
    if (all_in(r, "kind", &q[TQ_KIND], kinds, "is not a transaction kind") < 0 ||
        all_in(r, "outcome", &q[TQ_OUTCOME], outcomes, "must be accepted or rejected") < 0 ||
        parse_limit(r, &q[TQ_LIMIT]) < 0)
        return -1;
    any_of(r, "code", "=", "text", &qcodes);
    any_of(r, "user_id", "=", "text", &q[TQ_USER]);
    any_of(r, "client_ip", "<<=", "inet", &q[TQ_IP]);
    any_of(r, "kind", "=", "text", &q[TQ_KIND]);
    any_of(r, "outcome", "=", "text", &q[TQ_OUTCOME]);
    any_of(r, "reason", "=", "text", &q[TQ_REASON]);
    if (time_param(r, "from", &q[TQ_FROM], 0, " AND ts >= $", "::timestamptz") < 0 ||
        time_param(r, "to", &q[TQ_TO], 0, " AND ts < $", "::timestamptz") < 0)
        return -1;
    if (q[TQ_CURSOR].n) {
        /* opaque to clients: "<txid>.<txn_id>" */
        const char *v = q[TQ_CURSOR].v[0];
        const char *dot = strchr(v, '.');
        size_t dl = dot ? (size_t)(dot - v) : 0;
        if (!dot || dl == 0 || dl > 20 || strspn(v, "0123456789") != dl || !dot[1] ||
            strspn(dot + 1, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(dot + 1))
            return bad(r, "cursor", "is not a cursor this service issued");
        char txid[24];
        snprintf(txid, sizeof(txid), "%.*s", (int)dl, v);
        cond(r, " AND (txid, txn_id) > ($", rd_lread_param(r, txid), "::xid8, ");
        cond(r, "$", rd_lread_param(r, dot + 1), ")");
    }
    rd_sbuf_addstr(&r->lr->sql, " ORDER BY txid, txn_id");
    if (r->lr->limit > 0) /* one row more than asked tells whether there is a next page */
        rd_sbuf_addf(&r->lr->sql, " LIMIT %ld", r->lr->limit + 1);
    return 0;
}

/* ---- JSON pages ------------------------------------------------------------------------ */

static void row_json(struct rd_req *r, const PGresult *row)
{
    const struct listing *ls = r->lr->ls;
    struct evbuffer *out = r->lr->chunk;
    evbuffer_add_printf(out, "%s{", r->lr->rows ? "," : "");
    for (int c = COL_FIRST; ls->cols[c - 1].name; c++) {
        const char *name = ls->cols[c - 1].name;
        char type = ls->cols[c - 1].type;
        struct rd_sbuf b;
        rd_sbuf_init(&b);
        rd_sbuf_add_jstr(&b, name, strlen(name));
        evbuffer_add(out, b.buf, b.len);
        evbuffer_add(out, ":", 1);
        if (PQgetisnull(row, 0, c)) {
            evbuffer_add(out, "null", 4);
        } else if (type == 't') {
            char buf[RD_TIME_BUFSZ];
            evbuffer_add_printf(out, "\"%s\"", rd_time_format(atoll(PQgetvalue(row, 0, c)), buf));
        } else if (type == 'n' || type == 'j') {
            evbuffer_add(out, PQgetvalue(row, 0, c), (size_t)PQgetlength(row, 0, c));
        } else {
            b.len = 0;
            rd_sbuf_add_jstr(&b, PQgetvalue(row, 0, c), (size_t)PQgetlength(row, 0, c));
            evbuffer_add(out, b.buf, b.len);
        }
        rd_sbuf_free(&b);
        evbuffer_add(out, ls->cols[c].name ? "," : "}", 1);
    }
}

/* ---- CSV (RFC 4180) -------------------------------------------------------------------- */

static void csv_field(struct evbuffer *out, const char *s, size_t len)
{
    if (strcspn(s, ",\"\r\n") >= len) {
        evbuffer_add(out, s, len);
        return;
    }
    evbuffer_add(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"')
            evbuffer_add(out, "\"\"", 2);
        else
            evbuffer_add(out, s + i, 1);
    }
    evbuffer_add(out, "\"", 1);
}

static void row_csv(struct rd_req *r, const PGresult *row)
{
    const struct listing *ls = r->lr->ls;
    for (int c = COL_FIRST; ls->cols[c - 1].name; c++) {
        if (c > COL_FIRST)
            evbuffer_add(r->lr->chunk, ",", 1);
        if (PQgetisnull(row, 0, c))
            continue;
        if (ls->cols[c - 1].type == 't') {
            char buf[RD_TIME_BUFSZ];
            evbuffer_add_printf(r->lr->chunk, "%s",
                                rd_time_format(atoll(PQgetvalue(row, 0, c)), buf));
        } else {
            csv_field(r->lr->chunk, PQgetvalue(row, 0, c), (size_t)PQgetlength(row, 0, c));
        }
    }
    /* the row's cursor, so an interrupted export can resume after it */
    if (!ls->no_cursor) {
        evbuffer_add(r->lr->chunk, ",", 1);
        csv_field(r->lr->chunk, PQgetvalue(row, 0, COL_CURSOR),
                  (size_t)PQgetlength(row, 0, COL_CURSOR));
    }
    evbuffer_add(r->lr->chunk, "\r\n", 2);
}

/* ---- streaming -------------------------------------------------------------------------- */

static void on_chunk_sent(void *arg)
{
    struct rd_req *r = arg;
    rd_pgq_resume(&r->lr->pgq);
}

/* Sends the chunk; 1 when the query is to pause until the client has taken it. */
static int send_chunk(struct rd_req *r)
{
    return rd_hreq_stream_chunk(r->hr, r->lr->chunk, on_chunk_sent, r) == 0;
}

static void end_stream(struct rd_req *r)
{
    rd_hreq_stream_end(r->hr);
    rd_req_free_streamed(r);
}

static void start_csv(struct rd_req *r)
{
    rd_hreq_add_header(r->hr, "Content-Type", "text/csv; charset=utf-8");
    rd_hreq_add_header(r->hr, "X-Request-Id", r->request_id);
    r->status = 200;
    rd_hreq_stream_start(r->hr, 200);
    r->lr->streaming = 1;
    for (int c = 0; r->lr->ls->cols[c].name; c++)
        evbuffer_add_printf(r->lr->chunk, "%s%s", c ? "," : "", r->lr->ls->cols[c].name);
    evbuffer_add_printf(r->lr->chunk, "%s\r\n", r->lr->ls->no_cursor ? "" : ",cursor");
}

static int on_row(struct rd_pgq *q, const PGresult *row)
{
    struct rd_req *r = q->arg;
    if (r->lr->limit > 0 && r->lr->rows >= r->lr->limit) {
        r->lr->rows++; /* the look-ahead row: there is a next page */
        return 0;
    }
    if (r->lr->csv) {
        if (!r->lr->streaming)
            start_csv(r);
        row_csv(r, row);
    } else {
        row_json(r, row);
    }
    snprintf(r->lr->last_cursor, sizeof(r->lr->last_cursor), "%s", PQgetvalue(row, 0, COL_CURSOR));
    r->lr->rows++;
    /* pause until the client has taken this chunk: constant memory for any export size */
    if (r->lr->csv && evbuffer_get_length(r->lr->chunk) >= CHUNK_BYTES)
        return send_chunk(r);
    return 0;
}

/* A read that failed, answered by why (all 503 with Retry-After: each is worth a retry). */
static void read_failed(struct rd_req *r, const struct rd_pgq *q, const char *err)
{
    const struct rd_config *cfg = r->w->cfg;
    switch (q->fail) {
    case RD_PGQ_E_QUEUE:
        rd_reply_error(r, RD_E_UNAVAILABLE, "too many ledger reads are waiting; retry shortly",
                       json_pack("{s:s, s:i}", "reason", "read_queue_full", "read_queue_ms",
                                 cfg->read_queue_ms));
        return;
    case RD_PGQ_E_TIMEOUT: {
        int limit = q->cls == RD_PGQ_EXPORT ? cfg->query_timeout_ms : cfg->read_timeout_ms;
        rd_warn("event=ledger_read_timeout req=%s path=\"%s\" limit_ms=%d", r->request_id, r->path,
                limit);
        char msg[128];
        snprintf(msg, sizeof(msg), "the ledger read took longer than its limit of %d ms", limit);
        rd_reply_error(r, RD_E_UNAVAILABLE, msg,
                       json_pack("{s:s, s:i}", "reason", "read_timeout", "limit_ms", limit));
        return;
    }
    default:
        rd_warn("event=ledger_query_failed req=%s err=\"%s\"", r->request_id, err);
        rd_reply_error(r, RD_E_UNAVAILABLE, "the ledger cannot be read right now", NULL);
        return;
    }
}

static void on_done(struct rd_pgq *q, int ok, const char *err)
{
    struct rd_req *r = q->arg;
    if (!ok) {
        if (r->lr->streaming) {
            /* mid-export: the reply cannot turn into an error any more; cutting the
             * connection (no final chunk) makes the truncation visible to the client */
            rd_warn("event=ledger_query_failed req=%s err=\"%s\" rows=%ld", r->request_id, err,
                    r->lr->rows);
            rd_hreq_abort(r->hr);
            rd_req_free_streamed(r);
            return;
        }
        read_failed(r, q, err);
        return;
    }
    if (r->lr->csv) {
        if (!r->lr->streaming)
            start_csv(r); /* no rows: the header alone */
        if (evbuffer_get_length(r->lr->chunk))
            send_chunk(r);
        end_stream(r);
        return;
    }
    int more = r->lr->limit > 0 && r->lr->rows > r->lr->limit;
    evbuffer_add_printf(r->lr->chunk,
                        "],\"has_more\":%s,\"next_cursor\":", more ? "true" : "false");
    if (more)
        evbuffer_add_printf(r->lr->chunk, "\"%s\"}", r->lr->last_cursor);
    else
        evbuffer_add_printf(r->lr->chunk, "null}");
    size_t len = evbuffer_get_length(r->lr->chunk);
    const char *body = (const char *)evbuffer_pullup(r->lr->chunk, -1);
    rd_reply_raw(r, 200, body, len);
}

/* The client went away while its read was queued or running: the query is cancelled in
 * PostgreSQL (not left running for minutes, holding a connection) and the request ends. */
static void on_gone(struct rd_hreq *h, void *arg)
{
    struct rd_req *r = arg;
    (void)h;
    rd_info("event=read_abandoned req=%s rows=%ld", r->request_id, r->lr->rows);
    rd_pgq_abandon(&r->lr->pgq);
    rd_req_abandon(r);
}

void rd_lread_new(struct rd_req *r)
{
    r->lr = calloc(1, sizeof(*r->lr));
    if (!r->lr)
        abort();
    rd_sbuf_init(&r->lr->sql);
}

/* Sends the statement in r->lr (or answers 500 if it could not be built). */
static void submit(struct rd_req *r, rd_pgq_row_cb *row_cb, rd_pgq_done_cb *done_cb)
{
    struct rd_lread *lr = r->lr;
    if (lr->overflow) {
        rd_error("event=too_many_sql_params req=%s max=%d", r->request_id, RD_PGQ_MAXPARAMS);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    lr->pgq.sql = lr->sql.buf;
    if (r->w->cfg->test_clock) { /* tests only: the read holds its connection this long */
        const char *sleep = rd_req_header(r, "X-Redeemd-Test-Pg-Sleep-Ms");
        lr->pgq.test_sleep_ms = sleep ? atoi(sleep) : 0;
    }
    lr->pgq.on_row = row_cb;
    lr->pgq.on_done = done_cb;
    lr->pgq.arg = r;
    rd_hreq_on_gone(r->hr, on_gone, r);
    rd_pgpool_submit(&r->w->pgpool, &lr->pgq);
}

/* Submits the listing query built in r->lr: JSON pages or a CSV stream. */
static void start_read(struct rd_req *r)
{
    r->lr->chunk = evbuffer_new();
    if (!r->lr->chunk)
        abort();
    if (!r->lr->csv)
        evbuffer_add_printf(r->lr->chunk, "{\"data\":[");
    submit(r, on_row, on_done);
}

static int wants_csv(const struct rd_req *r)
{
    const char *accept = rd_req_header(r, "Accept");
    return accept && strstr(accept, "text/csv") != NULL;
}

void rd_h_transactions(struct rd_req *r)
{
    rd_lread_new(r);
    r->lr->csv = wants_csv(r);
    /* a page of the ledger is a small read; an export is a long one */
    r->lr->pgq.cls = r->lr->csv ? RD_PGQ_EXPORT : RD_PGQ_LIGHT;
    if (build_query(r) < 0)
        return;
    start_read(r);
}

/* ---- GET /v1/coupons: the coupons mirror, with live figures from the ledger --------------- */

/* Per coupon: the mirror's definition (the Redis hash fields as written) and, from its ledger
 * rows, live uses (redemptions not reversed, payments not refunded in full), shares and
 * voucher money; the status is derived as rd_coupon_status() does. $1 is now (ms). */
#define COUPON_SELECT                                                                              \
    "SELECT x.code, x.code, x.kind, x.status, x.campaign, x.tags, x.used, x.shares, x.created, "   \
    "x.expires, x.balance, x.currency, x.batch_id FROM (SELECT m.code, y.kind, m.campaign, "       \
    "m.d_tags AS tags, u.used, u.shares, "                                                         \
    "(extract(epoch FROM m.created_at) * 1000)::bigint AS created, m.d_expires AS expires, "       \
    "m.d_currency AS currency, y.balance, m.batch_id, "                                            \
    "rd_coupon_state(m.archived, m.d_status, m.d_starts, m.d_expires, m.d_l_total, y.kind, "       \
    "u.used, y.balance, $1::bigint) AS status "                                                    \
    "FROM coupons m CROSS JOIN LATERAL rd_coupon_live(m.code) u CROSS JOIN LATERAL (SELECT "       \
    "coalesce(m.kind, 'discount') AS kind, CASE WHEN m.kind = 'voucher' THEN "                     \
    "m.d_bal + u.recharged - u.spent + u.refunded END AS balance) y WHERE true"

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

static int build_coupon_query(struct rd_req *r)
{
    static const char *const statuses[] = {"active",  "valid",    "scheduled", "exhausted",
                                           "expired", "disabled", "archived",  "used",
                                           "unused",  NULL};
    static const char *const kinds[] = {"discount", "voucher", NULL};
    struct qvals q[CQ__COUNT] = {{0}};
    r->lr->ls = &coupon_listing;
    r->lr->limit = r->lr->csv ? -1 : PAGE_DEFAULT;
    if (gather(r, coupon_rules, q) < 0)
        return -1;
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)r->now_ms);
    rd_lread_param(r, now); /* $1 */
    rd_sbuf_addstr(&r->lr->sql, COUPON_SELECT);

    if (all_in(r, "status", &q[CQ_STATUS], statuses,
               "must be active (or valid), scheduled, exhausted, expired, disabled, archived, "
               "used or unused") < 0 ||
        all_in(r, "kind", &q[CQ_KIND], kinds, "must be discount or voucher") < 0 ||
        parse_limit(r, &q[CQ_LIMIT]) < 0)
        return -1;
    char prefixes[RD_FILTER_MAX_VALUES][RD_CODE_MAX + 1], cursor[RD_CODE_MAX + 1];
    struct qvals pv = q[CQ_PREFIX];
    for (int i = 0; i < pv.n; i++) {
        if (code_param(pv.v[i], prefixes[i]) < 0)
            return bad(r, "prefix", "must be letters, digits and '-'");
        pv.v[i] = prefixes[i];
    }
    if (q[CQ_CURSOR].n && code_param(q[CQ_CURSOR].v[0], cursor) < 0)
        return bad(r, "cursor", "is not a cursor this service issued");
    const char *shared = q[CQ_SHARED].n ? q[CQ_SHARED].v[0] : NULL;
    if (shared && strcmp(shared, "true") != 0 && strcmp(shared, "false") != 0)
        return bad(r, "shared", "must be true or false");

    any_of(r, "y.kind", "=", "text", &q[CQ_KIND]);
    any_of(r, "m.campaign", "=", "text", &q[CQ_CAMPAIGN]);
    any_of(r, "m.batch_id", "=", "text", &q[CQ_BATCH]);
    if (q[CQ_TAG].n) /* any of the tags: jsonb ?| text[] */
        cond(r, " AND m.d_tags ?| $", array_param(r, q[CQ_TAG].v, q[CQ_TAG].n, NULL), "::text[]");
    if (pv.n)
        cond(r, " AND m.code LIKE ANY($", array_param(r, pv.v, pv.n, "%"), "::text[])");
    if (q[CQ_CURSOR].n)
        cond(r, " AND m.code > $", rd_lread_param(r, cursor), "");
    if (time_param(r, "created_from", &q[CQ_CREATED_FROM], 0, " AND m.created_at >= $",
                   "::timestamptz") < 0 ||
        time_param(r, "created_to", &q[CQ_CREATED_TO], 0, " AND m.created_at < $",
                   "::timestamptz") < 0 ||
        time_param(r, "expires_from", &q[CQ_EXPIRES_FROM], 1, " AND m.d_expires >= $", "::bigint") <
            0 ||
        time_param(r, "expires_to", &q[CQ_EXPIRES_TO], 1, " AND m.d_expires < $", "::bigint") < 0)
        return -1;
    rd_sbuf_addstr(&r->lr->sql, ") x WHERE true");
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
        rd_sbuf_addstr(&r->lr->sql, " AND (false");
        if (nst)
            cond(r, " OR x.status = ANY($", array_param(r, st, nst, NULL), "::text[])");
        if (used)
            rd_sbuf_addstr(&r->lr->sql, " OR x.used > 0");
        if (unused)
            rd_sbuf_addstr(&r->lr->sql, " OR x.used = 0");
        rd_sbuf_addstr(&r->lr->sql, ")");
    }
    if (shared)
        rd_sbuf_addstr(&r->lr->sql,
                       !strcmp(shared, "true") ? " AND x.shares > 0" : " AND x.shares = 0");
    rd_sbuf_addstr(&r->lr->sql, " ORDER BY x.code");
    if (r->lr->limit > 0)
        rd_sbuf_addf(&r->lr->sql, " LIMIT %ld", r->lr->limit + 1);
    return 0;
}

/* The codes of batch r->param, one per line, streamed as the listings are. */
void rd_lread_codes_csv(struct rd_req *r)
{
    struct rd_lread *lr = r->lr;
    for (int i = 0; i < lr->pgq.nparams; i++)
        free(lr->params[i]);
    memset(&lr->pgq, 0, sizeof(lr->pgq));
    lr->pgq.cls = RD_PGQ_EXPORT;
    lr->ls = &code_listing;
    lr->csv = 1;
    lr->limit = -1;
    lr->rows = 0;
    lr->sql.len = 0;
    rd_sbuf_addstr(&lr->sql,
                   "SELECT code, code FROM coupon_rows WHERE batch_id = $1 ORDER BY code");
    rd_lread_param(r, r->param);
    start_read(r);
}

void rd_h_coupons_list(struct rd_req *r)
{
    rd_lread_new(r);
    r->lr->csv = wants_csv(r);
    /* a page computes live figures per coupon: heavy, and kept off the lane of small reads */
    r->lr->pgq.cls = r->lr->csv ? RD_PGQ_EXPORT : RD_PGQ_HEAVY;
    if (build_coupon_query(r) < 0)
        return;
    start_read(r);
}

/* ---- single answers from the ledger ------------------------------------------------------ */

/* The end of a read whose row callback left the whole answer in r->body. */
static void on_object_done(struct rd_pgq *q, int ok, const char *err)
{
    struct rd_req *r = q->arg;
    if (!ok) {
        read_failed(r, q, err);
        return;
    }
    if (!r->body) {
        rd_reply_error(r, (enum rd_status)r->lr->missing, NULL, NULL);
        return;
    }
    if (r->lr->then) {
        r->lr->then(r);
        return;
    }
    json_t *o = r->body;
    r->body = NULL;
    rd_reply_json(r, r->lr->http ? r->lr->http : 200, o);
}

/* Runs r->lr->sql; on_row builds the answer; no row answers missing. */
void rd_lread_object(struct rd_req *r, rd_pgq_row_cb *row_cb, enum rd_status missing)
{
    r->lr->missing = (int)missing;
    submit(r, row_cb, on_object_done);
}

static int on_redemption_row(struct rd_pgq *q, const PGresult *row)
{
    struct rd_req *r = q->arg;
    if (r->lr->rows++ > 0)
        return 0;
    char buf[RD_TIME_BUFSZ];
    if (strcmp(PQgetvalue(row, 0, 9), "pay") == 0) {
        long long paid = atoll(PQgetvalue(row, 0, 10)), back = atoll(PQgetvalue(row, 0, 12));
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:I, s:s}", "id",
                              r->param, "kind", "pay", "code", PQgetvalue(row, 0, 0), "user_id",
                              PQgetvalue(row, 0, 1), "amount", (json_int_t)paid, "refunded",
                              (json_int_t)back, "currency", PQgetvalue(row, 0, 4), "status",
                              back >= paid ? "refunded"
                              : back > 0   ? "partially_refunded"
                                           : "active",
                              "created_at", rd_time_format(atoll(PQgetvalue(row, 0, 5)), buf),
                              "balance_after", (json_int_t)atoll(PQgetvalue(row, 0, 11)), "source",
                              "ledger");
        if (!PQgetisnull(row, 0, 8))
            json_object_set_new(o, "order_id", json_string(PQgetvalue(row, 0, 8)));
        r->body = o;
        return 0;
    }
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "id", r->param, "code", PQgetvalue(row, 0, 0),
        "user_id", PQgetvalue(row, 0, 1), "order_amount", (json_int_t)atoll(PQgetvalue(row, 0, 2)),
        "discount", (json_int_t)atoll(PQgetvalue(row, 0, 3)), "currency", PQgetvalue(row, 0, 4),
        "status", PQgetisnull(row, 0, 6) ? "active" : "reversed", "created_at",
        rd_time_format(atoll(PQgetvalue(row, 0, 5)), buf));
    if (!PQgetisnull(row, 0, 8))
        json_object_set_new(o, "order_id", json_string(PQgetvalue(row, 0, 8)));
    if (!PQgetisnull(row, 0, 6)) {
        json_object_set_new(o, "reversed_at",
                            json_string(rd_time_format(atoll(PQgetvalue(row, 0, 6)), buf)));
        json_object_set_new(o, "reversal_id", json_string(PQgetvalue(row, 0, 7)));
    }
    json_object_set_new(o, "source", json_string("ledger"));
    r->body = o; /* kept until done; freed with the request */
    return 0;
}

void rd_redemption_from_ledger(struct rd_req *r)
{
    rd_lread_new(r);
    rd_sbuf_addstr(
        &r->lr->sql,
        "SELECT t.code, t.user_id, t.order_amount, coalesce(t.discount_amount, 0), "
        "t.currency, (extract(epoch FROM t.ts) * 1000)::bigint, "
        "(extract(epoch FROM v.ts) * 1000)::bigint, v.txn_id, t.order_id, t.kind, "
        "t.paid_amount, t.balance_after, (SELECT coalesce(sum(f.paid_amount), 0) FROM "
        "transactions f WHERE f.ref_id = t.txn_id AND f.kind = 'refund' AND f.outcome = "
        "'accepted') FROM transactions t LEFT JOIN transactions v ON v.ref_id = t.txn_id "
        "AND v.kind = 'reverse' AND v.outcome = 'accepted' WHERE t.txn_id = $1 AND t.kind "
        "IN ('redeem', 'pay') AND t.outcome = 'accepted' LIMIT 1");
    rd_lread_param(r, r->param);
    rd_lread_object(r, on_redemption_row, RD_E_REDEMPTION_NOT_FOUND);
}

/* ---- GET /v1/stats ------------------------------------------------------------------------ */

/* rd_stats() (scripts/sql/005_stats.sql) builds the whole answer in PostgreSQL from the
 * coupons mirror and the ledger: the back office never scans Redis. */
static int on_stats_row(struct rd_pgq *q, const PGresult *row)
{
    struct rd_req *r = q->arg;
    json_t *o = r->lr->rows++ == 0 ? json_loads(PQgetvalue(row, 0, 0), 0, NULL) : NULL;
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    char buf[RD_TIME_BUFSZ];
    json_object_set_new(o, "as_of", json_string(rd_time_format(r->now_ms, buf)));
    /* entries not yet in PostgreSQL are not in these figures */
    json_object_set_new(o, "outbox_backlog", json_integer(rd_shipper_backlog()));
    r->body = o; /* kept until done; freed with the request */
    return 0;
}

void rd_h_stats(struct rd_req *r)
{
    rd_lread_new(r);
    r->lr->pgq.cls = RD_PGQ_HEAVY;
    rd_sbuf_addstr(&r->lr->sql, "SELECT rd_stats($1::bigint)::text");
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)r->now_ms);
    rd_lread_param(r, now);
    rd_lread_object(r, on_stats_row, RD_E_INTERNAL); /* rd_stats always returns a row */
}

/* ---- an archived coupon, from the mirror -------------------------------------------------- */

static int on_archived_row(struct rd_pgq *q, const PGresult *row)
{
    struct rd_req *r = q->arg;
    if (r->lr->rows++ > 0)
        return 0;
    json_t *def = json_loads(PQgetvalue(row, 0, 0), 0, NULL);
    const char *names[64], *values[64];
    size_t nl[64], vl[64], n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(def, k, v)
    {
        if (n < 64 && json_is_string(v)) {
            names[n] = k;
            nl[n] = strlen(k);
            values[n] = json_string_value(v);
            vl[n] = json_string_length(v);
            n++;
        }
    }
    struct rd_coupon *c = &r->coupon;
    rd_coupon_free(c);
    rd_coupon_init(c);
    if (!def || rd_coupon_from_hash(c, names, nl, values, vl, n) < 0) {
        json_decref(def);
        return 0; /* answered as not found */
    }
    json_decref(def);
    c->used = atoll(PQgetvalue(row, 0, 1));
    c->shares = atoll(PQgetvalue(row, 0, 2));
    c->loaded += atoll(PQgetvalue(row, 0, 3));
    c->spent = atoll(PQgetvalue(row, 0, 4));
    c->refunded = atoll(PQgetvalue(row, 0, 5));
    c->balance = c->loaded - c->spent + c->refunded;
    json_t *o = rd_coupon_to_json(c, r->now_ms);
    json_object_set_new(o, "status", json_string("archived"));
    json_object_set_new(o, "archived_at", rd_time_json(atoll(PQgetvalue(row, 0, 6))));
    json_object_set_new(o, "source", json_string("ledger"));
    r->body = o; /* kept until done; freed with the request */
    return 0;
}

void rd_coupon_from_ledger(struct rd_req *r)
{
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->sql,
                   "SELECT m.definition::text, u.used, u.shares, u.recharged, u.spent, u.refunded, "
                   "(m.definition->>'archived_at')::bigint FROM coupons m CROSS JOIN LATERAL "
                   "rd_coupon_live(m.code) u WHERE m.code = $1 AND m.definition ? 'archived_at'");
    rd_lread_param(r, r->code);
    rd_lread_object(r, on_archived_row, RD_E_COUPON_NOT_FOUND);
}
