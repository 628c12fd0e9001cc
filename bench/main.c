/* SPDX-License-Identifier: MIT
 *
 * redeem-bench: options, workloads, the closed and open loops, the report.
 *
 * Closed loop: every connection sends its next request as soon as the previous answer is
 * in. Open loop: requests are due at a fixed rate from the start; a due request waits for a
 * free connection, and its latency is measured from when it was due, so queueing in the
 * server (or here) is never hidden (coordinated omission).
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <jansson.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "bench.h"
#include "rd/rdtime.h"

static const char *const wl_names[] = {"validate", "redeem-hot", "redeem-many",
                                       "mixed",    "unknown",    "voucher-pay"};
static const char *const op_names[] = {"validate", "redeem", "reverse", "unknown", "pay"};

uint64_t bench_rand(struct bench *b)
{
    /* xorshift64*: fast and good enough to pick coupons and users */
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return b->rng * 0x2545F4914F6CDD1DULL;
}

static void code_of(const struct bench *b, int i, char *out, size_t n)
{
    snprintf(out, n, "RB%s-%d", b->run, i);
}

/* ---- requests -------------------------------------------------------------------------- */

static void next_job(struct bench *b, struct job *j)
{
    memset(j, 0, sizeof(*j));
    j->seq = b->next_seq++;
    j->redemption = -1;
    j->user = b->o.users ? bench_rand(b) % (uint64_t)b->o.users : j->seq;
    j->coupon = b->ncoupons > 1 ? (uint32_t)(bench_rand(b) % (uint64_t)b->ncoupons) : 0;
    switch (b->o.wl) {
    case WL_VALIDATE:
        j->op = OP_VALIDATE;
        break;
    case WL_REDEEM_HOT:
    case WL_REDEEM_MANY:
        j->op = OP_REDEEM;
        break;
    case WL_UNKNOWN:
        j->op = OP_UNKNOWN;
        break;
    case WL_VOUCHER:
        j->op = OP_PAY;
        break;
    case WL_MIXED: {
        uint64_t r = bench_rand(b) % 100;
        j->op = r < 70 ? OP_VALIDATE : r < 95 ? OP_REDEEM : OP_REVERSE;
        if (j->op == OP_REVERSE) {
            if (b->next_reverse < b->nreds) {
                j->redemption = (int32_t)b->next_reverse++;
                j->coupon = b->reds[j->redemption].coupon;
                j->user = b->reds[j->redemption].user;
            } else {
                j->op = OP_REDEEM; /* nothing to reverse yet */
            }
        }
        break;
    }
    }
    b->started++;
}

void bench_write_request(struct conn *c, struct evbuffer *out)
{
    struct bench *b = c->b;
    const struct job *j = &c->job;
    char code[48], user[64], body[320];
    if (j->op == OP_UNKNOWN)
        snprintf(code, sizeof(code), "RB%s-X%llu", b->run, (unsigned long long)j->seq);
    else
        snprintf(code, sizeof(code), "%s", b->coupons[j->coupon].code);
    user_id(b, j->user, user, sizeof(user));
    const char *path = j->op == OP_REDEEM ? "/v1/redemptions" : "/v1/validate";
    char rpath[128];
    int blen = 0;
    if (j->op == OP_REVERSE) {
        snprintf(rpath, sizeof(rpath), "/v1/redemptions/%s/reverse", b->reds[j->redemption].id);
        path = rpath;
    } else if (j->op == OP_PAY) {
        snprintf(rpath, sizeof(rpath), "/v1/vouchers/%s/pay", code);
        path = rpath;
        blen = snprintf(body, sizeof(body),
                        "{\"amount\":%lld,\"currency\":\"EUR\",\"user_id\":\"%s\"}", b->o.amount,
                        user);
    } else {
        blen = snprintf(body, sizeof(body),
                        "{\"code\":\"%s\",\"user_id\":\"%s\",\"order_amount\":10000,"
                        "\"currency\":\"EUR\"}",
                        code, user);
    }
    evbuffer_add_printf(out,
                        "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                        "Content-Type: application/json\r\nContent-Length: %d\r\n",
                        path, b->o.host, b->o.key, blen);
    if (j->op == OP_REDEEM || j->op == OP_REVERSE || j->op == OP_PAY)
        evbuffer_add_printf(out, "Idempotency-Key: %s-%llu\r\n", b->run,
                            (unsigned long long)j->seq);
    evbuffer_add(out, "\r\n", 2);
    if (blen)
        evbuffer_add(out, body, (size_t)blen);
}

/* ---- dispatch -------------------------------------------------------------------------- */

static double scrape_cpu(struct bench *b, long long *backlog);

/* The measured window closes: the server's CPU counter is read at its edge. */
static void end_measurement(struct bench *b)
{
    if (!b->measuring)
        return;
    int64_t now = rd_mono_us();
    b->measuring = 0;
    if (b->o.requests || now < b->measure_to)
        b->measure_to = now;
    if (b->metrics_ok)
        b->cpu_after = scrape_cpu(b, &b->backlog_end);
}

static void maybe_finish(struct bench *b)
{
    if (!b->stopping || b->finished)
        return;
    end_measurement(b);
    for (int i = 0; i < b->o.conns; i++)
        if (b->conns[i].busy)
            return;
    b->finished = 1;
    event_base_loopbreak(b->base);
}

static void start_job(struct conn *c, int64_t intended)
{
    next_job(c->b, &c->job);
    c->job.intended = intended;
    c->busy = 1;
    conn_send(c);
}

/* An idle connection takes the next request: at once (closed loop) or the next due one. */
static void conn_idle(struct conn *c)
{
    struct bench *b = c->b;
    if (b->stopping) {
        maybe_finish(b);
        return;
    }
    if (b->o.rate <= 0) {
        start_job(c, 0);
        return;
    }
    if (b->qhead != b->qtail) {
        int64_t t = b->queue[b->qhead];
        b->qhead = (b->qhead + 1) % b->qcap;
        start_job(c, t);
    }
}

static void count_code(struct counts *k, const char *name, size_t n)
{
    if (n >= sizeof(k->code_name[0]))
        n = sizeof(k->code_name[0]) - 1;
    for (int i = 0; i < k->ncodes; i++)
        if (strlen(k->code_name[i]) == n && memcmp(k->code_name[i], name, n) == 0) {
            k->code_n[i]++;
            return;
        }
    if (k->ncodes == MAX_CODES)
        return;
    memcpy(k->code_name[k->ncodes], name, n);
    k->code_name[k->ncodes][n] = '\0';
    k->code_n[k->ncodes++] = 1;
}

/* The error code of an error envelope, or the reason of {"valid": false}. */
static void count_body_code(struct counts *k, const char *body, size_t len)
{
    const char *keys[] = {"\"code\":\"", "\"reason\":\""};
    const char *p = NULL;
    size_t kl = 0;
    if (memmem(body, len, "\"error\":", 8))
        p = memmem(body, len, keys[0], kl = strlen(keys[0]));
    else if (memmem(body, len, "\"valid\":false", 13))
        p = memmem(body, len, keys[1], kl = strlen(keys[1]));
    if (!p)
        return;
    p += kl;
    const char *q = memchr(p, '"', len - (size_t)(p - body));
    if (q)
        count_code(k, p, (size_t)(q - p));
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    conn_send(c);
}

/* 503 and lost connections: the same request again with the same key, a little later. */
static void retry_or_give_up(struct conn *c)
{
    struct bench *b = c->b;
    if (++c->job.tries <= b->o.max_retries) {
        if (b->measuring)
            b->counts.retries++;
        c->busy = 1;
        int ms = c->job.tries < 10 ? 10 * c->job.tries : 100;
        struct timeval tv = {0, ms * 1000};
        evtimer_add(c->retry_ev, &tv);
        return;
    }
    track_unknown(b, &c->job);
    c->busy = 0;
    conn_idle(c);
}

void bench_on_transport_error(struct conn *c)
{
    if (c->b->measuring)
        c->b->counts.transport_errors++;
    retry_or_give_up(c);
}

void bench_on_answer(struct conn *c, int status, const char *body, size_t len, int replayed)
{
    struct bench *b = c->b;
    int64_t now = rd_mono_us();
    (void)replayed;
    if (b->measuring && now <= b->measure_to) {
        int64_t from = b->o.rate > 0 ? c->job.intended : c->job.sent;
        uint64_t lat = now > from ? (uint64_t)(now - from) : 0;
        rd_hist_record(b->hist, lat);
        rd_hist_record(b->op_hist[c->job.op], lat);
        rd_hist_record(b->sec_hist, lat);
        b->counts.status[status > 0 && status < 600 ? status : 0]++;
        if (status >= 300 || memmem(body, len, "\"valid\":false", 13))
            count_body_code(&b->counts, body, len);
        b->op_done[c->job.op]++;
        b->measured++;
        if (b->o.requests > 0 && b->measured >= (uint64_t)b->o.requests) {
            b->stopping = 1;
            end_measurement(b);
        }
    }
    b->completed++;
    /* a guesser's 429 is its answer (a spent guessing budget), not a reason to retry */
    if (status == 503 || (status == 429 && c->job.op != OP_UNKNOWN)) {
        retry_or_give_up(c);
        return;
    }
    track_answer(b, &c->job, status, body, len);
    conn_idle(c);
}

/* ---- the clock ------------------------------------------------------------------------- */

static double scrape_cpu(struct bench *b, long long *backlog)
{
    char *body;
    int st = sync_http(b, "GET", "/metrics", NULL, NULL, &body);
    double cpu = -1;
    if (st == 200) {
        cpu = metrics_value(body, "process_cpu_seconds_total");
        if (backlog)
            *backlog = (long long)metrics_value(body, "redeemd_outbox_backlog");
    }
    free(body);
    return cpu;
}

static void progress(struct bench *b, int64_t now)
{
    long long backlog = -1;
    if (b->metrics_ok) {
        scrape_cpu(b, &backlog);
        if (b->measuring && backlog > b->backlog_max)
            b->backlog_max = backlog;
    }
    double secs = (double)(now - b->last_progress) / 1e6;
    if (!b->o.quiet && b->measuring)
        fprintf(stderr,
                "[%5.1fs] %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  max %7.2f ms  retries %llu  "
                "backlog %lld\n",
                (double)(now - b->measure_from) / 1e6,
                (double)(b->measured - b->last_measured) / secs,
                (double)rd_hist_percentile(b->sec_hist, 50) / 1000.0,
                (double)rd_hist_percentile(b->sec_hist, 99) / 1000.0,
                (double)b->sec_hist->max / 1000.0, (unsigned long long)b->counts.retries, backlog);
    rd_hist_init(b->sec_hist);
    b->last_measured = b->measured;
    b->last_progress = now;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct bench *b = arg;
    (void)fd;
    (void)what;
    int64_t now = rd_mono_us();
    if (!b->measuring && !b->stopping && now >= b->measure_from) {
        b->measuring = 1;
        b->last_progress = now;
        if (b->metrics_ok)
            b->cpu_before = scrape_cpu(b, NULL);
        rd_hist_init(b->sec_hist);
    }
    if (b->measuring && !b->stopping && b->o.requests == 0 && now >= b->measure_to)
        b->stopping = 1;
    if (b->stopping) {
        end_measurement(b);
        maybe_finish(b);
        if (!b->finished) {
            struct timeval tv = {0, 20000};
            evtimer_add(b->tick_ev, &tv);
        }
        return;
    }
    if (b->o.rate > 0) {
        /* everything due by now joins the queue; idle connections take it */
        uint64_t due = (uint64_t)((double)(now - b->t0) * b->o.rate / 1e6) + 1;
        while (b->scheduled < due) {
            size_t next = (b->qtail + 1) % b->qcap;
            if (next == b->qhead)
                break; /* queue full: the server is far behind; latency shows it */
            b->queue[b->qtail] = b->t0 + (int64_t)((double)b->scheduled * 1e6 / b->o.rate);
            b->qtail = next;
            b->scheduled++;
        }
        size_t queued = (b->qtail + b->qcap - b->qhead) % b->qcap;
        if (queued > b->queue_max)
            b->queue_max = queued;
        for (int i = 0; i < b->o.conns && b->qhead != b->qtail; i++)
            if (!b->conns[i].busy)
                conn_idle(&b->conns[i]);
    }
    if (b->measuring && now - b->last_progress >= 1000000)
        progress(b, now);
    /* next wake-up: when the next request is due (open loop), else for the clock only */
    int64_t wait = 20000;
    if (b->o.rate > 0) {
        int64_t due_at = b->t0 + (int64_t)((double)b->scheduled * 1e6 / b->o.rate);
        wait = due_at - rd_mono_us();
        wait = wait < 0 ? 0 : wait > 20000 ? 20000 : wait;
    }
    struct timeval tv = {0, (suseconds_t)wait};
    evtimer_add(b->tick_ev, &tv);
}

/* ---- setup ----------------------------------------------------------------------------- */

static int create_coupons(struct bench *b)
{
    int many = b->o.wl == WL_REDEEM_MANY || b->o.wl == WL_MIXED || b->o.wl == WL_VOUCHER;
    int n = b->o.wl == WL_UNKNOWN ? 0 : many ? b->o.coupons : 1;
    b->coupons = calloc((size_t)(n ? n : 1), sizeof(*b->coupons));
    b->ncoupons = n;
    for (int i = 0; i < n; i++) {
        code_of(b, i, b->coupons[i].code, sizeof(b->coupons[i].code));
        char body[512], total[24] = "null", per_user[24] = "null";
        if (b->o.total)
            snprintf(total, sizeof(total), "%lld", b->o.total);
        if (b->o.per_user)
            snprintf(per_user, sizeof(per_user), "%lld", b->o.per_user);
        char what[96];
        if (b->o.wl == WL_VOUCHER)
            snprintf(what, sizeof(what), "\"kind\":\"voucher\",\"balance\":%lld", b->o.balance);
        else
            snprintf(what, sizeof(what), "\"discount\":{\"type\":\"percent\",\"value\":1000}");
        char shards[32] = "";
        if (b->o.shards > 1)
            snprintf(shards, sizeof(shards), ",\"shards\":%d", b->o.shards);
        snprintf(body, sizeof(body),
                 "{\"code\":\"%s\",%s,\"currency\":\"EUR\",\"campaign\":\"bench-%s\","
                 "\"limits\":{\"total\":%s,\"per_user\":%s}%s}",
                 b->coupons[i].code, what, b->run, total, per_user, shards);
        char *resp;
        int st = sync_http(b, "POST", "/v1/coupons", b->o.admin_key, body, &resp);
        if (st != 201) {
            fprintf(stderr, "redeem-bench: creating coupon %s: HTTP %d %s\n", b->coupons[i].code,
                    st, resp ? resp : "");
            free(resp);
            return -1;
        }
        free(resp);
    }
    return 0;
}

/* ---- report ---------------------------------------------------------------------------- */

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static json_t *lat_json(const struct rd_hist *h)
{
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "count", (json_int_t)h->count, "p50_ms",
                     ms(rd_hist_percentile(h, 50)), "p90_ms", ms(rd_hist_percentile(h, 90)),
                     "p99_ms", ms(rd_hist_percentile(h, 99)), "p999_ms",
                     ms(rd_hist_percentile(h, 99.9)), "max_ms", ms(h->max), "mean_ms",
                     rd_hist_mean(h) / 1000.0);
}

static void report(struct bench *b, int violations)
{
    double secs = (double)(b->measure_to - b->measure_from) / 1e6;
    double rps = secs > 0 ? (double)b->measured / secs : 0;
    uint64_t accepted = 0;
    for (int i = 0; i < b->ncoupons; i++)
        accepted += b->coupons[i].accepted;
    double cpu = b->cpu_after - b->cpu_before;
    uint64_t acc_measured = b->counts.status[201];
    if (b->o.json) {
        json_t *st = json_object(), *codes = json_object(), *ops = json_object();
        for (int s = 0; s < 600; s++)
            if (b->counts.status[s]) {
                char k[8];
                snprintf(k, sizeof(k), "%d", s);
                json_object_set_new(st, k, json_integer((json_int_t)b->counts.status[s]));
            }
        for (int i = 0; i < b->counts.ncodes; i++)
            json_object_set_new(codes, b->counts.code_name[i],
                                json_integer((json_int_t)b->counts.code_n[i]));
        for (int o = 0; o < OP__COUNT; o++)
            if (b->op_done[o])
                json_object_set_new(ops, op_names[o], lat_json(b->op_hist[o]));
        json_t *out = json_pack(
            "{s:s, s:i, s:s, s:f, s:f, s:I, s:f, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I}, "
            "s:{s:f, s:f, s:I, s:I}, s:{s:o, s:b, s:i, s:I}}",
            "workload", wl_names[b->o.wl], "connections", b->o.conns, "mode",
            b->o.rate > 0 ? "open" : "closed", "target_rate", b->o.rate, "seconds", secs,
            "requests", (json_int_t)b->measured, "rps", rps, "latency", lat_json(b->hist), "by_op",
            ops, "status", st, "codes", codes, "client", "retries", (json_int_t)b->counts.retries,
            "transport_errors", (json_int_t)b->counts.transport_errors, "unknown_outcomes",
            (json_int_t)b->unknown_outcomes, "queue_max", (json_int_t)b->queue_max, "server",
            "cpu_seconds", b->metrics_ok ? cpu : -1.0, "cpu_ms_per_accepted",
            b->metrics_ok && acc_measured ? cpu * 1000.0 / (double)acc_measured : -1.0,
            "backlog_max", (json_int_t)b->backlog_max, "backlog_end", (json_int_t)b->backlog_end,
            "invariants", "ok",
            b->unexpected ? json_false()
            : b->o.check  ? json_boolean(violations == 0)
                          : json_null(), /* not checked: neither ok nor not */
            "checked", b->o.check, "violations", violations, "accepted_total",
            (json_int_t)accepted);
        char *s = json_dumps(out, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(out);
        return;
    }
    printf("redeem-bench: %s, %d connections, %s, %.1f s measured after %.1f s warm-up\n",
           wl_names[b->o.wl], b->o.conns, b->o.rate > 0 ? "open loop" : "closed loop", secs,
           b->o.warmup_s);
    if (b->o.rate > 0)
        printf("  target     %.0f req/s (latency from the intended send time; queue max %llu)\n",
               b->o.rate, (unsigned long long)b->queue_max);
    printf("  requests   %llu in %.2f s = %.0f req/s\n", (unsigned long long)b->measured, secs,
           rps);
    const struct rd_hist *h = b->hist;
    printf("  latency    p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms\n",
           ms(rd_hist_percentile(h, 50)), ms(rd_hist_percentile(h, 90)),
           ms(rd_hist_percentile(h, 99)), ms(rd_hist_percentile(h, 99.9)), ms(h->max));
    for (int o = 0; o < OP__COUNT; o++)
        if (b->op_done[o] && b->o.wl == WL_MIXED)
            printf("    %-9s %llu  p50 %.2f ms  p99 %.2f ms\n", op_names[o],
                   (unsigned long long)b->op_done[o], ms(rd_hist_percentile(b->op_hist[o], 50)),
                   ms(rd_hist_percentile(b->op_hist[o], 99)));
    printf("  status    ");
    for (int s = 0; s < 600; s++)
        if (b->counts.status[s])
            printf(" %d: %llu", s, (unsigned long long)b->counts.status[s]);
    printf("\n");
    if (b->counts.ncodes) {
        printf("  codes     ");
        for (int i = 0; i < b->counts.ncodes; i++)
            printf(" %s: %llu", b->counts.code_name[i], (unsigned long long)b->counts.code_n[i]);
        printf("\n");
    }
    printf("  client     retries %llu, lost connections %llu, outcomes unknown %llu\n",
           (unsigned long long)b->counts.retries, (unsigned long long)b->counts.transport_errors,
           (unsigned long long)b->unknown_outcomes);
    if (b->metrics_ok) {
        printf("  server     cpu %.2f s = %.3f ms per request", cpu,
               b->measured ? cpu * 1000.0 / (double)b->measured : 0);
        if (acc_measured)
            printf(", %.3f ms per accepted redemption", cpu * 1000.0 / (double)acc_measured);
        printf("\n  outbox     backlog max %lld, at the end %lld\n", b->backlog_max,
               b->backlog_end);
    }
    if (violations || b->unexpected)
        printf("  invariants VIOLATED: %d violations, %llu unexpected answers\n", violations,
               (unsigned long long)b->unexpected);
    else if (!b->o.check)
        printf("  invariants not checked (--no-check): %llu redemptions accepted\n",
               (unsigned long long)accepted);
    else
        printf("  invariants ok: %llu redemptions accepted on %d coupons, %zu (coupon, user) "
               "counts%s%s\n",
               (unsigned long long)accepted, b->ncoupons, usermap_size(b->users),
               b->o.redis[0] ? ", Redis per-user counts" : "", b->o.pg[0] ? ", ledger rows" : "");
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: redeem-bench --key KEY [options]\n"
            "  --url http://HOST:PORT     redeemd (default http://127.0.0.1:8080)\n"
            "  --key KEY                  API key with scope redeem (and admin, or --admin-key)\n"
            "  --admin-key KEY            API key with scope admin, to create coupons\n"
            "  -w, --workload W           validate | redeem-hot | redeem-many | mixed | unknown |\n"
            "                             voucher-pay (mixed: 70%% validate, 25%% redeem, 5%% "
            "reverse)\n"
            "  -c, --connections N        keep-alive connections (default 32)\n"
            "  --rate R                   open loop at R requests/s (default: closed loop)\n"
            "  -d, --duration S           measured seconds (default 10)\n"
            "  -n, --requests N           stop after N measured requests instead\n"
            "  --warmup S                 unmeasured seconds first (default 1)\n"
            "  --coupons N                coupons (vouchers) for redeem-many, mixed, voucher-pay "
            "(1000)\n"
            "  --users N                  users drawn from N (default: a new user per request)\n"
            "  --total N, --per-user N    limits of the created coupons (default none)\n"
            "  --shards K                 create them as hot coupons split K ways (needs --total)\n"
            "  --balance N, --amount N    voucher-pay: initial balance (100000000), payment (1)\n"
            "  --pg CONNINFO              check ledger rows against the answers\n"
            "  --redis HOST:PORT          check per-user Redis counts against the answers\n"
            "  --drain-timeout S          wait this long for the outbox to drain (default 120)\n"
            "  --no-check                 skip the invariant checks\n"
            "  --json                     machine-readable result on stdout\n"
            "  -q, --quiet                no progress lines\n"
            "Exit status: 0 ok, 1 an invariant was violated or an answer was wrong, 2 usage or "
            "setup.\n");
}

static int parse_url(struct opts *o, const char *url)
{
    const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
    const char *colon = strrchr(p, ':');
    size_t hl = colon ? (size_t)(colon - p) : strcspn(p, "/");
    if (hl == 0 || hl >= sizeof(o->host))
        return -1;
    memcpy(o->host, p, hl);
    o->host[hl] = '\0';
    o->port = colon ? atoi(colon + 1) : 80;
    return o->port > 0 && o->port < 65536 ? 0 : -1;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
    static const struct option lo[] = {
        {"url", 1, 0, 'u'},      {"key", 1, 0, 'k'},           {"admin-key", 1, 0, 'A'},
        {"workload", 1, 0, 'w'}, {"connections", 1, 0, 'c'},   {"rate", 1, 0, 'r'},
        {"duration", 1, 0, 'd'}, {"requests", 1, 0, 'n'},      {"warmup", 1, 0, 'W'},
        {"coupons", 1, 0, 'C'},  {"users", 1, 0, 'U'},         {"total", 1, 0, 'T'},
        {"per-user", 1, 0, 'P'}, {"shards", 1, 0, 'S'},        {"pg", 1, 0, 'g'},
        {"redis", 1, 0, 'R'},    {"drain-timeout", 1, 0, 'D'}, {"no-check", 0, 0, 'N'},
        {"json", 0, 0, 'j'},     {"quiet", 0, 0, 'q'},         {"help", 0, 0, 'h'},
        {"balance", 1, 0, 'B'},  {"amount", 1, 0, 'M'},        {0, 0, 0, 0}};
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->port = 8080;
    o->conns = 32;
    o->duration_s = 10;
    o->warmup_s = 1;
    o->coupons = 1000;
    o->drain_timeout_s = 120;
    o->check = 1;
    o->max_retries = 200;
    o->balance = 100000000;
    o->amount = 1;
    o->wl = WL_REDEEM_HOT;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:d:n:w:qh", lo, NULL)) != -1) {
        switch (ch) {
        case 'u':
            if (parse_url(o, optarg) < 0) {
                fprintf(stderr, "redeem-bench: --url must be http://HOST:PORT\n");
                return -1;
            }
            break;
        case 'k':
            snprintf(o->key, sizeof(o->key), "%s", optarg);
            break;
        case 'A':
            snprintf(o->admin_key, sizeof(o->admin_key), "%s", optarg);
            break;
        case 'w': {
            int found = -1;
            for (int i = 0; i < (int)(sizeof(wl_names) / sizeof(wl_names[0])); i++)
                if (strcmp(optarg, wl_names[i]) == 0)
                    found = i;
            if (found < 0) {
                fprintf(stderr, "redeem-bench: unknown workload %s\n", optarg);
                return -1;
            }
            o->wl = (enum workload)found;
            break;
        }
        case 'c':
            o->conns = atoi(optarg);
            break;
        case 'r':
            o->rate = atof(optarg);
            break;
        case 'd':
            o->duration_s = atof(optarg);
            break;
        case 'n':
            o->requests = atoll(optarg);
            break;
        case 'W':
            o->warmup_s = atof(optarg);
            break;
        case 'C':
            o->coupons = atoi(optarg);
            break;
        case 'U':
            o->users = atoll(optarg);
            break;
        case 'T':
            o->total = atoll(optarg);
            break;
        case 'P':
            o->per_user = atoll(optarg);
            break;
        case 'S':
            o->shards = atoi(optarg);
            break;
        case 'B':
            o->balance = atoll(optarg);
            break;
        case 'M':
            o->amount = atoll(optarg);
            break;
        case 'g':
            snprintf(o->pg, sizeof(o->pg), "%s", optarg);
            break;
        case 'R':
            snprintf(o->redis, sizeof(o->redis), "%s", optarg);
            break;
        case 'D':
            o->drain_timeout_s = atof(optarg);
            break;
        case 'N':
            o->check = 0;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (!o->key[0]) {
        fprintf(stderr, "redeem-bench: --key is required\n");
        return -1;
    }
    if (!o->admin_key[0])
        snprintf(o->admin_key, sizeof(o->admin_key), "%s", o->key);
    if (o->conns < 1 || o->conns > 10000 || o->duration_s <= 0 || o->warmup_s < 0 ||
        o->coupons < 1 || o->users < 0 || o->total < 0 || o->per_user < 0 || o->rate < 0 ||
        o->requests < 0 || o->balance < 1 || o->amount < 1) {
        fprintf(stderr, "redeem-bench: a numeric option is out of range\n");
        return -1;
    }
    if (strcmp(o->host, "localhost") == 0)
        snprintf(o->host, sizeof(o->host), "127.0.0.1");
    return 0;
}

int main(int argc, char **argv)
{
    static struct bench B;
    struct bench *b = &B;
    if (parse_args(&b->o, argc, argv) < 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    b->addr.sin_family = AF_INET;
    b->addr.sin_port = htons((uint16_t)b->o.port);
    if (inet_pton(AF_INET, b->o.host, &b->addr.sin_addr) != 1) {
        fprintf(stderr, "redeem-bench: --url host must be an IPv4 address or localhost\n");
        return 2;
    }
    uint8_t rnd[12];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return 2;
    static const char alpha[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    for (int i = 0; i < 6; i++)
        b->run[i] = alpha[rnd[i] % 32];
    memcpy(&b->rng, rnd + 4, 8);
    b->rng |= 1;

    char *resp;
    int st = sync_http(b, "GET", "/readyz", NULL, NULL, &resp);
    if (st != 200) {
        fprintf(stderr, "redeem-bench: redeemd at %s:%d is not ready (HTTP %d) %s\n", b->o.host,
                b->o.port, st, resp ? resp : "");
        free(resp);
        return 2;
    }
    free(resp);
    b->metrics_ok = scrape_cpu(b, NULL) >= 0;
    if (!b->metrics_ok && !b->o.quiet)
        fprintf(stderr, "redeem-bench: /metrics not readable; no server CPU or backlog\n");
    if (create_coupons(b) < 0)
        return 2;

    b->users = usermap_new();
    b->hist = malloc(sizeof(*b->hist));
    b->sec_hist = malloc(sizeof(*b->sec_hist));
    rd_hist_init(b->hist);
    rd_hist_init(b->sec_hist);
    for (int o = 0; o < OP__COUNT; o++) {
        b->op_hist[o] = malloc(sizeof(*b->op_hist[o]));
        rd_hist_init(b->op_hist[o]);
    }
    b->qcap = 1 << 20;
    b->queue = malloc(b->qcap * sizeof(*b->queue));
    /* epoll_wait's millisecond timeout ticks in jiffies here (4 ms): the open loop needs
     * timerfd-backed timers to release requests when they are due */
    struct event_config *ecfg = event_config_new();
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    b->base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    b->conns = calloc((size_t)b->o.conns, sizeof(*b->conns));
    b->backlog_max = b->backlog_end = -1;
    b->t0 = rd_mono_us();
    b->measure_from = b->t0 + (int64_t)(b->o.warmup_s * 1e6);
    b->measure_to = b->o.requests ? INT64_MAX : b->measure_from + (int64_t)(b->o.duration_s * 1e6);
    for (int i = 0; i < b->o.conns; i++) {
        struct conn *c = &b->conns[i];
        c->b = b;
        c->retry_ev = evtimer_new(b->base, on_retry, c);
        if (conn_open(c) < 0) {
            fprintf(stderr, "redeem-bench: cannot connect\n");
            return 2;
        }
        if (b->o.rate <= 0)
            start_job(c, 0);
    }
    b->tick_ev = evtimer_new(b->base, on_tick, b);
    struct timeval tv = {0, 0};
    evtimer_add(b->tick_ev, &tv);
    event_base_dispatch(b->base);

    int violations = 0;
    if (b->o.check) {
        if (!b->o.quiet)
            fprintf(stderr, "redeem-bench: checking invariants%s...\n",
                    b->o.pg[0] ? " (waiting for the outbox to drain)" : "");
        violations = check_invariants(b);
    }
    report(b, violations);

    for (int i = 0; i < b->o.conns; i++) {
        if (b->conns[i].bev)
            bufferevent_free(b->conns[i].bev);
        event_free(b->conns[i].retry_ev);
    }
    event_free(b->tick_ev);
    event_base_free(b->base);
    usermap_free(b->users);
    for (int o = 0; o < OP__COUNT; o++)
        free(b->op_hist[o]);
    free(b->hist);
    free(b->sec_hist);
    free(b->queue);
    free(b->conns);
    free(b->coupons);
    free(b->reds);
    return violations || b->unexpected ? 1 : 0;
}
