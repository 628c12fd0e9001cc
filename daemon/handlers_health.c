/* SPDX-License-Identifier: MIT
 *
 * /healthz (the process answers) and /readyz (it can do its job: Redis connected with the
 * scripts loaded, API keys loaded, PostgreSQL reachable). Readiness is this worker's view;
 * every worker holds its own Redis connection, so a load balancer probing repeatedly sees
 * each of them in turn.
 */
#include "http.h"
#include "pgprobe.h"
#include "shipper.h"

void rd_h_healthz(struct rd_req *r)
{
    rd_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void rd_h_readyz(struct rd_req *r)
{
    int redis = r->w->redis.state == RD_REDIS_READY;
    int keys = r->w->keys.loaded;
    int pg = rd_pgprobe_ok();
    long long backlog = rd_shipper_backlog();
    int ledger = !r->w->cfg->shipper || backlog <= r->w->cfg->max_backlog;
    int ok = redis && keys && pg && ledger;
    rd_reply_json(r, ok ? 200 : 503,
                  json_pack("{s:s, s:{s:s, s:s, s:s, s:s}, s:I, s:I}", "status",
                            ok ? "ready" : "not_ready", "checks", "redis", redis ? "ok" : "down",
                            "api_keys", keys ? "ok" : "loading", "postgres", pg ? "ok" : "down",
                            "ledger", ledger ? "ok" : "backlog_over_limit", "outbox_backlog",
                            (json_int_t)backlog, "shipped_rows", (json_int_t)rd_shipper_rows()));
}
