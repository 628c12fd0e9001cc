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

int rd_lread_param_owned(struct rd_req *r, char *v)
{
    if (r->lr->nowned >= (int)(sizeof(r->lr->owned) / sizeof(r->lr->owned[0])))
        abort();
    r->lr->owned[r->lr->nowned++] = v;
    int i = r->lr->pgq.nparams++;
    r->lr->pgq.params[i] = v;
    return i + 1;
}

static int add_param(struct rd_req *r, const char *v)
{
    int i = r->lr->pgq.nparams++;
    snprintf(r->lr->pbuf[i], sizeof(r->lr->pbuf[i]), "%s", v);
    r->lr->pgq.params[i] = r->lr->pbuf[i];
    return i + 1;
}

/* Appends pre, the parameter number n, then post: " AND code = $3". */
static void cond(struct rd_req *r, const char *pre, int n, const char *post)
{
    size_t len = strlen(r->lr->sql);
    snprintf(r->lr->sql + len, sizeof(r->lr->sql) - len, "%s%d%s", pre, n, post);
}

static void sql_add(struct rd_req *r, const char *text)
{
    size_t len = strlen(r->lr->sql);
    snprintf(r->lr->sql + len, sizeof(r->lr->sql) - len, "%s", text);
}

static int bad(struct rd_req *r, const char *field, const char *msg)
{
    struct rd_verr e;
    rd_verr_set(&e, field, "%s", msg);
    rd_reply_verr(r, &e);
    return -1;
}

/* A client ip filter: an address, or a CIDR block. */
static int valid_ip_filter(const char *s)
{
    char buf[64];
    unsigned char addr[16];
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

static int build_query(struct rd_req *r)
{
    static const char *const params[] = {"code",    "user_id", "client_ip", "kind",
                                         "outcome", "reason",  "from",      "to",
                                         "limit",   "cursor",  NULL};
    static const char *const kinds[] = {
        "redeem",        "reverse",       "validate",       "pay",           "refund", "recharge",
        "coupon_create", "coupon_update", "coupon_disable", "coupon_enable", NULL};
    static const char *const outcomes[] = {"accepted", "rejected", NULL};
    const char *uri = evhttp_request_get_uri(r->ev), *q = strchr(uri, '?');
    r->lr->query = calloc(1, sizeof(*r->lr->query));
    if (!r->lr->query)
        abort();
    TAILQ_INIT(r->lr->query);
    if (q && evhttp_parse_query_str(q + 1, r->lr->query) < 0)
        return bad(r, "query", "the query string cannot be parsed");
    r->lr->ls = &tx_listing;
    snprintf(r->lr->sql, sizeof(r->lr->sql),
             SELECT_LIST " WHERE txid < pg_snapshot_xmin(pg_current_snapshot())");
    r->lr->limit = r->lr->csv ? -1 : PAGE_DEFAULT;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, r->lr->query, next)
    {
        const char *k = kv->key, *v = kv->value;
        if (!in(k, params))
            return bad(r, k, "unknown parameter");
        if (strlen(v) == 0 || strlen(v) > 128 || rd_str_has_ctl(v, strlen(v)))
            return bad(r, k, "must be 1 to 128 printable characters");
        if (!strcmp(k, "code")) {
            char code[RD_CODE_MAX + 1];
            if (rd_code_normalize(v, strlen(v), code) < 0)
                return bad(r, k, "is not a valid coupon code");
            cond(r, " AND code = $", add_param(r, code), "");
        } else if (!strcmp(k, "user_id")) {
            cond(r, " AND user_id = $", add_param(r, v), "");
        } else if (!strcmp(k, "client_ip")) {
            if (!valid_ip_filter(v))
                return bad(r, k, "must be an IP address or a CIDR block");
            cond(r, " AND client_ip <<= $", add_param(r, v), "::inet");
        } else if (!strcmp(k, "kind")) {
            if (!in(v, kinds))
                return bad(r, k, "is not a transaction kind");
            cond(r, " AND kind = $", add_param(r, v), "");
        } else if (!strcmp(k, "outcome")) {
            if (!in(v, outcomes))
                return bad(r, k, "must be accepted or rejected");
            cond(r, " AND outcome = $", add_param(r, v), "");
        } else if (!strcmp(k, "reason")) {
            if (rd_status_from_name(v) == RD_E_INTERNAL && strcmp(v, "internal") != 0)
                return bad(r, k, "is not an error code");
            cond(r, " AND reason = $", add_param(r, v), "");
        } else if (!strcmp(k, "from") || !strcmp(k, "to")) {
            int64_t ms;
            if (rd_time_parse(v, &ms) < 0)
                return bad(r, k, "must be an RFC 3339 time");
            char buf[RD_TIME_BUFSZ];
            cond(r, !strcmp(k, "from") ? " AND ts >= $" : " AND ts < $",
                 add_param(r, rd_time_format(ms, buf)), "::timestamptz");
        } else if (!strcmp(k, "limit")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > PAGE_MAX)
                return bad(r, k, "must be an integer from 1 to 1000");
            r->lr->limit = n;
        } else if (!strcmp(k, "cursor")) {
            /* opaque to clients: "<txid>.<txn_id>" */
            const char *dot = strchr(v, '.');
            size_t dl = dot ? (size_t)(dot - v) : 0;
            if (!dot || dl == 0 || dl > 20 || strspn(v, "0123456789") != dl || !dot[1] ||
                strspn(dot + 1, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(dot + 1))
                return bad(r, k, "is not a cursor this service issued");
            char txid[24];
            snprintf(txid, sizeof(txid), "%.*s", (int)dl, v);
            cond(r, " AND (txid, txn_id) > ($", add_param(r, txid), "::xid8, ");
            cond(r, "$", add_param(r, dot + 1), ")");
        }
    }
    size_t len = strlen(r->lr->sql);
    snprintf(r->lr->sql + len, sizeof(r->lr->sql) - len, " ORDER BY txid, txn_id");
    if (r->lr->limit > 0) /* one row more than asked tells whether there is a next page */
        cond(r, " LIMIT ", (int)r->lr->limit + 1, "");
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

static void on_client_close(struct evhttp_connection *con, void *arg);

static void on_chunk_sent(struct evhttp_connection *con, void *arg)
{
    struct rd_req *r = arg;
    (void)con;
    rd_pgq_resume(&r->lr->pgq);
}

static int send_chunk(struct rd_req *r)
{
    if (!evhttp_request_get_connection(r->ev))
        return 0;
    evhttp_send_reply_chunk_with_cb(r->ev, r->lr->chunk, on_chunk_sent, r);
    return 1;
}

static void end_stream(struct rd_req *r)
{
    struct evhttp_connection *con = evhttp_request_get_connection(r->ev);
    if (con)
        evhttp_connection_set_closecb(con, NULL, NULL);
    /* with the client gone evcon is NULL and this only frees the request (evhttp 2.1.12) */
    evhttp_send_reply_end(r->ev);
    rd_req_free_streamed(r);
}

static void start_csv(struct rd_req *r)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    evhttp_add_header(h, "Content-Type", "text/csv; charset=utf-8");
    evhttp_add_header(h, "X-Request-Id", r->request_id);
    r->status = 200;
    evhttp_send_reply_start(r->ev, 200, "OK");
    r->lr->streaming = 1;
    struct evhttp_connection *con = evhttp_request_get_connection(r->ev);
    if (con)
        evhttp_connection_set_closecb(con, on_client_close, r);
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

static void on_done(struct rd_pgq *q, int ok, const char *err)
{
    struct rd_req *r = q->arg;
    if (!ok) {
        rd_warn("event=ledger_query_failed req=%s err=\"%s\"", r->request_id, err);
        if (r->lr->streaming) {
            /* mid-export: the reply cannot turn into an error any more; cutting the
             * connection (no final chunk) makes the truncation visible to the client */
            struct evhttp_connection *con = evhttp_request_get_connection(r->ev);
            if (con) {
                evhttp_connection_set_closecb(con, NULL, NULL);
                evhttp_connection_free(con); /* frees the request with it */
            } else {
                evhttp_send_reply_end(r->ev);
            }
            rd_req_free_streamed(r);
            return;
        }
        rd_reply_error(r, RD_E_UNAVAILABLE, "the ledger cannot be read right now", NULL);
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
    char *body = malloc(len + 1);
    if (!body)
        abort();
    evbuffer_remove(r->lr->chunk, body, len);
    body[len] = '\0';
    rd_reply_raw(r, 200, body, len);
    free(body);
}

static void on_client_close(struct evhttp_connection *con, void *arg)
{
    struct rd_req *r = arg;
    (void)con;
    rd_info("event=export_abandoned req=%s rows=%ld", r->request_id, r->lr->rows);
    rd_pgq_abandon(&r->lr->pgq);
    evhttp_send_reply_end(r->ev); /* detached by evhttp: this frees it */
    rd_req_free_streamed(r);
}

void rd_lread_new(struct rd_req *r)
{
    r->lr = calloc(1, sizeof(*r->lr));
    if (!r->lr)
        abort();
}

/* Submits the listing query built in r->lr: JSON pages or a CSV stream. */
static void start_read(struct rd_req *r)
{
    r->lr->chunk = evbuffer_new();
    if (!r->lr->chunk)
        abort();
    if (!r->lr->csv)
        evbuffer_add_printf(r->lr->chunk, "{\"data\":[");
    r->lr->pgq.sql = r->lr->sql;
    r->lr->pgq.on_row = on_row;
    r->lr->pgq.on_done = on_done;
    r->lr->pgq.arg = r;
    rd_pgpool_submit(&r->w->pgpool, &r->lr->pgq);
}

void rd_h_transactions(struct rd_req *r)
{
    rd_lread_new(r);
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Accept");
    r->lr->csv = accept && strstr(accept, "text/csv") != NULL;
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

static int build_coupon_query(struct rd_req *r)
{
    static const char *const params[] = {
        "status",       "kind",       "campaign", "tag",   "prefix", "created_from", "created_to",
        "expires_from", "expires_to", "shared",   "limit", "cursor", "batch",        NULL};
    static const char *const statuses[] = {"active",  "valid",    "scheduled", "exhausted",
                                           "expired", "disabled", "archived",  "used",
                                           "unused",  NULL};
    static const char *const kinds[] = {"discount", "voucher", NULL};
    const char *uri = evhttp_request_get_uri(r->ev), *q = strchr(uri, '?');
    r->lr->ls = &coupon_listing;
    r->lr->query = calloc(1, sizeof(*r->lr->query));
    if (!r->lr->query)
        abort();
    TAILQ_INIT(r->lr->query);
    if (q && evhttp_parse_query_str(q + 1, r->lr->query) < 0)
        return bad(r, "query", "the query string cannot be parsed");
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)r->now_ms);
    add_param(r, now); /* $1 */
    snprintf(r->lr->sql, sizeof(r->lr->sql), "%s", COUPON_SELECT);
    const char *status = NULL, *shared = NULL;
    r->lr->limit = r->lr->csv ? -1 : PAGE_DEFAULT;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, r->lr->query, next)
    {
        const char *k = kv->key, *v = kv->value;
        if (!in(k, params))
            return bad(r, k, "unknown parameter");
        if (strlen(v) == 0 || strlen(v) > 128 || rd_str_has_ctl(v, strlen(v)))
            return bad(r, k, "must be 1 to 128 printable characters");
        if (!strcmp(k, "status")) {
            if (!in(v, statuses))
                return bad(r, k,
                           "must be active (or valid), scheduled, exhausted, expired, disabled, "
                           "archived, used or unused");
            status = v;
        } else if (!strcmp(k, "kind")) {
            if (!in(v, kinds))
                return bad(r, k, "must be discount or voucher");
            cond(r, " AND y.kind = $", add_param(r, v), "");
        } else if (!strcmp(k, "campaign")) {
            cond(r, " AND m.campaign = $", add_param(r, v), "");
        } else if (!strcmp(k, "batch")) {
            cond(r, " AND m.batch_id = $", add_param(r, v), "");
        } else if (!strcmp(k, "tag")) {
            cond(r, " AND m.d_tags ? $", add_param(r, v), "");
        } else if (!strcmp(k, "prefix") || !strcmp(k, "cursor")) {
            /* codes are A-Z 0-9 '-': nothing in them is special to LIKE */
            char code[RD_CODE_MAX + 1];
            size_t n = strlen(v);
            if (n > RD_CODE_MAX || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                             "0123456789-") != n)
                return bad(r, k,
                           !strcmp(k, "prefix") ? "must be letters, digits and '-'"
                                                : "is not a cursor this service issued");
            for (size_t i = 0; i <= n; i++)
                code[i] = (v[i] >= 'a' && v[i] <= 'z') ? (char)(v[i] - 32) : v[i];
            if (!strcmp(k, "prefix"))
                cond(r, " AND m.code LIKE $", add_param(r, code), " || '%'");
            else
                cond(r, " AND m.code > $", add_param(r, code), "");
        } else if (!strcmp(k, "created_from") || !strcmp(k, "created_to")) {
            int64_t ms;
            if (rd_time_parse(v, &ms) < 0)
                return bad(r, k, "must be an RFC 3339 time");
            char buf[RD_TIME_BUFSZ];
            cond(r, !strcmp(k, "created_from") ? " AND m.created_at >= $" : " AND m.created_at < $",
                 add_param(r, rd_time_format(ms, buf)), "::timestamptz");
        } else if (!strcmp(k, "expires_from") || !strcmp(k, "expires_to")) {
            int64_t ms;
            if (rd_time_parse(v, &ms) < 0)
                return bad(r, k, "must be an RFC 3339 time");
            char buf[24];
            snprintf(buf, sizeof(buf), "%lld", (long long)ms);
            cond(r, !strcmp(k, "expires_from") ? " AND m.d_expires >= $" : " AND m.d_expires < $",
                 add_param(r, buf), "::bigint");
        } else if (!strcmp(k, "shared")) {
            if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
                return bad(r, k, "must be true or false");
            shared = v;
        } else if (!strcmp(k, "limit")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > PAGE_MAX)
                return bad(r, k, "must be an integer from 1 to 1000");
            r->lr->limit = n;
        }
    }
    sql_add(r, ") x WHERE true");
    if (status && !strcmp(status, "used"))
        sql_add(r, " AND x.used > 0");
    else if (status && !strcmp(status, "unused"))
        sql_add(r, " AND x.used = 0");
    else if (status)
        cond(r, " AND x.status = $", add_param(r, !strcmp(status, "valid") ? "active" : status),
             "");
    if (shared)
        sql_add(r, !strcmp(shared, "true") ? " AND x.shares > 0" : " AND x.shares = 0");
    sql_add(r, " ORDER BY x.code");
    if (r->lr->limit > 0)
        cond(r, " LIMIT ", (int)r->lr->limit + 1, "");
    return 0;
}

int rd_lread_param(struct rd_req *r, const char *v)
{
    return add_param(r, v);
}

/* The codes of batch r->param, one per line, streamed as the listings are. */
void rd_lread_codes_csv(struct rd_req *r)
{
    struct rd_lread *lr = r->lr;
    memset(&lr->pgq, 0, sizeof(lr->pgq));
    lr->ls = &code_listing;
    lr->csv = 1;
    lr->limit = -1;
    lr->rows = 0;
    snprintf(lr->sql, sizeof(lr->sql),
             "SELECT code, code FROM coupon_rows WHERE batch_id = $1 ORDER BY code");
    add_param(r, r->param);
    start_read(r);
}

void rd_h_coupons_list(struct rd_req *r)
{
    rd_lread_new(r);
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Accept");
    r->lr->csv = accept && strstr(accept, "text/csv") != NULL;
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
        rd_warn("event=ledger_query_failed req=%s err=\"%s\"", r->request_id, err);
        rd_reply_error(r, RD_E_UNAVAILABLE, "the ledger cannot be read right now", NULL);
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
    r->lr->pgq.sql = r->lr->sql;
    r->lr->pgq.on_row = row_cb;
    r->lr->pgq.on_done = on_object_done;
    r->lr->pgq.arg = r;
    rd_pgpool_submit(&r->w->pgpool, &r->lr->pgq);
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
    snprintf(r->lr->sql, sizeof(r->lr->sql),
             "SELECT t.code, t.user_id, t.order_amount, coalesce(t.discount_amount, 0), "
             "t.currency, (extract(epoch FROM t.ts) * 1000)::bigint, "
             "(extract(epoch FROM v.ts) * 1000)::bigint, v.txn_id, t.order_id, t.kind, "
             "t.paid_amount, t.balance_after, (SELECT coalesce(sum(f.paid_amount), 0) FROM "
             "transactions f WHERE f.ref_id = t.txn_id AND f.kind = 'refund' AND f.outcome = "
             "'accepted') FROM transactions t LEFT JOIN transactions v ON v.ref_id = t.txn_id "
             "AND v.kind = 'reverse' AND v.outcome = 'accepted' WHERE t.txn_id = $1 AND t.kind "
             "IN ('redeem', 'pay') AND t.outcome = 'accepted' LIMIT 1");
    add_param(r, r->param);
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
    snprintf(r->lr->sql, sizeof(r->lr->sql), "SELECT rd_stats($1::bigint)::text");
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)r->now_ms);
    add_param(r, now);
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
    snprintf(r->lr->sql, sizeof(r->lr->sql),
             "SELECT m.definition::text, u.used, u.shares, u.recharged, u.spent, u.refunded, "
             "(m.definition->>'archived_at')::bigint FROM coupons m CROSS JOIN LATERAL "
             "rd_coupon_live(m.code) u WHERE m.code = $1 AND m.definition ? 'archived_at'");
    add_param(r, r->code);
    rd_lread_object(r, on_archived_row, RD_E_COUPON_NOT_FOUND);
}
