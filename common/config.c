/* SPDX-License-Identifier: MIT
 *
 * The settings table and its loaders. One row per setting drives parsing from every source,
 * the usage text and the error messages, so a setting cannot be known to one and not another.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd/cluster.h"
#include "rd/config.h"
#include "rd/request.h"
#include "rd/log.h"

enum ctype { C_INT, C_LLONG, C_BOOL, C_STR, C_LOGLEVEL };

struct setting {
    const char *name;
    enum ctype type;
    size_t off;
    size_t size; /* for strings: buffer size */
    long long min, max;
    const char *def;
    const char *help;
};

#define OFF(f) offsetof(struct rd_config, f)
#define SZ(f)  sizeof(((struct rd_config *)0)->f)

static const struct setting settings[] = {
    {"listen_addr", C_STR, OFF(listen_addr), SZ(listen_addr), 0, 0, "127.0.0.1",
     "IPv4 address to listen on"},
    {"port", C_INT, OFF(port), 0, 0, 65535, "8080", "TCP port (0 picks a free one)"},
    {"workers", C_INT, OFF(workers), 0, 0, 256, "0", "worker threads (0 = number of cores)"},
    {"redis_host", C_STR, OFF(redis_host), SZ(redis_host), 0, 0, "127.0.0.1",
     "Redis host; a name is resolved once at start (no DNS on the event loops)"},
    {"redis_port", C_INT, OFF(redis_port), 0, 1, 65535, "6379", "Redis port"},
    {"redis_cluster", C_STR, OFF(redis_cluster), SZ(redis_cluster), 0, 0, "",
     "Redis Cluster: seed nodes ip:port[,ip:port...]; empty: the one Redis at "
     "redis_host:redis_port"},
    {"redis_cluster_refresh_ms", C_INT, OFF(redis_cluster_refresh_ms), 0, 100, 600000, "2000",
     "how often the cluster's slot map is read again (also at once on a redirection)"},
    {"min_replica_acks", C_INT, OFF(min_replica_acks), 0, 0, 16, "0",
     "a use, payment, reversal, refund, recharge or coupon write answers success only once "
     "this many replicas have it (WAIT, grouped per connection); 0: once its primary has it"},
    {"replica_ack_timeout_ms", C_INT, OFF(replica_ack_timeout_ms), 0, 1, 60000, "500",
     "how long a write waits for min_replica_acks before it answers 503 (outcome unknown)"},
    {"redis_timeout_ms", C_INT, OFF(redis_timeout_ms), 0, 10, 60000, "2000",
     "a Redis call slower than this drops the connection and answers 503"},
    {"pg_conninfo", C_STR, OFF(pg_conninfo), SZ(pg_conninfo), 0, 0,
     "host=127.0.0.1 port=5432 dbname=redeemd user=redeemd", "libpq connection string"},
    {"pg_probe_interval_ms", C_INT, OFF(pg_probe_interval_ms), 0, 100, 600000, "2000",
     "how often /readyz's PostgreSQL check runs"},
    {"buckets", C_INT, OFF(buckets), 0, 1, 10000, "1024",
     "Redis hash-tag buckets; fixed at install (stored in Redis on first start)"},
    {"max_body_bytes", C_INT, OFF(max_body_bytes), 0, 256, 16777216, "65536",
     "largest request body accepted"},
    {"max_header_bytes", C_INT, OFF(max_header_bytes), 0, 1024, 1048576, "16384",
     "largest request header block accepted"},
    {"idle_timeout_s", C_INT, OFF(idle_timeout_s), 0, 1, 3600, "60",
     "close client connections idle this long"},
    {"request_timeout_s", C_INT, OFF(request_timeout_s), 0, 1, 3600, "10",
     "a request (head and body) must arrive within this long of its first byte, else 408"},
    {"max_connections", C_INT, OFF(max_connections), 0, 1, 1000000, "4096",
     "client connections per worker; past it the longest idle one is closed, else 503"},
    {"max_inflight", C_INT, OFF(max_inflight), 0, 1, 1000000, "10000",
     "requests in flight per worker before answering 503"},
    {"idempotency_ttl_s", C_INT, OFF(idempotency_ttl_s), 0, 1, 31536000, "86400",
     "how long an Idempotency-Key is remembered"},
    {"reversal_window_s", C_INT, OFF(reversal_window_s), 0, 60, 315360000, "7776000",
     "how long after a redemption or payment it may be reversed or refunded"},
    {"redemption_ttl_s", C_INT, OFF(reversal_window_s), 0, 60, 315360000, NULL,
     "old name of reversal_window_s"},
    {"key_refresh_ms", C_INT, OFF(key_refresh_ms), 0, 100, 600000, "1000",
     "how often workers reload API keys (revocation delay)"},
    {"shutdown_timeout_s", C_INT, OFF(shutdown_timeout_s), 0, 1, 600, "10",
     "how long SIGTERM waits for in-flight requests"},
    {"log_level", C_LOGLEVEL, OFF(log_level), SZ(log_level), 0, 0, "info",
     "debug, info, warn or error"},
    {"metrics", C_STR, OFF(metrics), SZ(metrics), 0, 0, "loopback",
     "who may read GET /metrics: loopback (127.0.0.0/8 and ::1), any, off, or a list of "
     "addresses and CIDR blocks (10.0.0.0/8,192.0.2.7)"},
    {"trusted_proxies", C_STR, OFF(trusted_proxies), SZ(trusted_proxies), 0, 0, "",
     "addresses and CIDR blocks of proxies in front of redeemd whose X-Forwarded-For names "
     "the customer's address (empty: the header is ignored)"},
    {"access_log", C_BOOL, OFF(access_log), 0, 0, 1, "false", "log one line per request"},
    {"test_clock", C_BOOL, OFF(test_clock), 0, 0, 1, "false",
     "honour the X-Redeemd-Now and X-Redeemd-Test-* headers (tests only; never in production)"},
    {"port_file", C_STR, OFF(port_file), SZ(port_file), 0, 0, "",
     "write the bound port to this file once listening"},
    {"shipper", C_BOOL, OFF(shipper), 0, 0, 1, "true",
     "ship the outbox streams to PostgreSQL from this process"},
    {"shipper_name", C_STR, OFF(shipper_name), SZ(shipper_name), 0, 0, "",
     "consumer name in the streams' group (default redeemd-<hostname>); keep it stable"},
    {"ship_batch", C_INT, OFF(ship_batch), 0, 1, 100000, "2000",
     "entries per PostgreSQL transaction"},
    {"ship_interval_ms", C_INT, OFF(ship_interval_ms), 0, 1, 60000, "200",
     "how often the shipper looks for new entries when idle"},
    {"max_backlog", C_LLONG, OFF(max_backlog), 0, 1, 1000000000000LL, "1000000",
     "unshipped entries above which redemptions answer 503"},
    {"ship_claim_idle_ms", C_INT, OFF(ship_claim_idle_ms), 0, 100, 86400000, "30000",
     "entries pending this long with another consumer are claimed (XAUTOCLAIM)"},
    {"ship_max_deliveries", C_INT, OFF(ship_max_deliveries), 0, 1, 1000, "10",
     "deliveries after which an entry goes to the dead-letter stream"},
    {"ship_pause_after_commit_ms", C_INT, OFF(ship_pause_after_commit_ms), 0, 0, 600000, "0",
     "tests only: wait this long between COMMIT and XACK"},
    {"voucher_max_balance", C_LLONG, OFF(voucher_max_balance), 0, 1, 1000000000000000LL,
     "100000000", "most a voucher may hold, in minor units (creation and recharge)"},
    {"batches", C_BOOL, OFF(batches), 0, 0, 1, "true",
     "run batch jobs (POST /v1/batches) on this daemon's batch thread"},
    {"batch_rate", C_INT, OFF(batch_rate), 0, 0, 10000000, "100000",
     "most codes per second a batch job issues (0 = no cap)"},
    {"batch_chunk", C_INT, OFF(batch_chunk), 0, 1, 100000, "2000",
     "codes a batch job issues per round trip to Redis and PostgreSQL"},
    {"batch_yield_us", C_INT, OFF(batch_yield_us), 0, 0, 5000000, "5000",
     "a batch job rests more while over 1 % of checkout Redis calls take longer (0 = never)"},
    {"batch_lease_ms", C_INT, OFF(batch_lease_ms), 0, 1000, 3600000, "30000",
     "a batch job whose daemon has not reported for this long is taken over"},
    {"query_timeout_ms", C_INT, OFF(query_timeout_ms), 0, 100, 3600000, "300000",
     "statement_timeout of ledger exports (CSV of transactions, coupons, batch codes)"},
    {"read_timeout_ms", C_INT, OFF(read_timeout_ms), 0, 100, 3600000, "10000",
     "statement_timeout of every other ledger read (pages, stats, single rows); then 503"},
    {"read_queue_ms", C_INT, OFF(read_queue_ms), 0, 10, 600000, "2000",
     "a ledger read that waits longer than this for a connection answers 503"},
    {"guess_ip_per_min", C_INT, OFF(guess_per_min[0]), 0, 0, 10000000, "10",
     "failed lookups (unknown, archived, disabled code, wrong kind) per minute per customer "
     "address (customer.ip or X-Forwarded-For; never the peer's); 0: no such budget"},
    {"guess_ip_burst", C_INT, OFF(guess_burst[0]), 0, 1, 10000000, "20",
     "failed lookups at once per customer address"},
    {"guess_user_per_min", C_INT, OFF(guess_per_min[1]), 0, 0, 10000000, "10",
     "failed lookups per minute per user_id; 0: no such budget"},
    {"guess_user_burst", C_INT, OFF(guess_burst[1]), 0, 1, 10000000, "20",
     "failed lookups at once per user_id"},
    {"guess_session_per_min", C_INT, OFF(guess_per_min[2]), 0, 0, 10000000, "10",
     "failed lookups per minute per customer.session_id; 0: no such budget"},
    {"guess_session_burst", C_INT, OFF(guess_burst[2]), 0, 1, 10000000, "20",
     "failed lookups at once per customer.session_id"},
    {"guess_key_per_min", C_INT, OFF(guess_per_min[3]), 0, 0, 10000000, "6000",
     "failed lookups per minute per API key (all of a checkout's customers' typos); 0: off"},
    {"guess_key_burst", C_INT, OFF(guess_burst[3]), 0, 1, 10000000, "1000",
     "failed lookups at once per API key"},
    {"guess_exempt_keys", C_STR, OFF(guess_exempt_keys), SZ(guess_exempt_keys), 0, 0, "",
     "API key ids (the 8 characters after rdk_) no guessing budget applies to, comma-separated "
     "(a trusted back office)"},
    {"webhooks", C_BOOL, OFF(webhooks), 0, 0, 1, "true",
     "deliver webhooks from this process (any number of daemons share the deliveries)"},
    {"webhook_allow_private", C_BOOL, OFF(webhook_allow_private), 0, 0, 1, "false",
     "let webhook endpoints be loopback, private or link-local addresses (tests, a receiver "
     "on the same machine); off, such URLs are refused and such names are not called"},
    {"webhook_timeout_ms", C_INT, OFF(webhook_timeout_ms), 0, 100, 600000, "10000",
     "a webhook delivery not answered within this long has failed (and is tried again)"},
    {"webhook_concurrency", C_INT, OFF(webhook_concurrency), 0, 1, 10000, "64",
     "webhook deliveries under way at once in this process"},
    {"webhook_per_endpoint", C_INT, OFF(webhook_per_endpoint), 0, 1, 1000, "4",
     "of which at most this many to one endpoint (a slow one never holds up another)"},
    {"webhook_backoff_ms", C_INT, OFF(webhook_backoff_ms), 0, 1, 3600000, "10000",
     "first retry of a failed delivery after this long, doubling to an hour"},
    {"webhook_retry_window_s", C_INT, OFF(webhook_retry_window_s), 0, 1, 2592000, "86400",
     "a delivery still failing this long after its event is marked failed; an endpoint with "
     "no delivery for as long is disabled"},
    {"webhook_ca_file", C_STR, OFF(webhook_ca_file), SZ(webhook_ca_file), 0, 0, "",
     "PEM file of the certificate authorities https webhook endpoints are checked against, "
     "instead of the system's (a private CA); empty: the system's trust store"},
    {"webhook_poll_ms", C_INT, OFF(webhook_poll_ms), 0, 10, 60000, "250",
     "how often the delivery thread looks for due deliveries"},
    {"pg_read_conns", C_INT, OFF(pg_read_conns), 0, 2, 16, "3",
     "PostgreSQL read connections per worker; heavy reads hold at most all but one"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static const struct setting *find_setting(const char *name, size_t len)
{
    char norm[64];
    if (len == 0 || len >= sizeof(norm))
        return NULL;
    for (size_t i = 0; i < len; i++)
        norm[i] = name[i] == '-' ? '_' : (char)tolower((unsigned char)name[i]);
    norm[len] = '\0';
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, norm) == 0)
            return &settings[i];
    return NULL;
}

static int set_value(struct rd_config *cfg, const struct setting *s, const char *value,
                     const char *origin, char *err, size_t errlen)
{
    char *base = (char *)cfg;
    switch (s->type) {
    case C_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (*value == '\0' || *end != '\0' || errno != 0 || v < s->min || v > s->max ||
            isspace((unsigned char)*value)) {
            snprintf(err, errlen, "%s: %s must be an integer from %lld to %lld (got \"%s\")",
                     origin, s->name, s->min, s->max, value);
            return -1;
        }
        *(int *)(base + s->off) = (int)v;
        return 0;
    }
    case C_LLONG: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (*value == '\0' || *end != '\0' || errno != 0 || v < s->min || v > s->max) {
            snprintf(err, errlen, "%s: %s must be an integer from %lld to %lld (got \"%s\")",
                     origin, s->name, s->min, s->max, value);
            return -1;
        }
        *(long long *)(base + s->off) = v;
        return 0;
    }
    case C_BOOL: {
        bool v;
        if (!strcmp(value, "1") || !strcasecmp(value, "true") || !strcasecmp(value, "yes") ||
            !strcasecmp(value, "on"))
            v = true;
        else if (!strcmp(value, "0") || !strcasecmp(value, "false") || !strcasecmp(value, "no") ||
                 !strcasecmp(value, "off"))
            v = false;
        else {
            snprintf(err, errlen, "%s: %s must be true or false (got \"%s\")", origin, s->name,
                     value);
            return -1;
        }
        *(bool *)(base + s->off) = v;
        return 0;
    }
    case C_LOGLEVEL:
        if (rd_log_level_parse(value) < 0) {
            snprintf(err, errlen, "%s: %s must be debug, info, warn or error (got \"%s\")", origin,
                     s->name, value);
            return -1;
        }
        __attribute__((fallthrough)); /* a valid level is stored as a string */
    case C_STR:
        if (strlen(value) >= s->size) {
            snprintf(err, errlen, "%s: %s is longer than %zu characters", origin, s->name,
                     s->size - 1);
            return -1;
        }
        memcpy(base + s->off, value, strlen(value) + 1);
        return 0;
    }
    return -1;
}

void rd_config_defaults(struct rd_config *cfg)
{
    char err[256];
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (!settings[i].def)
            continue; /* an old name of another setting */
        int rc = set_value(cfg, &settings[i], settings[i].def, "default", err, sizeof(err));
        (void)rc; /* the table's defaults are in range; unit tests hold them to it */
    }
}

int rd_config_set(struct rd_config *cfg, const char *name, const char *value, const char *origin,
                  char *err, size_t errlen)
{
    const struct setting *s = find_setting(name, strlen(name));
    if (!s) {
        snprintf(err, errlen, "%s: unknown setting \"%s\"", origin, name);
        return -1;
    }
    return set_value(cfg, s, value, origin, err, errlen);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int rd_config_load_file(struct rd_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "config file %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = rd_config_load_stream(cfg, f, path, err, errlen);
    fclose(f);
    return rc;
}

int rd_config_load_stream(struct rd_config *cfg, FILE *f, const char *path, char *err,
                          size_t errlen)
{
    char line[2048], origin[1200];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s: line too long", origin);
            rc = -1;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s: expected \"name = value\"", origin);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *name = trim(s), *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = '\0';
            value++;
        }
        if (rd_config_set(cfg, name, value, origin, err, errlen) < 0) {
            rc = -1;
            break;
        }
    }
    return rc;
}

int rd_config_load_env(struct rd_config *cfg, char *const *envp, char *err, size_t errlen)
{
    static const char prefix[] = "REDEEMD_";
    for (; envp && *envp; envp++) {
        const char *e = *envp;
        if (strncmp(e, prefix, sizeof(prefix) - 1) != 0)
            continue;
        const char *name = e + sizeof(prefix) - 1;
        const char *eq = strchr(name, '=');
        if (!eq)
            continue;
        char origin[160];
        snprintf(origin, sizeof(origin), "environment %.*s", (int)(eq - e), e);
        if ((size_t)(eq - name) == 6 && strncmp(name, "CONFIG", 6) == 0)
            continue; /* the file itself, read before */
        const struct setting *s = find_setting(name, (size_t)(eq - name));
        if (!s) {
            snprintf(err, errlen, "%s: unknown setting", origin);
            return -1;
        }
        if (set_value(cfg, s, eq + 1, origin, err, errlen) < 0)
            return -1;
    }
    return 0;
}

int rd_config_load(struct rd_config *cfg, int argc, char **argv, char *const *envp, bool *help,
                   char *err, size_t errlen)
{
    const char *file = NULL;
    *help = false;
    rd_config_defaults(cfg);
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, "REDEEMD_CONFIG=", 15) == 0)
            file = *e + 15;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "flag %s needs a file name", argv[i]);
                return -1;
            }
            file = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            file = argv[i] + 9;
        }
    }
    if (file && *file && rd_config_load_file(cfg, file, err, errlen) < 0)
        return -1;
    if (rd_config_load_env(cfg, envp, err, errlen) < 0)
        return -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = true;
            return 0;
        }
        if (!strcmp(a, "--config") || !strcmp(a, "-c")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9))
            continue;
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument \"%s\" (settings are --name=value)", a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '='), *value;
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        char origin[160];
        snprintf(origin, sizeof(origin), "flag --%.*s", (int)nlen, name);
        const struct setting *s = find_setting(name, nlen);
        if (!s) {
            snprintf(err, errlen, "%s: unknown setting", origin);
            return -1;
        }
        if (eq)
            value = eq + 1;
        else if (s->type == C_BOOL)
            value = "true";
        else if (i + 1 < argc)
            value = argv[++i];
        else {
            snprintf(err, errlen, "%s needs a value", origin);
            return -1;
        }
        if (set_value(cfg, s, value, origin, err, errlen) < 0)
            return -1;
    }
    return rd_config_validate(cfg, err, errlen);
}

int rd_config_validate(const struct rd_config *cfg, char *err, size_t errlen)
{
    unsigned a, b, c, d;
    char tail;
    if (sscanf(cfg->listen_addr, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 ||
        b > 255 || c > 255 || d > 255) {
        snprintf(err, errlen, "listen_addr must be a numeric IPv4 address (got \"%s\")",
                 cfg->listen_addr);
        return -1;
    }
    if (cfg->redis_host[0] == '\0') {
        snprintf(err, errlen, "redis_host must not be empty");
        return -1;
    }
    if (cfg->min_replica_acks > 0 && cfg->replica_ack_timeout_ms >= cfg->redis_timeout_ms) {
        snprintf(err, errlen,
                 "replica_ack_timeout_ms (%d) must be below redis_timeout_ms (%d): a connection "
                 "whose reply is overdue is dropped",
                 cfg->replica_ack_timeout_ms, cfg->redis_timeout_ms);
        return -1;
    }
    if (cfg->redis_cluster[0]) {
        struct rd_cluster_node seeds[RD_CLUSTER_NODES_MAX];
        const char *why;
        if (rd_cluster_seeds_parse(cfg->redis_cluster, seeds, RD_CLUSTER_NODES_MAX, &why) < 0) {
            snprintf(err, errlen, "redis_cluster %s (got \"%s\")", why, cfg->redis_cluster);
            return -1;
        }
    }
    if (strcmp(cfg->metrics, "loopback") != 0 && strcmp(cfg->metrics, "any") != 0 &&
        strcmp(cfg->metrics, "off") != 0 && rd_ip_in_list(cfg->metrics, "127.0.0.1") < 0) {
        snprintf(err, errlen,
                 "metrics must be loopback, any, off or a list of addresses and CIDR blocks "
                 "(got \"%s\")",
                 cfg->metrics);
        return -1;
    }
    if (cfg->trusted_proxies[0] && rd_ip_in_list(cfg->trusted_proxies, "127.0.0.1") < 0) {
        snprintf(err, errlen,
                 "trusted_proxies must be a list of addresses and CIDR blocks (got \"%s\")",
                 cfg->trusted_proxies);
        return -1;
    }
    if (cfg->pg_conninfo[0] == '\0') {
        snprintf(err, errlen, "pg_conninfo must not be empty");
        return -1;
    }
    return 0;
}

void rd_config_usage(const char *prog, void (*emit)(const char *line))
{
    char line[512];
    snprintf(line, sizeof(line),
             "usage: %s [--config FILE] [--name=value ...]\n"
             "Settings come from defaults, then FILE (or $REDEEMD_CONFIG), then REDEEMD_<NAME>\n"
             "environment variables, then flags. Settings:",
             prog);
    emit(line);
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (!settings[i].def)
            snprintf(line, sizeof(line), "  --%-22s %s", settings[i].name, settings[i].help);
        else
            snprintf(line, sizeof(line), "  --%-22s %s (default \"%s\")", settings[i].name,
                     settings[i].help, settings[i].def);
        emit(line);
    }
}
