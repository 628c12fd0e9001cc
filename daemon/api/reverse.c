/* SPDX-License-Identifier: MIT
 *
 * POST /v1/redemptions/{id}/reverse: gives a redemption's use back (reverse.lua), or refunds
 * a voucher payment (refund.lua, vouchers.c), whichever the id names. The use is read first
 * (rd_use_read: from Redis while its outbox entry waits to be shipped, from the ledger
 * after), for the facts the script needs; what was given back is decided by the script
 * alone, from the use's mark, so two reversals can never both succeed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "rd/rdtime.h"

static void on_reversed(struct rd_redis *redis, redisReply *reply, void *arg)
{
    struct rd_req *r = arg;
    (void)redis;
    const char *status = rd_script_status(r, reply, 1, "reverse");
    if (!status)
        return;
    if (strcmp(status, "rejected") == 0) {
        enum rd_status st = rd_status_from_name(rd_el(reply, RD_REVERSE_REJECTED_REASON));
        json_t *details = NULL;
        if (*rd_el(reply, RD_REVERSE_REJECTED_REVERSED_AT))
            details = json_pack("{s:o, s:s}", "reversed_at",
                                rd_time_json(rd_el_num(reply, RD_REVERSE_REJECTED_REVERSED_AT)),
                                "reversal_id", rd_el(reply, RD_REVERSE_REJECTED_REVERSAL_ID));
        rd_reply_error(r, st, NULL, details);
        return;
    }
    if (strcmp(status, "ok") != 0 || reply->elements < RD_REVERSE_OK__LEN) {
        rd_reply_redis_failure(r, reply, "reverse");
        return;
    }
    r->replayed = strcmp(rd_el(reply, RD_REVERSE_OK_REPLAYED), "1") == 0;
    rd_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:o, s:s}", "id", r->param, "status", "reversed",
                            "reversed_at",
                            rd_time_json(rd_el_num(reply, RD_REVERSE_OK_REVERSED_AT)),
                            "reversal_id", rd_el(reply, RD_REVERSE_OK_REVERSAL_ID)));
}

/* The use is read (rd_use_read): a payment is refunded, a redemption reversed. */
static void undo(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    if (a->use->pay) {
        rd_voucher_refund(r, a->refund_amount);
        return;
    }
    if (a->refund_amount > 0) {
        struct rd_verr e;
        rd_verr_set(&e, "amount",
                    "only a voucher payment can be refunded in part; a redemption is reversed "
                    "whole (send no body)");
        rd_reply_verr(r, &e);
        return;
    }
    struct rd_use_call u;
    rd_undo_prepare(r, &u, RD_LUA_REVERSE); /* sent before the reply goes */
    rd_req_send_durable(r, &u.cmd, on_reversed);
}

void rd_h_reverse(struct rd_req *r)
{
    struct rd_api *a = rd_api(r);
    if (rd_path_txn(r) < 0)
        return;
    if (rd_ledger_backlogged(r))
        return;
    /* {"amount": n} refunds part of a voucher payment; "customer" says who asks */
    static const char *const keys[] = {"amount", "customer", NULL};
    struct rd_verr e;
    int64_t amount = 0;
    if (rd_json_only_keys(r->body, keys, "", &e) < 0 ||
        rd_json_int(r->body, "amount", RD_J_OPTIONAL, 1, RD_AMOUNT_MAX, &amount, NULL, &e) < 0 ||
        rd_customer_parse(r->body, &a->rq.customer, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    a->refund_amount = amount;
    if (rd_req_idem(r, 0) < 0)
        return;
    rd_use_read(r, undo);
}
