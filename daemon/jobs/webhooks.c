/* SPDX-License-Identifier: MIT
 *
 * Webhook delivery thread (see webhooks.h).
 *
 * A delivery's life: claimed (attempts + 1, next_at pushed to the lease's end, so a daemon
 * that dies with it hands it to the next claim once the lease runs out) with up to
 * CLAIM_PER_ENDPOINT slots' worth of its endpoint's, queued here until one of the endpoint's
 * webhook_per_endpoint slots is free, its
 * endpoint's name resolved (evdns, on this loop) and every address checked against the
 * private ranges unless webhook_allow_private, one connection to the first address (the
 * name is never resolved again by the connection: no rebinding between check and use), TLS
 * with the name checked for https, one POST with Redeemd-Signature, then its outcome: the
 * delivered ones of a turn of the loop in one UPDATE, each failure in its own. PostgreSQL is
 * called blocking: it blocks this thread only, for one short statement at a time.
 *
 * Connections are kept: a delivery answered on a connection the receiver keeps open hands it
 * to the endpoint's next delivery (same endpoint, same URL), for at most KEEP_IDLE_MS idle and
 * KEEP_MAX_MS in all, after which the name is looked up again. A new TCP and TLS handshake
 * per event is what limits one endpoint's rate, on both sides. A receiver may close a kept
 * connection as the next POST goes out: a delivery that fails that way, at once, is sent
 * again on a new connection, without counting as a failed attempt.
 */
#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
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
#define KEEP_IDLE_MS    4000 /* under the 5 s after which Node and Apache close idle ones */
#define KEEP_MAX_MS     60000
#define ANSWER_MAX      65536 /* headers, and body, of a receiver's answer */

/* A connection to one endpoint: owned by the delivery using it, else by the idle list. */
struct conn {
    char webhook[64];
    char *url; /* as claimed: an endpoint whose URL changed opens a new one */
    struct evhttp_connection *evcon;
    struct bufferevent *tls; /* https: its handshake's errors, else NULL */
    int64_t opened_ms, idle_ms;
    int closed; /* by the peer, an error or "Connection: close": never used again */
    struct conn *next;
};

struct delivery {
    char id[32], webhook[64];
    char *url, *secret, *payload;
    int attempts;
    struct rd_url u;
    struct conn *c;
    int reused;   /* c carried an earlier answer */
    int no_reuse; /* sent again after a kept connection failed: a new one */
    int64_t sent_ms;
    int err; /* enum evhttp_request_error + 1 of a failed request, 0 none */
    struct evdns_getaddrinfo_request *dns;
    struct delivery *next;
};

static struct {
    const struct rd_config *cfg;
    pthread_t thread;
    struct event_base *base;
    struct evdns_base *dns;
    struct event *tick_ev, *stop_ev, *reap_ev;
    struct event *hint_ev; /* the shipper committed rows: claim now (rd_webhooks_hint) */
    int any_enabled;       /* an enabled endpoint existed when last asked */
    int64_t any_asked_ms;  /* then (monotonic) */
    struct rd_pgparams params;
    PGconn *pg;
    struct delivery *queued;    /* claimed, waiting for a slot of its endpoint */
    struct delivery *under_way; /* in flight */
    struct delivery *done;      /* answered: freed outside evhttp's callbacks */
    struct conn *idle;          /* kept for the next delivery to its endpoint */
    struct conn *dead;          /* closed: freed outside evhttp's callbacks */
    SSL_CTX *tls;
    int n_under_way;
    int stopping; /* the loop has ended: outcomes are no longer recorded */
    int hungry;   /* the last claim found work: the next one follows each delivery's end */
    /* delivered, not yet recorded: written by one statement per batch */
    char (*ok_ids)[32];
    int *ok_codes;
    int n_ok;
    struct event *flush_ev;
} W;

#define CLAIM_PER_ENDPOINT 4 /* x webhook_per_endpoint claimed at once for one endpoint */
#define OK_BATCH           256

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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void free_conn(struct conn *c)
{
    evhttp_connection_free(c->evcon); /* and its bufferevent, SSL and socket */
    free(c->url);
    free(c);
}

/* Closes c on the next turn of the loop (never inside one of its own callbacks). */
static void drop_conn(struct conn *c)
{
    c->closed = 1;
    c->next = W.dead;
    W.dead = c;
    struct timeval zero = {0, 0};
    evtimer_add(W.reap_ev, &zero);
}

static void free_delivery(struct delivery *d)
{
    if (d->c)
        free_conn(d->c);
    free(d->url);
    free(d->secret);
    free(d->payload);
    free(d);
}

static void free_deliveries(struct delivery **list)
{
    while (*list) {
        struct delivery *d = *list;
        *list = d->next;
        free_delivery(d);
    }
}

static void free_conns(struct conn **list)
{
    while (*list) {
        struct conn *c = *list;
        *list = c->next;
        free_conn(c);
    }
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    free_deliveries(&W.done);
    free_conns(&W.dead);
}

/* Closes the kept connections that are too old, idle too long or closed by their peer. */
static void sweep_idle(void)
{
    int64_t now = now_ms();
    for (struct conn **p = &W.idle; *p;) {
        struct conn *c = *p;
        if (c->closed || now - c->idle_ms >= KEEP_IDLE_MS || now - c->opened_ms >= KEEP_MAX_MS) {
            *p = c->next;
            drop_conn(c);
        } else {
            p = &c->next;
        }
    }
}

/* A kept connection for d's endpoint and URL, taken off the idle list, or NULL. */
static struct conn *take_idle(const struct delivery *d)
{
    sweep_idle();
    for (struct conn **p = &W.idle; *p; p = &(*p)->next) {
        struct conn *c = *p;
        if (strcmp(c->webhook, d->webhook) == 0 && strcmp(c->url, d->url) == 0) {
            *p = c->next;
            c->next = NULL;
            return c;
        }
    }
    return NULL;
}

/* Takes d off the list under way; it is freed on the next turn of the loop (never inside
 * one of evhttp's callbacks, which still use its connection). */
static void pump(void);

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
    if (W.stopping)
        return;
    pump(); /* its endpoint's next one, if claimed */
    if (W.hungry && !W.queued)
        evtimer_add(W.tick_ev, &zero); /* (re-adding moves the pending poll to now) */
}

/* Writes the delivered ones held in W.ok_ids with one statement. */
static void flush_delivered(void)
{
    if (W.n_ok == 0)
        return;
    struct rd_sbuf ids, codes;
    rd_sbuf_init(&ids);
    rd_sbuf_init(&codes);
    const char *v[OK_BATCH];
    for (int i = 0; i < W.n_ok; i++) {
        v[i] = W.ok_ids[i];
        rd_sbuf_addf(&codes, "%s%d", i ? "," : "{", W.ok_codes[i]);
    }
    rd_sbuf_addstr(&codes, "}");
    rd_pg_text_array(&ids, v, W.n_ok, "");
    const char *p[2] = {ids.buf, codes.buf};
    PGresult *res = exec("UPDATE webhook_deliveries d SET status = 'delivered', delivered_at = "
                         "now(), last_code = c.code, last_error = NULL FROM unnest($1::text[], "
                         "$2::int[]) AS c(id, code) WHERE d.id = c.id AND d.status = 'pending'",
                         2, p);
    if (!res) /* their leases run out and they are made again: at least once */
        rd_warn("event=webhook_outcome_unrecorded deliveries=%d", W.n_ok);
    PQclear(res);
    rd_sbuf_free(&ids);
    rd_sbuf_free(&codes);
    W.n_ok = 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    flush_delivered();
}

static void record(struct delivery *d, int code, const char *error)
{
    if (code >= 200 && code < 300) {
        snprintf(W.ok_ids[W.n_ok], sizeof(W.ok_ids[0]), "%s", d->id);
        W.ok_codes[W.n_ok++] = code;
        if (W.n_ok == OK_BATCH) {
            flush_delivered();
        } else {
            struct timeval zero = {0, 0}; /* after this turn's other answers */
            evtimer_add(W.flush_ev, &zero);
        }
        return;
    }
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
    /* failed for good once its event is older than the window; an endpoint that has
     * delivered nothing for as long is disabled */
    PGresult *res =
        exec("WITH d AS (UPDATE webhook_deliveries SET last_code = $2::int, "
             "last_error = $3, status = CASE WHEN created_at < now() - $5::int * "
             "interval '1 second' THEN 'failed' ELSE 'pending' END, next_at = now() + "
             "$4::bigint * interval '1 millisecond' WHERE id = $1 AND status = 'pending' "
             "RETURNING status) UPDATE webhooks w SET enabled = false, disabled_reason = "
             "'no delivery succeeded for ' || $5 || ' s', updated_at = now() FROM d "
             "WHERE d.status = 'failed' AND w.id = $6 AND w.enabled AND NOT EXISTS "
             "(SELECT 1 FROM webhook_deliveries x WHERE x.webhook_id = $6 AND "
             "x.delivered_at > now() - $5::int * interval '1 second')",
             6, p);
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

static void start(struct delivery *d);

static void on_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    ((struct conn *)arg)->closed = 1;
}

static void on_request_error(enum evhttp_request_error err, void *arg)
{
    ((struct delivery *)arg)->err = (int)err + 1;
}

/* Why d's request has no answer, into why[sz]. */
static void no_answer_reason(const struct delivery *d, const struct conn *c, int timed_out,
                             char *why, size_t sz)
{
    if (c->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->tls);
        long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        unsigned long e = bufferevent_get_openssl_error(c->tls);
        if (v != X509_V_OK) {
            snprintf(why, sz, "TLS: the endpoint's certificate is not accepted (%s)",
                     X509_verify_cert_error_string(v));
            return;
        }
        if (e) {
            char s[160];
            ERR_error_string_n(e, s, sizeof(s));
            snprintf(why, sz, "TLS: %s", s);
            return;
        }
    }
    if (timed_out) {
        snprintf(why, sz, "no answer within webhook_timeout_ms (%d ms)", W.cfg->webhook_timeout_ms);
        return;
    }
    switch (d->err - 1) {
    case EVREQ_HTTP_INVALID_HEADER:
        snprintf(why, sz, "the answer is not HTTP");
        return;
    case EVREQ_HTTP_DATA_TOO_LONG:
        snprintf(why, sz, "the answer is longer than %d bytes", ANSWER_MAX);
        return;
    default:
        snprintf(why, sz, "no answer (connection refused, reset or closed)");
    }
}

static void on_answer(struct evhttp_request *req, void *arg)
{
    struct delivery *d = arg;
    if (W.stopping)
        return; /* its lease runs out: another attempt delivers it */
    int code = req ? evhttp_request_get_response_code(req) : 0;
    struct conn *c = d->c;
    d->c = NULL;
    int64_t now = now_ms();
    if (code == 0) {
        char why[256];
        int timed_out = d->err - 1 == EVREQ_HTTP_TIMEOUT ||
                        now - d->sent_ms >= W.cfg->webhook_timeout_ms; /* (not always told) */
        no_answer_reason(d, c, timed_out, why, sizeof(why));
        drop_conn(c);
        if (d->reused && !timed_out && now - d->sent_ms < W.cfg->webhook_timeout_ms / 2) {
            /* a kept connection the receiver had closed: once more, on a new one */
            d->reused = 0;
            d->no_reuse = 1;
            d->err = 0;
            start(d);
            return;
        }
        finish(d, 0, why);
        return;
    }
    if (!c->closed && now - c->opened_ms < KEEP_MAX_MS) {
        c->idle_ms = now;
        c->next = W.idle;
        W.idle = c;
    } else {
        drop_conn(c);
    }
    finish(d, code, code >= 200 && code < 300 ? NULL : "not a 2xx answer");
}

/* Sends d on d->c. */
static void send_on(struct delivery *d)
{
    struct evhttp_request *req = evhttp_request_new(on_answer, d);
    if (!req) {
        drop_conn(d->c);
        d->c = NULL;
        finish(d, 0, "out of memory");
        return;
    }
    evhttp_request_set_error_cb(req, on_request_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char host[RD_URL_HOST_MAX + 16], sig[128];
    const char *br = strchr(d->u.host, ':') ? "[" : "", *bc = *br ? "]" : "";
    if (d->u.port == (d->u.tls ? 443 : 80))
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
    evbuffer_add(evhttp_request_get_output_buffer(req), d->payload, len);
    d->sent_ms = now_ms();
    if (evhttp_make_request(d->c->evcon, req, EVHTTP_REQ_POST, d->u.path) != 0) {
        drop_conn(d->c); /* evhttp freed req */
        d->c = NULL;
        finish(d, 0, "cannot send the request");
    }
}

/* Opens a connection for d to ip (checked) and sends d on it. */
static void post(struct delivery *d, const char *ip)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->url = strdup(d->url)))
        abort();
    snprintf(c->webhook, sizeof(c->webhook), "%s", d->webhook);
    c->opened_ms = now_ms();
    if (d->u.tls) {
        SSL *ssl = SSL_new(W.tls);
        int ok = ssl != NULL;
        if (ok && d->u.host_is_ip) /* the certificate must name the address */
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), d->u.host) == 1;
        else if (ok) /* SNI, and the certificate must name the host */
            ok =
                SSL_set_tlsext_host_name(ssl, d->u.host) == 1 && SSL_set1_host(ssl, d->u.host) == 1;
        if (ok)
            c->tls =
                bufferevent_openssl_socket_new(W.base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                               BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (!c->tls) {
            if (ssl)
                SSL_free(ssl);
            free(c->url);
            free(c);
            finish(d, 0, "cannot set up TLS");
            return;
        }
        /* a receiver that closes without close_notify has still answered in full (the
         * length is in Content-Length) */
        bufferevent_openssl_set_allow_dirty_shutdown(c->tls, 1);
    }
    c->evcon =
        evhttp_connection_base_bufferevent_new(W.base, NULL, c->tls, ip, (unsigned short)d->u.port);
    if (!c->evcon) {
        if (c->tls)
            bufferevent_free(c->tls);
        free(c->url);
        free(c);
        finish(d, 0, "cannot open a connection");
        return;
    }
    struct timeval tv = {W.cfg->webhook_timeout_ms / 1000,
                         (W.cfg->webhook_timeout_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(c->evcon, &tv);
    evhttp_connection_set_retries(c->evcon, 0);
    evhttp_connection_set_max_headers_size(c->evcon, ANSWER_MAX);
    evhttp_connection_set_max_body_size(c->evcon, ANSWER_MAX);
    evhttp_connection_set_closecb(c->evcon, on_conn_closed, c);
    d->c = c;
    d->reused = 0;
    send_on(d);
    if (!d->c)
        return;
    /* The socket exists now (connecting), nothing is written yet: no Nagle, or a receiver
     * that delays its ACKs costs every delivery 40 ms (measured: 100 deliveries/s) */
    evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(c->evcon));
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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
    if (!d->no_reuse && (d->c = take_idle(d))) {
        d->reused = 1;
        send_on(d);
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

/* Starts what the slots allow from the claimed queue, oldest first: at most
 * webhook_per_endpoint under way to one endpoint, webhook_concurrency in all. */
static void pump(void)
{
    struct delivery **p = &W.queued;
    while (*p && W.n_under_way < W.cfg->webhook_concurrency) {
        struct delivery *d = *p;
        if (busy(d->webhook) >= W.cfg->webhook_per_endpoint) {
            p = &d->next;
            continue;
        }
        *p = d->next;
        d->next = W.under_way;
        W.under_way = d;
        W.n_under_way++;
        start(d);
    }
}

static void claim(void)
{
    if (W.n_under_way >= W.cfg->webhook_concurrency)
        return;
    /* endpoints with claimed deliveries still waiting here are left out of the claim */
    struct rd_sbuf held;
    rd_sbuf_init(&held);
    const char *ids[256];
    int nheld = 0;
    for (struct delivery *d = W.queued; d && nheld < 256; d = d->next) {
        int seen = 0;
        for (int i = 0; i < nheld; i++)
            seen |= strcmp(ids[i], d->webhook) == 0;
        if (!seen)
            ids[nheld++] = d->webhook;
    }
    rd_pg_text_array(&held, ids, nheld, "");
    int per = W.cfg->webhook_per_endpoint * CLAIM_PER_ENDPOINT;
    char limit[16], lease[24], pers[16];
    snprintf(limit, sizeof(limit), "%d", W.cfg->webhook_concurrency * CLAIM_PER_ENDPOINT);
    /* a claimed delivery may wait for CLAIM_PER_ENDPOINT turns of its endpoint's slots */
    snprintf(lease, sizeof(lease), "%lld",
             (long long)W.cfg->webhook_timeout_ms * (CLAIM_PER_ENDPOINT + 1) + LEASE_MARGIN_MS);
    snprintf(pers, sizeof(pers), "%d", per);
    const char *p[4] = {limit, lease, held.buf, pers};
    /* Fair to every endpoint: at most a few slots' worth of each, oldest first, so a dead
     * receiver's backlog never fills the claim; a disabled endpoint's deliveries wait (they
     * go out if it is enabled again). */
    PGresult *res =
        exec("WITH due AS (SELECT x.id FROM webhooks w CROSS JOIN LATERAL (SELECT d.id, d.next_at "
             "FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'pending' AND "
             "d.next_at <= now() ORDER BY d.next_at LIMIT $4::int FOR UPDATE SKIP LOCKED) x WHERE "
             "w.enabled AND w.id <> ALL ($3::text[]) ORDER BY x.next_at LIMIT $1::int) "
             "UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_at = now() + "
             "$2::bigint * interval '1 millisecond' FROM due, webhooks w WHERE d.id = due.id AND "
             "w.id = d.webhook_id RETURNING d.id, d.webhook_id, w.url, w.secret, d.payload, "
             "d.attempts",
             4, p);
    rd_sbuf_free(&held);
    if (!res)
        return;
    /* while there is work, claim again as soon as an endpoint's queue runs dry */
    W.hungry = PQntuples(res) > 0;
    struct delivery **tail = &W.queued;
    while (*tail)
        tail = &(*tail)->next;
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
        *tail = d;
        tail = &d->next;
    }
    PQclear(res);
    pump();
}

/* Idle: is there an endpoint at all? Only then does a hint claim, so a daemon without
 * webhooks makes no claim per shipped batch (it asks this at most once a second). */
static void refresh_any_enabled(void)
{
    PGresult *res = exec("SELECT EXISTS (SELECT 1 FROM webhooks WHERE enabled)", 0, NULL);
    W.any_enabled = !res || (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't');
    W.any_asked_ms = now_ms();
    PQclear(res);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    sweep_idle();
    if (!W.hungry)
        refresh_any_enabled();
    claim();
    struct timeval tv = {W.cfg->webhook_poll_ms / 1000, (W.cfg->webhook_poll_ms % 1000) * 1000};
    evtimer_add(W.tick_ev, &tv);
}

/* A hint from the shipper: while idle, the events it just committed are claimed now rather
 * than at the next poll (webhook_poll_ms, on average half of it later). While busy, each
 * delivery's end claims anyway. */
static void on_hint(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (W.stopping || W.hungry)
        return;
    if (!W.any_enabled && now_ms() - W.any_asked_ms >= 1000) /* one created since? */
        refresh_any_enabled();
    if (W.any_enabled) {
        struct timeval zero = {0, 0};
        evtimer_add(W.tick_ev, &zero); /* (re-adding moves the pending poll to now) */
    }
}

static pthread_mutex_t hint_lock = PTHREAD_MUTEX_INITIALIZER;

void rd_webhooks_hint(void)
{
    pthread_mutex_lock(&hint_lock);
    if (W.hint_ev)
        event_active(W.hint_ev, EV_TIMEOUT, 0);
    pthread_mutex_unlock(&hint_lock);
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
    W.stopping = 1; /* no more starts, no outcomes of answers cut short */
    for (struct delivery *d = W.under_way; d;) {
        struct delivery *next = d->next;
        if (d->dns)
            evdns_getaddrinfo_cancel(d->dns); /* its callback runs: it retires d */
        d = next;
    }
    on_reap(-1, 0, NULL);
    flush_delivered();
    free_deliveries(&W.queued); /* claimed, never started: their leases run out */
    free_deliveries(&W.under_way);
    free_conns(&W.idle);
    on_reap(-1, 0, NULL);
    if (W.pg)
        PQfinish(W.pg);
    return NULL;
}

int rd_webhooks_start(const struct rd_config *cfg)
{
    W.cfg = cfg;
    char err[300];
    /* synchronous_commit off: this connection writes only claims and outcomes, and losing
     * the last of them to a PostgreSQL crash re-sends those deliveries (at least once, as
     * promised); the events themselves are committed by the shipper, durably. Waiting for
     * a WAL flush per outcome cost a disk flush per few deliveries, on the disk Redis'
     * appendfsync shares. */
    if (rd_pgparams_init(&W.params, cfg->pg_conninfo, "redeemd-webhooks",
                         "-c statement_timeout=5000 -c synchronous_commit=off", err,
                         sizeof(err)) < 0) {
        rd_error("event=pg_conninfo_invalid err=\"%s\"", err);
        return -1;
    }
    W.tls = SSL_CTX_new(TLS_client_method());
    if (!W.tls)
        return -1;
    SSL_CTX_set_min_proto_version(W.tls, TLS1_2_VERSION);
    SSL_CTX_set_verify(W.tls, SSL_VERIFY_PEER, NULL);
    if (cfg->webhook_ca_file[0]
            ? SSL_CTX_load_verify_locations(W.tls, cfg->webhook_ca_file, NULL) != 1
            : SSL_CTX_set_default_verify_paths(W.tls) != 1) {
        char e[160];
        ERR_error_string_n(ERR_get_error(), e, sizeof(e));
        rd_error("event=webhook_ca_unreadable file=\"%s\" err=\"%s\"",
                 cfg->webhook_ca_file[0] ? cfg->webhook_ca_file : "(system)", e);
        return -1;
    }
    W.base = event_base_new();
    W.dns = W.base ? evdns_base_new(W.base, EVDNS_BASE_INITIALIZE_NAMESERVERS) : NULL;
    if (W.base && !W.dns) /* no resolv.conf: names cannot be called, addresses can */
        W.dns = evdns_base_new(W.base, 0);
    W.tick_ev = evtimer_new(W.base, on_tick, NULL);
    W.stop_ev = event_new(W.base, -1, 0, on_stop, NULL);
    W.reap_ev = evtimer_new(W.base, on_reap, NULL);
    W.flush_ev = evtimer_new(W.base, on_flush, NULL);
    struct event *hint = event_new(W.base, -1, 0, on_hint, NULL);
    pthread_mutex_lock(&hint_lock);
    W.hint_ev = hint;
    pthread_mutex_unlock(&hint_lock);
    W.ok_ids = calloc(OK_BATCH, sizeof(*W.ok_ids));
    W.ok_codes = calloc(OK_BATCH, sizeof(*W.ok_codes));
    if (!W.base || !W.dns || !W.tick_ev || !W.stop_ev || !W.reap_ev || !W.flush_ev || !W.hint_ev ||
        !W.ok_ids || !W.ok_codes)
        return -1;
    return pthread_create(&W.thread, NULL, webhooks_main, NULL) == 0 ? 0 : -1;
}

void rd_webhooks_stop(void)
{
    event_active(W.stop_ev, EV_TIMEOUT, 0);
    pthread_join(W.thread, NULL);
    pthread_mutex_lock(&hint_lock);
    event_free(W.hint_ev);
    W.hint_ev = NULL;
    pthread_mutex_unlock(&hint_lock);
    event_free(W.tick_ev);
    event_free(W.stop_ev);
    event_free(W.reap_ev);
    event_free(W.flush_ev);
    free(W.ok_ids);
    free(W.ok_codes);
    evdns_base_free(W.dns, 0);
    event_base_free(W.base);
    SSL_CTX_free(W.tls);
    rd_pgparams_free(&W.params);
}
