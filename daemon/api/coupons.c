/* SPDX-License-Identifier: MIT
 *
 * Coupon administration: create, read, PATCH, disable, enable, share. Every write goes
 * through scripts/lua/coupon_write.lua, which also logs the change (before and after) to the
 * bucket's outbox for the audit trail, and answers with the whole hash so no second read
 * is needed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "rd/log.h"
#include "rd/share.h"
#include "jobs/shipper.h"

#define GENERATE_ATTEMPTS 5
#define PATCH_ATTEMPTS    5

/* a create sends every field and a new voucher's four money fields */
_Static_assert(3 + RD_COUPON_WRITE_NKEYS + RD_COUPON_WRITE_NARGS + 2 * (RD_COUPON_NFIELDS + 4) <=
                   RD_CMD_MAXARGS,
               "raise RD_CMD_MAXARGS");

static void write_coupon(struct rd_req *r, const char *mode, const char *ver, rd_redis_cb *cb);

static void answer_written(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    int created = strcmp(a->action, "coupon_create") == 0;
    json_t *o;
    if (a->coupon.shards[0]) {
        a->coupon.used = rd_hot_used(r);
        o = rd_coupon_to_json(&a->coupon, r->now_ms);
        rd_hot_json(r, o);
    } else {
        o = rd_coupon_to_json(&a->coupon, r->now_ms);
    }
    rd_reply_json(r, created ? 201 : 200, o);
}

static void on_written(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    struct rd_api *a = rd_api(r);
    (void)redis;
    const char *status = rd_script_status(r, reply, 1, "coupon_write");
    if (!status)
        return;
    if (strcmp(status, "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, RD_COUPON_WRITE_REJECTED_REASON));
        if (st == RD_E_COUPON_EXISTS && a->attempts > 0 && ++a->attempts <= GENERATE_ATTEMPTS) {
            /* A generated code collided (about 1 in 2^64 per pair): draw another. */
            rd_code_generate(a->coupon.code, RD_CODE_GEN_LEN, rd_worker_random_cb, r->w);
            write_coupon(r, "create", "", on_written);
            return;
        }
        if (st == RD_E_CONFLICT && a->action && strcmp(a->action, "coupon_update") == 0 &&
            ++a->attempts <= PATCH_ATTEMPTS) {
            rd_h_coupon_patch(r); /* read again and re-apply onto the newer version */
            return;
        }
        rd_reply_error(r, st, NULL, NULL);
        return;
    }
    if (rd_coupon_from_reply(r, reply, 1) < 0) { /* "ok", then the whole hash */
        rd_error("event=coupon_corrupt req=%s code=%s", r->request_id, a->code);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    if (a->coupon.shards[0]) {
        rd_hot_sync(r, answer_written);
        return;
    }
    answer_written(r);
}

/* Which primary serves bucket b (cluster), so that shards land on different ones. */
static int node_of_bucket(uint32_t b, void *arg)
{
    const struct rd_redis *redis = arg;
    if (!redis->cluster || !redis->map)
        return 0;
    char tag[16];
    int n = snprintf(tag, sizeof(tag), "{%04u}", b);
    uint16_t node = redis->map->slot_node[rd_cluster_keyslot(tag, (size_t)n)];
    return node == RD_SLOT_NONE ? -1 : node;
}

static int place_shards(struct rd_req *r, int n, char layout[RD_SHARD_LAYOUT_SZ])
{
    struct rd_api *a = rd_api(r);
    struct rd_shard_layout l;
    if (rd_shard_place(a->code, a->bucket, (uint32_t)r->w->cfg->buckets, n, node_of_bucket,
                       &r->w->redis, &l) < 0 ||
        rd_shard_layout_format(&l, layout, RD_SHARD_LAYOUT_SZ) < 0)
        return -1;
    return 0;
}

static void write_coupon(struct rd_req *r, const char *mode, const char *ver, rd_redis_cb *cb)
{
    struct rd_api *a = rd_api(r);
    if (rd_ledger_backlogged(r)) /* every write is an audit entry in the outbox */
        return;
    if (strcmp(mode, "create") == 0) {
        snprintf(a->code, sizeof(a->code), "%s", a->coupon.code);
        a->bucket = rd_bucket_of(a->code, strlen(a->code), (uint32_t)r->w->cfg->buckets);
    }
    char coupon[RD_KEY_MAX], log[RD_KEY_MAX], shard[RD_KEY_MAX], users[RD_KEY_MAX];
    char txn[RD_TXN_ID_LEN + 1];
    char now[24], bal[24], layout[RD_SHARD_LAYOUT_SZ] = "";
    char scratch[RD_COUPON_SCRATCH];
    const char *names[RD_COUPON_NFIELDS], *values[RD_COUPON_NFIELDS];
    if (strcmp(mode, "create") == 0 && a->coupon.nshards > 1 &&
        place_shards(r, a->coupon.nshards, layout) < 0) {
        rd_reply_error(r, RD_E_UNAVAILABLE, "no place for the coupon's shards; retry shortly",
                       NULL);
        return;
    }
    rd_key_coupon(coupon, sizeof(coupon), a->bucket, a->code);
    rd_key_shard(shard, sizeof(shard), a->bucket, a->code);
    rd_key_users(users, sizeof(users), a->bucket, a->code);
    rd_key_log(log, sizeof(log), a->bucket);
    rd_req_new_txn(r, a->bucket, txn);
    snprintf(now, sizeof(now), "%lld", (long long)r->now_ms);
    struct rd_cmd cmd;
    rd_cmd_script(&cmd, RD_LUA_COUPON_WRITE);
    rd_cmd_key(&cmd, RD_COUPON_WRITE_K_COUPON, coupon);
    rd_cmd_key(&cmd, RD_COUPON_WRITE_K_LOG, log);
    rd_cmd_key(&cmd, RD_COUPON_WRITE_K_SHARD, shard);
    rd_cmd_key(&cmd, RD_COUPON_WRITE_K_USERS, users);
    rd_cmd_arg(&cmd, RD_COUPON_WRITE_A_MODE, mode);
    rd_cmd_arg(&cmd, RD_COUPON_WRITE_A_VER, ver);
    rd_cmd_arg(&cmd, RD_COUPON_WRITE_A_NOW_MS, now);
    rd_cmd_arg(&cmd, RD_COUPON_WRITE_A_TXN, txn);
    rd_cmd_arg(&cmd, RD_COUPON_WRITE_A_KEY_ID, r->key_id);
    rd_cmd_arg(&cmd, RD_COUPON_WRITE_A_REQUEST_ID, r->request_id);
    rd_cmd_arg(&cmd, RD_COUPON_WRITE_A_CLIENT_IP, r->client_ip);
    rd_cmd_arg(&cmd, RD_COUPON_WRITE_A_ACTION, a->action);
    if (strcmp(a->action, "coupon_create") == 0 || strcmp(a->action, "coupon_update") == 0) {
        rd_coupon_fields(&a->coupon, names, values, scratch);
        for (int f = 0; f < RD_COUPON_NFIELDS; f++) {
            rd_cmd_push(&cmd, names[f], strlen(names[f]));
            rd_cmd_push(&cmd, values[f], strlen(values[f]));
        }
        if (layout[0]) { /* fixed from here on: no write sends it again */
            rd_cmd_push(&cmd, "shards", 6);
            rd_cmd_push(&cmd, layout, strlen(layout));
        }
        if (a->coupon.kind == RD_KIND_VOUCHER && strcmp(mode, "create") == 0) {
            /* the money fields are the scripts' from here on: set once, at creation */
            snprintf(bal, sizeof(bal), "%lld", (long long)a->coupon.balance);
            static const char *const money[] = {"bal", "loaded", "spent", "refunded"};
            for (int f = 0; f < 4; f++) {
                rd_cmd_push(&cmd, money[f], strlen(money[f]));
                rd_cmd_push(&cmd, f < 2 ? bal : "0", f < 2 ? strlen(bal) : 1);
            }
        }
    } else {
        const char *st = strcmp(a->action, "coupon_disable") == 0 ? "disabled" : "active";
        rd_cmd_push(&cmd, "status", 6);
        rd_cmd_push(&cmd, st, strlen(st));
        rd_cmd_push(&cmd, "updated_at", 10);
        rd_cmd_push(&cmd, now, strlen(now));
    }
    rd_req_send_durable(r, &cmd, cb);
}

void rd_h_coupon_create(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    struct rd_verr e;
    if (rd_coupon_from_create(&a->coupon, r->body, r->now_ms, r->w->cfg->voucher_max_balance, &e) <
        0) {
        rd_reply_verr(r, &e);
        return;
    }
    if (a->coupon.code[0] == '\0') {
        rd_code_generate(a->coupon.code, RD_CODE_GEN_LEN, rd_worker_random_cb, r->w);
        a->attempts = 1; /* marks the code as ours to regenerate on collision */
    }
    a->action = "coupon_create";
    write_coupon(r, "create", "", on_written);
}

static void answer_fetched(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    if (!a->coupon.shards[0]) {
        rd_reply_json(r, 200, rd_coupon_to_json(&a->coupon, r->now_ms));
        return;
    }
    a->coupon.used = rd_hot_used(r);
    json_t *o = rd_coupon_to_json(&a->coupon, r->now_ms);
    rd_hot_json(r, o);
    rd_reply_json(r, 200, o);
}

static void on_fetched(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    struct rd_api *a = rd_api(r);
    (void)redis;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        rd_reply_redis_failure(r, reply, "coupon_get");
        return;
    }
    if (reply->elements == 0 && !a->action) {
        rd_coupon_from_ledger(r); /* archived codes are kept there */
        return;
    }
    if (reply->elements == 0) {
        rd_reply_error(r, RD_E_COUPON_NOT_FOUND, NULL, NULL);
        return;
    }
    if (rd_coupon_from_reply(r, reply, 0) < 0) {
        rd_error("event=coupon_corrupt req=%s code=%s", r->request_id, a->code);
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    if (a->action && strcmp(a->action, "coupon_update") == 0) {
        struct rd_verr e;
        if (rd_coupon_apply_patch(&a->coupon, r->body, r->now_ms, &e) < 0) {
            rd_reply_verr(r, &e);
            return;
        }
        char ver[24];
        snprintf(ver, sizeof(ver), "%lld", (long long)a->coupon.ver);
        write_coupon(r, "update", ver, on_written);
        return;
    }
    if (a->coupon.shards[0]) {
        rd_hot_read(r, answer_fetched);
        return;
    }
    answer_fetched(r);
}

static void fetch(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    char key[RD_KEY_MAX];
    rd_key_coupon(key, sizeof(key), a->bucket, a->code);
    struct rd_cmd cmd;
    rd_cmd_script(&cmd, RD_LUA_COUPON_READ); /* a batch code reads through its template */
    rd_cmd_key(&cmd, RD_COUPON_READ_K_COUPON, key);
    rd_req_send(r, &cmd, on_fetched);
}

void rd_h_coupon_get(struct rd_req *r)
{
    if (rd_path_code(r) < 0)
        return;
    fetch(r);
}

void rd_h_coupon_patch(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    if (!a->action) {
        if (rd_path_code(r) < 0)
            return;
        a->action = "coupon_update";
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
    rd_api(r)->action = action;
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
    struct rd_api *a = rd_api(r);
    (void)redis;
    const char *status = rd_script_status(r, reply, 1, "share");
    if (!status)
        return;
    if (strcmp(status, "rejected") == 0) {
        rd_reply_error(r, rd_status_from_name(rd_el(reply, RD_SHARE_REJECTED_REASON)), NULL, NULL);
        return;
    }
    const char *intro = json_string_value(json_object_get(r->body, "message"));
    const char *channel = json_string_value(json_object_get(r->body, "channel"));
    const char *recipient = json_string_value(json_object_get(r->body, "recipient"));
    char msg[RD_SHARE_MSG_MAX], url[RD_SHARE_URL_MAX];
    rd_share_message(intro ? intro : "Here is your code.", a->code,
                     rd_el_num(reply, RD_SHARE_OK_EXPIRES_AT),
                     (int)strtol(rd_el(reply, RD_SHARE_OK_UTC_OFF), NULL, 10), msg);
    rd_share_whatsapp_url(msg, url);
    json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:I, s:s, s:s}", "code", a->code, "channel",
                          channel ? channel : "whatsapp", "recipient",
                          recipient ? json_string(recipient) : json_null(), "shared_at",
                          rd_time_json(r->now_ms), "shares",
                          (json_int_t)rd_el_num(reply, RD_SHARE_OK_SHARES), "message", msg,
                          "whatsapp_url", url);
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
    struct rd_api *a = rd_api(r);
    char coupon[RD_KEY_MAX], log[RD_KEY_MAX], txn[RD_TXN_ID_LEN + 1], now[24];
    rd_key_coupon(coupon, sizeof(coupon), a->bucket, a->code);
    rd_key_log(log, sizeof(log), a->bucket);
    rd_req_new_txn(r, a->bucket, txn);
    snprintf(now, sizeof(now), "%lld", (long long)r->now_ms);
    struct rd_cmd cmd;
    rd_cmd_script(&cmd, RD_LUA_SHARE);
    rd_cmd_key(&cmd, RD_SHARE_K_COUPON, coupon);
    rd_cmd_key(&cmd, RD_SHARE_K_LOG, log);
    rd_cmd_arg(&cmd, RD_SHARE_A_NOW_MS, now);
    rd_cmd_arg(&cmd, RD_SHARE_A_TXN, txn);
    rd_cmd_arg(&cmd, RD_SHARE_A_CHANNEL, channel);
    rd_cmd_arg(&cmd, RD_SHARE_A_RECIPIENT, recipient);
    rd_cmd_arg(&cmd, RD_SHARE_A_CLIENT_IP, r->client_ip);
    rd_cmd_arg(&cmd, RD_SHARE_A_KEY_ID, r->key_id);
    rd_cmd_arg(&cmd, RD_SHARE_A_REQUEST_ID, r->request_id);
    rd_cmd_arg(&cmd, RD_SHARE_A_CODE, a->code);
    rd_req_send_durable(r, &cmd, on_shared);
}
