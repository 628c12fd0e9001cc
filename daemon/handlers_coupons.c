/* SPDX-License-Identifier: MIT
 *
 * Coupon administration: create, read, PATCH, disable, enable. Every write goes through
 * scripts/lua/coupon_write.lua, which also logs the change (before and after) to the
 * bucket's outbox for the audit trail, and answers with the whole hash so no second read
 * is needed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "shipper.h"
#include "rd/log.h"
#include "rd/share.h"

#define GENERATE_ATTEMPTS 5
#define PATCH_ATTEMPTS    5

int rd_path_code(struct rd_req *r)
{
    if (rd_code_normalize(r->param, strlen(r->param), r->code) < 0) {
        rd_reply_error(r, RD_E_COUPON_NOT_FOUND, NULL, NULL);
        return -1;
    }
    r->bucket = rd_bucket_of(r->code, strlen(r->code), (uint32_t)r->w->cfg->buckets);
    rd_key_coupon(r->keys[0], RD_KEY_MAX, r->bucket, r->code);
    rd_key_log(r->keys[1], RD_KEY_MAX, r->bucket);
    return 0;
}

int rd_coupon_from_reply(struct rd_req *r, const redisReply *reply, size_t from)
{
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
    rd_coupon_free(&r->coupon);
    rd_coupon_init(&r->coupon);
    return rd_coupon_from_hash(&r->coupon, names, nl, values, vl, n);
}

static void write_coupon(struct rd_req *r, const char *mode, const char *ver, rd_redis_cb *cb);

static void on_written(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    if (reply)
        rd_shipper_hint(r->bucket); /* the script may have written an outbox entry */
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
        rd_reply_redis_failure(r, reply, "coupon_write");
        return;
    }
    const char *status = reply->element[0]->str;
    if (strcmp(status, "rejected") == 0 && reply->elements >= 2) {
        enum rd_status st = rd_status_from_name(reply->element[1]->str);
        if (st == RD_E_COUPON_EXISTS && r->attempts > 0 && ++r->attempts <= GENERATE_ATTEMPTS) {
            /* A generated code collided (about 1 in 2^64 per pair): draw another. */
            rd_code_generate(r->coupon.code, RD_CODE_GEN_LEN, rd_worker_random_cb, r->w);
            write_coupon(r, "create", "", on_written);
            return;
        }
        if (st == RD_E_CONFLICT && r->action && strcmp(r->action, "coupon_update") == 0 &&
            ++r->attempts <= PATCH_ATTEMPTS) {
            rd_h_coupon_patch(r); /* read again and re-apply onto the newer version */
            return;
        }
        rd_reply_error(r, st, NULL, NULL);
        return;
    }
    if (rd_coupon_from_reply(r, reply, 1) < 0) {
        rd_error("event=coupon_corrupt req=%s code=%s", r->request_id, r->code);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    int created = strcmp(r->action, "coupon_create") == 0;
    rd_reply_json(r, created ? 201 : 200, rd_coupon_to_json(&r->coupon, r->now_ms));
}

/* arguments: numkeys, 2 keys, 8 fixed, the fields, and a new voucher's 4 money fields */
_Static_assert(11 + 2 * RD_COUPON_NFIELDS + 8 <= RD_RCALL_MAXARGS, "raise RD_RCALL_MAXARGS");

static void write_coupon(struct rd_req *r, const char *mode, const char *ver, rd_redis_cb *cb)
{
    const char *names[RD_COUPON_NFIELDS], *values[RD_COUPON_NFIELDS];
    if (rd_ledger_backlogged(r)) /* every write is an audit entry in the outbox */
        return;
    if (strcmp(mode, "create") == 0) {
        snprintf(r->code, sizeof(r->code), "%s", r->coupon.code);
        r->bucket = rd_bucket_of(r->code, strlen(r->code), (uint32_t)r->w->cfg->buckets);
        rd_key_coupon(r->keys[0], RD_KEY_MAX, r->bucket, r->code);
        rd_key_log(r->keys[1], RD_KEY_MAX, r->bucket);
    }
    rd_req_new_txn(r);
    snprintf(r->num[0], sizeof(r->num[0]), "%lld", (long long)r->now_ms);
    r->call.script = RD_LUA_COUPON_WRITE;
    r->call.argc = 0;
    rd_req_arg(r, 0, "2");
    rd_req_arg(r, 1, r->keys[0]);
    rd_req_arg(r, 2, r->keys[1]);
    rd_req_arg(r, 3, mode);
    rd_req_arg(r, 4, ver);
    rd_req_arg(r, 5, r->num[0]);
    rd_req_arg(r, 6, r->txn);
    rd_req_arg(r, 7, r->key_id);
    rd_req_arg(r, 8, r->request_id);
    rd_req_arg(r, 9, r->client_ip);
    rd_req_arg(r, 10, r->action);
    int i = 11;
    if (strcmp(r->action, "coupon_create") == 0 || strcmp(r->action, "coupon_update") == 0) {
        rd_coupon_fields(&r->coupon, names, values, r->scratch);
        for (int f = 0; f < RD_COUPON_NFIELDS; f++) {
            rd_req_arg(r, i++, names[f]);
            rd_req_arg(r, i++, values[f]);
        }
        if (r->coupon.kind == RD_KIND_VOUCHER && strcmp(mode, "create") == 0) {
            /* the money fields are the scripts' from here on: set once, at creation */
            snprintf(r->num[1], sizeof(r->num[1]), "%lld", (long long)r->coupon.balance);
            static const char *const money[] = {"bal", "loaded"};
            for (int f = 0; f < 2; f++) {
                rd_req_arg(r, i++, money[f]);
                rd_req_arg(r, i++, r->num[1]);
            }
            rd_req_arg(r, i++, "spent");
            rd_req_arg(r, i++, "0");
            rd_req_arg(r, i++, "refunded");
            rd_req_arg(r, i++, "0");
        }
    } else {
        rd_req_arg(r, i++, "status");
        rd_req_arg(r, i++, strcmp(r->action, "coupon_disable") == 0 ? "disabled" : "active");
        rd_req_arg(r, i++, "updated_at");
        rd_req_arg(r, i++, r->num[0]);
    }
    rd_req_call(r, cb);
}

void rd_h_coupon_create(struct rd_req *r)
{
    struct rd_verr e;
    if (rd_coupon_from_create(&r->coupon, r->body, r->now_ms, r->w->cfg->voucher_max_balance, &e) <
        0) {
        rd_reply_verr(r, &e);
        return;
    }
    if (r->coupon.code[0] == '\0') {
        rd_code_generate(r->coupon.code, RD_CODE_GEN_LEN, rd_worker_random_cb, r->w);
        r->attempts = 1; /* marks the code as ours to regenerate on collision */
    }
    r->action = "coupon_create";
    write_coupon(r, "create", "", on_written);
}

static void on_fetched(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        rd_reply_redis_failure(r, reply, "coupon_get");
        return;
    }
    if (reply->elements == 0 && !r->action) {
        rd_coupon_from_ledger(r); /* archived codes are kept there */
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
    if (r->action && strcmp(r->action, "coupon_update") == 0) {
        struct rd_verr e;
        if (rd_coupon_apply_patch(&r->coupon, r->body, r->now_ms, &e) < 0) {
            rd_reply_verr(r, &e);
            return;
        }
        snprintf(r->num[1], sizeof(r->num[1]), "%lld", (long long)r->coupon.ver);
        write_coupon(r, "update", r->num[1], on_written);
        return;
    }
    rd_reply_json(r, 200, rd_coupon_to_json(&r->coupon, r->now_ms));
}

static void fetch(struct rd_req *r)
{
    r->call.script = RD_LUA_COUPON_READ; /* a batch code reads through its template */
    r->call.argc = 0;
    rd_req_arg(r, 0, "1");
    rd_req_arg(r, 1, r->keys[0]);
    rd_req_call(r, on_fetched);
}

void rd_h_coupon_get(struct rd_req *r)
{
    if (rd_path_code(r) < 0)
        return;
    fetch(r);
}

void rd_h_coupon_patch(struct rd_req *r)
{
    if (!r->action) {
        if (rd_path_code(r) < 0)
            return;
        r->action = "coupon_update";
    }
    fetch(r); /* on_fetched applies the patch to what it reads */
}

static void set_status(struct rd_req *r, const char *action)
{
    if (rd_path_code(r) < 0)
        return;
    if (json_object_size(r->body) != 0) {
        struct rd_verr e;
        const char *key = json_object_iter_key(json_object_iter(r->body));
        rd_verr_set(&e, key, "unknown field");
        rd_reply_verr(r, &e);
        return;
    }
    r->action = action;
    write_coupon(r, "update", "", on_written);
}

void rd_h_coupon_disable(struct rd_req *r)
{
    set_status(r, "coupon_disable");
}

void rd_h_coupon_enable(struct rd_req *r)
{
    set_status(r, "coupon_enable");
}

/* ---- POST /v1/coupons/{code}/share ---------------------------------------------------------- */

static void on_shared(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    const char *status = rd_script_status(r, reply, "share");
    if (!status)
        return;
    if (strcmp(status, "rejected") == 0) {
        rd_reply_error(r, rd_status_from_name(rd_el(reply, 1)), NULL, NULL);
        return;
    }
    const char *intro = json_string_value(json_object_get(r->body, "message"));
    const char *channel = json_string_value(json_object_get(r->body, "channel"));
    const char *recipient = json_string_value(json_object_get(r->body, "recipient"));
    char msg[RD_SHARE_MSG_MAX], url[RD_SHARE_URL_MAX];
    rd_share_message(intro ? intro : "Here is your code.", r->code, rd_el_num(reply, 2),
                     (int)strtol(rd_el(reply, 3), NULL, 10), msg);
    rd_share_whatsapp_url(msg, url);
    json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:I, s:s, s:s}", "code", r->code, "channel",
                          channel ? channel : "whatsapp", "recipient",
                          recipient ? json_string(recipient) : json_null(), "shared_at",
                          rd_time_json(r->now_ms), "shares", (json_int_t)rd_el_num(reply, 1),
                          "message", msg, "whatsapp_url", url);
    rd_reply_json(r, 200, o);
}

void rd_h_coupon_share(struct rd_req *r)
{
    static const char *const keys[] = {"channel", "recipient", "message", NULL};
    static const char *const channels[] = {"whatsapp", "email", "sms", "link", "other", NULL};
    struct rd_verr e;
    const char *channel = "whatsapp", *recipient = "", *intro;
    if (rd_path_code(r) < 0)
        return;
    if (rd_json_only_keys(r->body, keys, "", &e) < 0 ||
        rd_json_str(r->body, "channel", RD_J_OPTIONAL, 1, 16, &channel, NULL, &e) < 0 ||
        rd_json_str(r->body, "recipient", RD_J_OPTIONAL, 1, 256, &recipient, NULL, &e) < 0 ||
        rd_json_str(r->body, "message", RD_J_OPTIONAL, 1, RD_SHARE_INTRO_MAX, &intro, NULL, &e) <
            0) {
        rd_reply_verr(r, &e);
        return;
    }
    int known = 0;
    for (const char *const *c = channels; *c; c++)
        known |= strcmp(*c, channel) == 0;
    if (!known) {
        rd_verr_set(&e, "channel", "must be whatsapp, email, sms, link or other");
        rd_reply_verr(r, &e);
        return;
    }
    if (rd_ledger_backlogged(r)) /* a share is a ledger row */
        return;
    rd_req_new_txn(r);
    snprintf(r->num[0], sizeof(r->num[0]), "%lld", (long long)r->now_ms);
    r->call.script = RD_LUA_SHARE;
    r->call.argc = 0;
    rd_req_arg(r, 0, "2");
    rd_req_arg(r, 1, r->keys[0]);
    rd_req_arg(r, 2, r->keys[1]);
    rd_req_arg(r, 3, r->num[0]);
    rd_req_arg(r, 4, r->txn);
    rd_req_arg(r, 5, channel);
    rd_req_arg(r, 6, recipient);
    rd_req_arg(r, 7, r->client_ip);
    rd_req_arg(r, 8, r->key_id);
    rd_req_arg(r, 9, r->request_id);
    rd_req_arg(r, 10, r->code);
    rd_req_call(r, on_shared);
}
