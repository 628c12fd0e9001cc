/* SPDX-License-Identifier: MIT
 *
 * Webhook delivery thread (see webhooks.h).
 *
 * A delivery's life: claimed (attempts + 1, next_at pushed to the lease's end, so a daemon
 * that dies with it under way hands it to the next claim once the lease runs out), its
 * endpoint's name resolved (evdns, on this loop) and every address checked against the
 * private ranges unless webhook_allow_private, one connection to the first address (the
 * name is never resolved again by the connection: no rebinding between check and use), one
 * POST with Redeemd-Signature, then one UPDATE with the outcome. PostgreSQL is called
 * blocking: it blocks this thread only, for the one short statement.
 */
#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "jobs/webhooks.h"
#include "rd/json_util.h"
#include "rd/ledger.h"
#include "rd/log.h"
#include "rd/webhook.h"
#include "store/pgconn.h"

#define LEASE_MARGIN_MS 5000

struct delivery {
    char id[32], webhook[64];
    char *url, *secret, *payload;
    int attempts;
    struct rd_url u;
    struct evhttp_connection *conn;
    struct evdns_getaddrinfo_request *dns;
    struct delivery *next;
};

static struct {
    const struct rd_config *cfg;
    pthread_t thread;
    struct event_base *base;
    struct evdns_base *dns;
    struct event *tick_ev, *stop_ev, *reap_ev;
    struct rd_pgparams params;
    PGconn *pg;
    struct delivery *under_way; /* in flight */
    struct delivery *done;      /* answered: freed outside evhttp's callbacks */
    int n_under_way;
    int stopping; /* the loop has ended: outcomes are no longer recorded */
} W;

/* ---- PostgreSQL ---------------------------------------------------------------------------- */

static PGconn *pg(void)
{
    if (W.pg && PQstatus(W.pg) == CONNECTION_OK)
        return W.pg;
    if (W.pg)
        PQfinish(W.pg);
    W.pg = rd_pg_connect(&W.params);
    if (PQstatus(W.pg) != CONNECTION_OK) {
        PQfinish(W.pg);
        W.pg = NULL;
    }
    return W.pg;
}

static PGresult *exec(const char *sql, int n, const char *const *params)
{
    PGconn *c = pg();
    if (!c)
        return NULL;
    PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        rd_warn("event=webhook_statement_failed err=\"%s\"", msg);
        PQclear(res);
        return NULL;
    }
    return res;
}

/* ---- outcomes -------------------------------------------------------------------------------- */

static void free_delivery(struct delivery *d)
{
    if (d->conn)
        evhttp_connection_free(d->conn);
    free(d->url);
    free(d->secret);
    free(d->payload);
    free(d);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    while (W.done) {
        struct delivery *d = W.done;
        W.done = d->next;
        free_delivery(d);
    }
}

/* Takes d off the list under way; it is freed on the next turn of the loop (never inside
 * one of evhttp's callbacks, which still use its connection). */
static void retire(struct delivery *d)
{
    for (struct delivery **p = &W.under_way; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    W.n_under_way--;
    d->next = W.done;
    W.done = d;
    struct timeval zero = {0, 0};
    evtimer_add(W.reap_ev, &zero);
}

static void record(struct delivery *d, int code, const char *error)
{
    char codes[16], retry_ms[24], window[24];
    snprintf(codes, sizeof(codes), "%d", code);
    uint32_t r;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = 0;
    snprintf(retry_ms, sizeof(retry_ms), "%lld",
             (long long)rd_webhook_backoff_ms(d->attempts, W.cfg->webhook_backoff_ms,
                                              (double)r / 4294967296.0));
    snprintf(window, sizeof(window), "%d", W.cfg->webhook_retry_window_s);
    const char *p[6] = {d->id, code ? codes : NULL, error, retry_ms, window, d->webhook};
    PGresult *res;
    if (code >= 200 && code < 300) {
        res = exec("UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), "
                   "last_code = $2::int, last_error = NULL WHERE id = $1 AND status = 'pending'",
                   2, p);
    } else {
        /* failed for good once its event is older than the window; an endpoint that has
         * delivered nothing for as long is disabled */
        res = exec("WITH d AS (UPDATE webhook_deliveries SET last_code = $2::int, "
                   "last_error = $3, status = CASE WHEN created_at < now() - $5::int * "
                   "interval '1 second' THEN 'failed' ELSE 'pending' END, next_at = now() + "
                   "$4::bigint * interval '1 millisecond' WHERE id = $1 AND status = 'pending' "
                   "RETURNING status) UPDATE webhooks w SET enabled = false, disabled_reason = "
                   "'no delivery succeeded for ' || $5 || ' s', updated_at = now() FROM d "
                   "WHERE d.status = 'failed' AND w.id = $6 AND w.enabled AND NOT EXISTS "
                   "(SELECT 1 FROM webhook_deliveries x WHERE x.webhook_id = $6 AND "
                   "x.delivered_at > now() - $5::int * interval '1 second')",
                   6, p);
    }
    if (!res) /* the lease runs out and the delivery is made again: at least once */
        rd_warn("event=webhook_outcome_unrecorded delivery=%s", d->id);
    PQclear(res);
}

static void finish(struct delivery *d, int code, const char *error)
{
    if (code >= 200 && code < 300)
        rd_info("event=webhook_delivered delivery=%s webhook=%s attempt=%d code=%d", d->id,
                d->webhook, d->attempts, code);
    else
        rd_warn("event=webhook_failed delivery=%s webhook=%s attempt=%d code=%d err=\"%s\"", d->id,
                d->webhook, d->attempts, code, error ? error : "");
    record(d, code, error);
    retire(d);
}

/* ---- one POST ------------------------------------------------------------------------------- */

static void on_answer(struct evhttp_request *req, void *arg)
{
    struct delivery *d = arg;
    if (W.stopping)
        return; /* its lease runs out: another attempt delivers it */
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code == 0)
        finish(d, 0, "no answer (connection refused, reset or timed out)");
    else
        finish(d, code, code >= 200 && code < 300 ? NULL : "not a 2xx answer");
}

static void post(struct delivery *d, const char *ip)
{
    d->conn = evhttp_connection_base_new(W.base, NULL, ip, (unsigned short)d->u.port);
    if (!d->conn) {
        finish(d, 0, "cannot open a connection");
        return;
    }
    int secs = (W.cfg->webhook_timeout_ms + 999) / 1000;
    evhttp_connection_set_timeout(d->conn, secs);
    evhttp_connection_set_retries(d->conn, 0);
    struct evhttp_request *req = evhttp_request_new(on_answer, d);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char host[RD_URL_HOST_MAX + 16], sig[128];
    const char *br = strchr(d->u.host, ':') ? "[" : "", *bc = *br ? "]" : "";
    if (d->u.port == 80)
        snprintf(host, sizeof(host), "%s%s%s", br, d->u.host, bc);
    else
        snprintf(host, sizeof(host), "%s%s%s:%d", br, d->u.host, bc, d->u.port);
    size_t len = strlen(d->payload);
    rd_webhook_signature(d->secret, (int64_t)time(NULL), d->payload, len, sig, sizeof(sig));
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "User-Agent", "redeemd-webhooks/1");
    evhttp_add_header(h, "Redeemd-Signature", sig);
    evhttp_add_header(h, "Redeemd-Delivery", d->id);
    evhttp_add_header(h, "Connection", "close");
    evbuffer_add(evhttp_request_get_output_buffer(req), d->payload, len);
    if (evhttp_make_request(d->conn, req, EVHTTP_REQ_POST, d->u.path) != 0)
        finish(d, 0, "cannot send the request"); /* evhttp freed req */
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct delivery *d = arg;
    d->dns = NULL;
    if (result != 0 || !res) {
        finish(d, 0, "the endpoint's name does not resolve");
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    char ip[64] = "";
    for (struct evutil_addrinfo *a = res; a; a = a->ai_next) {
        char s[64];
        const void *addr = a->ai_family == AF_INET
                               ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
                               : (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
        if (!evutil_inet_ntop(a->ai_family, addr, s, sizeof(s)))
            continue;
        if (!W.cfg->webhook_allow_private && rd_ip_is_private(s) != 0) {
            /* one private address among them is enough: a name that may point inside
             * is not called */
            evutil_freeaddrinfo(res);
            finish(d, 0,
                   "the endpoint's name resolves to a private or loopback address "
                   "(webhook_allow_private)");
            return;
        }
        if (!ip[0])
            snprintf(ip, sizeof(ip), "%s", s);
    }
    evutil_freeaddrinfo(res);
    if (!ip[0]) {
        finish(d, 0, "the endpoint's name has no usable address");
        return;
    }
    post(d, ip);
}

static void start(struct delivery *d)
{
    const char *why;
    if (rd_url_parse(d->url, &d->u, &why) < 0) {
        finish(d, 0, why);
        return;
    }
    if (d->u.host_is_ip) {
        if (!W.cfg->webhook_allow_private && rd_ip_is_private(d->u.host) != 0) {
            finish(d, 0, "the endpoint is a private or loopback address (webhook_allow_private)");
            return;
        }
        post(d, d->u.host);
        return;
    }
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    d->dns = evdns_getaddrinfo(W.dns, d->u.host, NULL, &hints, on_resolved, d);
    /* (NULL: answered at once, and on_resolved has run) */
}

/* ---- claiming ---------------------------------------------------------------------------------
 */

/* How many deliveries to endpoint id are under way here. */
static int busy(const char *id)
{
    int n = 0;
    for (struct delivery *d = W.under_way; d; d = d->next)
        n += strcmp(d->webhook, id) == 0;
    return n;
}

static void claim(void)
{
    int free_slots = W.cfg->webhook_concurrency - W.n_under_way;
    if (free_slots <= 0)
        return;
    /* endpoints already at webhook_per_endpoint here are left out of the claim */
    struct rd_sbuf full;
    rd_sbuf_init(&full);
    const char *ids[256];
    int nfull = 0;
    for (struct delivery *d = W.under_way; d && nfull < 256; d = d->next) {
        int seen = 0;
        for (int i = 0; i < nfull; i++)
            seen |= strcmp(ids[i], d->webhook) == 0;
        if (!seen && busy(d->webhook) >= W.cfg->webhook_per_endpoint)
            ids[nfull++] = d->webhook;
    }
    rd_pg_text_array(&full, ids, nfull, "");
    char limit[16], lease[24];
    snprintf(limit, sizeof(limit), "%d", free_slots);
    snprintf(lease, sizeof(lease), "%d", W.cfg->webhook_timeout_ms + LEASE_MARGIN_MS);
    const char *p[3] = {limit, lease, full.buf};
    /* a disabled endpoint's deliveries wait (they go out if it is enabled again) */
    PGresult *res =
        exec("WITH due AS (SELECT x.id FROM webhook_deliveries x JOIN webhooks w ON w.id = "
             "x.webhook_id AND w.enabled WHERE x.status = 'pending' AND x.next_at <= now() AND "
             "x.webhook_id <> ALL ($3::text[]) ORDER BY x.next_at LIMIT $1::int FOR UPDATE OF x "
             "SKIP LOCKED) UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_at = "
             "now() + $2::int * interval '1 millisecond' FROM due, webhooks w WHERE d.id = due.id "
             "AND w.id = d.webhook_id RETURNING d.id, d.webhook_id, w.url, w.secret, d.payload, "
             "d.attempts",
             3, p);
    rd_sbuf_free(&full);
    if (!res)
        return;
    for (int i = 0; i < PQntuples(res); i++) {
        struct delivery *d = calloc(1, sizeof(*d));
        if (!d)
            abort();
        snprintf(d->id, sizeof(d->id), "%s", PQgetvalue(res, i, 0));
        snprintf(d->webhook, sizeof(d->webhook), "%s", PQgetvalue(res, i, 1));
        d->url = strdup(PQgetvalue(res, i, 2));
        d->secret = strdup(PQgetvalue(res, i, 3));
        d->payload = strdup(PQgetvalue(res, i, 4));
        d->attempts = atoi(PQgetvalue(res, i, 5));
        if (!d->url || !d->secret || !d->payload)
            abort();
        if (busy(d->webhook) >= W.cfg->webhook_per_endpoint) {
            /* claimed beside others of the same endpoint: back to the queue, untried */
            const char *q[1] = {d->id};
            PQclear(exec("UPDATE webhook_deliveries SET attempts = attempts - 1, next_at = "
                         "now() WHERE id = $1",
                         1, q));
            free_delivery(d);
            continue;
        }
        d->next = W.under_way;
        W.under_way = d;
        W.n_under_way++;
        start(d);
    }
    PQclear(res);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    claim();
    struct timeval tv = {W.cfg->webhook_poll_ms / 1000, (W.cfg->webhook_poll_ms % 1000) * 1000};
    evtimer_add(W.tick_ev, &tv);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    event_base_loopexit(W.base, NULL);
}

static void *webhooks_main(void *arg)
{
    (void)arg;
    rd_log_set_thread_name("webhooks");
    struct timeval zero = {0, 0};
    evtimer_add(W.tick_ev, &zero);
    event_base_dispatch(W.base);
    for (struct delivery *d = W.under_way; d;) {
        struct delivery *next = d->next;
        if (d->dns)
            evdns_getaddrinfo_cancel(d->dns); /* its callback runs: it retires d */
        d = next;
    }
    on_reap(-1, 0, NULL);
    W.stopping = 1;
    while (W.under_way) {
        struct delivery *d = W.under_way;
        W.under_way = d->next;
        free_delivery(d);
    }
    if (W.pg)
        PQfinish(W.pg);
    return NULL;
}

int rd_webhooks_start(const struct rd_config *cfg)
{
    W.cfg = cfg;
    char err[300];
    if (rd_pgparams_init(&W.params, cfg->pg_conninfo, "redeemd-webhooks",
                         "-c statement_timeout=5000", err, sizeof(err)) < 0) {
        rd_error("event=pg_conninfo_invalid err=\"%s\"", err);
        return -1;
    }
    W.base = event_base_new();
    W.dns = W.base ? evdns_base_new(W.base, EVDNS_BASE_INITIALIZE_NAMESERVERS) : NULL;
    if (W.base && !W.dns) /* no resolv.conf: names cannot be called, addresses can */
        W.dns = evdns_base_new(W.base, 0);
    W.tick_ev = evtimer_new(W.base, on_tick, NULL);
    W.stop_ev = event_new(W.base, -1, 0, on_stop, NULL);
    W.reap_ev = evtimer_new(W.base, on_reap, NULL);
    if (!W.base || !W.dns || !W.tick_ev || !W.stop_ev || !W.reap_ev)
        return -1;
    return pthread_create(&W.thread, NULL, webhooks_main, NULL) == 0 ? 0 : -1;
}

void rd_webhooks_stop(void)
{
    event_active(W.stop_ev, EV_TIMEOUT, 0);
    pthread_join(W.thread, NULL);
    event_free(W.tick_ev);
    event_free(W.stop_ev);
    event_free(W.reap_ev);
    evdns_base_free(W.dns, 0);
    event_base_free(W.base);
    rd_pgparams_free(&W.params);
}
