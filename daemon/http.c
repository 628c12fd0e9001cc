/* SPDX-License-Identifier: MIT
 *
 * Request intake, routing, authentication and replies.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "shipper.h"
#include "rd/log.h"
#include "rd/rdtime.h"

struct route {
    int method;       /* EVHTTP_REQ_* */
    const char *path; /* '*' matches one segment */
    unsigned scopes;  /* any of these; 0 = no authentication */
    int body;         /* 0 none, 1 a JSON object, 2 optional (absent = {}) */
    rd_handler *fn;
};

static const struct route routes[] = {
    {EVHTTP_REQ_GET, "/healthz", 0, 0, rd_h_healthz},
    {EVHTTP_REQ_GET, "/readyz", 0, 0, rd_h_readyz},
    {EVHTTP_REQ_POST, "/v1/coupons", RD_SCOPE_ADMIN, 1, rd_h_coupon_create},
    {EVHTTP_REQ_GET, "/v1/coupons", RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0, rd_h_coupons_list},
    {EVHTTP_REQ_GET, "/v1/coupons/*", RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0, rd_h_coupon_get},
    {EVHTTP_REQ_PATCH, "/v1/coupons/*", RD_SCOPE_ADMIN, 1, rd_h_coupon_patch},
    {EVHTTP_REQ_POST, "/v1/coupons/*/disable", RD_SCOPE_ADMIN, 2, rd_h_coupon_disable},
    {EVHTTP_REQ_POST, "/v1/coupons/*/enable", RD_SCOPE_ADMIN, 2, rd_h_coupon_enable},
    {EVHTTP_REQ_POST, "/v1/coupons/*/share", RD_SCOPE_ADMIN, 2, rd_h_coupon_share},
    {EVHTTP_REQ_POST, "/v1/validate", RD_SCOPE_REDEEM, 1, rd_h_validate},
    {EVHTTP_REQ_POST, "/v1/redemptions", RD_SCOPE_REDEEM, 1, rd_h_redeem},
    {EVHTTP_REQ_GET, "/v1/redemptions/*", RD_SCOPE_REDEEM | RD_SCOPE_FRAUD, 0, rd_h_redemption_get},
    {EVHTTP_REQ_POST, "/v1/redemptions/*/reverse", RD_SCOPE_REDEEM, 2, rd_h_reverse},
    {EVHTTP_REQ_GET, "/v1/transactions", RD_SCOPE_FRAUD, 0, rd_h_transactions},
    {EVHTTP_REQ_GET, "/v1/stats", RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0, rd_h_stats},
    {EVHTTP_REQ_GET, "/v1/vouchers/*/balance", RD_SCOPE_REDEEM | RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0,
     rd_h_voucher_balance},
    {EVHTTP_REQ_POST, "/v1/vouchers/*/pay", RD_SCOPE_REDEEM, 1, rd_h_voucher_pay},
    {EVHTTP_REQ_POST, "/v1/vouchers/*/recharge", RD_SCOPE_ADMIN, 1, rd_h_voucher_recharge},
    {EVHTTP_REQ_POST, "/v1/batches", RD_SCOPE_ADMIN, 1, rd_h_batch_create},
    {EVHTTP_REQ_GET, "/v1/batches", RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0, rd_h_batches_list},
    {EVHTTP_REQ_GET, "/v1/batches/*", RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0, rd_h_batch_get},
    {EVHTTP_REQ_POST, "/v1/batches/*/cancel", RD_SCOPE_ADMIN, 2, rd_h_batch_cancel},
    {EVHTTP_REQ_GET, "/v1/batches/*/codes", RD_SCOPE_ADMIN, 0, rd_h_batch_codes},
    {EVHTTP_REQ_GET, "/metrics", 0, 0, rd_h_metrics},
};

/* Request contexts a worker keeps for reuse; beyond, they go back to malloc. Sanitizer
 * builds reuse none, so that a use after free stays visible. */
#if defined(__SANITIZE_ADDRESS__)
#define SPARE_MAX 0
#else
#define SPARE_MAX 256
#endif
#define NROUTES    (sizeof(routes) / sizeof(routes[0]))
#define ROUTE_NONE (RD_MROUTES - 1)
_Static_assert(NROUTES < RD_MROUTES, "raise RD_MROUTES");

const char *rd_http_route_name(int i)
{
    if (i < 0 || i >= RD_MROUTES)
        return NULL;
    if (i == ROUTE_NONE)
        return "unmatched";
    return (size_t)i < NROUTES ? routes[i].path : "";
}

/* Matches path against pattern; the '*' segment is stored in *param. */
static int match(const char *pattern, const char *path, const char **param)
{
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '*') {
            const char *end = strchr(s, '/');
            size_t n = end ? (size_t)(end - s) : strlen(s);
            if (n == 0)
                return 0;
            *param = s;
            s += n;
            p++;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

static void req_free(struct rd_req *r)
{
    struct rd_wmetrics *m = &r->w->m;
    rd_counter_inc(&m->requests[r->route][rd_mstatus_slot(r->status)], 1);
    rd_mhist_observe(&m->latency[r->route], (uint64_t)(rd_mono_us() - r->start_us));
    r->w->inflight--;
    if (r->lr) {
        if (r->lr->query) {
            evhttp_clear_headers(r->lr->query);
            free(r->lr->query);
        }
        if (r->lr->chunk)
            evbuffer_free(r->lr->chunk);
        for (int i = 0; i < r->lr->nowned; i++)
            free(r->lr->owned[i]);
        free(r->lr);
    }
    if (r->body)
        json_decref(r->body);
    rd_redeem_req_free(&r->rq);
    rd_coupon_free(&r->coupon);
    struct rd_worker *w = r->w;
    if (w->nspare < SPARE_MAX) {
        *(struct rd_req **)r = w->spare;
        w->spare = r;
        w->nspare++;
    } else {
        free(r);
    }
}

static struct rd_req *req_new(struct rd_worker *w)
{
    struct rd_req *r = w->spare;
    if (r) {
        w->spare = *(struct rd_req **)r;
        w->nspare--;
        memset(r, 0, sizeof(*r));
        return r;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    return r;
}

static void send_body(struct rd_req *r, int http, const char *ctype, const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "X-Request-Id", r->request_id);
    if (r->replayed)
        evhttp_add_header(h, "Idempotent-Replayed", "true");
    if (r->w->stopping)
        evhttp_add_header(h, "Connection", "close");
    evbuffer_add(evhttp_request_get_output_buffer(r->ev), body, len);
    if (len == 0 || body[len - 1] != '\n')
        evbuffer_add(evhttp_request_get_output_buffer(r->ev), "\n", 1);
    const char *reason = http < 300 ? "OK" : http < 500 ? "Client Error" : "Server Error";
    r->status = http;
    evhttp_send_reply(r->ev, http, reason, NULL);
    if (r->w->cfg->access_log)
        rd_info("event=access req=%s method=%d path=\"%s\" status=%d key=%s ms=%lld", r->request_id,
                (int)evhttp_request_get_command(r->ev), r->path, http,
                r->key_id[0] ? r->key_id : "-", (long long)(rd_mono_us() - r->start_us) / 1000);
    req_free(r);
}

void rd_req_free_streamed(struct rd_req *r)
{
    req_free(r);
}

void rd_reply_raw(struct rd_req *r, int http, const char *body, size_t len)
{
    send_body(r, http, "application/json", body, len);
}

void rd_reply_text(struct rd_req *r, int http, const char *ctype, const char *body, size_t len)
{
    send_body(r, http, ctype, body, len);
}

void rd_reply_json(struct rd_req *r, int http, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s)
        abort();
    send_body(r, http, "application/json", s, strlen(s));
    free(s);
}

void rd_reply_error(struct rd_req *r, enum rd_status st, const char *message, json_t *details)
{
    rd_counter_inc(&r->w->m.errors[st], 1);
    json_t *err = json_pack("{s:s, s:s, s:s}", "code", rd_status_name(st), "message",
                            message ? message : rd_status_message(st), "request_id", r->request_id);
    if (details)
        json_object_set_new(err, "details", details);
    if (st == RD_E_RATE_LIMITED || st == RD_E_UNAVAILABLE)
        evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Retry-After", "1");
    rd_reply_json(r, rd_status_http(st), json_pack("{s:o}", "error", err));
}

void rd_reply_verr(struct rd_req *r, const struct rd_verr *e)
{
    char msg[320];
    snprintf(msg, sizeof(msg), "%s: %s", e->field, e->msg);
    rd_reply_error(r, RD_E_INVALID_REQUEST, msg, json_pack("{s:s}", "field", e->field));
}

void rd_reply_redis_failure(struct rd_req *r, const redisReply *reply, const char *what)
{
    if (!reply) {
        rd_reply_error(r, RD_E_UNAVAILABLE,
                       "the outcome is unknown (Redis connection lost); retry with the same "
                       "Idempotency-Key",
                       NULL);
        return;
    }
    if (rd_redis_error_is_unavailable(reply)) {
        rd_warn("event=redis_unavailable req=%s what=%s err=\"%s\"", r->request_id, what,
                reply->str);
        rd_reply_error(r, RD_E_UNAVAILABLE, NULL, NULL);
        return;
    }
    rd_error("event=redis_unexpected req=%s what=%s type=%d err=\"%.*s\"", r->request_id, what,
             reply->type, reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 0,
             reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
}

void rd_req_arg(struct rd_req *r, int i, const char *s)
{
    rd_req_argn(r, i, s, strlen(s));
}

void rd_req_argn(struct rd_req *r, int i, const char *s, size_t n)
{
    if (i < 0 || i >= RD_RCALL_MAXARGS) {
        /* a handler's bug, not the client's: the call is refused as a whole (500) */
        rd_error("event=script_args_overflow req=%s index=%d max=%d", r->request_id, i,
                 RD_RCALL_MAXARGS);
        r->call.overflow = 1;
        return;
    }
    r->call.argv[i] = s;
    r->call.argvlen[i] = n;
    if (i + 1 > r->call.argc)
        r->call.argc = i + 1;
}

void rd_req_call(struct rd_req *r, rd_redis_cb *cb)
{
    r->call.cb = cb;
    r->call.arg = r;
    if (r->call.overflow) {
        rd_reply_error(r, RD_E_INTERNAL, NULL, NULL);
        return;
    }
    if (rd_redis_call(&r->w->redis, &r->call) < 0)
        rd_reply_error(r, RD_E_UNAVAILABLE, "Redis is not reachable; retry shortly", NULL);
}

static void gen_request_id(struct rd_req *r)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[12];
    rd_worker_random(r->w, b, sizeof(b));
    for (int i = 0; i < 12; i++) {
        r->request_id[2 * i] = hex[b[i] >> 4];
        r->request_id[2 * i + 1] = hex[b[i] & 15];
    }
    r->request_id[24] = '\0';
}

static int authenticate(struct rd_req *r, unsigned need)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Authorization");
    if (!r->w->keys.loaded) {
        rd_reply_error(r, RD_E_UNAVAILABLE, "API keys are not loaded yet; retry shortly", NULL);
        return -1;
    }
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        rd_reply_error(r, RD_E_UNAUTHORIZED,
                       "an Authorization: Bearer <api key> header is "
                       "required",
                       NULL);
        return -1;
    }
    const char *key = h + 7;
    while (*key == ' ')
        key++;
    const struct rd_apikey *k = rd_apikeys_find(&r->w->keys, key, strlen(key));
    if (!k) {
        rd_reply_error(r, RD_E_UNAUTHORIZED, NULL, NULL);
        return -1;
    }
    memcpy(r->key_id, k->id, sizeof(r->key_id));
    r->scopes = k->scopes;
    if (!(k->scopes & need)) {
        rd_reply_error(r, RD_E_FORBIDDEN, NULL, NULL);
        return -1;
    }
    return 0;
}

static int read_body(struct rd_req *r, int optional)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->ev);
    size_t len = evbuffer_get_length(in);
    if (len == 0 && optional) {
        r->body = json_object();
        return 0;
    }
    if (len > (size_t)r->w->cfg->max_body_bytes) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the body is %zu bytes; the limit is %d", len,
                 r->w->cfg->max_body_bytes);
        rd_reply_error(
            r, RD_E_PAYLOAD_TOO_LARGE, msg,
            json_pack("{s:s, s:i}", "field", "body", "limit", r->w->cfg->max_body_bytes));
        return -1;
    }
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Content-Type");
    if (len > 0 && ct && strncasecmp(ct, "application/json", 16) != 0) {
        struct rd_verr e;
        rd_verr_set(&e, "Content-Type", "must be application/json");
        rd_reply_verr(r, &e);
        return -1;
    }
    struct rd_verr e;
    r->body = rd_json_parse_object((const char *)evbuffer_pullup(in, -1), len, &e);
    if (!r->body) {
        rd_reply_verr(r, &e);
        return -1;
    }
    return 0;
}

void rd_http_dispatch(struct evhttp_request *ev, void *arg)
{
    struct rd_worker *w = arg;
    struct rd_req *r = req_new(w);
    r->w = w;
    r->ev = ev;
    r->start_us = rd_mono_us();
    r->route = ROUTE_NONE;
    r->now_ms = rd_now_ms();
    rd_coupon_init(&r->coupon);
    w->inflight++;

    struct evkeyvalq *in = evhttp_request_get_input_headers(ev);
    const char *rid = evhttp_find_header(in, "X-Request-Id");
    if (rid && rd_request_id_check(rid) == 0)
        snprintf(r->request_id, sizeof(r->request_id), "%s", rid);
    else
        gen_request_id(r);

    struct evhttp_connection *con = evhttp_request_get_connection(ev);
    if (con) {
        char *addr = NULL;
        ev_uint16_t port;
        evhttp_connection_get_peer(con, &addr, &port);
        snprintf(r->client_ip, sizeof(r->client_ip), "%s", addr ? addr : "");
    }

    if (w->stopping) {
        rd_reply_error(r, RD_E_UNAVAILABLE, "shutting down", NULL);
        return;
    }
    if (w->inflight > w->cfg->max_inflight) {
        rd_reply_error(r, RD_E_UNAVAILABLE, "too many requests in flight", NULL);
        return;
    }

    const char *uri = evhttp_request_get_uri(ev);
    size_t plen = strcspn(uri, "?#");
    if (plen >= sizeof(r->path)) {
        rd_reply_error(r, RD_E_NOT_FOUND, NULL, NULL);
        return;
    }
    memcpy(r->path, uri, plen);
    r->path[plen] = '\0';

    if (w->cfg->test_clock) {
        const char *now = evhttp_find_header(in, "X-Redeemd-Now");
        if (now && rd_time_parse(now, &r->now_ms) < 0) {
            struct rd_verr e;
            rd_verr_set(&e, "X-Redeemd-Now", "must be an RFC 3339 time");
            rd_reply_verr(r, &e);
            return;
        }
    }

    int method = (int)evhttp_request_get_command(ev), path_found = 0;
    for (size_t i = 0; i < NROUTES; i++) {
        const char *param = NULL;
        if (!match(routes[i].path, r->path, &param))
            continue;
        path_found = 1;
        if (routes[i].method != method)
            continue;
        r->route = (int)i;
        if (param) {
            /* the segment ends at the next '/' or the end of path; cut it there */
            char *slash = strchr(param, '/');
            if (slash)
                *slash = '\0';
            r->param = param;
        }
        if (routes[i].scopes && authenticate(r, routes[i].scopes) < 0)
            return;
        if (routes[i].body && read_body(r, routes[i].body == 2) < 0)
            return;
        routes[i].fn(r);
        return;
    }
    rd_reply_error(r, path_found ? RD_E_METHOD_NOT_ALLOWED : RD_E_NOT_FOUND, NULL, NULL);
}

const char *rd_el(const redisReply *reply, size_t i)
{
    if (i >= reply->elements || reply->element[i]->type != REDIS_REPLY_STRING)
        return "";
    return reply->element[i]->str;
}

int64_t rd_el_num(const redisReply *reply, size_t i)
{
    const char *s = rd_el(reply, i);
    return *s ? strtoll(s, NULL, 10) : -1;
}

json_t *rd_opt_count(const redisReply *reply, size_t i)
{
    int64_t v = rd_el_num(reply, i);
    return v < 0 ? json_null() : json_integer(v);
}

json_t *rd_time_json(int64_t ms)
{
    char buf[RD_TIME_BUFSZ];
    return json_string(rd_time_format(ms, buf));
}

void rd_req_new_txn(struct rd_req *r)
{
    uint8_t rnd[20];
    rd_worker_random(r->w, rnd, sizeof(rnd));
    rd_txn_id_make(r->txn, r->bucket, rnd);
}

const char *rd_script_status(struct rd_req *r, const redisReply *reply, const char *what)
{
    /* the script may have written an outbox entry (a validate does only for unknown codes) */
    if (reply && (r->redeem_mode || strcmp(what, "validate") != 0 ||
                  (reply->type == REDIS_REPLY_ARRAY && reply->elements > 2 &&
                   strcmp(rd_el(reply, 2), "coupon_not_found") == 0)))
        rd_shipper_hint(r->bucket);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
        rd_reply_redis_failure(r, reply, what);
        return NULL;
    }
    const char *st = rd_el(reply, 0);
    if (strcmp(st, "reused") == 0) {
        rd_reply_error(r, RD_E_IDEM_REUSED, NULL, NULL);
        return NULL;
    }
    return st;
}
