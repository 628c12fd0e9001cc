/* SPDX-License-Identifier: MIT
 *
 * The /metrics exposition (see metrics.h). Rendering reads other threads' counters with
 * relaxed loads; a scrape is a consistent-enough picture, never a torn number.
 */
#include "server/metrics.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "server/http.h"
#include "store/pgcancel.h"
#include "jobs/pgprobe.h"
#include "rd/request.h"
#include "jobs/shipper.h"
#include "server/worker.h"

static struct rd_worker *reg_workers;
static int reg_n;
static int64_t start_real_ms;

void rd_metrics_register(struct rd_worker *workers, int n)
{
    reg_workers = workers;
    reg_n = n;
    start_real_ms = rd_now_ms();
}

static void process_metrics(FILE *f)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    rd_prom_header(f, "process_cpu_seconds_total", "counter",
                   "User and system CPU time of the whole process.");
    fprintf(f, "process_cpu_seconds_total %.6f\n", cpu);
    long pages = 0, rss = 0;
    FILE *sm = fopen("/proc/self/statm", "r");
    if (sm) {
        if (fscanf(sm, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(sm);
    }
    rd_prom_header(f, "process_resident_memory_bytes", "gauge", "Resident set size.");
    fprintf(f, "process_resident_memory_bytes %ld\n", rss * sysconf(_SC_PAGESIZE));
    rd_prom_header(f, "process_start_time_seconds", "gauge", "Start time, Unix seconds.");
    fprintf(f, "process_start_time_seconds %.3f\n", (double)start_real_ms / 1000.0);
}

static void http_metrics(FILE *f)
{
    rd_prom_header(f, "redeemd_http_requests_total", "counter",
                   "Requests answered, by route pattern and HTTP status.");
    for (int rt = 0; rt < RD_MROUTES; rt++) {
        const char *name = rd_http_route_name(rt);
        if (!name || !*name)
            continue;
        for (int s = 0; s < RD_MSTATUS_N; s++) {
            unsigned long long n = 0;
            for (int i = 0; i < reg_n; i++)
                n += rd_counter_get(&reg_workers[i].m.requests[rt][s]);
            if (n == 0)
                continue;
            fprintf(f, "redeemd_http_requests_total{route=\"");
            rd_prom_label_value(f, name);
            if (rd_mstatus_codes[s])
                fprintf(f, "\",status=\"%d\"} %llu\n", rd_mstatus_codes[s], n);
            else
                fprintf(f, "\",status=\"other\"} %llu\n", n);
        }
    }
    rd_prom_header(f, "redeemd_http_request_duration_seconds", "histogram",
                   "Time from a complete request to the reply being queued, by route.");
    for (int rt = 0; rt < RD_MROUTES; rt++) {
        const char *name = rd_http_route_name(rt);
        if (!name || !*name)
            continue;
        struct rd_mhist_snap s = {0};
        for (int i = 0; i < reg_n; i++)
            rd_mhist_add(&s, &reg_workers[i].m.latency[rt]);
        if (rd_mhist_count(&s) == 0)
            continue;
        char labels[160];
        snprintf(labels, sizeof(labels), "route=\"%s\"", name); /* patterns need no escaping */
        rd_prom_histogram(f, "redeemd_http_request_duration_seconds", labels, &s);
    }
    rd_prom_header(f, "redeemd_errors_total", "counter",
                   "Error answers by error code (business rejections included).");
    for (int st = 1; st < RD_STATUS__COUNT; st++) {
        unsigned long long n = 0;
        for (int i = 0; i < reg_n; i++)
            n += rd_counter_get(&reg_workers[i].m.errors[st]);
        fprintf(f, "redeemd_errors_total{code=\"%s\"} %llu\n", rd_status_name(st), n);
    }
    rd_prom_header(f, "redeemd_rate_limited_total", "counter",
                   "Lookups refused (429) by the guessing budget that was spent.");
    static const char *const budgets[4] = {"ip", "user", "session", "key"};
    for (int b = 0; b < 4; b++) {
        unsigned long long n = 0;
        for (int i = 0; i < reg_n; i++)
            n += rd_counter_get(&reg_workers[i].m.limited[b]);
        fprintf(f, "redeemd_rate_limited_total{budget=\"%s\"} %llu\n", budgets[b], n);
    }
    long inflight = 0, open = 0;
    unsigned long long accepted = 0, full = 0, evicted = 0, timeouts = 0, gone = 0;
    for (int i = 0; i < reg_n; i++) {
        const struct rd_httpd_stats *h = &reg_workers[i].hstats;
        inflight += atomic_load_explicit(&reg_workers[i].inflight, memory_order_relaxed);
        open += atomic_load_explicit(&h->open, memory_order_relaxed);
        accepted += rd_counter_get(&h->accepted);
        full += rd_counter_get(&h->refused_full);
        evicted += rd_counter_get(&h->evicted_idle);
        timeouts += rd_counter_get(&h->timeouts);
        gone += rd_counter_get(&h->client_gone);
    }
    rd_prom_header(f, "redeemd_inflight_requests", "gauge", "Requests being worked on.");
    fprintf(f, "redeemd_inflight_requests %ld\n", inflight);
    rd_prom_header(f, "redeemd_http_connections", "gauge", "Client connections open.");
    fprintf(f, "redeemd_http_connections %ld\n", open);
    rd_prom_header(f, "redeemd_http_connections_accepted_total", "counter",
                   "Client connections accepted.");
    fprintf(f, "redeemd_http_connections_accepted_total %llu\n", accepted);
    rd_prom_header(f, "redeemd_http_connections_refused_total", "counter",
                   "Connections answered 503 at max_connections (no idle one to close).");
    fprintf(f, "redeemd_http_connections_refused_total %llu\n", full);
    rd_prom_header(f, "redeemd_http_connections_evicted_total", "counter",
                   "Idle keep-alive connections closed to make room at max_connections.");
    fprintf(f, "redeemd_http_connections_evicted_total %llu\n", evicted);
    rd_prom_header(f, "redeemd_http_request_timeouts_total", "counter",
                   "Requests not received within request_timeout_s (answered 408).");
    fprintf(f, "redeemd_http_request_timeouts_total %llu\n", timeouts);
    rd_prom_header(f, "redeemd_http_clients_gone_total", "counter",
                   "Clients that closed their connection before their answer.");
    fprintf(f, "redeemd_http_clients_gone_total %llu\n", gone);
}

void rd_workers_ready(int *redis, int *keys)
{
    *redis = *keys = reg_n > 0;
    for (int i = 0; i < reg_n; i++) {
        *redis &= __atomic_load_n(&reg_workers[i].redis.state, __ATOMIC_RELAXED) == RD_REDIS_READY;
        *keys &= __atomic_load_n(&reg_workers[i].keys.loaded, __ATOMIC_RELAXED) != 0;
    }
}

void rd_metrics_redis_rtt(struct rd_mhist_snap *s)
{
    for (int i = 0; i < reg_n; i++)
        rd_mhist_add(s, &reg_workers[i].redis.rtt);
}

static void backend_metrics(FILE *f)
{
    struct rd_mhist_snap rtt = {0};
    unsigned long long connects = 0, pg_connects = 0, pg_failures = 0, redirects = 0, waits = 0,
                       waited = 0, short_acks = 0;
    for (int i = 0; i < reg_n; i++) {
        rd_mhist_add(&rtt, &reg_workers[i].redis.rtt);
        connects += rd_counter_get(&reg_workers[i].redis.reconnects);
        redirects += rd_counter_get(&reg_workers[i].redis.redirects);
        waits += rd_counter_get(&reg_workers[i].redis.waits);
        waited += rd_counter_get(&reg_workers[i].redis.waited_calls);
        short_acks += rd_counter_get(&reg_workers[i].redis.wait_short);
        pg_connects += rd_counter_get(&reg_workers[i].pgpool.connects);
        pg_failures += rd_counter_get(&reg_workers[i].pgpool.failures);
    }
    rd_prom_header(f, "redeemd_redis_roundtrip_seconds", "histogram",
                   "Workers' Redis calls, from send to reply.");
    rd_prom_histogram(f, "redeemd_redis_roundtrip_seconds", "", &rtt);
    rd_prom_header(f, "redeemd_redis_connects_total", "counter",
                   "Workers' Redis connection attempts (the first one included).");
    fprintf(f, "redeemd_redis_connects_total %llu\n", connects);
    rd_prom_header(f, "redeemd_redis_redirects_total", "counter",
                   "Calls sent again to another cluster node after MOVED or ASK.");
    fprintf(f, "redeemd_redis_redirects_total %llu\n", redirects);
    rd_prom_header(f, "redeemd_redis_waits_total", "counter",
                   "WAITs sent for min_replica_acks (one per group of writes on a connection).");
    fprintf(f, "redeemd_redis_waits_total %llu\n", waits);
    rd_prom_header(f, "redeemd_redis_replicated_writes_total", "counter",
                   "Writes answered after min_replica_acks replicas confirmed them.");
    fprintf(f, "redeemd_redis_replicated_writes_total %llu\n", waited);
    rd_prom_header(f, "redeemd_redis_unreplicated_writes_total", "counter",
                   "Writes answered 503 (outcome unknown): too few replicas confirmed them in "
                   "replica_ack_timeout_ms, or the connection was lost first.");
    fprintf(f, "redeemd_redis_unreplicated_writes_total %llu\n", short_acks);
    rd_prom_header(f, "redeemd_pg_read_connects_total", "counter",
                   "Ledger-read PostgreSQL connection attempts.");
    fprintf(f, "redeemd_pg_read_connects_total %llu\n", pg_connects);
    rd_prom_header(f, "redeemd_pg_read_failures_total", "counter",
                   "Ledger-read PostgreSQL connections lost or refused.");
    fprintf(f, "redeemd_pg_read_failures_total %llu\n", pg_failures);
    unsigned long long queue_to = 0, stmt_to = 0, cancels = 0, sent, dropped;
    for (int i = 0; i < reg_n; i++) {
        queue_to += rd_counter_get(&reg_workers[i].pgpool.queue_timeouts);
        stmt_to += rd_counter_get(&reg_workers[i].pgpool.statement_timeouts);
        cancels += rd_counter_get(&reg_workers[i].pgpool.cancels);
    }
    rd_pgcancel_counts(&sent, &dropped);
    rd_prom_header(f, "redeemd_pg_read_queue_timeouts_total", "counter",
                   "Ledger reads not started within read_queue_ms (answered 503).");
    fprintf(f, "redeemd_pg_read_queue_timeouts_total %llu\n", queue_to);
    rd_prom_header(f, "redeemd_pg_read_statement_timeouts_total", "counter",
                   "Ledger reads stopped by their statement_timeout (answered 503).");
    fprintf(f, "redeemd_pg_read_statement_timeouts_total %llu\n", stmt_to);
    rd_prom_header(f, "redeemd_pg_read_cancelled_total", "counter",
                   "Ledger reads cancelled in PostgreSQL because their client went away.");
    fprintf(f, "redeemd_pg_read_cancelled_total %llu\n", cancels);
    rd_prom_header(f, "redeemd_pg_cancel_requests_total", "counter",
                   "Cancel requests sent to PostgreSQL, by outcome.");
    fprintf(f, "redeemd_pg_cancel_requests_total{outcome=\"sent\"} %llu\n", sent);
    fprintf(f, "redeemd_pg_cancel_requests_total{outcome=\"dropped\"} %llu\n", dropped);
    rd_prom_header(f, "redeemd_postgres_up", "gauge", "The PostgreSQL probe's last answer.");
    fprintf(f, "redeemd_postgres_up %d\n", rd_pgprobe_ok() ? 1 : 0);

    const struct rd_config *cfg = reg_n > 0 ? reg_workers[0].cfg : NULL;
    if (!cfg || !cfg->shipper)
        return;
    struct rd_shipper_stats st;
    rd_shipper_stats(&st);
    rd_prom_header(f, "redeemd_outbox_backlog", "gauge",
                   "Outbox entries not yet in PostgreSQL (-1 while unknown: not counted "
                   "yet, or Redis cannot be asked).");
    fprintf(f, "redeemd_outbox_backlog %lld\n", st.backlog);
    rd_prom_header(f, "redeemd_outbox_backlog_counts_total", "counter",
                   "Backlog counts taken (the backlog above is the latest, or a later one): "
                   "a reader that needs a count taken after some moment waits for this to "
                   "pass its value at that moment.");
    fprintf(f, "redeemd_outbox_backlog_counts_total %lld\n", st.backlog_seq);
    rd_prom_header(f, "redeemd_outbox_backlog_limit", "gauge",
                   "Backlog above which redemptions answer 503.");
    fprintf(f, "redeemd_outbox_backlog_limit %lld\n", cfg->max_backlog);
    rd_prom_header(f, "redeemd_shipper_last_commit_timestamp_seconds", "gauge",
                   "When the shipper last committed a batch, Unix seconds (0: not yet); with "
                   "a backlog above 0, its age tells a stalled ledger.");
    fprintf(f, "redeemd_shipper_last_commit_timestamp_seconds %.3f\n",
            (double)st.last_commit_ms / 1000.0);
    rd_prom_header(f, "redeemd_shipper_rows_total", "counter", "Ledger rows committed.");
    fprintf(f, "redeemd_shipper_rows_total %llu\n", st.rows);
    rd_prom_header(f, "redeemd_shipper_rows_per_second", "gauge",
                   "Ledger rows committed over the last second.");
    fprintf(f, "redeemd_shipper_rows_per_second %.1f\n", st.rows_per_sec);
    rd_prom_header(f, "redeemd_shipper_batches_total", "counter", "Batches committed.");
    fprintf(f, "redeemd_shipper_batches_total %llu\n", st.batches);
    rd_prom_header(f, "redeemd_shipper_batch_seconds", "histogram",
                   "Batch time, first statement to COMMIT.");
    rd_prom_histogram(f, "redeemd_shipper_batch_seconds", "", &st.batch_time);
    rd_prom_header(f, "redeemd_shipper_dead_letters_total", "counter",
                   "Entries moved to a dead-letter stream.");
    fprintf(f, "redeemd_shipper_dead_letters_total %llu\n", st.dead_letters);
    rd_prom_header(f, "redeemd_shipper_pg_connects_total", "counter",
                   "Shipper PostgreSQL connection attempts.");
    fprintf(f, "redeemd_shipper_pg_connects_total %llu\n", st.pg_connects);
    rd_prom_header(f, "redeemd_shipper_pg_failures_total", "counter",
                   "Shipper PostgreSQL connections lost or refused.");
    fprintf(f, "redeemd_shipper_pg_failures_total %llu\n", st.pg_failures);
    rd_prom_header(f, "redeemd_shipper_redis_failures_total", "counter",
                   "Shipper Redis connections lost or refused.");
    fprintf(f, "redeemd_shipper_redis_failures_total %llu\n", st.redis_failures);
}

void rd_metrics_render(FILE *f)
{
    process_metrics(f);
    fprintf(f,
            "# HELP redeemd_workers Worker threads.\n# TYPE redeemd_workers gauge\n"
            "redeemd_workers %d\n",
            reg_n);
    http_metrics(f);
    backend_metrics(f);
}

void rd_h_metrics(struct rd_req *r)
{
    const char *access = r->w->cfg->metrics;
    if (strcmp(access, "off") == 0) {
        rd_reply_error(r, RD_E_NOT_FOUND, "metrics are switched off (metrics=off)", NULL);
        return;
    }
    if (strcmp(access, "any") != 0) {
        int loopback = strcmp(access, "loopback") == 0;
        if (rd_ip_in_list(loopback ? "127.0.0.0/8,::1" : access, r->client_ip) != 1) {
            rd_reply_error(r, RD_E_FORBIDDEN,
                           loopback ? "metrics are served to loopback clients only (set "
                                      "metrics=any or a list of addresses)"
                                    : "metrics are not served to this address (see metrics=)",
                           NULL);
            return;
        }
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    rd_metrics_render(f);
    if (fclose(f) != 0)
        abort();
    rd_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}
