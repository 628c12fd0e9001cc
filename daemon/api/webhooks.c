/* SPDX-License-Identifier: MIT
 *
 * Webhook endpoints and their deliveries (scope admin): each route is one statement on the
 * read pool against the tables of scripts/sql/016_webhooks.sql. What they deliver, and how,
 * is daemon/jobs/webhooks.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "rd/ledger.h"
#include "rd/webhook.h"

#define WEBHOOK_ID_RAND 20
#define DESCRIPTION_MAX 500

static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

/* The first row's view (a NULL view, like no row, means nothing was there). */
static int on_view_row(struct rd_pgq *q, const PGresult *row)
{
    struct rd_req *r = q->arg;
    if (r->lr->rows++ == 0 && !PQgetisnull(row, 0, 0)) {
        json_decref(r->body);
        r->body = json_loads(PQgetvalue(row, 0, 0), 0, NULL);
    }
    return 0;
}

/* The read's answer goes to r->body (a NULL body then means "no such row"): the request's
 * own body is dropped once its values are the statement's (copied). */
static void run(struct rd_req *r, enum rd_status missing)
{
    json_decref(r->body);
    r->body = NULL;
    rd_lread_object(r, on_view_row, missing);
}

static void on_created(struct rd_req *r)
{
    json_t *o = r->body;
    r->body = NULL;
    rd_reply_json(r, 201, o);
}

/* A URL a webhook may call: http, and not a private address unless allowed. */
static int check_url(struct rd_req *r, const char *url, struct rd_verr *e)
{
    struct rd_url u;
    const char *why;
    if (rd_url_parse(url, &u, &why) < 0) {
        rd_verr_set(e, "url", "%s", why);
        return -1;
    }
    if (r->w->cfg->webhook_allow_private)
        return 0;
    size_t hl = strlen(u.host);
    int local_name = !strcasecmp(u.host, "localhost") ||
                     (hl > 10 && !strcasecmp(u.host + hl - 10, ".localhost"));
    if (local_name || (u.host_is_ip && rd_ip_is_private(u.host) == 1)) {
        rd_verr_set(e, "url",
                    "is a loopback or private address (set webhook_allow_private = true for "
                    "a receiver on a private network)");
        return -1;
    }
    return 0; /* a name: what it resolves to is checked before each delivery */
}

/* "events": a non-empty list of known event names, each once, as a PostgreSQL array. */
static char *events_array(const json_t *body, struct rd_verr *e)
{
    const json_t *ev = json_object_get(body, "events");
    if (!json_is_array(ev) || json_array_size(ev) == 0 || json_array_size(ev) > RD_WEBHOOK_EVENTS) {
        rd_verr_set(e, "events", "must be a list of 1 to %d event names", RD_WEBHOOK_EVENTS);
        return NULL;
    }
    const char *names[RD_WEBHOOK_EVENTS];
    size_t n = json_array_size(ev);
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(ev, i));
        if (!s || !rd_webhook_event_known(s)) {
            rd_verr_set(e, "events",
                        "unknown event %s%.64s%s (known: redemption.created, "
                        "redemption.reversed, voucher.paid, voucher.refunded, voucher.recharged, "
                        "coupon.created, coupon.updated, coupon.disabled, coupon.exhausted, "
                        "batch.completed, fraud.rate_limited)",
                        s ? "\"" : "", s ? s : "(not a string)", s ? "\"" : "");
            return NULL;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(names[k], s)) {
                rd_verr_set(e, "events", "names %s twice", s);
                return NULL;
            }
        names[i] = s;
    }
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    rd_pg_text_array(&b, names, (int)n, "");
    return b.buf;
}

static int description_of(const json_t *body, const char **out, bool *is_null, struct rd_verr *e)
{
    return rd_json_str(body, "description", RD_J_NULLABLE, 0, DESCRIPTION_MAX, out, is_null, e);
}

void rd_h_webhook_create(struct rd_req *r)
{
    static const char *const keys[] = {"url", "events", "description", NULL};
    struct rd_verr e;
    const char *url, *desc = NULL;
    bool desc_null = false;
    if (rd_json_only_keys(r->body, keys, "", &e) < 0 ||
        rd_json_str(r->body, "url", RD_J_REQUIRED, 1, RD_URL_MAX, &url, NULL, &e) < 0 ||
        check_url(r, url, &e) < 0 || description_of(r->body, &desc, &desc_null, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    char *events = events_array(r->body, &e);
    if (!events) {
        rd_reply_verr(r, &e);
        return;
    }
    char id[3 + WEBHOOK_ID_RAND + 1], secret[6 + 64 + 1];
    uint8_t rnd[WEBHOOK_ID_RAND + 32];
    rd_worker_random(r->w, rnd, sizeof(rnd));
    memcpy(id, "wh_", 3);
    for (int i = 0; i < WEBHOOK_ID_RAND; i++)
        id[3 + i] = alphabet[rnd[i] & 31];
    id[3 + WEBHOOK_ID_RAND] = '\0';
    memcpy(secret, "whsec_", 6);
    for (int i = 0; i < 32; i++)
        snprintf(secret + 6 + 2 * i, 3, "%02x", rnd[WEBHOOK_ID_RAND + i]);
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->st.sql,
                   "INSERT INTO webhooks (id, url, events, description, secret) VALUES ($1, $2, "
                   "$3::text[], $4, $5) RETURNING (rd_webhook_json(webhooks) || "
                   "jsonb_build_object('secret', secret))::text");
    rd_lread_param(r, id);
    rd_lread_param(r, url);
    rd_lread_param_owned(r, events);
    rd_lread_param(r, desc_null ? NULL : desc);
    rd_lread_param(r, secret);
    r->lr->then = on_created;
    run(r, RD_E_INTERNAL);
}

void rd_h_webhooks_list(struct rd_req *r)
{
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->st.sql,
                   "SELECT jsonb_build_object('data', coalesce(jsonb_agg(rd_webhook_json(w) "
                   "ORDER BY w.created_at, w.id), '[]'))::text FROM webhooks w");
    run(r, RD_E_INTERNAL);
}

static int path_webhook(struct rd_req *r)
{
    size_t n = strlen(r->param);
    if (n != 3 + WEBHOOK_ID_RAND || strncmp(r->param, "wh_", 3) != 0 ||
        strspn(r->param + 3, alphabet) != WEBHOOK_ID_RAND) {
        rd_reply_error(r, RD_E_WEBHOOK_NOT_FOUND, NULL, NULL);
        return -1;
    }
    return 0;
}

void rd_h_webhook_get(struct rd_req *r)
{
    if (path_webhook(r) < 0)
        return;
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->st.sql,
                   "SELECT rd_webhook_json(w)::text FROM webhooks w WHERE w.id = $1");
    rd_lread_param(r, r->param);
    run(r, RD_E_WEBHOOK_NOT_FOUND);
}

void rd_h_webhook_patch(struct rd_req *r)
{
    static const char *const keys[] = {"url", "events", "description", "enabled", NULL};
    struct rd_verr e;
    if (path_webhook(r) < 0)
        return;
    const char *url = NULL, *desc = NULL;
    bool desc_null = false;
    int rc;
    char *events = NULL;
    if (rd_json_only_keys(r->body, keys, "", &e) < 0 ||
        (rc = rd_json_str(r->body, "url", RD_J_OPTIONAL, 1, RD_URL_MAX, &url, NULL, &e)) < 0 ||
        (rc == 1 && check_url(r, url, &e) < 0) ||
        description_of(r->body, &desc, &desc_null, &e) < 0) {
        rd_reply_verr(r, &e);
        return;
    }
    if (json_object_get(r->body, "events") && !(events = events_array(r->body, &e))) {
        rd_reply_verr(r, &e);
        return;
    }
    const json_t *en = json_object_get(r->body, "enabled");
    if (en && !json_is_boolean(en)) {
        free(events);
        rd_verr_set(&e, "enabled", "must be true or false");
        rd_reply_verr(r, &e);
        return;
    }
    if (json_object_size(r->body) == 0) {
        rd_verr_set(&e, "body", "names no field to change");
        rd_reply_verr(r, &e);
        return;
    }
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->st.sql, "SELECT rd_webhook_update($1, $2, $3::text[], $4, $5::boolean, "
                                   "$6::boolean)::text");
    rd_lread_param(r, r->param);
    rd_lread_param(r, url);
    if (events)
        rd_lread_param_owned(r, events);
    else
        rd_lread_param(r, NULL);
    rd_lread_param(r, desc_null ? NULL : desc);
    rd_lread_param(r, json_object_get(r->body, "description") ? "true" : "false");
    rd_lread_param(r, en ? (json_is_true(en) ? "true" : "false") : NULL);
    run(r, RD_E_WEBHOOK_NOT_FOUND);
}

void rd_h_webhook_delete(struct rd_req *r)
{
    if (path_webhook(r) < 0)
        return;
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->st.sql,
                   "DELETE FROM webhooks w WHERE w.id = $1 RETURNING jsonb_build_object('id', "
                   "w.id, 'deleted', true)::text");
    rd_lread_param(r, r->param);
    run(r, RD_E_WEBHOOK_NOT_FOUND);
}

void rd_h_webhook_deliveries(struct rd_req *r)
{
    if (path_webhook(r) < 0)
        return;
    rd_lread_new(r);
    /* the newest 100, and whether the endpoint exists at all (404 if not) */
    rd_sbuf_addstr(&r->lr->st.sql,
                   "SELECT CASE WHEN EXISTS (SELECT 1 FROM webhooks WHERE id = $1) THEN "
                   "jsonb_build_object('data', coalesce((SELECT jsonb_agg(rd_delivery_json(d) "
                   "ORDER BY d.created_at DESC, d.id) FROM (SELECT * FROM webhook_deliveries "
                   "WHERE webhook_id = $1 ORDER BY created_at DESC, id LIMIT 100) d), '[]'))::text "
                   "END");
    rd_lread_param(r, r->param);
    run(r, RD_E_WEBHOOK_NOT_FOUND);
}

void rd_h_webhook_retry(struct rd_req *r)
{
    /* /v1/webhooks/{id}/deliveries/{delivery}/retry: r->param is the delivery; the path,
     * cut after it, still holds the endpoint's id */
    const char *prefix = "/v1/webhooks/";
    const char *wid = r->path + strlen(prefix);
    size_t wl = strcspn(wid, "/");
    char webhook[64];
    if (wl == 0 || wl >= sizeof(webhook)) {
        rd_reply_error(r, RD_E_WEBHOOK_NOT_FOUND, NULL, NULL);
        return;
    }
    memcpy(webhook, wid, wl);
    webhook[wl] = '\0';
    size_t dl = strlen(r->param);
    if (dl != 24 || strncmp(r->param, "whd_", 4) != 0 ||
        strspn(r->param + 4, "0123456789abcdef") != 20) {
        rd_reply_error(r, RD_E_DELIVERY_NOT_FOUND, NULL, NULL);
        return;
    }
    rd_lread_new(r);
    rd_sbuf_addstr(&r->lr->st.sql, "SELECT rd_delivery_retry($1, $2)::text");
    rd_lread_param(r, webhook);
    rd_lread_param(r, r->param);
    run(r, RD_E_DELIVERY_NOT_FOUND);
}
