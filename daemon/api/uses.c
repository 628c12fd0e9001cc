/* SPDX-License-Identifier: MIT
 *
 * What redeem.lua and pay.lua calls have in common (a use: the same keys, the same request
 * fields, answers of the same shape), and what reverse.lua and refund.lua calls do (giving
 * a use back): reading the use (use_read.lua, then the ledger once its outbox entry has
 * been shipped) and passing its facts to the script. Every argument is set by its name in
 * the script's contract, so the two scripts of a pair may order their arguments as they
 * like; only their keys must agree, which is checked here at build time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "rd/discount.h"
#include "rd/log.h"

/* Keys the two scripts of a pair must agree on, by name and position. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(
    SAME(RD_REDEEM_K_COUPON, RD_PAY_K_COUPON) && SAME(RD_REDEEM_K_USERS, RD_PAY_K_USERS) &&
        SAME(RD_REDEEM_K_IDEM, RD_PAY_K_IDEM) && SAME(RD_REDEEM_K_IDEM_V1, RD_PAY_K_IDEM_V1) &&
        SAME(RD_REDEEM_K_LOG, RD_PAY_K_LOG) && SAME(RD_REDEEM_K_IDEM_1, RD_PAY_K_IDEM_1) &&
        SAME(RD_REDEEM_K_IDEM_2, RD_PAY_K_IDEM_2) && RD_REDEEM_NKEYS == 7 && RD_PAY_NKEYS == 7,
    "redeem.lua and pay.lua take the same keys");
/* struct rd_use_call's keys hold every key of the calls built in it */
#define USE_KEYS                                                                                   \
    (sizeof(((struct rd_use_call *)0)->keys) / sizeof(((struct rd_use_call *)0)->keys[0]))
_Static_assert(RD_REDEEM_NKEYS <= USE_KEYS && RD_PAY_NKEYS <= USE_KEYS &&
                   RD_RECHARGE_NKEYS <= USE_KEYS && RD_REVERSE_NKEYS <= USE_KEYS &&
                   RD_REFUND_NKEYS <= USE_KEYS,
               "rd_use_call.keys");
/* rd_idem_prepare writes the two slices before the record's next to each other */
_Static_assert(RD_REDEEM_K_IDEM_2 == RD_REDEEM_K_IDEM_1 + 1 &&
                   RD_RECHARGE_K_IDEM_2 == RD_RECHARGE_K_IDEM_1 + 1,
               "idem_1, idem_2");
_Static_assert(SAME(RD_REVERSE_K_MARK, RD_REFUND_K_MARK) &&
                   SAME(RD_REVERSE_K_COUPON, RD_REFUND_K_COUPON) &&
                   SAME(RD_REVERSE_K_USERS, RD_REFUND_K_USERS) &&
                   SAME(RD_REVERSE_K_LOG, RD_REFUND_K_LOG) &&
                   SAME(RD_REVERSE_K_RECORD_V1, RD_REFUND_K_RECORD_V1) &&
                   SAME(RD_REVERSE_K_SHARD, RD_REFUND_K_SHARD) && RD_REVERSE_NKEYS == 6 &&
                   RD_REFUND_NKEYS == 6,
               "reverse.lua and refund.lua take the same keys");
/* use_read.lua's two answers with what was given back start alike */
_Static_assert(SAME(RD_USE_READ_FOUND_GIVEN, RD_USE_READ_LEDGER_GIVEN) &&
                   SAME(RD_USE_READ_FOUND_AT, RD_USE_READ_LEDGER_AT) &&
                   SAME(RD_USE_READ_FOUND_BY, RD_USE_READ_LEDGER_BY) &&
                   SAME(RD_USE_READ_FOUND_REFUNDED, RD_USE_READ_LEDGER_REFUNDED),
               "use_read.lua's answers");

/* ---- redeem.lua and pay.lua ------------------------------------------------------------- */

/* The arguments a use call of script S (REDEEM or PAY) shares, by name. */
#define USE_ARGS(S)                                                                                \
    do {                                                                                           \
        rd_cmd_arg(&u->cmd, RD_##S##_A_NOW_MS, u->now);                                            \
        rd_cmd_arg(&u->cmd, RD_##S##_A_USER_ID, a->rq.user_id);                                    \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CURRENCY, a->rq.currency);                                  \
        rd_cmd_argn(&u->cmd, RD_##S##_A_FP, (const char *)u->fp, sizeof(u->fp));                   \
        rd_cmd_arg(&u->cmd, RD_##S##_A_TXN, u->txn);                                               \
        rd_cmd_argn(&u->cmd, RD_##S##_A_IDEM_FIELD, (const char *)u->digest, RD_IDEM_FIELD_LEN);   \
        rd_cmd_arg(&u->cmd, RD_##S##_A_IDEM_SLICE_MS, u->slice);                                   \
        rd_cmd_arg(&u->cmd, RD_##S##_A_ORDER_ID, a->rq.order_id ? a->rq.order_id : "");            \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CLIENT_IP, u->ip);                                          \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CX, u->cx);                                                 \
        rd_cmd_arg(&u->cmd, RD_##S##_A_KEY_ID, r->key_id);                                         \
        rd_cmd_arg(&u->cmd, RD_##S##_A_REQUEST_ID, r->request_id);                                 \
        rd_cmd_arg(&u->cmd, RD_##S##_A_IDEM_KEY, idem);                                            \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CODE, a->rq.code);                                          \
    } while (0)

void rd_idem_prepare(struct rd_req *r, struct rd_use_call *u, int k_idem, int k_idem_v1, int k_prev,
                     const char *idem)
{
    struct rd_api *a = rd_api(r);
    /* a record lives one to one and a half lifetimes: slices of half a lifetime, of which a
     * lookup reads this one and the two before */
    int64_t slice_ms = (int64_t)r->w->cfg->idempotency_ttl_s * 500;
    rd_key_idem(u->keys[k_idem], RD_KEY_MAX, a->bucket, slice_ms, r->now_ms);
    int64_t slice_start = r->now_ms / slice_ms * slice_ms;
    rd_key_idem(u->keys[k_prev], RD_KEY_MAX, a->bucket, slice_ms, slice_start - slice_ms);
    rd_key_idem(u->keys[k_prev + 1], RD_KEY_MAX, a->bucket, slice_ms, slice_start - 2 * slice_ms);
    rd_key_idem_v1(u->keys[k_idem_v1], RD_KEY_MAX, a->bucket, a->rq.code, r->key_id, idem);
    rd_redeem_req_fingerprint(&a->rq, u->fp);
    rd_idem_digest(a->rq.code, r->key_id, idem, u->digest);
    u->slice[rd_fmt_i64(u->slice, slice_ms)] = '\0';
    u->now[rd_fmt_i64(u->now, r->now_ms)] = '\0';
    u->amount[rd_fmt_i64(u->amount, a->rq.order_amount)] = '\0';
    rd_req_new_txn(r, a->bucket, u->txn);
    char tag[RD_USE_TAG_LEN + 1];
    rd_use_tag_make(u->digest + RD_IDEM_FIELD_LEN, tag);
    memcpy(u->txn + 9, tag, RD_USE_TAG_LEN); /* "rdm_NNNN_" then the tag */
}

void rd_use_prepare(struct rd_req *r, struct rd_use_call *u, enum rd_lua_id script,
                    const char *idem)
{
    struct rd_api *a = rd_api(r);
    const char *code = a->rq.code;
    if (a->hot.on) {
        a->bucket = a->hot.layout.bucket[a->hot.shard];
        rd_key_shard(u->keys[RD_REDEEM_K_COUPON], RD_KEY_MAX, a->bucket, code);
    } else {
        a->bucket = rd_bucket_of(code, strlen(code), (uint32_t)r->w->cfg->buckets);
        rd_key_coupon(u->keys[RD_REDEEM_K_COUPON], RD_KEY_MAX, a->bucket, code);
    }
    rd_key_users(u->keys[RD_REDEEM_K_USERS], RD_KEY_MAX, a->bucket, code);
    rd_key_log(u->keys[RD_REDEEM_K_LOG], RD_KEY_MAX, a->bucket);
    rd_idem_prepare(r, u, RD_REDEEM_K_IDEM, RD_REDEEM_K_IDEM_V1, RD_REDEEM_K_IDEM_1, idem);
    rd_req_customer(r, &a->rq.customer, u->ip, u->cx);
    rd_cmd_script(&u->cmd, script);
    for (int k = 0; k < RD_REDEEM_NKEYS; k++)
        rd_cmd_key(&u->cmd, k, u->keys[k]);
    if (script == RD_LUA_REDEEM) {
        USE_ARGS(REDEEM);
        rd_cmd_arg(&u->cmd, RD_REDEEM_A_ORDER_AMOUNT, u->amount);
    } else {
        USE_ARGS(PAY);
        rd_cmd_arg(&u->cmd, RD_PAY_A_AMOUNT, u->amount);
    }
}

static json_t *count_json(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

json_t *rd_remaining_json(const int64_t rem[4])
{
    return json_pack("{s:o, s:o, s:o, s:o}", "total", count_json(rem[0]), "user",
                     count_json(rem[1]), "user_daily", count_json(rem[2]), "user_weekly",
                     count_json(rem[3]));
}

json_t *rd_redeem_answer_json(const struct rd_use_answer *x)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:o}", "id", x->id, "code", x->code,
                          "user_id", x->user, "discount", (json_int_t)x->discount, "order_amount",
                          (json_int_t)x->amount, "currency", x->currency, "created_at",
                          rd_time_json(x->created_ms), "remaining", rd_remaining_json(x->rem));
    if (*x->order)
        json_object_set_new(o, "order_id", json_string(x->order));
    return o;
}

/* "name":<count or null> */
static void add_count(struct rd_sbuf *b, const char *name, int64_t v)
{
    rd_sbuf_addstr(b, name);
    if (v < 0)
        rd_sbuf_add(b, "null", 4);
    else
        rd_sbuf_add_i64(b, v);
}

void rd_use_answer_text(struct rd_sbuf *b, const struct rd_use_answer *x, int pay)
{
    /* The checkout's answer, the hottest JSON there is: written straight into the buffer
     * (the same document rd_redeem_answer_json and rd_pay_answer_json build; a unit test
     * holds them equal) */
    char ts[RD_TIME_BUFSZ];
    rd_sbuf_addstr(b, "{\"id\":");
    rd_sbuf_add_jstr(b, x->id, strlen(x->id));
    if (pay)
        rd_sbuf_addstr(b, ",\"kind\":\"pay\"");
    rd_sbuf_addstr(b, ",\"code\":");
    rd_sbuf_add_jstr(b, x->code, strlen(x->code));
    rd_sbuf_addstr(b, ",\"user_id\":");
    rd_sbuf_add_jstr(b, x->user, strlen(x->user));
    if (pay) {
        rd_sbuf_addstr(b, ",\"amount\":");
        rd_sbuf_add_i64(b, x->amount);
    } else {
        rd_sbuf_addstr(b, ",\"discount\":");
        rd_sbuf_add_i64(b, x->discount);
        rd_sbuf_addstr(b, ",\"order_amount\":");
        rd_sbuf_add_i64(b, x->amount);
    }
    rd_sbuf_addstr(b, ",\"currency\":");
    rd_sbuf_add_jstr(b, x->currency, strlen(x->currency));
    if (pay) {
        rd_sbuf_addstr(b, ",\"balance\":");
        rd_sbuf_add_i64(b, x->balance_after);
    }
    rd_sbuf_addstr(b, ",\"created_at\":\"");
    rd_sbuf_addstr(b, rd_time_format(x->created_ms, ts));
    add_count(b, "\",\"remaining\":{\"total\":", x->rem[0]);
    add_count(b, ",\"user\":", x->rem[1]);
    add_count(b, ",\"user_daily\":", x->rem[2]);
    add_count(b, ",\"user_weekly\":", x->rem[3]);
    rd_sbuf_add(b, "}", 1);
    if (*x->order) {
        rd_sbuf_addstr(b, ",\"order_id\":");
        rd_sbuf_add_jstr(b, x->order, strlen(x->order));
    }
    rd_sbuf_add(b, "}\n", 2);
}

json_t *rd_pay_answer_json(const struct rd_use_answer *x)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:o, s:o}", "id", x->id, "kind", "pay",
                  "code", x->code, "user_id", x->user, "amount", (json_int_t)x->amount, "currency",
                  x->currency, "balance", (json_int_t)x->balance_after, "created_at",
                  rd_time_json(x->created_ms), "remaining", rd_remaining_json(x->rem));
    if (*x->order)
        json_object_set_new(o, "order_id", json_string(x->order));
    return o;
}

/* ---- reverse.lua and refund.lua --------------------------------------------------------- */

/* The arguments an undo call of script S (REVERSE or REFUND) shares, by name. */
#define UNDO_ARGS(S)                                                                               \
    do {                                                                                           \
        rd_cmd_arg(&u->cmd, RD_##S##_A_NOW_MS, u->now);                                            \
        rd_cmd_arg(&u->cmd, RD_##S##_A_TXN, u->txn);                                               \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CODE, x->code);                                             \
        rd_cmd_arg(&u->cmd, RD_##S##_A_USER_ID, x->user);                                          \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CLIENT_IP, u->ip);                                          \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CX, u->cx);                                                 \
        rd_cmd_arg(&u->cmd, RD_##S##_A_KEY_ID, r->key_id);                                         \
        rd_cmd_arg(&u->cmd, RD_##S##_A_REQUEST_ID, r->request_id);                                 \
        rd_cmd_arg(&u->cmd, RD_##S##_A_REF_ID, r->param);                                          \
        rd_cmd_arg(&u->cmd, RD_##S##_A_IDEM_KEY, a->idem ? a->idem : "");                          \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CREATED_MS, u->created);                                    \
        rd_cmd_arg(&u->cmd, RD_##S##_A_DAY, x->day);                                               \
        rd_cmd_arg(&u->cmd, RD_##S##_A_WEEK, x->week);                                             \
        rd_cmd_arg(&u->cmd, RD_##S##_A_WINDOW_MS, u->window);                                      \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CAMPAIGN, x->campaign);                                     \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CURRENCY, x->currency);                                     \
    } while (0)

void rd_undo_prepare(struct rd_req *r, struct rd_use_call *u, enum rd_lua_id script)
{
    struct rd_api *a = rd_api(r);
    const struct rd_use *x = a->use;
    snprintf(a->code, sizeof(a->code), "%s", x->code);
    rd_key_mark(u->keys[RD_REVERSE_K_MARK], RD_KEY_MAX, a->bucket, r->param);
    rd_key_coupon(u->keys[RD_REVERSE_K_COUPON], RD_KEY_MAX, a->bucket, a->code);
    rd_key_users(u->keys[RD_REVERSE_K_USERS], RD_KEY_MAX, a->bucket, a->code);
    rd_key_log(u->keys[RD_REVERSE_K_LOG], RD_KEY_MAX, a->bucket);
    rd_key_redemption_v1(u->keys[RD_REVERSE_K_RECORD_V1], RD_KEY_MAX, a->bucket, r->param);
    rd_key_shard(u->keys[RD_REVERSE_K_SHARD], RD_KEY_MAX, a->bucket, a->code);
    rd_req_new_txn(r, a->bucket, u->txn);
    rd_req_customer(r, &a->rq.customer, u->ip, u->cx);
    snprintf(u->now, sizeof(u->now), "%lld", (long long)r->now_ms);
    snprintf(u->created, sizeof(u->created), "%lld", (long long)x->created_ms);
    snprintf(u->window, sizeof(u->window), "%lld",
             (long long)r->w->cfg->reversal_window_s * 1000LL);
    snprintf(u->used, sizeof(u->used), "%lld", (long long)x->amount);
    rd_cmd_script(&u->cmd, script);
    for (int k = 0; k < RD_REVERSE_NKEYS; k++)
        rd_cmd_key(&u->cmd, k, u->keys[k]);
    if (script == RD_LUA_REVERSE) {
        UNDO_ARGS(REVERSE);
        rd_cmd_arg(&u->cmd, RD_REVERSE_A_AMOUNT, u->used);
    } else {
        UNDO_ARGS(REFUND);
        rd_cmd_arg(&u->cmd, RD_REFUND_A_PAID, u->used);
    }
}

/* ---- reading a use ---------------------------------------------------------------------- */

static void copy(char *dst, size_t sz, const char *src)
{
    snprintf(dst, sz, "%s", src);
}

#define F(name) rd_el(reply, RD_USE_READ_FOUND_##name)

static void on_use_read(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    struct rd_api *a = rd_api(r);
    (void)redis;
    void (*then)(struct rd_req *) = a->then;
    const char *status = reply && reply->type == REDIS_REPLY_ARRAY ? rd_el(reply, 0) : "";
    if (strcmp(status, "missing") == 0) {
        rd_reply_error(r, RD_E_REDEMPTION_NOT_FOUND, NULL, NULL);
        return;
    }
    if ((strcmp(status, "found") != 0 || reply->elements < RD_USE_READ_FOUND__LEN) &&
        (strcmp(status, "ledger") != 0 || reply->elements < RD_USE_READ_LEDGER__LEN)) {
        rd_reply_redis_failure(r, reply, "use_read");
        return;
    }
    struct rd_use *x = a->use ? a->use : calloc(1, sizeof(*x));
    if (!x) {
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    a->use = x;
    copy(x->given, sizeof(x->given), F(GIVEN));
    x->given_at = rd_el_num(reply, RD_USE_READ_FOUND_AT);
    copy(x->given_by, sizeof(x->given_by), F(BY));
    x->refunded = *F(REFUNDED) ? rd_el_num(reply, RD_USE_READ_FOUND_REFUNDED) : 0;
    if (strcmp(status, "ledger") == 0) {
        rd_use_from_ledger(r, then);
        return;
    }
    x->pay = strcmp(F(KIND), "pay") == 0;
    copy(x->code, sizeof(x->code), F(CODE));
    copy(x->user, sizeof(x->user), F(USER_ID));
    copy(x->order, sizeof(x->order), F(ORDER_ID));
    copy(x->currency, sizeof(x->currency), F(CURRENCY));
    copy(x->campaign, sizeof(x->campaign), F(CAMPAIGN));
    copy(x->day, sizeof(x->day), F(DAY));
    copy(x->week, sizeof(x->week), F(WEEK));
    x->created_ms = rd_el_num(reply, RD_USE_READ_FOUND_CREATED_AT);
    x->amount = rd_el_num(reply, RD_USE_READ_FOUND_AMOUNT);
    x->balance_after = rd_el_num(reply, RD_USE_READ_FOUND_BALANCE_AFTER);
    if (!x->pay) {
        struct rd_discount d = {rd_dtype_parse(F(DTYPE)),
                                rd_el_num(reply, RD_USE_READ_FOUND_DVALUE),
                                rd_el_num(reply, RD_USE_READ_FOUND_DMAX),
                                rd_el_num(reply, RD_USE_READ_FOUND_MIN_ORDER)};
        if (!*x->code || rd_discount_compute(&d, x->amount, &x->discount) != RD_OK) {
            rd_error("event=use_corrupt req=%s id=%s", r->request_id, r->param);
            rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
            return;
        }
    }
    then(r);
}

void rd_use_read(struct rd_req *r, void (*then)(struct rd_req *r))
{
    struct rd_api *a = rd_api(r);
    char log[RD_KEY_MAX], mark[RD_KEY_MAX], record[RD_KEY_MAX];
    rd_key_log(log, sizeof(log), a->bucket);
    rd_key_mark(mark, sizeof(mark), a->bucket, r->param);
    rd_key_redemption_v1(record, sizeof(record), a->bucket, r->param);
    a->then = then;
    struct rd_cmd cmd;
    rd_cmd_script(&cmd, RD_LUA_USE_READ);
    rd_cmd_key(&cmd, RD_USE_READ_K_LOG, log);
    rd_cmd_key(&cmd, RD_USE_READ_K_MARK, mark);
    rd_cmd_key(&cmd, RD_USE_READ_K_RECORD_V1, record);
    rd_cmd_arg(&cmd, RD_USE_READ_A_SID, a->ref.sid);
    rd_cmd_arg(&cmd, RD_USE_READ_A_TAG, a->ref.tag);
    rd_req_send(r, &cmd, on_use_read);
}
