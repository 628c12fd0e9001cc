/* SPDX-License-Identifier: MIT
 *
 * The checkout path: validate, redeem, read a redemption. Validate and redeem are one
 * EVALSHA of scripts/lua/redeem.lua each (validate in its dry-run mode), so the decision is
 * atomic and the two can never disagree. The discount amount is computed here from the
 * coupon terms the script returns, with the one function the ledger uses too. (Reversing a
 * redemption: reverse.c.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "rd/discount.h"
#include "rd/log.h"
#include "rd/rdtime.h"

static enum rd_status discount_of(const char *dtype, int64_t dvalue, int64_t dmax,
                                  int64_t min_order, int64_t amount, int64_t *out)
{
    struct rd_discount d = {rd_dtype_parse(dtype), dvalue, dmax, min_order};
    return rd_discount_compute(&d, amount, out);
}

static void send_use(struct rd_req *r);

static void on_redeem(struct rd_redis *redis, redisReply *raw, void *arg)
{
    struct rd_req *r = arg;
    struct rd_api *a = rd_api(r);
    struct rd_reply_view view;
    const redisReply *reply = rd_reply_view(raw, &view);
    (void)redis;
    const char *status =
        rd_script_status(r, reply, a->redeem ? 1 : -1, a->redeem ? "redeem" : "validate");
    if (!status)
        return;
    if (strcmp(status, "sharded") == 0) { /* a hot coupon: the user's shard decides */
        if (a->hot.on || rd_hot_learn(r, a->rq.code, rd_el(reply, RD_REDEEM_SHARDED_LAYOUT)) < 0) {
            rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
            return;
        }
        send_use(r);
        return;
    }
    if (strcmp(status, "noshard") == 0) {
        rd_hot_noshard(r, a->rq.code, send_use);
        return;
    }
    if (strcmp(status, "borrow") == 0) {
        rd_hot_borrow(r, send_use);
        return;
    }
    r->replayed = strcmp(rd_el(reply, RD_REDEEM_OK_REPLAYED), "1") == 0;
    if (strcmp(status, "shipped") == 0) {
        rd_use_replay_from_ledger(r, rd_el(reply, RD_REDEEM_SHIPPED_ID), 0);
        return;
    }
    if (strcmp(status, "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, RD_REDEEM_REJECTED_REASON));
        json_t *details = json_object();
        if (*rd_el(reply, RD_REDEEM_REJECTED_RESETS_AT))
            json_object_set_new(details, "resets_at",
                                rd_time_json(rd_el_num(reply, RD_REDEEM_REJECTED_RESETS_AT)));
        if (!a->redeem && rd_status_is_business(st)) {
            json_t *o =
                json_pack("{s:b, s:s, s:s, s:s, s:o}", "valid", 0, "code", a->rq.code, "reason",
                          rd_status_name(st), "message", rd_status_message(st), "details", details);
            rd_guess_answer(r, st, 0, NULL, o); /* a failed lookup counts first */
            return;
        }
        if (a->redeem)
            json_object_set_new(details, "attempt_id",
                                json_string(rd_el(reply, RD_REDEEM_REJECTED_ID)));
        rd_guess_answer(r, st, 1, NULL, details);
        return;
    }
    if (strcmp(status, "ok") != 0 || reply->elements < RD_REDEEM_OK__LEN) {
        rd_reply_redis_failure(r, reply, "redeem");
        return;
    }
    /* what the request said comes from the request: a replay is the same request */
    int64_t amount = a->rq.order_amount, discount;
    if (discount_of(rd_el(reply, RD_REDEEM_OK_DTYPE), rd_el_num(reply, RD_REDEEM_OK_DVALUE),
                    rd_el_num(reply, RD_REDEEM_OK_DMAX), rd_el_num(reply, RD_REDEEM_OK_MIN_ORDER),
                    amount, &discount) != RD_OK) {
        rd_error("event=discount_inconsistent req=%s code=%s", r->request_id, a->rq.code);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    struct rd_use_answer x = {
        rd_el(reply, RD_REDEEM_OK_ID),
        a->rq.code,
        a->rq.user_id,
        a->rq.currency,
        a->rq.order_id ? a->rq.order_id : "",
        rd_el_num(reply, RD_REDEEM_OK_CREATED_AT),
        amount,
        discount,
        0,
        {rd_el_num(reply, RD_REDEEM_OK_REM_TOTAL), rd_el_num(reply, RD_REDEEM_OK_REM_USER),
         rd_el_num(reply, RD_REDEEM_OK_REM_DAILY), rd_el_num(reply, RD_REDEEM_OK_REM_WEEKLY)}};
    if (!a->redeem) {
        rd_reply_json(r, 200,
                      json_pack("{s:b, s:s, s:I, s:I, s:s, s:o}", "valid", 1, "code", x.code,
                                "discount", (json_int_t)discount, "order_amount",
                                (json_int_t)amount, "currency", x.currency, "remaining",
                                rd_remaining_json(x.rem)));
        return;
    }
    /* A replay answers with the same status and body as the first answer. */
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    rd_use_answer_text(&b, &x, 0);
    rd_reply_raw(r, 201, b.buf, b.len);
    rd_sbuf_free(&b);
}

/* The call of redeem.lua: to the home hash, or to the user's shard of a hot coupon ("1",
 * or "2" once borrowing found nothing). Sent again after each step of the shards' work. */
static void send_use(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    struct rd_use_call u;
    rd_use_prepare(r, &u, RD_LUA_REDEEM, a->redeem ? a->idem : "");
    rd_cmd_arg(&u.cmd, RD_REDEEM_A_MODE, a->redeem ? "redeem" : "validate");
    rd_cmd_arg(&u.cmd, RD_REDEEM_A_ROUTE, !a->hot.on ? "" : a->hot.final ? "2" : "1");
    if (a->redeem)
        rd_req_send_durable(r, &u.cmd, on_redeem);
    else
        rd_req_send(r, &u.cmd, on_redeem);
}

static void first_use(struct rd_req *r)
{
    rd_hot_route(r, rd_api(r)->rq.code);
    send_use(r);
}

static void redeem_or_validate(struct rd_req *r, int redeem)
{
    struct rd_api *a = rd_api(r);
    struct rd_verr e;
    a->redeem = redeem;
    /* validate too: a probe of an unknown code is a ledger entry (the fraud signal) */
    if (rd_ledger_backlogged(r) || (redeem && rd_req_idem(r, 1) < 0))
        return;
    if (rd_redeem_req_parse(&a->rq, r->body, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    rd_guess_check(r, first_use);
}

void rd_h_validate(struct rd_req *r)
{
    redeem_or_validate(r, 0);
}

void rd_h_redeem(struct rd_req *r)
{
    redeem_or_validate(r, 1);
}

/* ---- GET /v1/redemptions/{id} -------------------------------------------------------------- */

static void answer_use(struct rd_req *r)
{
    const struct rd_use *x = rd_api(r)->use;
    const char *status = *x->given ? x->given : "active";
    json_t *o;
    if (x->pay) {
        o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:o, s:I}", "id", r->param, "kind",
                      "pay", "code", x->code, "user_id", x->user, "amount", (json_int_t)x->amount,
                      "refunded", (json_int_t)x->refunded, "currency", x->currency, "status",
                      status, "created_at", rd_time_json(x->created_ms), "balance_after",
                      (json_int_t)x->balance_after);
    } else {
        o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:o}", "id", r->param, "code", x->code,
                      "user_id", x->user, "order_amount", (json_int_t)x->amount, "discount",
                      (json_int_t)x->discount, "currency", x->currency, "status", status,
                      "created_at", rd_time_json(x->created_ms));
        if (strcmp(status, "reversed") == 0) {
            json_object_set_new(o, "reversed_at", rd_time_json(x->given_at));
            json_object_set_new(o, "reversal_id", json_string(x->given_by));
        }
    }
    if (*x->order)
        json_object_set_new(o, "order_id", json_string(x->order));
    /* where the facts came from: Redis (not yet shipped) or the ledger */
    json_object_set_new(o, "source", json_string(x->from_ledger ? "ledger" : "redis"));
    rd_reply_json(r, 200, o);
}

void rd_h_redemption_get(struct rd_req *r)
{
    if (rd_path_txn(r) < 0)
        return;
    rd_use_read(r, answer_use);
}
