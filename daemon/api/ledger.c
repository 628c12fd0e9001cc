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

#include "api/api.h"
#include "jobs/shipper.h"
#include "rd/ledger.h"
#include "rd/listing.h"
#include "rd/log.h"
#include "rd/rdtime.h"

#define CHUNK_BYTES 65536

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
                                        {"peer_ip", 's'},
                                        {"session_id", 's'},
                                        {"device_id", 's'},
                                        {"email_hash", 's'},
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

/* ---- statement parameters ---------------------------------------------------------------- */

int rd_lread_param_owned(struct rd_req *r, char *v)
{
    return rd_stmt_param_owned(&r->lr->st, v);
}

int rd_lread_param(struct rd_req *r, const char *v)
{
    return rd_stmt_param(&r->lr->st, v);
}

/* ---- rows ------------------------------------------------------------------------------ */

/* A row is written into r->lr->row (kept for the next row), then into the chunk at once. */

static void row_json(struct rd_req *r, const PGresult *row)
{
    const struct listing *ls = r->lr->ls;
    struct rd_sbuf *b = &r->lr->row;
    b->len = 0;
    rd_sbuf_add(b, r->lr->rows ? ",{" : "{", r->lr->rows ? 2 : 1);
    for (int c = COL_FIRST; ls->cols[c - 1].name; c++) {
        const char *name = ls->cols[c - 1].name;
        char type = ls->cols[c - 1].type;
        rd_sbuf_add_jstr(b, name, strlen(name));
        rd_sbuf_add(b, ":", 1);
        if (PQgetisnull(row, 0, c)) {
            rd_sbuf_add(b, "null", 4);
        } else if (type == 't') {
            char buf[RD_TIME_BUFSZ];
            rd_sbuf_addf(b, "\"%s\"", rd_time_format(atoll(PQgetvalue(row, 0, c)), buf));
        } else if (type == 'n' || type == 'j') {
            rd_sbuf_add(b, PQgetvalue(row, 0, c), (size_t)PQgetlength(row, 0, c));
        } else {
            rd_sbuf_add_jstr(b, PQgetvalue(row, 0, c), (size_t)PQgetlength(row, 0, c));
        }
        rd_sbuf_add(b, ls->cols[c].name ? "," : "}", 1);
    }
    evbuffer_add(r->lr->chunk, b->buf, b->len);
}

/* RFC 4180, with the row's cursor last so that an interrupted export can resume after it. */
static void row_csv(struct rd_req *r, const PGresult *row)
{
    const struct listing *ls = r->lr->ls;
    struct rd_sbuf *b = &r->lr->row;
    b->len = 0;
    for (int c = COL_FIRST; ls->cols[c - 1].name; c++) {
        if (c > COL_FIRST)
            rd_sbuf_add(b, ",", 1);
        if (PQgetisnull(row, 0, c))
            continue;
        if (ls->cols[c - 1].type == 't') {
            char buf[RD_TIME_BUFSZ];
            rd_sbuf_addstr(b, rd_time_format(atoll(PQgetvalue(row, 0, c)), buf));
        } else {
            rd_csv_field(b, PQgetvalue(row, 0, c), (size_t)PQgetlength(row, 0, c));
        }
    }
    if (!ls->no_cursor) {
        rd_sbuf_add(b, ",", 1);
        rd_csv_field(b, PQgetvalue(row, 0, COL_CURSOR), (size_t)PQgetlength(row, 0, COL_CURSOR));
    }
    rd_sbuf_add(b, "\r\n", 2);
    evbuffer_add(r->lr->chunk, b->buf, b->len);
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
    rd_api(r);                         /* the API state frees the read with the request */
    r->lr = calloc(1, sizeof(*r->lr)); /* a zeroed statement and row buffer are empty ones */
    if (!r->lr)
        abort();
}

/* Sends the statement in r->lr (or answers 500 if it could not be built). */
static void submit(struct rd_req *r, rd_pgq_row_cb *row_cb, rd_pgq_done_cb *done_cb)
{
    struct rd_lread *lr = r->lr;
    if (lr->st.overflow) {
        rd_error("event=too_many_sql_params req=%s max=%d", r->request_id, RD_STMT_MAXPARAMS);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    _Static_assert(RD_STMT_MAXPARAMS <= RD_PGQ_MAXPARAMS, "a statement must fit a query");
    lr->pgq.sql = lr->st.sql.buf;
    lr->pgq.nparams = lr->st.nparams;
    for (int i = 0; i < lr->st.nparams; i++)
        lr->pgq.params[i] = lr->st.params[i];
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

/* Builds listing which from the query string and starts it; 400 naming the parameter. */
static void list(struct rd_req *r, enum rd_listing which)
{
    struct rd_verr e;
    if (rd_listing_build(&r->lr->st, &r->lr->query, &r->lr->limit, which,
                         rd_hreq_head(r->hr)->query, r->lr->csv, r->now_ms, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    start_read(r);
}

void rd_h_transactions(struct rd_req *r)
{
    rd_lread_new(r);
    r->lr->ls = &tx_listing;
    r->lr->csv = wants_csv(r);
    /* a page of the ledger is a small read; an export is a long one */
    r->lr->pgq.cls = r->lr->csv ? RD_PGQ_EXPORT : RD_PGQ_LIGHT;
    list(r, RD_LIST_TRANSACTIONS);
}

/* ---- GET /v1/coupons: the coupons mirror, with live figures from the ledger --------------- */

/* The codes of batch r->param, one per line, streamed as the listings are. */
void rd_lread_codes_csv(struct rd_req *r)
{
    struct rd_lread *lr = r->lr;
    rd_stmt_free(&lr->st);
    memset(&lr->pgq, 0, sizeof(lr->pgq));
    lr->pgq.cls = RD_PGQ_EXPORT;
    lr->ls = &code_listing;
    lr->csv = 1;
    lr->limit = -1;
    lr->rows = 0;
    rd_sbuf_addstr(&lr->st.sql,
                   "SELECT code, code FROM coupon_rows WHERE batch_id = $1 ORDER BY code");
    rd_lread_param(r, r->param);
    start_read(r);
}

void rd_h_coupons_list(struct rd_req *r)
{
    rd_lread_new(r);
    r->lr->ls = &coupon_listing;
    r->lr->csv = wants_csv(r);
    /* a page computes live figures per coupon: heavy, and kept off the lane of small reads */
    r->lr->pgq.cls = r->lr->csv ? RD_PGQ_EXPORT : RD_PGQ_HEAVY;
    list(r, RD_LIST_COUPONS);
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

/* Runs r->lr->st; on_row builds the answer; no row answers missing. */
void rd_lread_object(struct rd_req *r, rd_pgq_row_cb *row_cb, enum rd_status missing)
{
    r->lr->missing = (int)missing;
    submit(r, row_cb, on_object_done);
}

/* ---- a use (redemption or payment) from its ledger row -------------------------------------- */

static const char *val(const PGresult *row, int col)
{
    return PQgetisnull(row, 0, col) ? "" : PQgetvalue(row, 0, col);
}

static int64_t num(const PGresult *row, int col, int64_t none)
{
    return PQgetisnull(row, 0, col) ? none : atoll(PQgetvalue(row, 0, col));
}

/* Facts of the use, and what the ledger says was given back of it (the mark in Redis, read
 * before, wins: it also knows what is not shipped yet). */
static int on_use_row(struct rd_pgq *q, const PGresult *row)
{
    struct rd_req *r = q->arg;
    struct rd_use *x = rd_api(r)->use;
    if (r->lr->rows++ > 0)
        return 0;
    x->from_ledger = 1;
    x->pay = strcmp(val(row, 0), "pay") == 0;
    snprintf(x->code, sizeof(x->code), "%s", val(row, 1));
    snprintf(x->user, sizeof(x->user), "%s", val(row, 2));
    snprintf(x->order, sizeof(x->order), "%s", val(row, 3));
    snprintf(x->currency, sizeof(x->currency), "%s", val(row, 4));
    x->created_ms = num(row, 5, 0);
    x->amount = x->pay ? num(row, 8, 0) : num(row, 6, 0);
    x->discount = num(row, 7, 0);
    x->balance_after = num(row, 9, 0);
    snprintf(x->campaign, sizeof(x->campaign), "%s", val(row, 10));
    snprintf(x->day, sizeof(x->day), "%s", val(row, 11));
    snprintf(x->week, sizeof(x->week), "%s", val(row, 12));
    if (!*x->given) {
        if (!x->pay && !PQgetisnull(row, 0, 13)) {
            snprintf(x->given, sizeof(x->given), "reversed");
            x->given_at = num(row, 13, 0);
            snprintf(x->given_by, sizeof(x->given_by), "%s", val(row, 14));
        } else if (x->pay) {
            x->refunded = num(row, 15, 0);
            if (x->refunded > 0)
                snprintf(x->given, sizeof(x->given), "%s",
                         x->refunded >= x->amount ? "refunded" : "partially_refunded");
        }
    }
    r->body = json_object(); /* a row came: then() runs */
    return 0;
}

void rd_use_from_ledger(struct rd_req *r, void (*then)(struct rd_req *r))
{
    rd_lread_new(r);
    rd_sbuf_addstr(
        &r->lr->st.sql,
        "SELECT t.kind, t.code, t.user_id, t.order_id, t.currency, "
        "(extract(epoch FROM t.ts) * 1000)::bigint, t.order_amount, t.discount_amount, "
        "t.paid_amount, t.balance_after, t.campaign, t.day_index, t.week_index, "
        "(extract(epoch FROM v.ts) * 1000)::bigint, v.txn_id, (SELECT sum(f.paid_amount) FROM "
        "transactions f WHERE f.ref_id = t.txn_id AND f.kind = 'refund' AND f.outcome = "
        "'accepted') FROM transactions t LEFT JOIN transactions v ON v.ref_id = t.txn_id "
        "AND v.kind = 'reverse' AND v.outcome = 'accepted' WHERE t.txn_id = $1 AND t.kind "
        "IN ('redeem', 'pay') AND t.outcome = 'accepted' LIMIT 1");
    rd_lread_param(r, r->param);
    json_decref(r->body); /* read already (a refund's amount); a row puts {} there */
    r->body = NULL;
    r->lr->then = then;
    rd_lread_object(r, on_use_row, RD_E_REDEMPTION_NOT_FOUND);
}

/* The first answer again, from the ledger row of a use whose outbox entry is shipped. */
static int on_replay_row(struct rd_pgq *q, const PGresult *row)
{
    struct rd_req *r = q->arg;
    if (r->lr->rows++ > 0)
        return 0;
    int pay = strcmp(val(row, 0), "pay") == 0;
    struct rd_use_answer x = {
        r->lr->id,
        val(row, 1),
        val(row, 2),
        val(row, 4),
        val(row, 3),
        num(row, 5, 0),
        pay ? num(row, 8, 0) : num(row, 6, 0),
        num(row, 7, 0),
        num(row, 9, 0),
        {num(row, 10, -1), num(row, 11, -1), num(row, 12, -1), num(row, 13, -1)}};
    r->body = pay ? rd_pay_answer_json(&x) : rd_redeem_answer_json(&x);
    return 0;
}

void rd_use_replay_from_ledger(struct rd_req *r, const char *id, int pay)
{
    rd_lread_new(r);
    snprintf(r->lr->id, sizeof(r->lr->id), "%s", id);
    json_decref(r->body); /* the answer goes there */
    r->body = NULL;
    rd_sbuf_addstr(&r->lr->st.sql,
                   "SELECT kind, code, user_id, order_id, currency, "
                   "(extract(epoch FROM ts) * 1000)::bigint, order_amount, discount_amount, "
                   "paid_amount, balance_after, (details->'remaining'->>'total')::bigint, "
                   "(details->'remaining'->>'user')::bigint, "
                   "(details->'remaining'->>'user_daily')::bigint, "
                   "(details->'remaining'->>'user_weekly')::bigint FROM transactions "
                   "WHERE txn_id = $1 AND kind = $2 AND outcome = 'accepted' LIMIT 1");
    rd_lread_param(r, id);
    rd_lread_param(r, pay ? "pay" : "redeem");
    r->lr->http = 201;
    /* no row: the entry was shipped, so it is a dead letter (rejected by PostgreSQL) */
    rd_lread_object(r, on_replay_row, RD_E_INTERNAL);
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
    rd_sbuf_addstr(&r->lr->st.sql, "SELECT rd_stats($1::bigint)::text");
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
    struct rd_coupon *c = &rd_api(r)->coupon;
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
    rd_sbuf_addstr(&r->lr->st.sql,
                   "SELECT m.definition::text, coalesce(u.used, 0), coalesce(u.shares, 0), "
                   "coalesce(u.recharged, 0), coalesce(u.spent, 0), coalesce(u.refunded, 0), "
                   "(m.definition->>'archived_at')::bigint FROM coupons m LEFT JOIN coupon_usage "
                   "u ON u.code = m.code WHERE m.code = $1 AND m.definition ? 'archived_at'");
    rd_lread_param(r, rd_api(r)->code);
    rd_lread_object(r, on_archived_row, RD_E_COUPON_NOT_FOUND);
}
