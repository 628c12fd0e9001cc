/* SPDX-License-Identifier: MIT
 *
 * What redeem.lua and pay.lua calls have in common (a use: the same keys, the same request
 * fields), and what reverse.lua and refund.lua calls do (giving a use back). Every argument
 * is set by its name in the script's contract, so the two scripts of a pair may order their
 * arguments as they like; only their keys must agree, which is checked here at build time.
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"

/* Keys the two scripts of a pair must agree on, by name and position. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(RD_REDEEM_K_COUPON, RD_PAY_K_COUPON) &&
                   SAME(RD_REDEEM_K_USERS, RD_PAY_K_USERS) &&
                   SAME(RD_REDEEM_K_IDEM, RD_PAY_K_IDEM) &&
                   SAME(RD_REDEEM_K_RECORD, RD_PAY_K_RECORD) &&
                   SAME(RD_REDEEM_K_LOG, RD_PAY_K_LOG) && RD_REDEEM_NKEYS == 5 && RD_PAY_NKEYS == 5,
               "redeem.lua and pay.lua take the same keys");
_Static_assert(SAME(RD_REVERSE_K_RECORD, RD_REFUND_K_RECORD) &&
                   SAME(RD_REVERSE_K_COUPON, RD_REFUND_K_COUPON) &&
                   SAME(RD_REVERSE_K_USERS, RD_REFUND_K_USERS) &&
                   SAME(RD_REVERSE_K_LOG, RD_REFUND_K_LOG) && RD_REVERSE_NKEYS == 4 &&
                   RD_REFUND_NKEYS == 4,
               "reverse.lua and refund.lua take the same keys");

/* The arguments a use call of script S (REDEEM or PAY) shares, by name. */
#define USE_ARGS(S)                                                                                \
    do {                                                                                           \
        rd_cmd_arg(&u->cmd, RD_##S##_A_NOW_MS, u->now);                                            \
        rd_cmd_arg(&u->cmd, RD_##S##_A_USER_ID, a->rq.user_id);                                    \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CURRENCY, a->rq.currency);                                  \
        rd_cmd_arg(&u->cmd, RD_##S##_A_FP, u->fp);                                                 \
        rd_cmd_arg(&u->cmd, RD_##S##_A_TXN, u->txn);                                               \
        rd_cmd_arg(&u->cmd, RD_##S##_A_IDEM_TTL_S, u->idem_ttl);                                   \
        rd_cmd_arg(&u->cmd, RD_##S##_A_RECORD_TTL_S, u->record_ttl);                               \
        rd_cmd_arg(&u->cmd, RD_##S##_A_ORDER_ID, a->rq.order_id ? a->rq.order_id : "");            \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CLIENT_IP, r->client_ip);                                   \
        rd_cmd_arg(&u->cmd, RD_##S##_A_KEY_ID, r->key_id);                                         \
        rd_cmd_arg(&u->cmd, RD_##S##_A_REQUEST_ID, r->request_id);                                 \
        rd_cmd_arg(&u->cmd, RD_##S##_A_IDEM_KEY, idem);                                            \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CODE, a->rq.code);                                          \
    } while (0)

void rd_use_prepare(struct rd_req *r, struct rd_use_call *u, enum rd_lua_id script,
                    const char *idem)
{
    struct rd_api *a = rd_api(r);
    const char *code = a->rq.code;
    a->bucket = rd_bucket_of(code, strlen(code), (uint32_t)r->w->cfg->buckets);
    rd_req_new_txn(r, a->bucket, u->txn);
    rd_key_coupon(u->keys[RD_REDEEM_K_COUPON], RD_KEY_MAX, a->bucket, code);
    rd_key_users(u->keys[RD_REDEEM_K_USERS], RD_KEY_MAX, a->bucket, code);
    rd_key_idem(u->keys[RD_REDEEM_K_IDEM], RD_KEY_MAX, a->bucket, code, r->key_id, idem);
    rd_key_redemption(u->keys[RD_REDEEM_K_RECORD], RD_KEY_MAX, a->bucket, u->txn);
    rd_key_log(u->keys[RD_REDEEM_K_LOG], RD_KEY_MAX, a->bucket);
    rd_redeem_req_fingerprint(&a->rq, u->fp);
    snprintf(u->now, sizeof(u->now), "%lld", (long long)r->now_ms);
    snprintf(u->amount, sizeof(u->amount), "%lld", (long long)a->rq.order_amount);
    snprintf(u->idem_ttl, sizeof(u->idem_ttl), "%d", r->w->cfg->idempotency_ttl_s);
    snprintf(u->record_ttl, sizeof(u->record_ttl), "%d", r->w->cfg->redemption_ttl_s);
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

/* The arguments an undo call of script S (REVERSE or REFUND) shares, by name. */
#define UNDO_ARGS(S)                                                                               \
    do {                                                                                           \
        rd_cmd_arg(&u->cmd, RD_##S##_A_NOW_MS, u->now);                                            \
        rd_cmd_arg(&u->cmd, RD_##S##_A_TXN, u->txn);                                               \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CODE, code);                                                \
        rd_cmd_arg(&u->cmd, RD_##S##_A_USER_ID, user);                                             \
        rd_cmd_arg(&u->cmd, RD_##S##_A_CLIENT_IP, r->client_ip);                                   \
        rd_cmd_arg(&u->cmd, RD_##S##_A_KEY_ID, r->key_id);                                         \
        rd_cmd_arg(&u->cmd, RD_##S##_A_REQUEST_ID, r->request_id);                                 \
        rd_cmd_arg(&u->cmd, RD_##S##_A_REF_ID, r->param);                                          \
        rd_cmd_arg(&u->cmd, RD_##S##_A_IDEM_KEY, a->idem ? a->idem : "");                          \
    } while (0)

void rd_undo_prepare(struct rd_req *r, struct rd_use_call *u, enum rd_lua_id script,
                     const char *code, const char *user)
{
    struct rd_api *a = rd_api(r);
    snprintf(a->code, sizeof(a->code), "%s", code);
    rd_key_redemption(u->keys[RD_REVERSE_K_RECORD], RD_KEY_MAX, a->bucket, r->param);
    rd_key_coupon(u->keys[RD_REVERSE_K_COUPON], RD_KEY_MAX, a->bucket, a->code);
    rd_key_users(u->keys[RD_REVERSE_K_USERS], RD_KEY_MAX, a->bucket, a->code);
    rd_key_log(u->keys[RD_REVERSE_K_LOG], RD_KEY_MAX, a->bucket);
    rd_req_new_txn(r, a->bucket, u->txn);
    snprintf(u->now, sizeof(u->now), "%lld", (long long)r->now_ms);
    rd_cmd_script(&u->cmd, script);
    for (int k = 0; k < RD_REVERSE_NKEYS; k++)
        rd_cmd_key(&u->cmd, k, u->keys[k]);
    if (script == RD_LUA_REVERSE)
        UNDO_ARGS(REVERSE);
    else
        UNDO_ARGS(REFUND);
}
