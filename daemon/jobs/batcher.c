/* SPDX-License-Identifier: MIT
 *
 * Batch jobs (see batcher.h). Blocking hiredis and libpq: this thread does nothing else.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "jobs/batcher.h"
#include "store/redis_sync.h"
#include "store/pgconn.h"
#include "server/metrics.h"
#include "rd/codefmt.h"
#include "rd/coupon.h"
#include "rd/keys.h"
#include "rd/log.h"
#include "rd/lua_script_ids.h"
#include "rd/lua_scripts.h"
#include "rd/rdtime.h"

#define POLL_MS        1000
#define RETRY_MS       1000
#define SAMPLE_CODES   64
#define MAX_DRAW_RATIO 10 /* draws per requested code before the format counts as full */

enum outcome { JOB_DONE, JOB_RETRY, JOB_LOST, JOB_STOP };

struct job {
    char id[RD_BATCH_ID_MAX + 1];
    int resumed;
    long long requested, created, drawn;
    char created_ms[24];
    char kind[16];
    char campaign[RD_CAMPAIGN_MAX + 1];
    struct rd_codefmt fmt;
    json_t *template;               /* owned: hash field -> string value */
    char (*codes)[RD_CODE_MAX + 1]; /* owned: this chunk's codes */
    int ncodes;
    long long bytes_per_code;
    double yielded_s;   /* extra rest for checkouts (yield()) */
    uint8_t *tmpl_done; /* owned: buckets given the template in this run (one byte each) */
    int ntemplates;
    const char **tmpl_argv; /* owned array (strings borrowed from template): HSET key f v .. */
    size_t tmpl_argc;
    char tmpl_key[RD_KEY_MAX];
};

static struct {
    const struct rd_config *cfg;
    pthread_t thread;
    int started, stop, kick; /* stop and kick under mu */
    struct rd_rsc *rc;       /* one Redis, or each primary of a cluster */
    PGconn *pg;
    char owner[200];
    struct rd_pgparams pgparams;
    uint8_t rnd[4096];
    size_t rnd_used;
    struct rd_mhist_snap rtt; /* the workers' Redis round trips at the last chunk */
    double pace;              /* extra rest, in chunk times (see yield()) */
} B;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* ---- waiting ------------------------------------------------------------------------------ */

static int stopping(void)
{
    pthread_mutex_lock(&mu);
    int s = B.stop;
    pthread_mutex_unlock(&mu);
    return s;
}

/* Sleeps up to ms (less if kicked); returns 1 if the thread is to stop. */
static int nap(long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&mu);
    while (!B.stop && !B.kick) {
        if (pthread_cond_timedwait(&cv, &mu, &until) == ETIMEDOUT)
            break;
    }
    B.kick = 0;
    int s = B.stop;
    pthread_mutex_unlock(&mu);
    return s;
}

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int random_bytes(void *buf, size_t n, void *arg)
{
    (void)arg;
    uint8_t *out = buf;
    while (n > 0) {
        if (B.rnd_used == sizeof(B.rnd)) {
            size_t got = 0;
            while (got < sizeof(B.rnd)) {
                ssize_t k = getrandom(B.rnd + got, sizeof(B.rnd) - got, 0);
                if (k < 0 && errno != EINTR) {
                    rd_error("event=getrandom_failed err=\"%s\"", strerror(errno));
                    abort(); /* without a CSPRNG no code may be issued */
                }
                if (k > 0)
                    got += (size_t)k;
            }
            B.rnd_used = 0;
        }
        size_t take = sizeof(B.rnd) - B.rnd_used;
        if (take > n)
            take = n;
        memcpy(out, B.rnd + B.rnd_used, take);
        B.rnd_used += take;
        out += take;
        n -= take;
    }
    return 0;
}

/* ---- connections -------------------------------------------------------------------------- */

static void pg_drop(const char *why)
{
    if (B.pg) {
        rd_warn("event=batch_pg_lost err=\"%s\"", why);
        PQfinish(B.pg);
        B.pg = NULL;
    }
}

static void redis_drop(const char *why)
{
    if (B.rc) {
        rd_warn("event=batch_redis_lost err=\"%s\"", why);
        rd_rsc_free(B.rc);
        B.rc = NULL;
    }
}

/* A statement's result if it has status want, else NULL (logged; the connection is dropped
 * when it is broken, so the next attempt reconnects). */
static PGresult *pq(const char *sql, int n, const char *const *params, ExecStatusType want)
{
    PGresult *res = PQexecParams(B.pg, sql, n, NULL, params, NULL, NULL, 0);
    if (res && PQresultStatus(res) == want)
        return res;
    rd_warn("event=batch_query_failed err=\"%s\"",
            res ? PQresultErrorMessage(res) : PQerrorMessage(B.pg));
    PQclear(res);
    if (PQstatus(B.pg) != CONNECTION_OK)
        pg_drop("connection lost");
    else
        PQclear(PQexec(B.pg, "ROLLBACK")); /* outside a transaction this only warns */
    return NULL;
}

static int connect_all(void)
{
    if (!B.pg) {
        B.pg = rd_pg_connect(&B.pgparams);
        if (PQstatus(B.pg) != CONNECTION_OK) {
            PQfinish(B.pg);
            B.pg = NULL;
            return -1;
        }
        PGresult *res = pq("CREATE TEMP TABLE IF NOT EXISTS batch_in (code text) "
                           "ON COMMIT DELETE ROWS",
                           0, NULL, PGRES_COMMAND_OK);
        if (!res)
            return -1;
        PQclear(res);
    }
    if (!B.rc) {
        char err[200];
        B.rc = rd_rsc_connect(B.cfg, 2000, 10000, err, sizeof(err));
        if (!B.rc) {
            rd_debug("event=batch_redis_connect_failed err=\"%s\"", err);
            return -1;
        }
        const struct rd_lua_script *s = &rd_lua_scripts[RD_LUA_BATCH_ADD];
        redisReply *r = rd_rsc_command(B.rc, "SCRIPT LOAD %b", s->body, s->len);
        int ok = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, s->sha1) == 0;
        freeReplyObject(r);
        if (!ok) {
            redis_drop("SCRIPT LOAD batch_add failed");
            return -1;
        }
    }
    return 0;
}

/* Sends n pipelined commands already appended; each reply goes to check (may be NULL).
 * Returns the number of replies check accepted, or -1 on a transport error. */
static long pipeline(int n, int (*check)(redisReply *r, int i, void *arg), void *arg)
{
    long good = 0;
    int failed = 0;
    redisReply *rs[64];
    for (int at = 0; at < n; at += 64) {
        int k = n - at < 64 ? n - at : 64;
        if (rd_rsync_read(B.rc, k, rs) < 0) {
            redis_drop(rd_rsc_errstr(B.rc));
            return -1;
        }
        for (int i = 0; i < k; i++) {
            redisReply *r = rs[i];
            if (r->type == REDIS_REPLY_ERROR) {
                rd_warn("event=batch_redis_error err=\"%s\"", r->str);
                failed = 1;
            } else if (!check || check(r, at + i, arg)) {
                good++;
            }
        }
        rd_rsync_free(rs, k);
    }
    return failed ? -1 : good;
}

/* ---- one job ------------------------------------------------------------------------------ */

static void job_free(struct job *j)
{
    json_decref(j->template);
    free(j->codes);
    free(j->tmpl_done);
    free(j->tmpl_argv);
    memset(j, 0, sizeof(*j));
}

/* The template goes to a bucket (its own hash, in the codes' hash slot) with the first code
 * the bucket gets in this run, in the same pipeline before it: a batch of a hundred codes
 * costs a hundred copies, not one per bucket. */
static void template_argv(struct job *j)
{
    size_t nf = json_object_size(j->template);
    j->tmpl_argv = calloc(4 + 2 * nf, sizeof(*j->tmpl_argv));
    j->tmpl_done = calloc((size_t)B.cfg->buckets, 1);
    if (!j->tmpl_argv || !j->tmpl_done)
        abort();
    j->tmpl_argv[0] = "HSET";
    j->tmpl_argv[1] = j->tmpl_key;
    size_t a = 2;
    const char *f;
    json_t *v;
    json_object_foreach(j->template, f, v)
    {
        j->tmpl_argv[a++] = f;
        j->tmpl_argv[a++] = json_string_value(v);
    }
    /* templates came after redeemd 0.1: its codes have no 0.1 counts to read (prelude.lua) */
    j->tmpl_argv[a++] = "v2";
    j->tmpl_argv[a++] = "1";
    j->tmpl_argc = a;
}

struct add_ctx {
    struct job *j;
    char **lost; /* codes another coupon holds */
    int nlost;
};

static int check_add(redisReply *r, int i, void *arg)
{
    struct add_ctx *c = arg;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 1)
        return 1;
    c->lost[c->nlost++] = c->j->codes[i];
    return 0;
}

/* Creates j->codes[0..n) in Redis; codes that turn out taken are withdrawn from the mirror.
 * Returns the number now issued, or -1. */
static long issue(struct job *j, int n, double *redis_s)
{
    char key[RD_KEY_MAX];
    double t0 = mono_s();
    int ntmpl = 0;
    for (int i = 0; i < n; i++) {
        uint32_t b = rd_bucket_of(j->codes[i], strlen(j->codes[i]), (uint32_t)B.cfg->buckets);
        if (!j->tmpl_done[b]) {
            snprintf(j->tmpl_key, sizeof(j->tmpl_key), "{%04u}:t:%s", b, j->id);
            rd_rsc_append_argv(B.rc, (int)j->tmpl_argc, j->tmpl_argv, NULL);
            j->tmpl_done[b] = 1;
            ntmpl++;
        }
    }
    j->ntemplates += ntmpl;
    for (int i = 0; i < n; i++) {
        uint32_t b = rd_bucket_of(j->codes[i], strlen(j->codes[i]), (uint32_t)B.cfg->buckets);
        rd_key_coupon(key, sizeof(key), b, j->codes[i]);
        struct rd_cmd c;
        const char *why;
        rd_cmd_script(&c, RD_LUA_BATCH_ADD);
        rd_cmd_key(&c, RD_BATCH_ADD_K_COUPON, key);
        rd_cmd_arg(&c, RD_BATCH_ADD_A_BATCH, j->id);
        if (rd_rsync_append(B.rc, &c, &why) < 0) {
            rd_error("event=bad_command script=batch_add why=\"%s\"", why ? why : "");
            abort(); /* the batch thread's own bug: its replies would no longer line up */
        }
    }
    struct add_ctx c = {j, calloc((size_t)n + 1, sizeof(char *)), 0};
    if (!c.lost)
        abort();
    long good = pipeline(ntmpl, NULL, NULL);
    if (good >= 0 && B.rc)
        good = pipeline(n, check_add, &c);
    else if (B.rc)
        redis_drop("a template write failed"); /* the code replies are still unread */
    *redis_s = mono_s() - t0;
    if (good >= 0 && c.nlost > 0) {
        /* "{A,B,C}": codes are A-Z 0-9 '-', nothing to quote in an array literal */
        size_t cap = (size_t)c.nlost * (RD_CODE_MAX + 1) + 3, len = 0;
        char *arr = malloc(cap);
        if (!arr)
            abort();
        arr[len++] = '{';
        for (int i = 0; i < c.nlost; i++)
            len += (size_t)snprintf(arr + len, cap - len, "%s%s", i ? "," : "", c.lost[i]);
        snprintf(arr + len, cap - len, "}");
        const char *p[2] = {j->id, arr};
        PGresult *res = pq("DELETE FROM coupon_rows WHERE batch_id = $1 AND code = ANY($2::text[])",
                           2, p, PGRES_COMMAND_OK);
        free(arr);
        if (!res)
            good = -1;
        PQclear(res);
        rd_info("event=batch_codes_taken batch=%s codes=%d", j->id, c.nlost);
    }
    free(c.lost);
    return good;
}

/* The codes of a result's first column become the chunk's (res is cleared). */
static void take_codes(struct job *j, PGresult *res)
{
    j->ncodes = PQntuples(res);
    for (int i = 0; i < j->ncodes; i++)
        snprintf(j->codes[i], RD_CODE_MAX + 1, "%s", PQgetvalue(res, i, 0));
    PQclear(res);
}

/* Draws n codes, records the new ones in the mirror, then issues them. Returns the number
 * issued, or -1. */
static long chunk(struct job *j, int n, double *redis_s)
{
    *redis_s = 0;
    PGresult *res = pq("BEGIN", 0, NULL, PGRES_COMMAND_OK);
    if (!res)
        return -1;
    PQclear(res);
    res = pq("COPY batch_in (code) FROM STDIN", 0, NULL, PGRES_COPY_IN);
    if (!res)
        return -1;
    PQclear(res);
    char buf[65536];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        char code[RD_CODE_MAX + 1];
        rd_codefmt_generate(&j->fmt, code, random_bytes, NULL);
        size_t cl = strlen(code);
        if (len + cl + 1 > sizeof(buf)) {
            if (PQputCopyData(B.pg, buf, (int)len) != 1)
                break;
            len = 0;
        }
        memcpy(buf + len, code, cl);
        buf[len + cl] = '\n';
        len += cl + 1;
    }
    j->drawn += n;
    if ((len && PQputCopyData(B.pg, buf, (int)len) != 1) || PQputCopyEnd(B.pg, NULL) != 1) {
        pg_drop(PQerrorMessage(B.pg));
        return -1;
    }
    res = PQgetResult(B.pg);
    int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    while ((res = PQgetResult(B.pg)))
        PQclear(res);
    if (!ok) {
        pg_drop("COPY failed");
        return -1;
    }
    const char *p[4] = {j->id, j->kind, j->campaign, j->created_ms};
    /* the status fields come from the template here, once per statement: a row with no
     * definition of its own is skipped by the per-row trigger that resolves them (010) */
    res = pq("INSERT INTO coupon_rows AS c (code, kind, campaign, definition, created_at, "
             "updated_at, last_txn_id, batch_id, eff_expires, eff_starts, eff_disabled) "
             "SELECT DISTINCT i.code, $2, nullif($3, ''), '{}'::jsonb, "
             "to_timestamp($4::bigint / 1000.0), to_timestamp($4::bigint / 1000.0), $1, $1, "
             "nullif(b.template->>'expires_at', '')::bigint, "
             "nullif(b.template->>'starts_at', '')::bigint, "
             "coalesce(b.template->>'status', '') = 'disabled' FROM batch_in i JOIN batches b "
             "ON b.id = $1 ON CONFLICT (code) DO NOTHING RETURNING code",
             4, p, PGRES_TUPLES_OK);
    if (!res)
        return -1;
    take_codes(j, res);
    res = pq("COMMIT", 0, NULL, PGRES_COMMAND_OK);
    if (!res)
        return -1;
    PQclear(res);
    return j->ncodes ? issue(j, j->ncodes, redis_s) : 0;
}

/* A resumed job: every code already in the mirror is issued again (idempotent), since the
 * daemon before may have stopped between the mirror's commit and Redis. */
static int reissue(struct job *j)
{
    char last[RD_CODE_MAX + 1] = "", lim[16];
    snprintf(lim, sizeof(lim), "%d", B.cfg->batch_chunk);
    long long total = 0;
    for (;;) {
        const char *p[3] = {j->id, last, lim};
        PGresult *res = pq("SELECT code FROM coupon_rows WHERE batch_id = $1 AND code > $2 AND "
                           "NOT definition ? 'archived_at' ORDER BY code LIMIT $3::int",
                           3, p, PGRES_TUPLES_OK);
        if (!res)
            return -1;
        take_codes(j, res);
        if (j->ncodes == 0)
            break;
        snprintf(last, sizeof(last), "%s", j->codes[j->ncodes - 1]);
        double rs;
        long got = issue(j, j->ncodes, &rs);
        if (got < 0)
            return -1;
        total += got;
        if (stopping())
            return -1;
    }
    const char *p[1] = {j->id};
    PGresult *res =
        pq("SELECT count(*) FROM coupon_rows WHERE batch_id = $1", 1, p, PGRES_TUPLES_OK);
    if (!res)
        return -1;
    j->created = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    rd_info("event=batch_resumed batch=%s reissued=%lld created=%lld", j->id, total, j->created);
    return 0;
}

/* Redis memory per code: MEMORY USAGE of a sample of this batch's codes, plus the templates
 * shared out over the codes. */
static void measure(struct job *j)
{
    int n = j->ncodes < SAMPLE_CODES ? j->ncodes : SAMPLE_CODES;
    char key[RD_KEY_MAX];
    if (!B.rc)
        return;
    for (int i = 0; i < n; i++) {
        uint32_t b = rd_bucket_of(j->codes[i], strlen(j->codes[i]), (uint32_t)B.cfg->buckets);
        rd_key_coupon(key, sizeof(key), b, j->codes[i]);
        rd_rsc_append(B.rc, "MEMORY USAGE %s SAMPLES 0", key);
    }
    rd_rsc_append(B.rc, "MEMORY USAGE %s SAMPLES 0", j->tmpl_key); /* the last written */
    long long sum = 0, tmpl = 0;
    redisReply *rs[SAMPLE_CODES + 1];
    if (rd_rsync_read(B.rc, n + 1, rs) < 0) {
        redis_drop(rd_rsc_errstr(B.rc));
        return;
    }
    for (int i = 0; i <= n; i++)
        if (rs[i]->type == REDIS_REPLY_INTEGER)
            *(i < n ? &sum : &tmpl) += rs[i]->integer;
    rd_rsync_free(rs, n + 1);
    if (n > 0 && j->created > 0)
        j->bytes_per_code = sum / n + tmpl * j->ntemplates / j->created;
}

static enum outcome finish(struct job *j, const char *state, const char *error)
{
    char created[24], bpc[24];
    snprintf(created, sizeof(created), "%lld", j->created);
    snprintf(bpc, sizeof(bpc), "%lld", j->bytes_per_code);
    const char *p[6] = {j->id, state, created, error, B.owner, j->bytes_per_code ? bpc : NULL};
    PGresult *res = pq("UPDATE batches SET state = $2, created = $3::bigint, error = $4, "
                       "finished_at = now(), heartbeat_at = now(), bytes_per_code = $6::bigint "
                       "WHERE id = $1 AND owner = $5",
                       6, p, PGRES_COMMAND_OK);
    if (!res)
        return JOB_RETRY;
    PQclear(res);
    rd_info("event=batch_%s batch=%s created=%lld requested=%lld bytes_per_code=%lld "
            "yielded_s=%.1f",
            state, j->id, j->created, j->requested, j->bytes_per_code, j->yielded_s);
    /* The planner's statistics of the mirror: a million new codes before autovacuum's next
     * ANALYZE (up to a minute later) made a listing of a status with no coupon in it take
     * 850 ms instead of 2 (bench/history, right after its batch). ANALYZE samples: ~0.1 s. */
    if (j->created >= 10000 && (res = pq("ANALYZE coupon_rows", 0, NULL, PGRES_COMMAND_OK)))
        PQclear(res);
    return JOB_DONE;
}

/* Renews the lease and records progress; 1 if cancel was asked for, 0, -1 lost or failed. */
static int report(struct job *j, enum outcome *why)
{
    char created[24];
    snprintf(created, sizeof(created), "%lld", j->created);
    const char *p[3] = {j->id, created, B.owner};
    PGresult *res = pq("UPDATE batches SET created = $2::bigint, heartbeat_at = now() "
                       "WHERE id = $1 AND owner = $3 AND state = 'running' RETURNING cancel",
                       3, p, PGRES_TUPLES_OK);
    if (!res) {
        *why = JOB_RETRY;
        return -1;
    }
    int rows = PQntuples(res), cancel = rows == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (rows == 0) {
        rd_warn("event=batch_lease_lost batch=%s", j->id);
        *why = JOB_LOST;
        return -1;
    }
    return cancel;
}

/*
 * Checkouts first: after each chunk, the workers' Redis round trips since the chunk before
 * are looked at. If more than 1 % of them took longer than batch_yield_us, the batch rests
 * more (the extra rest doubles, up to 8 chunk times); while they are fast it halves back to
 * nothing. Slow round trips mean Redis, or the CPU Redis and the workers share, is busy,
 * whether with the batch's own Redis pipelines or with PostgreSQL inserting its rows.
 * Returns the extra rest in seconds.
 */
static double yield(double chunk_s)
{
    struct rd_mhist_snap now = {0};
    rd_metrics_redis_rtt(&now);
    B.pace = rd_batch_pace(B.pace, &B.rtt, &now, (uint32_t)B.cfg->batch_yield_us);
    B.rtt = now;
    return B.pace * chunk_s;
}

static enum outcome run(struct job *j)
{
    template_argv(j);
    if (j->resumed && reissue(j) < 0)
        return stopping() ? JOB_STOP : JOB_RETRY;
    double t0 = mono_s();
    long long since = 0;
    enum outcome why = JOB_DONE;
    rd_metrics_redis_rtt(&B.rtt);
    B.pace = 0;
    while (j->created < j->requested) {
        double c0 = mono_s();
        if (stopping())
            return JOB_STOP;
        if (j->drawn > MAX_DRAW_RATIO * j->requested + 100000) {
            measure(j);
            return finish(j, "failed", "format_exhausted: the format has too few free codes left");
        }
        long long want = j->requested - j->created;
        int n = want < B.cfg->batch_chunk ? (int)want : B.cfg->batch_chunk;
        double redis_s;
        long got = chunk(j, n, &redis_s);
        if (got < 0)
            return JOB_RETRY;
        j->created += got;
        since += got;
        int cancel = report(j, &why);
        if (cancel < 0)
            return why;
        if (cancel) {
            measure(j);
            return finish(j, "cancelled", NULL);
        }
        /* throttle: the rate cap, a rest as long as Redis worked for this chunk, and more
         * while checkouts see Redis slow down */
        double extra = yield(mono_s() - c0);
        double rest = redis_s + extra;
        j->yielded_s += extra;
        if (B.cfg->batch_rate > 0) {
            double ahead = (double)since / B.cfg->batch_rate - (mono_s() - t0);
            if (ahead > rest)
                rest = ahead;
        }
        if (rest > 0.0005 && j->created < j->requested && nap((long)(rest * 1000) + 1))
            return JOB_STOP;
    }
    measure(j);
    return finish(j, "done", NULL);
}

/* ---- the queue ---------------------------------------------------------------------------- */

static int claim(struct job *j)
{
    char lease[24];
    snprintf(lease, sizeof(lease), "%d", B.cfg->batch_lease_ms);
    const char *p[2] = {B.owner, lease};
    PGresult *res =
        pq("WITH j AS (SELECT id, state, owner FROM batches WHERE NOT cancel AND (state = 'queued' "
           "OR (state = 'running' AND (owner = $1 OR heartbeat_at < now() - $2::int * interval "
           "'1 millisecond'))) ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
           "UPDATE batches b SET state = 'running', owner = $1, heartbeat_at = now(), started_at = "
           "coalesce(b.started_at, now()) FROM j WHERE b.id = j.id RETURNING b.id, "
           "(j.state = 'running')::int, b.spec::text, b.template::text, "
           "b.requested, b.kind, coalesce(b.campaign, ''), "
           "(extract(epoch FROM b.created_at) * 1000)::bigint, b.created",
           2, p, PGRES_TUPLES_OK);
    if (!res)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        /* a cancel asked of a job whose daemon went away: nobody else will end it */
        res = pq("UPDATE batches SET state = 'cancelled', finished_at = now() WHERE cancel AND "
                 "state = 'running' AND heartbeat_at < now() - $2::int * interval "
                 "'1 millisecond' AND owner <> $1",
                 2, p, PGRES_COMMAND_OK);
        PQclear(res);
        return 0;
    }
    memset(j, 0, sizeof(*j));
    snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(res, 0, 0));
    j->resumed = atoi(PQgetvalue(res, 0, 1));
    json_t *spec = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
    j->template = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
    j->requested = atoll(PQgetvalue(res, 0, 4));
    snprintf(j->kind, sizeof(j->kind), "%s", PQgetvalue(res, 0, 5));
    snprintf(j->campaign, sizeof(j->campaign), "%s", PQgetvalue(res, 0, 6));
    snprintf(j->created_ms, sizeof(j->created_ms), "%s", PQgetvalue(res, 0, 7));
    j->created = atoll(PQgetvalue(res, 0, 8));
    PQclear(res);
    struct rd_verr e;
    int bad = !spec || !json_is_object(j->template) ||
              rd_codefmt_parse(&j->fmt, json_object_get(spec, "format"), &e) < 0;
    const char *f;
    json_t *fv;
    json_object_foreach(j->template, f, fv)
    {
        if (!json_is_string(fv)) /* they become HSET arguments */
            bad = 1;
    }
    json_decref(spec);
    j->codes = calloc((size_t)B.cfg->batch_chunk, sizeof(*j->codes));
    if (!j->codes)
        abort();
    if (bad) {
        rd_error("event=batch_spec_corrupt batch=%s", j->id);
        finish(j, "failed", "the stored job cannot be read");
        job_free(j);
        return 0;
    }
    rd_info("event=batch_started batch=%s requested=%lld created=%lld resumed=%d", j->id,
            j->requested, j->created, j->resumed);
    return 1;
}

/* The daemon is stopping: the job goes back to the queue for the next start (or another). */
static void requeue(struct job *j)
{
    char created[24];
    snprintf(created, sizeof(created), "%lld", j->created);
    const char *p[3] = {j->id, B.owner, created};
    PGresult *res = pq("UPDATE batches SET state = 'queued', owner = NULL, created = $3::bigint "
                       "WHERE id = $1 AND owner = $2 AND state = 'running'",
                       3, p, PGRES_COMMAND_OK);
    PQclear(res);
    rd_info("event=batch_requeued batch=%s created=%lld", j->id, j->created);
}

static void *batcher_main(void *arg)
{
    (void)arg;
    rd_log_set_thread_name("batch");
    while (!stopping()) {
        if (connect_all() < 0) {
            nap(RETRY_MS);
            continue;
        }
        struct job j;
        int got = claim(&j);
        if (got <= 0) {
            nap(got < 0 ? RETRY_MS : POLL_MS);
            continue;
        }
        enum outcome o = run(&j);
        if (o == JOB_STOP && B.pg)
            requeue(&j);
        job_free(&j);
        if (o == JOB_RETRY)
            nap(RETRY_MS); /* the job stays ours: claim() takes it up again, resumed */
    }
    if (B.pg)
        PQfinish(B.pg);
    if (B.rc)
        rd_rsc_free(B.rc);
    return NULL;
}

int rd_batcher_start(const struct rd_config *cfg)
{
    memset(&B, 0, sizeof(B));
    B.cfg = cfg;
    B.rnd_used = sizeof(B.rnd);
    char host[128] = "localhost";
    gethostname(host, sizeof(host) - 1);
    uint8_t r[4];
    random_bytes(r, sizeof(r), NULL);
    snprintf(B.owner, sizeof(B.owner), "%s:%d:%02x%02x%02x%02x", host, (int)getpid(), r[0], r[1],
             r[2], r[3]);
    char err[300];
    if (rd_pgparams_init(&B.pgparams, cfg->pg_conninfo, "redeemd-batch",
                         "-c statement_timeout=60000 -c client_min_messages=warning "
                         "-c TimeZone=UTC",
                         err, sizeof(err)) < 0) {
        rd_error("event=pg_conninfo_invalid err=\"%s\"", err);
        return -1;
    }
    if (pthread_create(&B.thread, NULL, batcher_main, NULL) != 0)
        return -1;
    B.started = 1;
    return 0;
}

void rd_batcher_stop(void)
{
    if (!B.started)
        return;
    pthread_mutex_lock(&mu);
    B.stop = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(B.thread, NULL);
    rd_pgparams_free(&B.pgparams);
}

void rd_batcher_kick(void)
{
    if (!B.started)
        return;
    pthread_mutex_lock(&mu);
    B.kick = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}
