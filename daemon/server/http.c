/* SPDX-License-Identifier: MIT
 *
 * Routing, authentication and replies, on top of the server core (httpd.c).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"
#include "rd/request.h"
#include "rd/log.h"
#include "rd/rdtime.h"

struct route {
    int method;       /* RD_HM_* */
    const char *path; /* '*' matches one segment */
    unsigned scopes;  /* any of these; 0 = no authentication */
    int body;         /* 0 none, 1 a JSON object, 2 optional (absent = {}) */
    rd_handler *fn;
};

static const struct route routes[] = {
    {RD_HM_GET, "/healthz", 0, 0, rd_h_healthz},
    {RD_HM_GET, "/readyz", 0, 0, rd_h_readyz},
    {RD_HM_POST, "/v1/coupons", RD_SCOPE_ADMIN, 1, rd_h_coupon_create},
    {RD_HM_GET, "/v1/coupons", RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0, rd_h_coupons_list},
    {RD_HM_GET, "/v1/coupons/*", RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0, rd_h_coupon_get},
    {RD_HM_PATCH, "/v1/coupons/*", RD_SCOPE_ADMIN, 1, rd_h_coupon_patch},
    {RD_HM_POST, "/v1/coupons/*/disable", RD_SCOPE_ADMIN, 2, rd_h_coupon_disable},
    {RD_HM_POST, "/v1/coupons/*/enable", RD_SCOPE_ADMIN, 2, rd_h_coupon_enable},
    {RD_HM_POST, "/v1/coupons/*/share", RD_SCOPE_ADMIN, 2, rd_h_coupon_share},
    {RD_HM_POST, "/v1/validate", RD_SCOPE_REDEEM, 1, rd_h_validate},
    {RD_HM_POST, "/v1/redemptions", RD_SCOPE_REDEEM, 1, rd_h_redeem},
    {RD_HM_GET, "/v1/redemptions/*", RD_SCOPE_REDEEM | RD_SCOPE_FRAUD, 0, rd_h_redemption_get},
    {RD_HM_POST, "/v1/redemptions/*/reverse", RD_SCOPE_REDEEM, 2, rd_h_reverse},
    {RD_HM_GET, "/v1/transactions", RD_SCOPE_FRAUD, 0, rd_h_transactions},
    {RD_HM_GET, "/v1/stats", RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0, rd_h_stats},
    {RD_HM_GET, "/v1/vouchers/*/balance", RD_SCOPE_REDEEM | RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0,
     rd_h_voucher_balance},
    {RD_HM_POST, "/v1/vouchers/*/pay", RD_SCOPE_REDEEM, 1, rd_h_voucher_pay},
    {RD_HM_POST, "/v1/vouchers/*/recharge", RD_SCOPE_ADMIN, 1, rd_h_voucher_recharge},
    {RD_HM_POST, "/v1/batches", RD_SCOPE_ADMIN, 1, rd_h_batch_create},
    {RD_HM_GET, "/v1/batches", RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0, rd_h_batches_list},
    {RD_HM_GET, "/v1/batches/*", RD_SCOPE_ADMIN | RD_SCOPE_FRAUD, 0, rd_h_batch_get},
    {RD_HM_POST, "/v1/batches/*/cancel", RD_SCOPE_ADMIN, 2, rd_h_batch_cancel},
    {RD_HM_GET, "/v1/batches/*/codes", RD_SCOPE_ADMIN, 0, rd_h_batch_codes},
    {RD_HM_POST, "/v1/webhooks", RD_SCOPE_ADMIN, 1, rd_h_webhook_create},
    {RD_HM_GET, "/v1/webhooks", RD_SCOPE_ADMIN, 0, rd_h_webhooks_list},
    {RD_HM_GET, "/v1/webhooks/*", RD_SCOPE_ADMIN, 0, rd_h_webhook_get},
    {RD_HM_PATCH, "/v1/webhooks/*", RD_SCOPE_ADMIN, 1, rd_h_webhook_patch},
    {RD_HM_DELETE, "/v1/webhooks/*", RD_SCOPE_ADMIN, 0, rd_h_webhook_delete},
    {RD_HM_GET, "/v1/webhooks/*/deliveries", RD_SCOPE_ADMIN, 0, rd_h_webhook_deliveries},
    {RD_HM_POST, "/v1/webhooks/*/deliveries/*/retry", RD_SCOPE_ADMIN, 2, rd_h_webhook_retry},
    {RD_HM_GET, "/metrics", 0, 0, rd_h_metrics},
    {RD_HM_GET, "/v1/me", RD_SCOPE_ADMIN | RD_SCOPE_REDEEM | RD_SCOPE_FRAUD, 0, rd_h_me},
    {RD_HM_GET, "/openapi.json", 0, 0, rd_h_openapi},
    {RD_HM_GET, "/console", 0, 0, rd_h_console},
    {RD_HM_GET, "/console/", 0, 0, rd_h_console},
    {RD_HM_GET, "/console/*", 0, 0, rd_h_console},
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
    if (r->state_free)
        r->state_free(r);
    if (r->body)
        json_decref(r->body);
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

const char *rd_req_header(const struct rd_req *r, const char *name)
{
    return rd_hreq_header(r->hr, name);
}

static void send_body(struct rd_req *r, int http, const char *ctype, const char *body, size_t len)
{
    rd_hreq_add_header(r->hr, "Content-Type", ctype);
    rd_hreq_add_header(r->hr, "X-Request-Id", r->request_id);
    if (r->replayed)
        rd_hreq_add_header(r->hr, "Idempotent-Replayed", "true");
    r->status = http;
    if (len == 0 || body[len - 1] != '\n') {
        /* one newline at the end, for people reading answers in a terminal */
        char *nl = malloc(len + 1);
        if (!nl)
            abort();
        memcpy(nl, body, len);
        nl[len] = '\n';
        rd_hreq_reply(r->hr, http, nl, len + 1);
        free(nl);
    } else {
        rd_hreq_reply(r->hr, http, body, len);
    }
    if (r->w->cfg->access_log)
        rd_info("event=access req=%s method=%s path=\"%s\" status=%d key=%s ms=%lld", r->request_id,
                rd_hreq_head(r->hr)->method_name, r->path, http, r->key_id[0] ? r->key_id : "-",
                (long long)(rd_mono_us() - r->start_us) / 1000);
    req_free(r);
}

void rd_req_free_streamed(struct rd_req *r)
{
    req_free(r);
}

void rd_req_abandon(struct rd_req *r)
{
    r->status = 499;
    rd_hreq_abort(r->hr);
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

static int dump_cb(const char *buf, size_t size, void *data)
{
    rd_sbuf_add(data, buf, size);
    return 0;
}

void rd_reply_json(struct rd_req *r, int http, json_t *obj)
{
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    if (json_dump_callback(obj, dump_cb, &b, JSON_COMPACT) < 0)
        abort(); /* only out of memory: everything we dump is built by us */
    json_decref(obj);
    rd_sbuf_add(&b, "\n", 1);
    send_body(r, http, "application/json", b.buf, b.len);
    rd_sbuf_free(&b);
}

void rd_reply_error(struct rd_req *r, enum rd_status st, const char *message, json_t *details)
{
    rd_counter_inc(&r->w->m.errors[st], 1);
    json_t *err = json_pack("{s:s, s:s, s:s}", "code", rd_status_name(st), "message",
                            message ? message : rd_status_message(st), "request_id", r->request_id);
    if (details)
        json_object_set_new(err, "details", details);
    if (st == RD_E_RATE_LIMITED || st == RD_E_UNAVAILABLE) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", r->retry_after_s > 0 ? r->retry_after_s : 1);
        rd_hreq_add_header(r->hr, "Retry-After", ra);
    }
    rd_reply_json(r, rd_status_http(st), json_pack("{s:o}", "error", err));
}

void rd_reply_verr(struct rd_req *r, const struct rd_verr *e)
{
    char msg[320];
    snprintf(msg, sizeof(msg), "%s%s%s", e->field, e->field[0] ? ": " : "", e->msg);
    rd_reply_error(r, RD_E_INVALID_REQUEST, msg, json_pack("{s:s}", "field", e->field));
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
    const char *h = rd_req_header(r, "Authorization");
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

/* application/json, with parameters ("; charset=utf-8") or without */
static int is_json_type(const char *ct)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, "application/json", 16) != 0)
        return 0;
    ct += 16;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

static int read_body(struct rd_req *r, int optional)
{
    size_t len;
    const char *body = rd_hreq_body(r->hr, &len);
    if (len == 0 && optional) {
        r->body = json_object();
        return 0;
    }
    /* (the core has refused bodies over max_body_bytes before reading them) */
    const char *ct = rd_req_header(r, "Content-Type");
    if (len > 0 && ct && !is_json_type(ct)) {
        rd_reply_error(
            r, RD_E_UNSUPPORTED_MEDIA, NULL,
            json_pack("{s:s, s:s}", "field", "Content-Type", "expected", "application/json"));
        return -1;
    }
    struct rd_verr e;
    r->body = rd_json_parse_object(body, len, &e);
    if (!r->body) {
        rd_reply_verr(r, &e);
        return -1;
    }
    return 0;
}

/* The context of any answer, before its route is known. */
static struct rd_req *req_start(struct rd_worker *w, struct rd_hreq *h)
{
    struct rd_req *r = req_new(w);
    r->w = w;
    r->hr = h;
    r->start_us = rd_mono_us();
    r->route = ROUTE_NONE;
    r->now_ms = rd_now_ms();
    w->inflight++;
    const char *rid = rd_hreq_header(h, "X-Request-Id");
    if (rid && rd_request_id_check(rid) == 0)
        snprintf(r->request_id, sizeof(r->request_id), "%s", rid);
    else
        gen_request_id(r);
    snprintf(r->client_ip, sizeof(r->client_ip), "%s", rd_hreq_peer(h));
    r->forwarded_ip[0] = '\0';
    const char *xff =
        w->cfg->trusted_proxies[0] ? rd_http_field_last(rd_hreq_head(h), "X-Forwarded-For") : NULL;
    if (xff && rd_ip_in_list(w->cfg->trusted_proxies, r->client_ip) == 1 &&
        rd_xff_customer(xff, w->cfg->trusted_proxies, r->forwarded_ip, sizeof(r->forwarded_ip)) < 0)
        r->forwarded_ip[0] = '\0'; /* not addresses: a misconfigured proxy, not a customer */
    const char *path = rd_hreq_head(h)->path;
    if (strlen(path) < sizeof(r->path))
        snprintf(r->path, sizeof(r->path), "%s", path);
    return r;
}

void rd_http_refuse(struct rd_hreq *h, enum rd_status st, const char *msg, void *arg)
{
    struct rd_worker *w = arg;
    struct rd_req *r = req_start(w, h);
    json_t *details = NULL;
    if (st == RD_E_PAYLOAD_TOO_LARGE)
        details = json_pack("{s:s, s:i}", "field", "body", "limit", w->cfg->max_body_bytes);
    else if (st == RD_E_HEADERS_TOO_LARGE)
        details = json_pack("{s:i, s:i}", "limit", w->cfg->max_header_bytes, "max_fields",
                            RD_HTTP_MAX_FIELDS);
    else if (st == RD_E_REQUEST_TIMEOUT)
        details = json_pack("{s:i}", "limit_s", w->cfg->request_timeout_s);
    rd_reply_error(r, st, msg, details);
}

/* The Allow header of a path: the methods its routes answer. */
static void allow_header(struct rd_req *r, const char *path)
{
    char allow[96] = "";
    size_t n = 0;
    unsigned seen = 0;
    for (size_t i = 0; i < NROUTES; i++) {
        const char *param = NULL;
        if (!match(routes[i].path, path, &param) || (seen & (1u << routes[i].method)))
            continue;
        seen |= 1u << routes[i].method;
        n += (size_t)snprintf(allow + n, sizeof(allow) - n, "%s%s", n ? ", " : "",
                              rd_http_method_name((enum rd_hmethod)routes[i].method));
        if (routes[i].method == RD_HM_GET)
            n += (size_t)snprintf(allow + n, sizeof(allow) - n, ", HEAD");
    }
    if (!strcmp(path, "*"))
        snprintf(allow, sizeof(allow), "GET, HEAD, POST, PATCH, OPTIONS");
    else
        n += (size_t)snprintf(allow + n, sizeof(allow) - n, "%sOPTIONS", n ? ", " : "");
    rd_hreq_add_header(r->hr, "Allow", allow);
}

void rd_http_dispatch(struct rd_hreq *h, void *arg)
{
    struct rd_worker *w = arg;
    struct rd_req *r = req_start(w, h);
    const struct rd_http_head *head = rd_hreq_head(h);

    if (w->stopping) {
        rd_reply_error(r, RD_E_UNAVAILABLE, "shutting down", NULL);
        return;
    }
    if (w->inflight > w->cfg->max_inflight) {
        rd_reply_error(r, RD_E_UNAVAILABLE, "too many requests in flight", NULL);
        return;
    }
    if (strlen(head->path) >= sizeof(r->path)) {
        rd_reply_error(r, RD_E_NOT_FOUND, NULL, NULL);
        return;
    }

    if (w->cfg->test_clock) {
        const char *now = rd_req_header(r, "X-Redeemd-Now");
        if (now && rd_time_parse(now, &r->now_ms) < 0) {
            struct rd_verr e;
            rd_verr_set(&e, "X-Redeemd-Now", "must be an RFC 3339 time");
            rd_reply_verr(r, &e);
            return;
        }
    }

    /* HEAD is GET without the body (the core leaves it out) */
    int method = head->method == RD_HM_HEAD ? RD_HM_GET : (int)head->method, path_found = 0;
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
    if (head->method == RD_HM_OPTIONS && (path_found || !strcmp(r->path, "*"))) {
        allow_header(r, r->path);
        r->status = 204;
        rd_hreq_add_header(r->hr, "X-Request-Id", r->request_id);
        rd_hreq_reply(r->hr, 204, "", 0);
        req_free(r);
        return;
    }
    if (path_found) {
        allow_header(r, r->path);
        char msg[160];
        snprintf(msg, sizeof(msg), "%s is not allowed on this endpoint; see the Allow header",
                 head->method_name);
        rd_reply_error(r, RD_E_METHOD_NOT_ALLOWED, msg, NULL);
        return;
    }
    rd_reply_error(r, RD_E_NOT_FOUND, NULL, NULL);
}
