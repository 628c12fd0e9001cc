/* SPDX-License-Identifier: MIT
 *
 * redeemd configuration: one table of settings (name, type, range, default), filled from
 * defaults, then an optional file (--config or REDEEMD_CONFIG), then REDEEMD_* environment
 * variables, then --flags. Everything is validated before the daemon starts; after that the
 * struct is immutable and shared read-only by every thread.
 */
#ifndef RD_CONFIG_H
#define RD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct rd_config {
    char listen_addr[64];
    int port;
    int workers; /* 0 at parse time means "number of cores"; resolved by the daemon */
    char redis_host[256];
    int redis_port;
    char redis_cluster[1024]; /* seed nodes; "" = one Redis (redis_host:redis_port) */
    int redis_cluster_refresh_ms;
    int min_replica_acks; /* 0: a write is acknowledged once its primary has it */
    int replica_ack_timeout_ms;
    int redis_timeout_ms;
    int pg_probe_interval_ms;
    char pg_conninfo[1024];
    int buckets;
    int max_body_bytes;
    int max_header_bytes;
    int idle_timeout_s;
    int request_timeout_s;
    int max_connections;
    int max_inflight;
    int idempotency_ttl_s;
    int reversal_window_s;
    int key_refresh_ms;
    int shutdown_timeout_s;
    char log_level[16];
    bool access_log;
    char metrics[256];         /* who may read /metrics: loopback, any, off, or addresses/CIDRs */
    char trusted_proxies[256]; /* whose X-Forwarded-For names the customer ("" none) */
    bool test_clock;
    char port_file[1024];
    /* ledger shipper */
    bool shipper;
    char shipper_name[128];
    int ship_batch;
    int ship_interval_ms;
    long long max_backlog;
    int ship_claim_idle_ms;
    int ship_max_deliveries;
    int ship_pause_after_commit_ms; /* tests only: widens the COMMIT..XACK window */
    int query_timeout_ms;           /* exports (CSV) */
    int read_timeout_ms;            /* every other ledger read */
    int read_queue_ms;
    int pg_read_conns;
    /* guessing budgets (daemon/api/guess.c): failed lookups per minute and at once, per
     * customer address, user, session and API key; 0 per minute: that budget is off */
    int guess_per_min[4], guess_burst[4];
    char guess_exempt_keys[512]; /* API key ids that no budget applies to */
    /* webhooks (daemon/jobs/webhooks.c) */
    bool webhooks;              /* run the delivery thread in this process */
    bool webhook_allow_private; /* endpoints may be loopback or private addresses */
    int webhook_timeout_ms, webhook_concurrency, webhook_per_endpoint, webhook_backoff_ms;
    int webhook_retry_window_s, webhook_poll_ms;
    char webhook_ca_file[1024];    /* PEM certificates https endpoints are checked against ("" the
                                    * system's) */
    long long voucher_max_balance; /* minor units */
    /* batch jobs */
    bool batches;
    int batch_rate; /* codes per second, 0 = no cap */
    int batch_chunk;
    int batch_lease_ms;
    int batch_yield_us; /* checkout Redis round trip above which batch jobs back off */
};

/** Fills every field with its default. */
void rd_config_defaults(struct rd_config *cfg);

/**
 * Sets one setting by name ("redis_port" or "redis-port"). origin names the source for the
 * error message ("file x.conf:3", "env REDEEMD_PORT", "flag --port"). Returns 0, or -1 with a
 * message in err.
 */
int rd_config_set(struct rd_config *cfg, const char *name, const char *value, const char *origin,
                  char *err, size_t errlen);

/** Reads "name = value" lines; '#' starts a comment. Returns 0 or -1 with err. */
int rd_config_load_file(struct rd_config *cfg, const char *path, char *err, size_t errlen);
/** The same from an open stream; path names it in messages. */
int rd_config_load_stream(struct rd_config *cfg, FILE *f, const char *path, char *err,
                          size_t errlen);

/** Applies every REDEEMD_<NAME> variable of envp (NULL-terminated). Unknown ones are errors. */
int rd_config_load_env(struct rd_config *cfg, char *const *envp, char *err, size_t errlen);

/**
 * The whole load: defaults, file (from --config/-c or REDEEMD_CONFIG), env, then flags
 * (--name=value or --name value). Sets *help if --help was given. Returns 0 or -1 with err.
 */
int rd_config_load(struct rd_config *cfg, int argc, char **argv, char *const *envp, bool *help,
                   char *err, size_t errlen);

/** Cross-field checks run after all sources. Returns 0 or -1 with err. */
int rd_config_validate(const struct rd_config *cfg, char *err, size_t errlen);

/** Writes the usage text listing every setting. */
void rd_config_usage(const char *prog, void (*emit)(const char *line));

#endif
