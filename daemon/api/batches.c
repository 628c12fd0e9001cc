/* SPDX-License-Identifier: MIT
 *
 * Batches: POST /v1/batches queues a job (a row of table batches, and its audit entry) and
 * answers 202; the batch thread (batcher.c) issues the codes. GET /v1/batches[/{id}] shows
 * jobs and their progress, POST /v1/batches/{id}/cancel stops one, GET
 * /v1/batches/{id}/codes streams its codes as CSV. All of it is PostgreSQL work on the
 * worker's nonblocking pool: nothing here touches Redis.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/batcher.h"
#include "api/api.h"
#include "rd/codefmt.h"

#define BATCH_MAX     10000000
#define BATCH_ID_RAND 10

/* Only ids this service issues get as far as a query. */
static int path_batch(struct rd_req *r)
{
    size_t n = strlen(r->param);
    if (n != 2 + BATCH_ID_RAND || strncmp(r->param, "b_", 2) != 0 ||
        strspn(r->param + 2, "0123456789abcdefghjkmnpqrstvwxyz") != BATCH_ID_RAND) {
        rd_reply_error(r, RD_E_BATCH_NOT_FOUND, NULL, NULL);
        return -1;
    }
    return 0;
}

/* A row whose first column is the answer's JSON text. */
static int on_view_row(struct rd_pgq *q, const PGresult *row)
{
    struct rd_req *r = q->arg;
    if (r->lr->rows++ == 0) {
        json_decref(r->body);
        r->body = json_loads(PQgetvalue(row, 0, 0), 0, NULL);
    }
    return 0;
}

/* ---- POST /v1/batches ---------------------------------------------------------------------- */

static void on_created(struct rd_req *r)
{
    rd_batcher_kick(); /* committed: the job can be claimed now */
    json_t *o = r->body;
    r->body = NULL;
    rd_reply_json(r, 202, o);
}

/* rd_batch_create() answers (outcome, view). */
static int on_create_row(struct rd_pgq *q, const PGresult *row)
{
    struct rd_req *r = q->arg;
    if (r->lr->rows++ > 0)
        return 0;
    const char *outcome = PQgetvalue(row, 0, 0);
    if (strcmp(outcome, "reused") == 0) {
        r->lr->missing = RD_E_IDEM_REUSED; /* answered as an error: no body */
        return 0;
    }
    r->replayed = strcmp(outcome, "replayed") == 0;
    r->body = json_loads(PQgetvalue(row, 0, 1), 0, NULL);
    return 0;
}

static char *dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s)
        abort();
    return s;
}

/* The Redis hash fields all codes of the batch share: the coupon's definition without its
 * code; counters (used, spent, ...) stay each code's own. */
static json_t *template_fields(struct rd_req *r)
{
    const char *names[RD_COUPON_NFIELDS], *values[RD_COUPON_NFIELDS];
    char scratch[RD_COUPON_SCRATCH];
    rd_coupon_fields(&rd_api(r)->coupon, names, values, scratch);
    json_t *t = json_object();
    for (int f = 0; f < RD_COUPON_NFIELDS; f++)
        if (strcmp(names[f], "code") != 0)
            json_object_set_new(t, names[f], json_string(values[f]));
    json_object_set_new(t, "ver", json_string("1"));
    if (rd_api(r)->coupon.kind == RD_KIND_VOUCHER) {
        char bal[24];
        snprintf(bal, sizeof(bal), "%lld", (long long)rd_api(r)->coupon.balance);
        json_object_set_new(t, "bal", json_string(bal));
        json_object_set_new(t, "loaded", json_string(bal));
    }
    return t;
}

void rd_h_batch_create(struct rd_req *r)
{
    static const char *const keys[] = {"count", "format", "template", NULL};
    struct rd_verr e;
    int64_t count;
    struct rd_codefmt fmt;
    if (rd_json_only_keys(r->body, keys, "", &e) < 0 ||
        rd_json_int(r->body, "count", RD_J_REQUIRED, 1, BATCH_MAX, &count, NULL, &e) < 0 ||
        rd_codefmt_parse(&fmt, json_object_get(r->body, "format"), &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    json_t *tpl = json_object_get(r->body, "template");
    if (!json_is_object(tpl)) {
        rd_verr_set(&e, "template", "must be an object: the coupon every code is issued as");
        rd_reply_verr(r, &e);
        return;
    }
    if (json_object_get(tpl, "shards")) {
        rd_verr_set(&e, "template.shards",
                    "a batch's codes cannot be sharded (shard one hot code instead)");
        rd_reply_verr(r, &e);
        return;
    }
    if (json_object_get(tpl, "code")) {
        rd_verr_set(&e, "template.code", "codes come from format, not the template");
        rd_reply_verr(r, &e);
        return;
    }
    if (rd_coupon_from_create(&rd_api(r)->coupon, tpl, r->now_ms, r->w->cfg->voucher_max_balance,
                              &e) < 0) {
        struct rd_verr te;
        rd_verr_set(&te, "", "%s", e.msg);
        snprintf(te.field, sizeof(te.field), "template.%.80s", e.field);
        rd_reply_verr(r, &te);
        return;
    }
    /* Codes are drawn at random: past half the space every further code takes more and
     * more draws (and the codes become easy to guess), so a count beyond it is refused. */
    uint64_t space = rd_codefmt_space(&fmt);
    if ((uint64_t)count > space / 2) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "the format makes %" PRIu64
                 " codes; a batch may use at most half of them (%" PRIu64
                 "): make the codes longer or the alphabet larger",
                 space, space / 2);
        rd_reply_error(r, RD_E_FORMAT_TOO_SMALL, msg,
                       json_pack("{s:s, s:I, s:I, s:I}", "field", "count", "requested",
                                 (json_int_t)count, "space", (json_int_t)space, "max_count",
                                 (json_int_t)(space / 2)));
        return;
    }
    const char *idem = rd_req_header(r, "Idempotency-Key");
    if (idem && rd_idem_key_check(idem) < 0) {
        rd_verr_set(&e, "Idempotency-Key", "must be 1 to 255 printable ASCII characters");
        rd_reply_verr(r, &e);
        return;
    }

    json_t *spec = json_pack("{s:I, s:o, s:O, s:I}", "count", (json_int_t)count, "format",
                             rd_codefmt_to_json(&fmt), "template", tpl, "space",
                             (json_int_t)(space > INT64_MAX ? INT64_MAX : space));
    json_t *fields = template_fields(r);
    char id[3 + BATCH_ID_RAND], now[24], requested[24];
    static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
    uint8_t rnd[BATCH_ID_RAND];
    rd_worker_random(r->w, rnd, sizeof(rnd));
    memcpy(id, "b_", 2);
    for (int i = 0; i < BATCH_ID_RAND; i++)
        id[2 + i] = alphabet[rnd[i] & 31];
    id[2 + BATCH_ID_RAND] = '\0';
    snprintf(now, sizeof(now), "%lld", (long long)r->now_ms);
    snprintf(requested, sizeof(requested), "%lld", (long long)count);

    rd_lread_new(r);
    rd_sbuf_addstr(
        &r->lr->st.sql,
        "SELECT outcome, view::text FROM rd_batch_create($1, $2::bigint, $3, $4, $5, $6, "
        "$7::jsonb, $8::jsonb, $9, $10, $11::bigint)");
    rd_lread_param(r, id);
    rd_lread_param(r, now);
    rd_lread_param(r, r->key_id);
    rd_lread_param(r, r->request_id);
    rd_lread_param(r, r->client_ip);
    rd_lread_param(r, idem); /* NULL: no key */
    rd_lread_param_owned(r, dump(spec));
    rd_lread_param_owned(r, dump(fields));
    rd_lread_param(r, rd_api(r)->coupon.kind == RD_KIND_VOUCHER ? "voucher" : "discount");
    rd_lread_param(r, rd_api(r)->coupon.campaign);
    rd_lread_param(r, requested);
    json_decref(spec);
    json_decref(fields);
    json_decref(r->body); /* the answer goes there */
    r->body = NULL;
    r->lr->then = on_created;
    rd_lread_object(r, on_create_row, RD_E_INTERNAL);
}

/* ---- GET /v1/batches, GET /v1/batches/{id} ----------------------------------------------- */

void rd_h_batches_list(struct rd_req *r)
{
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->st.sql,
                   "SELECT jsonb_build_object('data', coalesce(jsonb_agg(rd_batch_json(b) ORDER BY "
                   "b.created_at DESC, b.id), '[]'))::text FROM (SELECT * FROM batches ORDER BY "
                   "created_at DESC, id LIMIT 100) b");
    rd_lread_object(r, on_view_row, RD_E_INTERNAL);
}

void rd_h_batch_get(struct rd_req *r)
{
    if (path_batch(r) < 0)
        return;
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->st.sql, "SELECT rd_batch_json(b)::text FROM batches b WHERE b.id = $1");
    rd_lread_param(r, r->param);
    rd_lread_object(r, on_view_row, RD_E_BATCH_NOT_FOUND);
}

/* ---- POST /v1/batches/{id}/cancel --------------------------------------------------------- */

static int on_cancel_row(struct rd_pgq *q, const PGresult *row)
{
    struct rd_req *r = q->arg;
    if (r->lr->rows++ > 0 || PQgetisnull(row, 0, 0))
        return 0; /* no such batch: answered as missing */
    const char *outcome = PQgetvalue(row, 0, 0);
    if (strcmp(outcome, "finished") == 0) {
        r->lr->missing = RD_E_BATCH_FINISHED;
        return 0;
    }
    /* a running job stops at its next chunk: 202 until GET shows "cancelled" */
    r->lr->http = strcmp(outcome, "cancelled") == 0 ? 200 : 202;
    r->body = json_loads(PQgetvalue(row, 0, 1), 0, NULL);
    return 0;
}

void rd_h_batch_cancel(struct rd_req *r)
{
    if (path_batch(r) < 0)
        return;
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->st.sql,
                   "SELECT outcome, view::text FROM rd_batch_cancel($1, $2, $3, $4)");
    rd_lread_param(r, r->param);
    rd_lread_param(r, r->key_id);
    rd_lread_param(r, r->request_id);
    rd_lread_param(r, r->client_ip);
    json_decref(r->body);
    r->body = NULL;
    r->lr->missing = RD_E_BATCH_NOT_FOUND;
    rd_lread_object(r, on_cancel_row, RD_E_BATCH_NOT_FOUND);
}

/* ---- GET /v1/batches/{id}/codes ----------------------------------------------------------- */

void rd_h_batch_codes(struct rd_req *r)
{
    if (path_batch(r) < 0)
        return;
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->st.sql, "SELECT '{}' FROM batches WHERE id = $1");
    rd_lread_param(r, r->param);
    r->lr->then = rd_lread_codes_csv; /* the batch exists: stream its codes */
    rd_lread_object(r, on_view_row, RD_E_BATCH_NOT_FOUND);
}
