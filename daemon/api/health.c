/* SPDX-License-Identifier: MIT
 *
 * /healthz (the process answers) and /readyz (this instance can decide redemptions: Redis
 * connected with the scripts loaded, API keys loaded, the outbox backlog under max_backlog).
 *
 * The ledger (PostgreSQL and the shipper) is reported in the body but never fails readiness:
 * redemptions go on while PostgreSQL is down, the outbox keeps them, and a load balancer that
 * took every instance out for a PostgreSQL outage would cause the outage the outbox exists
 * to avoid. Only a backlog over max_backlog, where redemptions answer 503, does.
 *
 * Readiness covers every worker: each holds its own Redis connections and API keys, and a
 * client's connection may land on any of them, so the instance is ready only when all are
 * (a cluster's six connections per worker made "this worker is ready" answer 200 while
 * the next request, on a worker still connecting, got 503).
 */
#include "api/api.h"
#include "jobs/pgprobe.h"
#include "jobs/shipper.h"
#include "server/metrics.h"

/* A backlog with no commit for this long is reported as stalled. */
#define STALL_MS 30000

void rd_h_healthz(struct rd_req *r)
{
    rd_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static json_t *time_or_null(long long ms)
{
    return ms > 0 ? rd_time_json(ms) : json_null();
}

void rd_h_readyz(struct rd_req *r)
{
    const struct rd_config *cfg = r->w->cfg;
    int redis, keys;
    rd_workers_ready(&redis, &keys);
    int pg = rd_pgprobe_ok();
    struct rd_shipper_stats st;
    rd_shipper_stats(&st);
    if (!cfg->shipper)
        st.backlog = -1;
    int over = st.backlog > cfg->max_backlog;
    int ok = redis && keys && !over;

    int64_t now = rd_now_ms(); /* the real clock: these times are the daemon's own */
    const char *ledger;
    if (!cfg->shipper)
        ledger = "off";
    else if (!pg)
        ledger = "down";
    else if (st.backlog < 0)
        ledger = "unknown";
    else if (st.backlog > 0 &&
             now - (st.last_commit_ms ? st.last_commit_ms : st.started_ms) > STALL_MS &&
             now - st.backlog_at_ms < STALL_MS)
        ledger = "stalled";
    else
        ledger = "ok";
    json_t *backlog = st.backlog >= 0 ? json_integer(st.backlog) : json_null();
    json_t *o = json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:O, s:o, s:I, s:I, s:o, s:I}, s:o, s:I}", "status",
        ok ? "ready" : "not_ready", "checks", "redis", redis ? "ok" : "down", "api_keys",
        keys ? "ok" : "loading", "outbox",
        over              ? "backlog_over_limit"
        : st.backlog >= 0 ? "ok"
                          : "unknown",
        "ledger", "state", ledger, "postgres", pg ? "ok" : "down", "backlog", backlog,
        "backlog_counted_at", time_or_null(st.backlog_at_ms), "backlog_count",
        (json_int_t)st.backlog_seq, "max_backlog", (json_int_t)cfg->max_backlog, "last_commit_at",
        time_or_null(st.last_commit_ms), "shipped_rows", (json_int_t)st.rows, "outbox_backlog",
        backlog, "shipped_rows", (json_int_t)st.rows);
    rd_reply_json(r, ok ? 200 : 503, o);
}
