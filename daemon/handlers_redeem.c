/* SPDX-License-Identifier: MIT
 *
 * The checkout path: validate, redeem, read a redemption, reverse it. Validate and redeem
 * are one EVALSHA of scripts/lua/redeem.lua each (validate in its dry-run mode), so the
 * decision is atomic and the two can never disagree. The discount amount is computed here
 * from the coupon terms the script returns, with the one function the ledger uses too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "rd/discount.h"
#include "rd/log.h"
#include "rd/rdtime.h"
#include "shipper.h"

static enum rd_status discount_of(const char *dtype, int64_t dvalue, int64_t dmax,
                                  int64_t min_order, int64_t amount, int64_t *out)
{
    struct rd_discount d = {rd_dtype_parse(dtype), dvalue, dmax, min_order};
    return rd_discount_compute(&d, amount, out);
}

/* Element layout of redeem.lua's "ok" answer. */
enum {
    OK_ID = 2,
    OK_CREATED,
    OK_DTYPE,
    OK_DVALUE,
    OK_DMAX,
    OK_MIN_ORDER,
    OK_CCUR,
    OK_REM_TOTAL,
    OK_REM_USER,
    OK_REM_DAILY,
    OK_REM_WEEKLY,
    OK_AMOUNT,
    OK_CURRENCY,
    OK_USER,
    OK_ORDER,
    OK_CODE,
    OK__COUNT = 21
};

static void on_redeem(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    const char *status = rd_script_status(r, reply, r->redeem_mode ? "redeem" : "validate");
    if (!status)
        return;
    r->replayed = strcmp(rd_el(reply, 1), "1") == 0;
    if (strcmp(status, "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, 2));
        json_t *details = json_object();
        if (*rd_el(reply, 4))
            json_object_set_new(details, "resets_at", rd_time_json(rd_el_num(reply, 4)));
        if (!r->redeem_mode && rd_status_is_business(st)) {
            json_t *o =
                json_pack("{s:b, s:s, s:s, s:s, s:o}", "valid", 0, "code", r->rq.code, "reason",
                          rd_status_name(st), "message", rd_status_message(st), "details", details);
            rd_reply_json(r, 200, o);
            return;
        }
        if (r->redeem_mode)
            json_object_set_new(details, "attempt_id", json_string(rd_el(reply, 3)));
        rd_reply_error(r, st, NULL, details);
        return;
    }
    if (strcmp(status, "ok") != 0 || reply->elements < OK__COUNT) {
        rd_reply_redis_failure(r, reply, "redeem");
        return;
    }
    int64_t amount = rd_el_num(reply, OK_AMOUNT), discount;
    if (discount_of(rd_el(reply, OK_DTYPE), rd_el_num(reply, OK_DVALUE), rd_el_num(reply, OK_DMAX),
                    rd_el_num(reply, OK_MIN_ORDER), amount, &discount) != RD_OK) {
        rd_error("event=discount_inconsistent req=%s code=%s", r->request_id,
                 rd_el(reply, OK_CODE));
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    json_t *remaining =
        json_pack("{s:o, s:o, s:o, s:o}", "total", rd_opt_count(reply, OK_REM_TOTAL), "user",
                  rd_opt_count(reply, OK_REM_USER), "user_daily", rd_opt_count(reply, OK_REM_DAILY),
                  "user_weekly", rd_opt_count(reply, OK_REM_WEEKLY));
    if (!r->redeem_mode) {
        rd_reply_json(r, 200,
                      json_pack("{s:b, s:s, s:I, s:I, s:s, s:o}", "valid", 1, "code",
                                rd_el(reply, OK_CODE), "discount", (json_int_t)discount,
                                "order_amount", (json_int_t)amount, "currency",
                                rd_el(reply, OK_CURRENCY), "remaining", remaining));
        return;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:o}", "id", rd_el(reply, OK_ID),
                          "code", rd_el(reply, OK_CODE), "user_id", rd_el(reply, OK_USER),
                          "discount", (json_int_t)discount, "order_amount", (json_int_t)amount,
                          "currency", rd_el(reply, OK_CURRENCY), "created_at",
                          rd_time_json(rd_el_num(reply, OK_CREATED)), "remaining", remaining);
    if (*rd_el(reply, OK_ORDER))
        json_object_set_new(o, "order_id", json_string(rd_el(reply, OK_ORDER)));
    /* The stored answer is replayed with the same status, so replays are byte-identical. */
    rd_reply_json(r, 201, o);
}

void rd_use_prepare(struct rd_req *r, int script, const char *code, const char *idem)
{
    rd_key_coupon(r->keys[0], RD_KEY_MAX, r->bucket, code);
    rd_key_users(r->keys[1], RD_KEY_MAX, r->bucket, code);
    rd_key_idem(r->keys[2], RD_KEY_MAX, r->bucket, code, r->key_id, idem);
    rd_req_new_txn(r);
    rd_key_redemption(r->keys[3], RD_KEY_MAX, r->bucket, r->txn);
    rd_key_log(r->keys[4], RD_KEY_MAX, r->bucket);
    rd_redeem_req_fingerprint(&r->rq, r->fp);
    snprintf(r->num[0], sizeof(r->num[0]), "%lld", (long long)r->now_ms);
    snprintf(r->num[1], sizeof(r->num[1]), "%lld", (long long)r->rq.order_amount);
    snprintf(r->num[2], sizeof(r->num[2]), "%d", r->w->cfg->idempotency_ttl_s);
    snprintf(r->num[3], sizeof(r->num[3]), "%d", r->w->cfg->redemption_ttl_s);
    r->call.script = script;
    r->call.argc = 0;
    rd_req_arg(r, 0, "5");
    for (int i = 0; i < 5; i++)
        rd_req_arg(r, 1 + i, r->keys[i]);
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

static void redeem_or_validate(struct rd_req *r, int redeem)
{
    struct rd_verr e;
    r->redeem_mode = redeem;
    /* validate too: a probe of an unknown code is a ledger entry (the fraud signal) */
    if (rd_ledger_backlogged(r))
        return;
    if (redeem) {
        r->idem = rd_req_header(r, "Idempotency-Key");
        if (!r->idem) {
            rd_reply_error(r, RD_E_IDEM_REQUIRED, NULL, NULL);
            return;
        }
        if (rd_idem_key_check(r->idem) < 0) {
            rd_verr_set(&e, "Idempotency-Key", "must be 1 to 255 printable ASCII characters");
            rd_reply_verr(r, &e);
            return;
        }
    }
    if (rd_redeem_req_parse(&r->rq, r->body, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    const char *code = r->rq.code;
    r->bucket = rd_bucket_of(code, strlen(code), (uint32_t)r->w->cfg->buckets);
    rd_use_prepare(r, RD_LUA_REDEEM, code, redeem ? r->idem : "");
    rd_req_arg(r, 6, redeem ? "redeem" : "validate");
    rd_req_arg(r, 7, r->num[0]);
    rd_req_arg(r, 8, r->rq.user_id);
    rd_req_arg(r, 9, r->num[1]);
    rd_req_arg(r, 10, r->rq.currency);
    rd_req_arg(r, 11, r->fp);
    rd_req_arg(r, 12, r->txn);
    rd_req_arg(r, 13, r->num[2]);
    rd_req_arg(r, 14, r->num[3]);
    rd_req_arg(r, 15, r->rq.order_id ? r->rq.order_id : "");
    rd_req_arg(r, 16, r->client_ip);
    rd_req_arg(r, 17, r->key_id);
    rd_req_arg(r, 18, r->request_id);
    rd_req_arg(r, 19, redeem ? r->idem : "");
    rd_req_arg(r, 20, code);
    rd_req_call(r, on_redeem);
}

void rd_h_validate(struct rd_req *r)
{
    redeem_or_validate(r, 0);
}

void rd_h_redeem(struct rd_req *r)
{
    redeem_or_validate(r, 1);
}

/* ---- reading and reversing a redemption -------------------------------------------------- */

static int path_txn(struct rd_req *r)
{
    int b = rd_txn_id_bucket(r->param, (uint32_t)r->w->cfg->buckets);
    if (b < 0) {
        rd_reply_error(r, RD_E_REDEMPTION_NOT_FOUND, NULL, NULL);
        return -1;
    }
    r->bucket = (uint32_t)b;
    rd_key_redemption(r->keys[0], RD_KEY_MAX, r->bucket, r->param);
    return 0;
}

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
    if (path_txn(r) < 0)
        return;
    r->call.script = -1;
    r->call.argc = 0;
    rd_req_arg(r, 0, "HGETALL");
    rd_req_arg(r, 1, r->keys[0]);
    rd_req_call(r, on_redemption);
}

static void on_reversed(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    if (reply)
        rd_shipper_hint(r->bucket); /* the script may have written an outbox entry */
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) {
        rd_reply_redis_failure(r, reply, "reverse");
        return;
    }
    if (strcmp(rd_el(reply, 0), "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, 1));
        json_t *details = NULL;
        if (*rd_el(reply, 2))
            details = json_pack("{s:o, s:s}", "reversed_at", rd_time_json(rd_el_num(reply, 2)),
                                "reversal_id", rd_el(reply, 3));
        rd_reply_error(r, st, NULL, details);
        return;
    }
    r->replayed = strcmp(rd_el(reply, 3), "1") == 0;
    rd_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:o, s:s}", "id", r->param, "status", "reversed",
                            "reversed_at", rd_time_json(rd_el_num(reply, 1)), "reversal_id",
                            rd_el(reply, 2)));
}

/* Step one: read the record's code and user, which name the counter keys. */
static void on_reverse_lookup(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        rd_reply_redis_failure(r, reply, "reverse_lookup");
        return;
    }
    if (reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        rd_reply_error(r, RD_E_REDEMPTION_NOT_FOUND, NULL, NULL);
        return;
    }
    int is_pay =
        reply->element[2]->type == REDIS_REPLY_STRING && strcmp(reply->element[2]->str, "pay") == 0;
    if (is_pay) {
        rd_voucher_refund(r, reply->element[0]->str, reply->element[1]->str, r->refund_amount);
        return;
    }
    if (r->refund_amount > 0) {
        struct rd_verr e;
        rd_verr_set(&e, "amount",
                    "only a voucher payment can be refunded in part; a redemption is reversed "
                    "whole (send no body)");
        rd_reply_verr(r, &e);
        return;
    }
    rd_undo_prepare(r, RD_LUA_REVERSE, reply->element[0]->str, reply->element[1]->str);
    rd_req_call(r, on_reversed);
}

void rd_undo_prepare(struct rd_req *r, int script, const char *code, const char *user)
{
    snprintf(r->code, sizeof(r->code), "%s", code);
    /* The user id is copied: the reply it came from dies when its callback returns. */
    snprintf(r->scratch, sizeof(r->scratch), "%s", user);
    rd_key_coupon(r->keys[1], RD_KEY_MAX, r->bucket, r->code);
    rd_key_users(r->keys[2], RD_KEY_MAX, r->bucket, r->code);
    rd_key_log(r->keys[3], RD_KEY_MAX, r->bucket);
    rd_req_new_txn(r);
    snprintf(r->num[0], sizeof(r->num[0]), "%lld", (long long)r->now_ms);
    r->call.script = script;
    r->call.argc = 0;
    rd_req_arg(r, 0, "4");
    for (int i = 0; i < 4; i++)
        rd_req_arg(r, 1 + i, r->keys[i]);
    rd_req_arg(r, 5, r->num[0]);
    rd_req_arg(r, 6, r->txn);
    rd_req_arg(r, 7, r->code);
    rd_req_arg(r, 8, r->scratch);
    rd_req_arg(r, 9, r->client_ip);
    rd_req_arg(r, 10, r->key_id);
    rd_req_arg(r, 11, r->request_id);
    rd_req_arg(r, 12, r->param);
    rd_req_arg(r, 13, r->idem ? r->idem : "");
}

void rd_h_reverse(struct rd_req *r)
{
    if (path_txn(r) < 0 || rd_ledger_backlogged(r))
        return;
    /* {"amount": n} refunds part of a voucher payment; nothing else may be in the body */
    static const char *const keys[] = {"amount", NULL};
    struct rd_verr e;
    int64_t amount = 0;
    if (rd_json_only_keys(r->body, keys, "", &e) < 0 ||
        rd_json_int(r->body, "amount", RD_J_OPTIONAL, 1, RD_AMOUNT_MAX, &amount, NULL, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    r->refund_amount = amount;
    r->idem = rd_req_header(r, "Idempotency-Key");
    if (r->idem && rd_idem_key_check(r->idem) < 0) {
        rd_verr_set(&e, "Idempotency-Key", "must be 1 to 255 printable ASCII characters");
        rd_reply_verr(r, &e);
        return;
    }
    r->call.script = -1;
    r->call.argc = 0;
    rd_req_arg(r, 0, "HMGET");
    rd_req_arg(r, 1, r->keys[0]);
    rd_req_arg(r, 2, "code");
    rd_req_arg(r, 3, "user");
    rd_req_arg(r, 4, "kind");
    rd_req_call(r, on_reverse_lookup);
}
