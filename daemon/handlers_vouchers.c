/* SPDX-License-Identifier: MIT
 *
 * Stored-value vouchers: balance, pay, recharge, and the refund of a payment (reached through
 * POST /v1/redemptions/{id}/reverse, see handlers_redeem.c). Every money movement is one
 * EVALSHA of scripts/lua/pay.lua, refund.lua or recharge.lua: the checks, the balance change,
 * the idempotency record and the outbox entry (with the balance after) happen together or
 * not at all, so no number of concurrent payments can take a balance below zero.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "rd/log.h"
#include "rd/rdtime.h"
#include "shipper.h"

static int require_idem(struct rd_req *r)
{
    r->idem = rd_req_header(r, "Idempotency-Key");
    if (!r->idem) {
        rd_reply_error(r, RD_E_IDEM_REQUIRED, NULL, NULL);
        return -1;
    }
    if (rd_idem_key_check(r->idem) < 0) {
        struct rd_verr e;
        rd_verr_set(&e, "Idempotency-Key", "must be 1 to 255 printable ASCII characters");
        rd_reply_verr(r, &e);
        return -1;
    }
    return 0;
}

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
        rd_reply_error(r, RD_E_COUPON_NOT_FOUND, NULL, NULL);
        return;
    }
    if (rd_coupon_from_reply(r, reply, 0) < 0) {
        rd_error("event=coupon_corrupt req=%s code=%s", r->request_id, r->code);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    const struct rd_coupon *c = &r->coupon;
    if (c->kind != RD_KIND_VOUCHER) {
        rd_reply_error(r, RD_E_KIND_MISMATCH, "this code is a discount coupon, not a voucher",
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

void rd_h_voucher_balance(struct rd_req *r)
{
    if (rd_path_code(r) < 0)
        return;
    r->call.script = RD_LUA_COUPON_READ; /* a batch code reads through its template */
    r->call.argc = 0;
    rd_req_arg(r, 0, "1");
    rd_req_arg(r, 1, r->keys[0]);
    rd_req_call(r, on_balance);
}

/* ---- POST /v1/vouchers/{code}/pay ---------------------------------------------------------- */

/* Element layout of pay.lua's "ok" answer. */
enum {
    P_ID = 2,
    P_CREATED,
    P_AMOUNT,
    P_CURRENCY,
    P_BALANCE,
    P_REM_TOTAL,
    P_REM_USER,
    P_REM_DAILY,
    P_REM_WEEKLY,
    P_USER,
    P_ORDER,
    P_CODE,
    P__COUNT
};

static void on_paid(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    const char *status = rd_script_status(r, reply, "pay");
    if (!status)
        return;
    r->replayed = strcmp(rd_el(reply, 1), "1") == 0;
    if (strcmp(status, "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, 2));
        json_t *details = json_pack("{s:s}", "attempt_id", rd_el(reply, 3));
        if (*rd_el(reply, 4))
            json_object_set_new(details, "resets_at", rd_time_json(rd_el_num(reply, 4)));
        if (*rd_el(reply, 5))
            json_object_set_new(details, "balance", json_integer(rd_el_num(reply, 5)));
        const char *msg = st == RD_E_KIND_MISMATCH
                              ? "this code is a discount coupon: redeem it at /v1/redemptions"
                              : NULL;
        rd_reply_error(r, st, msg, details);
        return;
    }
    if (strcmp(status, "ok") != 0 || reply->elements < P__COUNT) {
        rd_reply_redis_failure(r, reply, "pay");
        return;
    }
    json_t *remaining =
        json_pack("{s:o, s:o, s:o, s:o}", "total", rd_opt_count(reply, P_REM_TOTAL), "user",
                  rd_opt_count(reply, P_REM_USER), "user_daily", rd_opt_count(reply, P_REM_DAILY),
                  "user_weekly", rd_opt_count(reply, P_REM_WEEKLY));
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:o, s:o}", "id", rd_el(reply, P_ID), "kind",
                  "pay", "code", rd_el(reply, P_CODE), "user_id", rd_el(reply, P_USER), "amount",
                  (json_int_t)rd_el_num(reply, P_AMOUNT), "currency", rd_el(reply, P_CURRENCY),
                  "balance", (json_int_t)rd_el_num(reply, P_BALANCE), "created_at",
                  rd_time_json(rd_el_num(reply, P_CREATED)), "remaining", remaining);
    if (*rd_el(reply, P_ORDER))
        json_object_set_new(o, "order_id", json_string(rd_el(reply, P_ORDER)));
    rd_reply_json(r, 201, o);
}

void rd_h_voucher_pay(struct rd_req *r)
{
    struct rd_verr e;
    if (rd_ledger_backlogged(r) || require_idem(r) < 0 || rd_path_code(r) < 0)
        return;
    if (rd_pay_req_parse(&r->rq, r->body, r->code, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    const char *code = r->code;
    rd_use_prepare(r, RD_LUA_PAY, code, r->idem);
    rd_req_arg(r, 6, r->num[0]);
    rd_req_arg(r, 7, r->rq.user_id);
    rd_req_arg(r, 8, r->num[1]);
    rd_req_arg(r, 9, r->rq.currency);
    rd_req_arg(r, 10, r->fp);
    rd_req_arg(r, 11, r->txn);
    rd_req_arg(r, 12, r->num[2]);
    rd_req_arg(r, 13, r->num[3]);
    rd_req_arg(r, 14, r->rq.order_id ? r->rq.order_id : "");
    rd_req_arg(r, 15, r->client_ip);
    rd_req_arg(r, 16, r->key_id);
    rd_req_arg(r, 17, r->request_id);
    rd_req_arg(r, 18, r->idem);
    rd_req_arg(r, 19, code);
    rd_req_call(r, on_paid);
}

/* ---- POST /v1/vouchers/{code}/recharge (admin) --------------------------------------------- */

static void on_recharged(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    const char *status = rd_script_status(r, reply, "recharge");
    if (!status)
        return;
    r->replayed = strcmp(rd_el(reply, 1), "1") == 0;
    if (strcmp(status, "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, 2));
        json_t *details = NULL;
        if (st == RD_E_BALANCE_LIMIT)
            details = json_pack("{s:I, s:I, s:I}", "balance", (json_int_t)rd_el_num(reply, 3),
                                "max_balance", (json_int_t)rd_el_num(reply, 4), "rechargeable",
                                (json_int_t)(rd_el_num(reply, 4) - rd_el_num(reply, 3)));
        const char *msg =
            st == RD_E_KIND_MISMATCH ? "this code is a discount coupon, not a voucher" : NULL;
        rd_reply_error(r, st, msg, details);
        return;
    }
    if (strcmp(status, "ok") != 0 || reply->elements < 6) {
        rd_reply_redis_failure(r, reply, "recharge");
        return;
    }
    rd_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:I, s:I, s:I}", "id", rd_el(reply, 2), "code", r->code,
                            "amount", (json_int_t)rd_el_num(reply, 3), "balance",
                            (json_int_t)rd_el_num(reply, 4), "loaded",
                            (json_int_t)rd_el_num(reply, 5)));
}

void rd_h_voucher_recharge(struct rd_req *r)
{
    struct rd_verr e;
    if (rd_ledger_backlogged(r) || require_idem(r) < 0 || rd_path_code(r) < 0)
        return;
    if (rd_recharge_req_parse(&r->rq, r->body, r->code, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    rd_key_idem(r->keys[1], RD_KEY_MAX, r->bucket, r->code, r->key_id, r->idem);
    rd_key_log(r->keys[2], RD_KEY_MAX, r->bucket);
    rd_req_new_txn(r);
    rd_redeem_req_fingerprint(&r->rq, r->fp);
    snprintf(r->num[0], sizeof(r->num[0]), "%lld", (long long)r->now_ms);
    snprintf(r->num[1], sizeof(r->num[1]), "%lld", (long long)r->rq.order_amount);
    snprintf(r->num[2], sizeof(r->num[2]), "%lld", r->w->cfg->voucher_max_balance);
    snprintf(r->num[3], sizeof(r->num[3]), "%d", r->w->cfg->idempotency_ttl_s);
    r->call.script = RD_LUA_RECHARGE;
    r->call.argc = 0;
    rd_req_arg(r, 0, "3");
    rd_req_arg(r, 1, r->keys[0]);
    rd_req_arg(r, 2, r->keys[1]);
    rd_req_arg(r, 3, r->keys[2]);
    rd_req_arg(r, 4, r->num[0]);
    rd_req_arg(r, 5, r->txn);
    rd_req_arg(r, 6, r->num[1]);
    rd_req_arg(r, 7, r->num[2]);
    rd_req_arg(r, 8, r->rq.currency);
    rd_req_arg(r, 9, r->fp);
    rd_req_arg(r, 10, r->num[3]);
    rd_req_arg(r, 11, r->client_ip);
    rd_req_arg(r, 12, r->key_id);
    rd_req_arg(r, 13, r->request_id);
    rd_req_arg(r, 14, r->idem);
    rd_req_arg(r, 15, r->code);
    rd_req_call(r, on_recharged);
}

/* ---- refund: POST /v1/redemptions/{id}/reverse of a voucher payment ------------------------ */

static void on_refunded(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    const char *status = rd_script_status(r, reply, "refund");
    if (!status)
        return;
    if (strcmp(status, "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, 1));
        json_t *details = NULL;
        if (*rd_el(reply, 2))
            details = json_pack("{s:I}", "refundable", (json_int_t)rd_el_num(reply, 2));
        rd_reply_error(
            r, st, st == RD_E_ALREADY_REVERSED ? "the payment is already refunded in full" : NULL,
            details);
        return;
    }
    if (strcmp(status, "ok") != 0 || reply->elements < 7) {
        rd_reply_redis_failure(r, reply, "refund");
        return;
    }
    r->replayed = strcmp(rd_el(reply, 3), "1") == 0;
    int64_t left = rd_el_num(reply, 6);
    rd_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:I}", "id", r->param, "status",
                            left == 0 ? "refunded" : "partially_refunded", "refund_id",
                            rd_el(reply, 2), "refunded_at", rd_time_json(rd_el_num(reply, 1)),
                            "amount", (json_int_t)rd_el_num(reply, 4), "balance",
                            (json_int_t)rd_el_num(reply, 5), "refundable", (json_int_t)left));
}

void rd_voucher_refund(struct rd_req *r, const char *code, const char *user, int64_t amount)
{
    if (!r->idem) {
        rd_reply_error(r, RD_E_IDEM_REQUIRED,
                       "refunding a voucher payment needs an Idempotency-Key header", NULL);
        return;
    }
    rd_undo_prepare(r, RD_LUA_REFUND, code, user);
    if (amount > 0)
        snprintf(r->num[1], sizeof(r->num[1]), "%lld", (long long)amount);
    else
        r->num[1][0] = '\0';
    rd_req_arg(r, 14, r->num[1]); /* "" = all that is left */
    rd_req_call(r, on_refunded);
}
