/* SPDX-License-Identifier: MIT
 *
 * The request core: the per-request context, routing, authentication and the reply
 * functions. A struct rd_req is allocated when the server core (httpd.h) hands over a
 * complete request, or a refusal of its own, and freed by the one reply function that
 * answers it: exactly one reply per request, always, even when the client has gone (the core
 * keeps the request until it is answered). What a handler needs beyond this lives in its
 * own state (r->state; api.h).
 *
 * Owns: the parsed body (json_t), the Redis call in flight, the handler's state (through
 * state_free). Borrows: the worker and the struct rd_hreq.
 * Thread: the worker's.
 */
#ifndef RD_HTTP_H
#define RD_HTTP_H

#include <event2/buffer.h>
#include <jansson.h>
#include <stdint.h>

#include "server/httpd.h"
#include "rd/json_util.h"
#include "rd/keys.h"
#include "rd/status.h"
#include "store/redis_client.h"
#include "server/worker.h"

/* Room for the state of the handler that serves a request (api.h's struct rd_api): kept in
 * the request, so that serving one allocates nothing; its size is checked where it is used. */
#define RD_REQ_STATE_MAX 1536

struct rd_lread;

struct rd_req {
    struct rd_worker *w;
    struct rd_hreq *hr;
    char request_id[130];
    char client_ip[48];    /* the TCP peer */
    char forwarded_ip[48]; /* the customer X-Forwarded-For names, from a trusted proxy ("") */
    char key_id[RD_APIKEY_ID_LEN + 1];
    unsigned scopes;
    int64_t now_ms;
    int64_t start_us;
    int route;         /* index into the routing table (metrics label); RD_MROUTES - 1 if none */
    int status;        /* the HTTP status sent, for the metrics counted when r is freed */
    const char *param; /* the {code} or {id} path segment, borrowed from path */
    char path[512];
    json_t *body;
    int replayed;
    int retry_after_s;    /* a 429's Retry-After (0: 1 s) */
    struct rd_rcall call; /* the Redis call in flight, if any */
    struct rd_lread *lr;  /* a ledger read, if any: the handler's (api.h; freed with its state) */
    /* the serving handler's own state, and what frees it (set with it) */
    void (*state_free)(struct rd_req *r);
    _Alignas(max_align_t) unsigned char state[RD_REQ_STATE_MAX];
};

typedef void rd_handler(struct rd_req *r);

/** The core's request callback: builds the context, authenticates and routes. */
void rd_http_dispatch(struct rd_hreq *h, void *worker);
/** The core's refusal callback: answers st in the error envelope. */
void rd_http_refuse(struct rd_hreq *h, enum rd_status st, const char *msg, void *worker);
/** A request header's value, or NULL. */
const char *rd_req_header(const struct rd_req *r, const char *name);
/** The label of route i (its path pattern), for /metrics; NULL past the last route. */
const char *rd_http_route_name(int i);

/** Answers with body (borrowed) of content type ctype; frees r. */
void rd_reply_text(struct rd_req *r, int http, const char *ctype, const char *body, size_t len);
/** Answers with obj (stolen) as JSON; frees r. */
void rd_reply_json(struct rd_req *r, int http, json_t *obj);
/** Answers with body (borrowed, JSON) as is; frees r. */
void rd_reply_raw(struct rd_req *r, int http, const char *body, size_t len);
/** Answers with the error envelope; details is stolen and may be NULL; message may be NULL. */
void rd_reply_error(struct rd_req *r, enum rd_status st, const char *message, json_t *details);
/** 400 invalid_request naming e->field. */
void rd_reply_verr(struct rd_req *r, const struct rd_verr *e);
/* Handlers (daemon/api/). */
void rd_h_healthz(struct rd_req *r);
void rd_h_readyz(struct rd_req *r);
void rd_h_coupon_create(struct rd_req *r);
void rd_h_coupon_get(struct rd_req *r);
void rd_h_coupon_patch(struct rd_req *r);
void rd_h_coupon_disable(struct rd_req *r);
void rd_h_coupon_enable(struct rd_req *r);
void rd_h_coupon_share(struct rd_req *r);
void rd_h_validate(struct rd_req *r);
void rd_h_redeem(struct rd_req *r);
void rd_h_redemption_get(struct rd_req *r);
void rd_h_reverse(struct rd_req *r);
void rd_h_transactions(struct rd_req *r);
void rd_h_metrics(struct rd_req *r);
void rd_h_console(struct rd_req *r);
void rd_h_openapi(struct rd_req *r);
void rd_h_me(struct rd_req *r);
void rd_h_stats(struct rd_req *r);
void rd_h_coupons_list(struct rd_req *r);
void rd_h_voucher_balance(struct rd_req *r);
void rd_h_voucher_pay(struct rd_req *r);
void rd_h_voucher_recharge(struct rd_req *r);
void rd_h_batch_create(struct rd_req *r);
void rd_h_batches_list(struct rd_req *r);
void rd_h_batch_get(struct rd_req *r);
void rd_h_batch_cancel(struct rd_req *r);
void rd_h_batch_codes(struct rd_req *r);
void rd_h_webhook_create(struct rd_req *r);
void rd_h_webhooks_list(struct rd_req *r);
void rd_h_webhook_get(struct rd_req *r);
void rd_h_webhook_patch(struct rd_req *r);
void rd_h_webhook_delete(struct rd_req *r);
void rd_h_webhook_deliveries(struct rd_req *r);
void rd_h_webhook_retry(struct rd_req *r);
/** Frees r after a streamed reply ended (or was cut off). */
void rd_req_free_streamed(struct rd_req *r);
/** Ends r whose client has gone (counted with status 499, as nginx logs it); frees r. */
void rd_req_abandon(struct rd_req *r);

#endif
