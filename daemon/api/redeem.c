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

static void on_redeem(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    struct rd_api *a = rd_api(r);
    (void)redis;
    const char *status =
        rd_script_status(r, reply, a->redeem ? 1 : -1, a->redeem ? "redeem" : "validate");
    if (!status)
        return;
    r->replayed = strcmp(rd_el(reply, RD_REDEEM_OK_REPLAYED), "1") == 0;
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
            rd_reply_json(r, 200, o);
            return;
        }
        if (a->redeem)
            json_object_set_new(details, "attempt_id",
                                json_string(rd_el(reply, RD_REDEEM_REJECTED_ID)));
        rd_reply_error(r, st, NULL, details);
        return;
    }
    if (strcmp(status, "ok") != 0 || reply->elements < RD_REDEEM_OK__LEN) {
        rd_reply_redis_failure(r, reply, "redeem");
        return;
    }
    int64_t amount = rd_el_num(reply, RD_REDEEM_OK_ORDER_AMOUNT), discount;
    if (discount_of(rd_el(reply, RD_REDEEM_OK_DTYPE), rd_el_num(reply, RD_REDEEM_OK_DVALUE),
                    rd_el_num(reply, RD_REDEEM_OK_DMAX), rd_el_num(reply, RD_REDEEM_OK_MIN_ORDER),
                    amount, &discount) != RD_OK) {
        rd_error("event=discount_inconsistent req=%s code=%s", r->request_id,
                 rd_el(reply, RD_REDEEM_OK_CODE));
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    json_t *remaining =
        json_pack("{s:o, s:o, s:o, s:o}", "total", rd_opt_count(reply, RD_REDEEM_OK_REM_TOTAL),
                  "user", rd_opt_count(reply, RD_REDEEM_OK_REM_USER), "user_daily",
                  rd_opt_count(reply, RD_REDEEM_OK_REM_DAILY), "user_weekly",
                  rd_opt_count(reply, RD_REDEEM_OK_REM_WEEKLY));
    if (!a->redeem) {
        rd_reply_json(r, 200,
                      json_pack("{s:b, s:s, s:I, s:I, s:s, s:o}", "valid", 1, "code",
                                rd_el(reply, RD_REDEEM_OK_CODE), "discount", (json_int_t)discount,
                                "order_amount", (json_int_t)amount, "currency",
                                rd_el(reply, RD_REDEEM_OK_CURRENCY), "remaining", remaining));
        return;
    }
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:o}", "id", rd_el(reply, RD_REDEEM_OK_ID), "code",
        rd_el(reply, RD_REDEEM_OK_CODE), "user_id", rd_el(reply, RD_REDEEM_OK_USER_ID), "discount",
        (json_int_t)discount, "order_amount", (json_int_t)amount, "currency",
        rd_el(reply, RD_REDEEM_OK_CURRENCY), "created_at",
        rd_time_json(rd_el_num(reply, RD_REDEEM_OK_CREATED_AT)), "remaining", remaining);
    if (*rd_el(reply, RD_REDEEM_OK_ORDER_ID))
        json_object_set_new(o, "order_id", json_string(rd_el(reply, RD_REDEEM_OK_ORDER_ID)));
    /* The stored answer is replayed with the same status, so replays are byte-identical. */
    rd_reply_json(r, 201, o);
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
    struct rd_use_call u;
    rd_use_prepare(r, &u, RD_LUA_REDEEM, redeem ? a->idem : "");
    rd_cmd_arg(&u.cmd, RD_REDEEM_A_MODE, redeem ? "redeem" : "validate");
    rd_req_send(r, &u.cmd, on_redeem);
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

static int64_t hnum(const redisReply *reply, const char *name)
{
    const char *s = rd_redis_field(reply, name);
    return *s ? strtoll(s, NULL, 10) : -1;
}

static void on_redemption(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        rd_reply_redis_failure(r, reply, "redemption_get");
        return;
    }
    if (reply->elements == 0) {
        /* the Redis record expires (redemption_ttl_s); the ledger keeps it for good */
        rd_redemption_from_ledger(r);
        return;
    }
    if (strcmp(rd_redis_field(reply, "kind"), "pay") == 0) {
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:o, s:I}", "id", r->param, "kind",
                      "pay", "code", rd_redis_field(reply, "code"), "user_id",
                      rd_redis_field(reply, "user"), "amount", (json_int_t)hnum(reply, "paid"),
                      "refunded", (json_int_t)hnum(reply, "refunded"), "currency",
                      rd_redis_field(reply, "currency"), "status", rd_redis_field(reply, "status"),
                      "created_at", rd_time_json(hnum(reply, "created_at")), "balance_after",
                      (json_int_t)hnum(reply, "balance_after"));
        if (*rd_redis_field(reply, "order"))
            json_object_set_new(o, "order_id", json_string(rd_redis_field(reply, "order")));
        rd_reply_json(r, 200, o);
        return;
    }
    int64_t amount = hnum(reply, "amount"), discount = 0;
    if (discount_of(rd_redis_field(reply, "dtype"), hnum(reply, "dvalue"), hnum(reply, "dmax"),
                    hnum(reply, "min_order"), amount, &discount) != RD_OK) {
        rd_error("event=redemption_corrupt req=%s id=%s", r->request_id, r->param);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:o}", "id", r->param, "code",
                  rd_redis_field(reply, "code"), "user_id", rd_redis_field(reply, "user"),
                  "order_amount", (json_int_t)amount, "discount", (json_int_t)discount, "currency",
                  rd_redis_field(reply, "currency"), "status", rd_redis_field(reply, "status"),
                  "created_at", rd_time_json(hnum(reply, "created_at")));
    if (*rd_redis_field(reply, "order"))
        json_object_set_new(o, "order_id", json_string(rd_redis_field(reply, "order")));
    if (*rd_redis_field(reply, "reversed_at")) {
        json_object_set_new(o, "reversed_at", rd_time_json(hnum(reply, "reversed_at")));
        json_object_set_new(o, "reversal_id", json_string(rd_redis_field(reply, "reversal_id")));
    }
    rd_reply_json(r, 200, o);
}

void rd_h_redemption_get(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    if (rd_path_txn(r) < 0)
        return;
    char key[RD_KEY_MAX];
    rd_key_redemption(key, sizeof(key), a->bucket, r->param);
    struct rd_cmd cmd;
    rd_cmd_plain(&cmd);
    rd_cmd_push(&cmd, "HGETALL", 7);
    rd_cmd_push(&cmd, key, strlen(key));
    rd_req_send(r, &cmd, on_redemption);
}
