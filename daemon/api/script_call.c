/* SPDX-License-Identifier: MIT
 *
 * The API handlers' shared layer (api.h): their state in a request, script calls and the
 * shapes of the answers, and the checks every handler group makes the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "rd/ledger.h"
#include "rd/log.h"
#include "rd/rdtime.h"
#include "jobs/shipper.h"

_Static_assert(sizeof(struct rd_api) <= RD_REQ_STATE_MAX, "raise RD_REQ_STATE_MAX");
_Static_assert(_Alignof(struct rd_api) <= _Alignof(max_align_t), "struct rd_api alignment");

static void api_free(struct rd_req *r)
{
    struct rd_api *a = (struct rd_api *)r->state;
    rd_redeem_req_free(&a->rq);
    rd_coupon_free(&a->coupon);
    json_decref(a->guess.deferred);
    free(a->use);
    if (r->lr) {
        rd_query_free(&r->lr->query);
        rd_stmt_free(&r->lr->st);
        rd_sbuf_free(&r->lr->row);
        if (r->lr->chunk)
            evbuffer_free(r->lr->chunk);
        free(r->lr);
        r->lr = NULL;
    }
}

struct rd_api *rd_api(struct rd_req *r)
{
    struct rd_api *a = (struct rd_api *)r->state;
    if (r->state_free != api_free) {
        memset(a, 0, sizeof(*a));
        rd_coupon_init(&a->coupon);
        r->state_free = api_free;
    }
    return a;
}

/* ---- calls ------------------------------------------------------------------------------ */

static void send_call(struct rd_req *r, const struct rd_cmd *cmd, rd_redis_cb *cb, int durable)
{
    r->call.cb = cb;
    r->call.arg = r;
    r->call.durable = durable;
    switch (rd_redis_call(&r->w->redis, cmd, &r->call)) {
    case 0:
        return;
    case -2: /* logged: a handler built a command its script does not take */
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    default:
        rd_reply_error(r, RD_E_UNAVAILABLE, "Redis is not reachable; retry shortly", NULL);
        return;
    }
}

void rd_req_send(struct rd_req *r, const struct rd_cmd *cmd, rd_redis_cb *cb)
{
    send_call(r, cmd, cb, 0);
}

void rd_req_send_durable(struct rd_req *r, const struct rd_cmd *cmd, rd_redis_cb *cb)
{
    send_call(r, cmd, cb, 1);
}

int rd_path_txn(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    if (rd_txn_id_parse(r->param, (uint32_t)r->w->cfg->buckets, &a->ref) < 0) {
        rd_reply_error(r, RD_E_REDEMPTION_NOT_FOUND, NULL, NULL);
        return -1;
    }
    a->bucket = a->ref.bucket;
    return 0;
}

void rd_req_new_txn(struct rd_req *r, uint32_t bucket, char out[RD_TXN_ID_LEN + 1])
{
    uint8_t rnd[20];
    rd_worker_random(r->w, rnd, sizeof(rnd));
    rd_txn_id_make(out, bucket, rnd);
}

/* ---- answers ---------------------------------------------------------------------------- */

const redisReply *rd_reply_view(const redisReply *reply, struct rd_reply_view *view)
{
    if (!reply || reply->type != REDIS_REPLY_STRING)
        return reply;
    const char *parts[RD_REPLY_VIEW_MAX];
    size_t lens[RD_REPLY_VIEW_MAX];
    size_t n = rd_unpack_values(reply->str, reply->len, parts, lens, RD_REPLY_VIEW_MAX);
    if (n > RD_REPLY_VIEW_MAX)
        return reply;
    for (size_t i = 0; i < n; i++) {
        view->values[i] =
            (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)parts[i], .len = lens[i]};
        view->elements[i] = &view->values[i];
    }
    view->array = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = n, .element = view->elements};
    return &view->array;
}

const char *rd_el(const redisReply *reply, size_t i)
{
    if (i >= reply->elements || reply->element[i]->type != REDIS_REPLY_STRING)
        return "";
    return reply->element[i]->str;
}

int64_t rd_el_num(const redisReply *reply, size_t i)
{
    const char *s = rd_el(reply, i);
    return *s ? strtoll(s, NULL, 10) : -1;
}

json_t *rd_opt_count(const redisReply *reply, size_t i)
{
    int64_t v = rd_el_num(reply, i);
    return v < 0 ? json_null() : json_integer(v);
}

json_t *rd_time_json(int64_t ms)
{
    char buf[RD_TIME_BUFSZ];
    return json_string(rd_time_format(ms, buf));
}

void rd_reply_redis_failure(struct rd_req *r, const redisReply *reply, const char *what)
{
    if (!reply) {
        rd_reply_error(r, RD_E_UNAVAILABLE,
                       r->call.unconfirmed
                           ? "the outcome is unknown (fewer replicas than min_replica_acks "
                             "confirmed it in time); retry with the same Idempotency-Key"
                           : "the outcome is unknown (Redis connection lost); retry with the "
                             "same Idempotency-Key",
                       NULL);
        return;
    }
    if (rd_redis_error_is_unavailable(reply)) {
        rd_warn("event=redis_unavailable req=%s what=%s err=\"%s\"", r->request_id, what,
                reply->str);
        rd_reply_error(r, RD_E_UNAVAILABLE, NULL, NULL);
        return;
    }
    rd_error("event=redis_unexpected req=%s what=%s type=%d err=\"%.*s\"", r->request_id, what,
             reply->type, reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 0,
             reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
}

const char *rd_script_status(struct rd_req *r, const redisReply *reply, int wrote, const char *what)
{
    /* a validate writes an outbox entry only for an unknown code (the fraud signal) */
    if (wrote < 0)
        wrote = reply && reply->type == REDIS_REPLY_ARRAY &&
                !strcmp(rd_el(reply, RD_REDEEM_REJECTED_STATUS), "rejected") &&
                !strcmp(rd_el(reply, RD_REDEEM_REJECTED_REASON), "coupon_not_found");
    if (reply && wrote)
        rd_shipper_hint(rd_api(r)->bucket);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
        rd_reply_redis_failure(r, reply, what);
        return NULL;
    }
    const char *st = rd_el(reply, 0); /* every shape starts with its status */
    if (strcmp(st, "reused") == 0) {
        rd_reply_error(r, RD_E_IDEM_REUSED, NULL, NULL);
        return NULL;
    }
    return st;
}

int rd_coupon_from_reply(struct rd_req *r, const redisReply *reply, size_t from)
{
    struct rd_coupon *c = &rd_api(r)->coupon;
    size_t n = (reply->elements - from) / 2;
    const char *names[64], *values[64];
    size_t nl[64], vl[64];
    if (n > 64)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const redisReply *k = reply->element[from + 2 * i], *v = reply->element[from + 2 * i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return -1;
        names[i] = k->str;
        nl[i] = k->len;
        values[i] = v->str;
        vl[i] = v->len;
    }
    rd_coupon_free(c);
    rd_coupon_init(c);
    return rd_coupon_from_hash(c, names, nl, values, vl, n);
}

/* ---- checks every handler group makes ---------------------------------------------------- */

int rd_path_code(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    if (rd_code_normalize(r->param, strlen(r->param), a->code) < 0) {
        rd_reply_error(r, RD_E_COUPON_NOT_FOUND, NULL, NULL);
        return -1;
    }
    a->bucket = rd_bucket_of(a->code, strlen(a->code), (uint32_t)r->w->cfg->buckets);
    return 0;
}

int rd_ledger_backlogged(struct rd_req *r)
{
    if (!r->w->cfg->shipper || rd_shipper_backlog() <= r->w->cfg->max_backlog)
        return 0;
    rd_reply_error(r, RD_E_UNAVAILABLE,
                   "the transaction ledger is behind; retry shortly (with the same "
                   "Idempotency-Key)",
                   NULL);
    return 1;
}

int rd_req_idem(struct rd_req *r, int required)
{
    struct rd_api *a = rd_api(r);
    a->idem = rd_req_header(r, "Idempotency-Key");
    if (!a->idem) {
        if (!required)
            return 0;
        rd_reply_error(r, RD_E_IDEM_REQUIRED, NULL, NULL);
        return -1;
    }
    if (rd_idem_key_check(a->idem) < 0) {
        struct rd_verr e;
        rd_verr_set(&e, "Idempotency-Key", "must be 1 to 255 printable ASCII characters");
        rd_reply_verr(r, &e);
        return -1;
    }
    return 0;
}

int rd_req_customer(struct rd_req *r, const struct rd_customer *c, char ip[48], char cx[RD_CX_MAX])
{
    const char *own = c->ip ? c->ip : r->forwarded_ip[0] ? r->forwarded_ip : NULL;
    snprintf(ip, 48, "%s", own ? own : r->client_ip);
    if (!cx)
        return own != NULL;
    cx[0] = '\0';
    if ((own || c->session_id || c->device_id || c->email_hash) &&
        rd_cx_format(r->client_ip, c, cx, RD_CX_MAX) < 0)
        cx[0] = '\0'; /* cannot happen: every part is bounded (request.h) */
    return own != NULL;
}
