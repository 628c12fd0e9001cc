/* SPDX-License-Identifier: MIT
 *
 * Stored-value vouchers: balance, pay, recharge, and the refund of a payment (reached through
 * POST /v1/redemptions/{id}/reverse, see reverse.c). Every money movement is one
 * EVALSHA of scripts/lua/pay.lua, refund.lua or recharge.lua: the checks, the balance change,
 * the idempotency record and the outbox entry (with the balance after) happen together or
 * not at all, so no number of concurrent payments can take a balance below zero.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "rd/log.h"
#include "rd/rdtime.h"

/* ---- GET /v1/vouchers/{code}/balance ------------------------------------------------------ */

static void on_balance(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        rd_reply_redis_failure(r, reply, "voucher_balance");
        return;
    }
    if (reply->elements == 0) {
        rd_guess_answer(r, RD_E_COUPON_NOT_FOUND, 1, NULL, NULL);
        return;
    }
    if (rd_coupon_from_reply(r, reply, 0) < 0) {
        rd_error("event=coupon_corrupt req=%s code=%s", r->request_id, rd_api(r)->code);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    const struct rd_coupon *c = &rd_api(r)->coupon;
    if (c->kind != RD_KIND_VOUCHER) {
        rd_guess_answer(r, RD_E_KIND_MISMATCH, 1, "this code is a discount coupon, not a voucher",
                        NULL);
        return;
    }
    json_t *view = rd_coupon_to_json(c, r->now_ms);
    json_t *o =
        json_pack("{s:s, s:I, s:s, s:s, s:O, s:I, s:I, s:I, s:O}", "code", c->code, "balance",
                  (json_int_t)c->balance, "currency", c->currency, "status",
                  rd_coupon_status(c, r->now_ms), "expires_at", json_object_get(view, "expires_at"),
                  "loaded", (json_int_t)c->loaded, "spent", (json_int_t)c->spent, "refunded",
                  (json_int_t)c->refunded, "outstanding", json_object_get(view, "outstanding"));
    json_decref(view);
    rd_reply_json(r, 200, o);
}

static void read_balance(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    char key[RD_KEY_MAX];
    rd_key_coupon(key, sizeof(key), a->bucket, a->code);
    struct rd_cmd cmd;
    rd_cmd_script(&cmd, RD_LUA_COUPON_READ); /* a batch code reads through its template */
    rd_cmd_key(&cmd, RD_COUPON_READ_K_COUPON, key);
    rd_req_send(r, &cmd, on_balance);
}

void rd_h_voucher_balance(struct rd_req *r)
{
    if (rd_path_code(r) < 0)
        return;
    rd_guess_check(r, read_balance); /* a read by code is a lookup a guesser can use too */
}

/* ---- POST /v1/vouchers/{code}/pay ---------------------------------------------------------- */

static void on_paid(struct rd_redis *redis, redisReply *raw, void *arg)
{
    struct rd_req *r = arg;
    struct rd_reply_view view;
    const redisReply *reply = rd_reply_view(raw, &view);
    (void)redis;
    const char *status = rd_script_status(r, reply, 1, "pay");
    if (!status)
        return;
    r->replayed = strcmp(rd_el(reply, RD_PAY_OK_REPLAYED), "1") == 0;
    if (strcmp(status, "shipped") == 0) {
        rd_use_replay_from_ledger(r, rd_el(reply, RD_PAY_SHIPPED_ID), 1);
        return;
    }
    if (strcmp(status, "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, RD_PAY_REJECTED_REASON));
        json_t *details = json_pack("{s:s}", "attempt_id", rd_el(reply, RD_PAY_REJECTED_ID));
        if (*rd_el(reply, RD_PAY_REJECTED_RESETS_AT))
            json_object_set_new(details, "resets_at",
                                rd_time_json(rd_el_num(reply, RD_PAY_REJECTED_RESETS_AT)));
        if (*rd_el(reply, RD_PAY_REJECTED_BALANCE))
            json_object_set_new(details, "balance",
                                json_integer(rd_el_num(reply, RD_PAY_REJECTED_BALANCE)));
        const char *msg = st == RD_E_KIND_MISMATCH
                              ? "this code is a discount coupon: redeem it at /v1/redemptions"
                              : NULL;
        rd_guess_answer(r, st, 1, msg, details); /* a failed lookup counts first */
        return;
    }
    if (strcmp(status, "ok") != 0 || reply->elements < RD_PAY_OK__LEN) {
        rd_reply_redis_failure(r, reply, "pay");
        return;
    }
    /* what the request said comes from the request: a replay is the same request */
    const struct rd_redeem_req *q = &rd_api(r)->rq;
    struct rd_use_answer x = {
        rd_el(reply, RD_PAY_OK_ID),
        q->code,
        q->user_id,
        q->currency,
        q->order_id ? q->order_id : "",
        rd_el_num(reply, RD_PAY_OK_CREATED_AT),
        q->order_amount,
        0,
        rd_el_num(reply, RD_PAY_OK_BALANCE_AFTER),
        {rd_el_num(reply, RD_PAY_OK_REM_TOTAL), rd_el_num(reply, RD_PAY_OK_REM_USER),
         rd_el_num(reply, RD_PAY_OK_REM_DAILY), rd_el_num(reply, RD_PAY_OK_REM_WEEKLY)}};
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    rd_use_answer_text(&b, &x, 1);
    rd_reply_raw(r, 201, b.buf, b.len);
    rd_sbuf_free(&b);
}

static void send_pay(struct rd_req *r)
{
    struct rd_use_call u;
    rd_use_prepare(r, &u, RD_LUA_PAY, rd_api(r)->idem);
    rd_req_send_durable(r, &u.cmd, on_paid);
}

void rd_h_voucher_pay(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    struct rd_verr e;
    if (rd_ledger_backlogged(r) || rd_req_idem(r, 1) < 0 || rd_path_code(r) < 0)
        return;
    if (rd_pay_req_parse(&a->rq, r->body, a->code, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    rd_guess_check(r, send_pay);
}

/* ---- POST /v1/vouchers/{code}/recharge (admin) --------------------------------------------- */

static void on_recharged(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    const char *status = rd_script_status(r, reply, 1, "recharge");
    if (!status)
        return;
    r->replayed = strcmp(rd_el(reply, RD_RECHARGE_OK_REPLAYED), "1") == 0;
    if (strcmp(status, "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, RD_RECHARGE_REJECTED_REASON));
        json_t *details = NULL;
        int64_t bal = rd_el_num(reply, RD_RECHARGE_REJECTED_BALANCE),
                max = rd_el_num(reply, RD_RECHARGE_REJECTED_MAX);
        if (st == RD_E_BALANCE_LIMIT)
            details = json_pack("{s:I, s:I, s:I}", "balance", (json_int_t)bal, "max_balance",
                                (json_int_t)max, "rechargeable", (json_int_t)(max - bal));
        const char *msg =
            st == RD_E_KIND_MISMATCH ? "this code is a discount coupon, not a voucher" : NULL;
        rd_reply_error(r, st, msg, details);
        return;
    }
    if (strcmp(status, "ok") != 0 || reply->elements < RD_RECHARGE_OK__LEN) {
        rd_reply_redis_failure(r, reply, "recharge");
        return;
    }
    rd_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:I, s:I, s:I}", "id", rd_el(reply, RD_RECHARGE_OK_ID),
                            "code", rd_api(r)->code, "amount",
                            (json_int_t)rd_el_num(reply, RD_RECHARGE_OK_AMOUNT), "balance",
                            (json_int_t)rd_el_num(reply, RD_RECHARGE_OK_BALANCE_AFTER), "loaded",
                            (json_int_t)rd_el_num(reply, RD_RECHARGE_OK_LOADED_AFTER)));
}

void rd_h_voucher_recharge(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    struct rd_verr e;
    if (rd_ledger_backlogged(r) || rd_req_idem(r, 1) < 0 || rd_path_code(r) < 0)
        return;
    if (rd_recharge_req_parse(&a->rq, r->body, a->code, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    struct rd_use_call u;
    char max[24];
    rd_key_coupon(u.keys[RD_RECHARGE_K_COUPON], RD_KEY_MAX, a->bucket, a->code);
    rd_key_log(u.keys[RD_RECHARGE_K_LOG], RD_KEY_MAX, a->bucket);
    rd_idem_prepare(r, &u, RD_RECHARGE_K_IDEM, RD_RECHARGE_K_IDEM_V1, RD_RECHARGE_K_IDEM_1,
                    a->idem);
    snprintf(max, sizeof(max), "%lld", r->w->cfg->voucher_max_balance);
    struct rd_cmd *cmd = &u.cmd;
    rd_cmd_script(cmd, RD_LUA_RECHARGE);
    for (int k = 0; k < RD_RECHARGE_NKEYS; k++)
        rd_cmd_key(cmd, k, u.keys[k]);
    rd_cmd_arg(cmd, RD_RECHARGE_A_NOW_MS, u.now);
    rd_cmd_arg(cmd, RD_RECHARGE_A_TXN, u.txn);
    rd_cmd_arg(cmd, RD_RECHARGE_A_AMOUNT, u.amount);
    rd_cmd_arg(cmd, RD_RECHARGE_A_MAX_BALANCE, max);
    rd_cmd_arg(cmd, RD_RECHARGE_A_CURRENCY, a->rq.currency);
    rd_cmd_argn(cmd, RD_RECHARGE_A_FP, (const char *)u.fp, sizeof(u.fp));
    rd_cmd_argn(cmd, RD_RECHARGE_A_IDEM_FIELD, (const char *)u.digest, RD_IDEM_FIELD_LEN);
    rd_cmd_arg(cmd, RD_RECHARGE_A_IDEM_SLICE_MS, u.slice);
    rd_cmd_arg(cmd, RD_RECHARGE_A_CLIENT_IP, r->client_ip);
    rd_cmd_arg(cmd, RD_RECHARGE_A_KEY_ID, r->key_id);
    rd_cmd_arg(cmd, RD_RECHARGE_A_REQUEST_ID, r->request_id);
    rd_cmd_arg(cmd, RD_RECHARGE_A_IDEM_KEY, a->idem);
    rd_cmd_arg(cmd, RD_RECHARGE_A_CODE, a->code);
    rd_req_send_durable(r, cmd, on_recharged);
}

/* ---- refund: POST /v1/redemptions/{id}/reverse of a voucher payment ------------------------ */

static void on_refunded(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    const char *status = rd_script_status(r, reply, 1, "refund");
    if (!status)
        return;
    if (strcmp(status, "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, RD_REFUND_REJECTED_REASON));
        json_t *details = NULL;
        if (*rd_el(reply, RD_REFUND_REJECTED_REFUNDABLE))
            details = json_pack("{s:I}", "refundable",
                                (json_int_t)rd_el_num(reply, RD_REFUND_REJECTED_REFUNDABLE));
        rd_reply_error(
            r, st, st == RD_E_ALREADY_REVERSED ? "the payment is already refunded in full" : NULL,
            details);
        return;
    }
    if (strcmp(status, "ok") != 0 || reply->elements < RD_REFUND_OK__LEN) {
        rd_reply_redis_failure(r, reply, "refund");
        return;
    }
    r->replayed = strcmp(rd_el(reply, RD_REFUND_OK_REPLAYED), "1") == 0;
    int64_t left = rd_el_num(reply, RD_REFUND_OK_REFUNDABLE_AFTER);
    rd_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:I}", "id", r->param, "status",
                            left == 0 ? "refunded" : "partially_refunded", "refund_id",
                            rd_el(reply, RD_REFUND_OK_REFUND_ID), "refunded_at",
                            rd_time_json(rd_el_num(reply, RD_REFUND_OK_REFUNDED_AT)), "amount",
                            (json_int_t)rd_el_num(reply, RD_REFUND_OK_AMOUNT), "balance",
                            (json_int_t)rd_el_num(reply, RD_REFUND_OK_BALANCE_AFTER), "refundable",
                            (json_int_t)left));
}

void rd_voucher_refund(struct rd_req *r, int64_t amount)
{
    if (!rd_api(r)->idem) {
        rd_reply_error(r, RD_E_IDEM_REQUIRED,
                       "refunding a voucher payment needs an Idempotency-Key header", NULL);
        return;
    }
    struct rd_use_call u;
    rd_undo_prepare(r, &u, RD_LUA_REFUND);
    if (amount > 0)
        snprintf(u.amount, sizeof(u.amount), "%lld", (long long)amount);
    else
        u.amount[0] = '\0'; /* all that is left */
    rd_cmd_arg(&u.cmd, RD_REFUND_A_AMOUNT, u.amount);
    rd_req_send_durable(r, &u.cmd, on_refunded);
}
