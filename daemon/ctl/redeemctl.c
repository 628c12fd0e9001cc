/* SPDX-License-Identifier: MIT
 *
 * redeemctl: the operator's command line. Reads the same settings as redeemd (file,
 * REDEEMD_* environment, --flags before the command).
 *
 *   redeemctl [settings] keys create --scope admin,redeem [--name NAME]
 *   redeemctl [settings] keys list
 *   redeemctl [settings] keys revoke ID
 *   redeemctl [settings] migrate [--dir scripts/sql]
 *   redeemctl [settings] reconcile [--repair] [--now RFC3339]
 *   redeemctl [settings] retention --keep 13mo [--dry-run] [--now RFC3339]
 *
 * API keys are shown once, at creation; Redis keeps only their SHA-256.
 */
#include <dirent.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "rd/config.h"
#include "rd/rdtime.h"
#include "ctl/reconcile.h"
#include "ctl/retention.h"
#include "store/pgconn.h"
#include "store/redis_sync.h"
#include "ctl/ctl_http.h"
#include "rd/code.h"
#include "rd/share.h"
#include "rd/keys.h"
#include "rd/shards.h"
#include "rd/lua_script_ids.h"
#include "rd/lua_scripts.h"
#include "rd/sha256.h"

extern char **environ;

static void usage(void)
{
    fprintf(
        stderr,
        "usage: redeemctl [--config FILE] [--setting=value ...] COMMAND\n"
        "commands:\n"
        "  keys create --scope SCOPES [--name NAME]   SCOPES: admin,redeem,fraud\n"
        "  keys list\n"
        "  keys revoke ID\n"
        "  migrate [--dir DIR]                        apply DIR/*.sql in order (./scripts/sql,\n"
        "                                             else " RD_SQL_DIR ")\n"
        "  reconcile [--repair] [--now TIME]          compare Redis counters with the "
        "ledger\n"
        "  retention --keep 13mo|400d|2y [--dry-run] [--now TIME]\n"
        "                                             drop ledger months older than the "
        "window\n"
        "                                             (the summaries keep their figures)\n"
        "  rewrite-aof [--timeout S]                  compact Redis' append-only files now,\n"
        "                                             one primary at a time (a quiet hour)\n"
        "through redeemd's API (--url URL, default this config's port; --key KEY, --key-file\n"
        "FILE or $RD_API_KEY with scope admin or fraud):\n"
        "  create JSON|-                               create a coupon or voucher\n"
        "  list [name=value ...]                      every coupon matching (GET /v1/coupons\n"
        "                                             filters), one JSON object per line\n"
        "  export [name=value ...]                    the same as CSV\n"
        "  stats                                      GET /v1/stats\n"
        "  batch JSON|- [--out FILE]                  issue codes in bulk (POST /v1/batches)\n"
        "                                             with a progress bar; FILE gets the codes\n"
        "  batch status|cancel|codes ID               one batch: its state, cancel it, its codes\n"
        "  archive --state expired|exhausted|disabled [--expired-before TIME]\n"
        "          [--prefix P] [--dry-run] [--now TIME]\n"
        "                                             take dead codes out of Redis; the "
        "ledger keeps them\n");
}

static struct rd_rsc *redis_open(const struct rd_config *cfg)
{
    char err[200];
    struct rd_rsc *c = rd_rsc_connect(cfg, 2000, 2000, err, sizeof(err));
    if (!c) {
        if (cfg->redis_cluster[0])
            fprintf(stderr, "redeemctl: cannot reach the Redis Cluster of %s: %s\n",
                    cfg->redis_cluster, err);
        else
            fprintf(stderr, "redeemctl: cannot connect to Redis at %s:%d: %s\n", cfg->redis_host,
                    cfg->redis_port, err);
        exit(1);
    }
    return c;
}

/* ---- back-office commands over HTTP (ctl_http.c) --------------------------------------- */

/* Reads --url, --key, --key-file out of argv (removing them); the rest stays. */
static int api_target(const struct rd_config *cfg, int *argc, char **argv, struct rd_ctl_target *t)
{
    static char keybuf[256];
    snprintf(t->host, sizeof(t->host), "%s",
             strcmp(cfg->listen_addr, "0.0.0.0") == 0 ? "127.0.0.1" : cfg->listen_addr);
    t->port = cfg->port;
    t->key = getenv("RD_API_KEY");
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        if (!strcmp(argv[i], "--url") && i + 1 < *argc) {
            const char *u = argv[++i], *p = strncmp(u, "http://", 7) == 0 ? u + 7 : u;
            const char *colon = strrchr(p, ':');
            if (!colon || colon == p || (size_t)(colon - p) >= sizeof(t->host)) {
                fprintf(stderr, "redeemctl: --url must be http://HOST:PORT\n");
                return -1;
            }
            snprintf(t->host, sizeof(t->host), "%.*s", (int)(colon - p), p);
            t->port = atoi(colon + 1);
        } else if (!strcmp(argv[i], "--key") && i + 1 < *argc) {
            t->key = argv[++i];
        } else if (!strcmp(argv[i], "--key-file") && i + 1 < *argc) {
            FILE *f = fopen(argv[++i], "r");
            if (!f || !fgets(keybuf, sizeof(keybuf), f)) {
                fprintf(stderr, "redeemctl: cannot read %s\n", argv[i]);
                if (f)
                    fclose(f);
                return -1;
            }
            fclose(f);
            keybuf[strcspn(keybuf, "\r\n")] = '\0';
            t->key = keybuf;
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    if (!t->key || !*t->key) {
        fprintf(stderr, "redeemctl: an API key is needed (--key, --key-file or RD_API_KEY)\n");
        return -1;
    }
    return 0;
}

/* "name=value ..." into a query string (values percent-encoded). */
static int query_of(int argc, char **argv, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i] || strlen(eq + 1) > 256) {
            fprintf(stderr, "redeemctl: filters are name=value (got \"%s\")\n", argv[i]);
            return -1;
        }
        char enc[3 * 256 + 1];
        rd_url_encode(eq + 1, enc);
        int k = snprintf(out + len, n - len, "%s%.*s=%s", len ? "&" : "", (int)(eq - argv[i]),
                         argv[i], enc);
        if (k < 0 || (size_t)k >= n - len)
            return -1;
        len += (size_t)k;
    }
    return 0;
}

/* A JSON body given on the command line, or "-" for stdin. malloc'd. */
static char *body_arg(const char *arg)
{
    if (strcmp(arg, "-") != 0)
        return strdup(arg);
    char *body = NULL;
    size_t blen = 0;
    FILE *m = open_memstream(&body, &blen);
    char chunk[4096];
    size_t k;
    while ((k = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        fwrite(chunk, 1, k, m);
    fclose(m);
    return body;
}

/* GET /v1/batches/{id} into a parsed object (NULL on failure, reported). */
static json_t *batch_view(const struct rd_ctl_target *t, const char *id)
{
    char path[128], *body = NULL;
    snprintf(path, sizeof(path), "/v1/batches/%s", id);
    int st = rd_ctl_http(t, "GET", path, "application/json", NULL, NULL, &body);
    if (st != 200) {
        if (st > 0)
            rd_ctl_print_error(st, body);
        free(body);
        return NULL;
    }
    json_t *v = json_loads(body, 0, NULL);
    free(body);
    return v;
}

static void progress_bar(const json_t *v, int tty)
{
    long long done = json_integer_value(json_object_get(v, "created"));
    long long want = json_integer_value(json_object_get(v, "requested"));
    json_t *rate = json_object_get(v, "codes_per_second");
    int filled = want > 0 ? (int)(done * 30 / want) : 0;
    char bar[31];
    for (int i = 0; i < 30; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[30] = '\0';
    fprintf(stderr, "%s[%s] %3lld%%  %lld/%lld codes  %lld/s  %s%s", tty ? "\r" : "", bar,
            want > 0 ? done * 100 / want : 0, done, want,
            json_is_number(rate) ? (long long)json_number_value(rate) : 0,
            json_string_value(json_object_get(v, "state")), tty ? "   " : "\n");
    fflush(stderr);
}

/*
 * batch JSON|- [--out FILE]: queues a batch, draws its progress until it ends, then writes
 * its codes to FILE (CSV). batch status|cancel|codes ID: one call each.
 */
static int batch_command(const struct rd_ctl_target *t, int argc, char **argv)
{
    char *err = NULL, path[128];
    int st;
    if (argc == 2 &&
        (!strcmp(argv[0], "status") || !strcmp(argv[0], "cancel") || !strcmp(argv[0], "codes"))) {
        if (strlen(argv[1]) > 32) {
            fprintf(stderr, "redeemctl: not a batch id: %s\n", argv[1]);
            return 2;
        }
        if (!strcmp(argv[0], "status")) {
            snprintf(path, sizeof(path), "/v1/batches/%s", argv[1]);
            st = rd_ctl_http(t, "GET", path, "application/json", NULL, stdout, &err);
        } else if (!strcmp(argv[0], "cancel")) {
            snprintf(path, sizeof(path), "/v1/batches/%s/cancel", argv[1]);
            st = rd_ctl_http(t, "POST", path, "application/json", NULL, stdout, &err);
        } else {
            snprintf(path, sizeof(path), "/v1/batches/%s/codes", argv[1]);
            st = rd_ctl_http(t, "GET", path, "text/csv", NULL, stdout, &err);
        }
        if (st >= 300)
            rd_ctl_print_error(st, err);
        free(err);
        return st >= 200 && st < 300 ? 0 : 1;
    }
    const char *out = NULL;
    if (argc == 3 && !strcmp(argv[1], "--out"))
        out = argv[2];
    else if (argc != 1) {
        fprintf(stderr, "redeemctl: batch JSON|- [--out FILE] | batch status|cancel|codes ID\n");
        return 2;
    }
    char *body = body_arg(argv[0]);
    st = rd_ctl_http(t, "POST", "/v1/batches", "application/json", body, NULL, &err);
    free(body);
    if (st != 202) {
        if (st > 0)
            rd_ctl_print_error(st, err);
        free(err);
        return 1;
    }
    json_t *v = json_loads(err, 0, NULL);
    free(err);
    char id[40];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(v, "id")));
    fprintf(stderr, "batch %s queued\n", id);
    int tty = isatty(2);
    const char *state = "queued";
    long long last = -1;
    for (;;) {
        state = json_string_value(json_object_get(v, "state"));
        long long done = json_integer_value(json_object_get(v, "created"));
        if (tty || done != last ||
            strcmp(state, "running") != 0) /* a log: lines that say something */
            progress_bar(v, tty);
        last = done;
        if (strcmp(state, "queued") != 0 && strcmp(state, "running") != 0)
            break;
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
        json_decref(v);
        if (!(v = batch_view(t, id)))
            return 1;
    }
    if (tty)
        fputc('\n', stderr);
    char *line = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    puts(line);
    free(line);
    int ok = strcmp(state, "done") == 0;
    json_decref(v);
    if (ok && out) {
        FILE *f = fopen(out, "w");
        if (!f) {
            fprintf(stderr, "redeemctl: %s: %s\n", out, strerror(errno));
            return 1;
        }
        snprintf(path, sizeof(path), "/v1/batches/%s/codes", id);
        st = rd_ctl_http(t, "GET", path, "text/csv", NULL, f, &err);
        if (fclose(f) != 0 || st != 200) {
            if (st > 0 && st != 200)
                rd_ctl_print_error(st, err);
            free(err);
            return 1;
        }
        free(err);
        fprintf(stderr, "codes written to %s\n", out);
    }
    fflush(stdout);
    return ok ? 0 : 1;
}

static int api_command(const struct rd_config *cfg, const char *cmd, int argc, char **argv)
{
    struct rd_ctl_target t;
    if (api_target(cfg, &argc, argv, &t) < 0)
        return 2;
    char *err = NULL;
    int st;
    if (!strcmp(cmd, "batch"))
        return batch_command(&t, argc, argv);
    if (!strcmp(cmd, "create")) {
        if (argc != 1) {
            fprintf(stderr, "redeemctl: create takes one JSON body (or - for stdin)\n");
            return 2;
        }
        char *body = body_arg(argv[0]);
        st = rd_ctl_http(&t, "POST", "/v1/coupons", "application/json", body, stdout, &err);
        free(body);
    } else if (!strcmp(cmd, "stats")) {
        st = rd_ctl_http(&t, "GET", "/v1/stats", "application/json", NULL, stdout, &err);
    } else {
        char q[8192], path[8400];
        if (query_of(argc, argv, q, sizeof(q)) < 0)
            return 2;
        if (!strcmp(cmd, "export")) {
            snprintf(path, sizeof(path), "/v1/coupons%s%s", *q ? "?" : "", q);
            st = rd_ctl_http(&t, "GET", path, "text/csv", NULL, stdout, &err);
        } else { /* list: every page, one coupon per line */
            char cursor[160] = "";
            for (;;) {
                snprintf(path, sizeof(path), "/v1/coupons?limit=1000%s%s%s%s", *q ? "&" : "", q,
                         *cursor ? "&cursor=" : "", cursor);
                st = rd_ctl_http(&t, "GET", path, "application/json", NULL, NULL, &err);
                if (st != 200)
                    break;
                json_t *page = json_loads(err, 0, NULL);
                free(err);
                err = NULL;
                size_t i;
                json_t *c;
                json_array_foreach(json_object_get(page, "data"), i, c)
                {
                    char *line = json_dumps(c, JSON_COMPACT);
                    puts(line);
                    free(line);
                }
                json_t *next = json_object_get(page, "next_cursor");
                int more = json_is_string(next);
                if (more)
                    snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
                json_decref(page);
                if (!more)
                    break;
            }
        }
    }
    if (st < 0)
        return 1;
    if (st >= 300) {
        rd_ctl_print_error(st, err);
        free(err);
        return 1;
    }
    free(err);
    fflush(stdout);
    return 0;
}

/* The last option a command knows: "--now TIME" (the injected clock) at argv[*i], taking
 * its value. Anything else is a usage error. Returns 0, or -1 after saying why. */
static int now_opt(int argc, char **argv, int *i, int64_t *now)
{
    if (strcmp(argv[*i], "--now") != 0 || *i + 1 >= argc) {
        usage();
        return -1;
    }
    if (rd_time_parse(argv[++*i], now) < 0) {
        fprintf(stderr, "redeemctl: --now must be an RFC 3339 time\n");
        return -1;
    }
    return 0;
}

/* Deletes the shards of an archived hot coupon (their hashes and per-user counts). */
static int drop_shards(struct rd_rsc *rc, const char *code, const char *layout, uint32_t buckets)
{
    struct rd_shard_layout l;
    if (rd_shard_layout_parse(layout, strlen(layout), buckets, &l) < 0)
        return -1;
    for (int i = 0; i < l.n; i++) {
        char sk[RD_KEY_MAX], uk[RD_KEY_MAX];
        rd_key_shard(sk, sizeof(sk), l.bucket[i], code);
        rd_key_users(uk, sizeof(uk), l.bucket[i], code);
        redisReply *r = rd_rsc_command(rc, "DEL %s %s", sk, uk);
        int ok = r && r->type == REDIS_REPLY_INTEGER;
        freeReplyObject(r);
        if (!ok)
            return -1;
    }
    return 0;
}

/*
 * archive: SCAN the coupon hashes (MATCH on the prefix), and for each run archive.lua, which
 * checks the state and deletes atomically. Pipelined a SCAN page at a time; the script is
 * short, so redemptions keep flowing between the calls.
 */
static int archive(const struct rd_config *cfg, int argc, char **argv)
{
    const char *state = NULL, *prefix = "", *before_s = NULL;
    int dry = 0;
    int64_t now = (int64_t)time(NULL) * 1000, before = -1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--state") && i + 1 < argc)
            state = argv[++i];
        else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
            prefix = argv[++i];
        else if (!strcmp(argv[i], "--expired-before") && i + 1 < argc)
            before_s = argv[++i];
        else if (!strcmp(argv[i], "--dry-run"))
            dry = 1;
        else if (now_opt(argc, argv, &i, &now) < 0)
            return 2;
    }
    if (!state ||
        (strcmp(state, "expired") && strcmp(state, "exhausted") && strcmp(state, "disabled"))) {
        fprintf(stderr, "redeemctl: archive needs --state expired, exhausted or disabled\n");
        return 2;
    }
    if (before_s && (strcmp(state, "expired") || rd_time_parse(before_s, &before) < 0)) {
        fprintf(stderr, "redeemctl: --expired-before is an RFC 3339 time, with --state "
                        "expired\n");
        return 2;
    }
    /* codes are A-Z 0-9 '-': nothing in a prefix is special to SCAN's MATCH */
    char code_prefix[RD_CODE_MAX + 1];
    size_t plen = strlen(prefix);
    if (plen > RD_CODE_MAX ||
        strspn(prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != plen) {
        fprintf(stderr, "redeemctl: --prefix is letters, digits and '-'\n");
        return 2;
    }
    for (size_t i = 0; i <= plen; i++)
        code_prefix[i] =
            (prefix[i] >= 'a' && prefix[i] <= 'z') ? (char)(prefix[i] - 32) : prefix[i];

    struct rd_rsc *rc = redis_open(cfg);
    const struct rd_lua_script *s = &rd_lua_scripts[RD_LUA_ARCHIVE];
    redisReply *r = rd_rsc_command(rc, "SCRIPT LOAD %b", s->body, s->len);
    if (!r || r->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "redeemctl: cannot load archive.lua\n");
        return 1;
    }
    freeReplyObject(r);
    char now_s[24], before_ms[24] = "", pattern[RD_CODE_MAX + 16], cursor[32] = "0";
    snprintf(now_s, sizeof(now_s), "%lld", (long long)now);
    if (before >= 0)
        snprintf(before_ms, sizeof(before_ms), "%lld", (long long)before);
    snprintf(pattern, sizeof(pattern), "{*}:c:%s*", code_prefix);
    long long seen = 0, archived = 0;
    /* SCAN walks one node: each primary of a cluster in turn */
    for (int node = 0; node < rd_rsc_nodes(rc); node++) {
        do {
            r = rd_rsc_command_node(rc, node, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
            if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                fprintf(stderr, "redeemctl: SCAN failed\n");
                return 1;
            }
            snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
            const redisReply *keys = r->element[1];
            for (size_t i = 0; i < keys->elements; i++) {
                const char *ck = keys->element[i]->str;
                char uk[RD_KEY_MAX], lk[RD_KEY_MAX], txn[RD_TXN_ID_LEN + 1];
                unsigned bucket = (unsigned)atoi(ck + 1);
                const char *code = strstr(ck, ":c:") + 3; /* SCAN matched "{*}:c:<CODE>" */
                rd_key_users(uk, sizeof(uk), bucket, code);
                rd_key_log(lk, sizeof(lk), bucket);
                uint8_t rnd[20];
                if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
                    return 1;
                rd_txn_id_make(txn, bucket, rnd);
                struct rd_cmd c;
                const char *why;
                rd_cmd_script(&c, RD_LUA_ARCHIVE);
                rd_cmd_key(&c, RD_ARCHIVE_K_COUPON, ck);
                rd_cmd_key(&c, RD_ARCHIVE_K_USERS, uk);
                rd_cmd_key(&c, RD_ARCHIVE_K_LOG, lk);
                rd_cmd_arg(&c, RD_ARCHIVE_A_NOW_MS, now_s);
                rd_cmd_arg(&c, RD_ARCHIVE_A_TXN, txn);
                rd_cmd_arg(&c, RD_ARCHIVE_A_STATE, state);
                rd_cmd_arg(&c, RD_ARCHIVE_A_EXPIRED_BEFORE, before_ms);
                rd_cmd_arg(&c, RD_ARCHIVE_A_KEY_ID, "redeemctl");
                rd_cmd_arg(&c, RD_ARCHIVE_A_REQUEST_ID, "archive");
                rd_cmd_arg(&c, RD_ARCHIVE_A_DRY_RUN, dry ? "1" : "0");
                if (rd_rsync_append(rc, &c, &why) < 0) {
                    fprintf(stderr, "redeemctl: archive.lua call: %s\n", why ? why : "failed");
                    return 1;
                }
            }
            /* every reply of the pipeline is read before any is judged */
            int n = (int)keys->elements, failed = 0;
            redisReply **as = calloc((size_t)n + 1, sizeof(*as));
            if (!as || rd_rsync_read(rc, n, as) < 0) {
                fprintf(stderr, "redeemctl: Redis connection lost\n");
                return 1;
            }
            for (int i = 0; i < n; i++) {
                if (as[i]->type == REDIS_REPLY_ERROR) {
                    if (!failed)
                        fprintf(stderr, "redeemctl: %s\n", as[i]->str);
                    failed = 1;
                    continue;
                }
                seen++;
                archived += (as[i]->type == REDIS_REPLY_INTEGER && as[i]->integer == 1) ||
                            as[i]->type == REDIS_REPLY_STRING;
                if (as[i]->type == REDIS_REPLY_STRING &&
                    drop_shards(rc, strstr(keys->element[i]->str, ":c:") + 3, as[i]->str,
                                RD_BUCKETS_MAX) < 0) {
                    fprintf(stderr, "redeemctl: deleting the shards of %s failed\n",
                            strstr(keys->element[i]->str, ":c:") + 3);
                    failed = 1;
                }
            }
            rd_rsync_free(as, n);
            free(as);
            freeReplyObject(r);
            if (failed) {
                printf("%lld of %lld coupons %s (%s) before the error\n", archived, seen,
                       dry ? "would be archived" : "archived", state);
                rd_rsc_free(rc);
                return 1;
            }
        } while (strcmp(cursor, "0") != 0);
    }
    rd_rsc_free(rc);
    printf("%lld of %lld coupons %s (%s)\n", archived, seen, dry ? "would be archived" : "archived",
           state);
    return 0;
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(name);
        if (!strncmp(argv[i], name, n) && argv[i][n] == '=')
            return argv[i] + n + 1;
        if (!strcmp(argv[i], name) && i + 1 < argc)
            return argv[i + 1];
    }
    return NULL;
}

static int keys_create(const struct rd_config *cfg, int argc, char **argv)
{
    const char *scope = opt(argc, argv, "--scope"), *name = opt(argc, argv, "--name");
    struct rd_apikey_record rec;
    memset(&rec, 0, sizeof(rec));
    if (!scope || rd_scopes_parse(scope, strlen(scope), &rec.scopes) < 0) {
        fprintf(stderr, "redeemctl: --scope must list admin, redeem and/or fraud, "
                        "comma-separated\n");
        return 2;
    }
    if (name && (strlen(name) >= sizeof(rec.name) || strpbrk(name, "\r\n"))) {
        fprintf(stderr, "redeemctl: --name must be one line of at most %zu bytes\n",
                sizeof(rec.name) - 1);
        return 2;
    }
    uint8_t rnd[40];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        fprintf(stderr, "redeemctl: getrandom failed\n");
        return 1;
    }
    char key[RD_APIKEY_LEN + 1], hash[65], value[256];
    rd_apikey_make(key, rec.id, rnd);
    rd_sha256_hex(key, strlen(key), hash);
    snprintf(rec.name, sizeof(rec.name), "%s", name ? name : "");
    rec.created_ms = (long long)time(NULL) * 1000;
    rd_apikey_record_format(&rec, value, sizeof(value));
    struct rd_rsc *c = redis_open(cfg);
    redisReply *r = rd_rsc_command(c, "HSETNX %s %s %s", RD_KEY_APIKEYS, hash, value);
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        fprintf(stderr, "redeemctl: storing the key failed: %s\n",
                r && r->type == REDIS_REPLY_ERROR ? r->str : rd_rsc_errstr(c));
        return 1;
    }
    freeReplyObject(r);
    rd_rsc_free(c);
    char scopes[32];
    rd_scopes_format(rec.scopes, scopes, sizeof(scopes));
    fprintf(stderr, "created key id=%s scopes=%s (shown once; only its hash is stored)\n", rec.id,
            scopes);
    printf("%s\n", key);
    return 0;
}

static int keys_list(const struct rd_config *cfg)
{
    struct rd_rsc *c = redis_open(cfg);
    redisReply *r = rd_rsc_command(c, "HVALS %s", RD_KEY_APIKEYS);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "redeemctl: listing keys failed\n");
        return 1;
    }
    printf("%-10s %-20s %-8s %-24s %s\n", "ID", "SCOPES", "STATE", "CREATED", "NAME");
    for (size_t i = 0; i < r->elements; i++) {
        struct rd_apikey_record rec;
        if (rd_apikey_record_parse(r->element[i]->str, r->element[i]->len, &rec) < 0)
            continue;
        char scopes[32], when[32];
        time_t t = (time_t)(rec.created_ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        rd_scopes_format(rec.scopes, scopes, sizeof(scopes));
        printf("%-10s %-20s %-8s %-24s %s\n", rec.id, scopes, rec.revoked ? "revoked" : "active",
               when, rec.name);
    }
    freeReplyObject(r);
    rd_rsc_free(c);
    return 0;
}

static int keys_revoke(const struct rd_config *cfg, const char *id)
{
    struct rd_rsc *c = redis_open(cfg);
    redisReply *r = rd_rsc_command(c, "HGETALL %s", RD_KEY_APIKEYS);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "redeemctl: reading keys failed\n");
        return 1;
    }
    int found = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        struct rd_apikey_record rec;
        redisReply *v = r->element[i + 1];
        if (rd_apikey_record_parse(v->str, v->len, &rec) < 0 || strcmp(rec.id, id) != 0)
            continue;
        rec.revoked = 1;
        char value[256];
        rd_apikey_record_format(&rec, value, sizeof(value));
        redisReply *w =
            rd_rsc_command(c, "HSET %s %s %s", RD_KEY_APIKEYS, r->element[i]->str, value);
        if (!w || w->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "redeemctl: revoking failed\n");
            return 1;
        }
        freeReplyObject(w);
        found = 1;
    }
    freeReplyObject(r);
    rd_rsc_free(c);
    if (!found) {
        fprintf(stderr, "redeemctl: no key with id %s\n", id);
        return 1;
    }
    fprintf(stderr, "revoked key %s (workers drop it within key_refresh_ms = %d ms)\n", id,
            cfg->key_refresh_ms);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int exec_ok(PGconn *pg, const char *sql, const char *what)
{
    PGresult *res = PQexec(pg, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "redeemctl: %s: %s", what, PQerrorMessage(pg));
    PQclear(res);
    return ok ? 0 : -1;
}

/* A blocking connection for the tools, from the same conninfo rules as the daemon's. */
static PGconn *pg_open(const struct rd_config *cfg)
{
    struct rd_pgparams params;
    char err[300];
    if (rd_pgparams_init(&params, cfg->pg_conninfo, "redeemctl", NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "redeemctl: %s\n", err);
        return NULL;
    }
    PGconn *pg = rd_pg_connect(&params);
    rd_pgparams_free(&params);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "redeemctl: cannot connect to PostgreSQL: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

/* redeemctl retention: the window must cover the reversal window, since a reversal or a
 * refund of a shipped use reads the use from the ledger. */
/* ---- rewrite-aof: compact Redis' append-only files at a quiet hour ---------------------- */

/* The integer value of field name in an INFO reply's text, or -1. */
static long long info_field(const redisReply *r, const char *name)
{
    if (!r || r->type != REDIS_REPLY_STRING)
        return -1;
    size_t nl = strlen(name);
    for (const char *p = r->str; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, nl) == 0 && p[nl] == ':')
            return atoll(p + nl + 1);
    return -1;
}

/*
 * A rewrite forks Redis and writes the whole data set to the disk the appends fsync on:
 * for its seconds, the checkout's p99 rises (bench/README.md). Redis starts one by itself
 * when the file has grown by auto-aof-rewrite-percentage, which may be at peak. With that
 * set to 0, this command (a timer at a quiet hour: packaging/redeemd-rewrite-aof.timer)
 * does it instead: one primary at a time, each waited for, so that two rewrites never share
 * a disk. Exit 0 when every primary rewrote, 1 otherwise.
 */
static int rewrite_aof(const struct rd_config *cfg, int argc, char **argv)
{
    int timeout_s = 3600;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--timeout") && i + 1 < argc && atoi(argv[i + 1]) > 0) {
            timeout_s = atoi(argv[++i]);
        } else {
            fprintf(stderr, "redeemctl: rewrite-aof [--timeout SECONDS]\n");
            return 2;
        }
    }
    struct rd_rsc *rc = redis_open(cfg);
    int failed = 0;
    for (int node = 0; node < rd_rsc_nodes(rc); node++) {
        redisReply *r = rd_rsc_command_node(rc, node, "INFO persistence");
        if (!r) { /* the connection is lost: not "appendonly off" */
            fprintf(stderr, "redeemctl: primary %d: INFO: %s\n", node, rd_rsc_errstr(rc));
            failed = 1;
            break;
        }
        long long enabled = info_field(r, "aof_enabled");
        freeReplyObject(r);
        if (enabled != 1) {
            printf("primary %d: appendonly is off, nothing to rewrite\n", node);
            continue;
        }
        time_t t0 = time(NULL);
        r = rd_rsc_command_node(rc, node, "BGREWRITEAOF");
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "redeemctl: primary %d: BGREWRITEAOF: %s\n", node,
                    r ? r->str : rd_rsc_errstr(rc));
            freeReplyObject(r);
            failed = 1;
            if (!r)
                break;
            continue;
        }
        freeReplyObject(r);
        /* scheduled (another child running) or in progress: wait until neither */
        int done = 0;
        while (time(NULL) - t0 <= timeout_s) {
            struct timespec ts = {0, 200 * 1000000L};
            nanosleep(&ts, NULL);
            r = rd_rsc_command_node(rc, node, "INFO persistence");
            if (!r) {
                done = -2;
                break;
            }
            long long busy =
                info_field(r, "aof_rewrite_in_progress") + info_field(r, "aof_rewrite_scheduled");
            int ok =
                r->type == REDIS_REPLY_STRING && strstr(r->str, "aof_last_bgrewrite_status:ok");
            freeReplyObject(r);
            if (busy == 0) {
                done = ok ? 1 : -1;
                break;
            }
        }
        if (done == 1) {
            printf("primary %d: append-only file rewritten in %lld s\n", node,
                   (long long)(time(NULL) - t0));
        } else {
            fprintf(stderr, "redeemctl: primary %d: the rewrite %s\n", node,
                    done == -2   ? "could not be followed: the connection was lost"
                    : done == -1 ? "failed (see Redis' log)"
                                 : "did not finish in time");
            failed = 1;
            if (done == -2)
                break;
        }
    }
    rd_rsc_free(rc);
    return failed;
}

static int retention(const struct rd_config *cfg, int argc, char **argv)
{
    const char *keep_s = NULL;
    int dry = 0;
    int64_t now = (int64_t)time(NULL) * 1000;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--keep") && i + 1 < argc)
            keep_s = argv[++i];
        else if (!strcmp(argv[i], "--dry-run"))
            dry = 1;
        else if (now_opt(argc, argv, &i, &now) < 0)
            return 2;
    }
    struct rd_keep keep;
    if (!keep_s || rd_keep_parse(keep_s, &keep) < 0) {
        fprintf(stderr, "redeemctl: retention needs --keep N followed by mo (months), y "
                        "(years) or d (days), e.g. --keep 13mo\n");
        return 2;
    }
    int64_t cutoff = rd_keep_cutoff(now, keep);
    if (now - cutoff < (int64_t)cfg->reversal_window_s * 1000) {
        fprintf(stderr,
                "redeemctl: --keep %s is shorter than the reversal window (reversal_window_s "
                "= %d): reversals of older uses read them from the ledger\n",
                keep_s, cfg->reversal_window_s);
        return 2;
    }
    PGconn *pg = pg_open(cfg);
    if (!pg)
        return 2;
    int rc = rd_retention(pg, cutoff, dry);
    PQfinish(pg);
    return rc;
}

/* Applies every DIR/NNN_name.sql not yet recorded in schema_migrations, each in its own
 * transaction, under an advisory lock so two concurrent runs cannot interleave. */
static int migrate(const struct rd_config *cfg, const char *dir)
{
    PGconn *pg = pg_open(cfg);
    if (!pg)
        return 1;
    if (exec_ok(pg, "SET client_min_messages = warning", "setup") < 0 ||
        exec_ok(pg, "SELECT pg_advisory_lock(724171)", "lock") < 0 ||
        exec_ok(pg,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())",
                "schema_migrations") < 0)
        return 1;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "redeemctl: cannot open %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char *names[512];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 512) {
        size_t l = strlen(de->d_name);
        if (l > 4 && !strcmp(de->d_name + l - 4, ".sql"))
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(names[0]), cmp_str);
    int rc = 0, applied = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const char *params[1] = {names[i]};
        PGresult *res = PQexecParams(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", 1,
                                     NULL, params, NULL, NULL, 0);
        int done = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
        PQclear(res);
        if (done)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        char *sql = slurp(path);
        if (!sql) {
            fprintf(stderr, "redeemctl: cannot read %s\n", path);
            rc = 1;
            break;
        }
        if (exec_ok(pg, "BEGIN", names[i]) < 0 || exec_ok(pg, sql, names[i]) < 0) {
            exec_ok(pg, "ROLLBACK", "rollback");
            rc = 1;
        } else {
            res = PQexecParams(pg, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, NULL,
                               params, NULL, NULL, 0);
            if (PQresultStatus(res) != PGRES_COMMAND_OK || exec_ok(pg, "COMMIT", names[i]) < 0)
                rc = 1;
            PQclear(res);
            if (rc == 0) {
                fprintf(stderr, "applied %s\n", names[i]);
                applied++;
            }
        }
        free(sql);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    PQfinish(pg);
    if (rc == 0)
        fprintf(stderr, "migrations up to date (%d applied now)\n", applied);
    return rc;
}

int main(int argc, char **argv)
{
    /* Settings come first (--name=value), then the command and its own options. The API
     * commands' --url, --key and --key-file may come before the command too: they are moved
     * behind it, where api_target() reads them (argv is compacted in place). */
    char *moved[6];
    int nmoved = 0, n = 1, a = 1;
    for (; a < argc && argv[a][0] == '-'; a++) {
        if ((!strcmp(argv[a], "--url") || !strcmp(argv[a], "--key") ||
             !strcmp(argv[a], "--key-file")) &&
            a + 1 < argc && nmoved < 6) {
            moved[nmoved++] = argv[a];
            moved[nmoved++] = argv[++a];
            continue;
        }
        argv[n++] = argv[a];
        if ((!strcmp(argv[a], "--config") || !strcmp(argv[a], "-c")) && a + 1 < argc)
            argv[n++] = argv[++a];
    }
    int cmd = n;
    while (a < argc)
        argv[n++] = argv[a++];
    for (int k = 0; k < nmoved; k++)
        argv[n++] = moved[k];
    argc = n;
    struct rd_config cfg;
    char err[1400];
    bool help;
    if (rd_config_load(&cfg, cmd, argv, environ, &help, err, sizeof(err)) < 0) {
        fprintf(stderr, "redeemctl: %s\n", err);
        return 2;
    }
    if (help || cmd >= argc) {
        usage();
        return help ? 0 : 2;
    }
    int rest = argc - cmd;
    char **args = argv + cmd;
    if (!strcmp(args[0], "keys") && rest >= 2) {
        if (!strcmp(args[1], "create"))
            return keys_create(&cfg, rest - 2, args + 2);
        if (!strcmp(args[1], "list"))
            return keys_list(&cfg);
        if (!strcmp(args[1], "revoke") && rest == 3)
            return keys_revoke(&cfg, args[2]);
    }
    if (!strcmp(args[0], "reconcile")) {
        int repair = 0;
        int64_t now = (int64_t)time(NULL) * 1000;
        for (int i = 1; i < rest; i++) {
            if (!strcmp(args[i], "--repair"))
                repair = 1;
            else if (now_opt(rest, args, &i, &now) < 0)
                return 2;
        }
        PGconn *pg = pg_open(&cfg);
        if (!pg)
            return 2;
        struct rd_rsc *rc = redis_open(&cfg);
        redisReply *b = rd_rsc_command(rc, "HGET %s buckets", RD_KEY_META);
        uint32_t buckets =
            b && b->type == REDIS_REPLY_STRING ? (uint32_t)atoi(b->str) : (uint32_t)cfg.buckets;
        freeReplyObject(b);
        int rc_ = rd_reconcile(rc, pg, buckets, now, repair);
        rd_rsc_free(rc);
        PQfinish(pg);
        return rc_;
    }
    if (!strcmp(args[0], "retention"))
        return retention(&cfg, rest - 1, args + 1);
    if (!strcmp(args[0], "archive"))
        return archive(&cfg, rest - 1, args + 1);
    if (!strcmp(args[0], "rewrite-aof"))
        return rewrite_aof(&cfg, rest - 1, args + 1);
    if (!strcmp(args[0], "create") || !strcmp(args[0], "list") || !strcmp(args[0], "export") ||
        !strcmp(args[0], "stats") || !strcmp(args[0], "batch"))
        return api_command(&cfg, args[0], rest - 1, args + 1);
    if (!strcmp(args[0], "migrate")) {
        const char *dir = opt(rest - 1, args + 1, "--dir");
        if (!dir) /* a checkout's, else the installed package's */
            dir = access("scripts/sql", R_OK) == 0 ? "scripts/sql" : RD_SQL_DIR;
        return migrate(&cfg, dir);
    }
    usage();
    return 2;
}
