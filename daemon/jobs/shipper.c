/* SPDX-License-Identifier: MIT
 *
 * Ledger shipper: Redis outbox streams -> PostgreSQL. See shipper.h for the protocol.
 */
#include <errno.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rd/keys.h"
#include "rd/ledger.h"
#include "rd/log.h"
#include "rd/rdtime.h"
#include "rd/lua_script_ids.h"
#include "rd/lua_scripts.h"
#include "store/pgconn.h"
#include "store/redis_sync.h"
#include "jobs/shipper.h"
#include "jobs/webhooks.h"

#define GROUP      "pgsink"
#define READ_CHUNK 16 /* buckets per pipelined read */
/* Redis runs one command (or one script) at a time: every command the shipper sends is kept
 * short, so that checkout calls never wait long behind it. */
#define READ_SLICE     200 /* entries per XREADGROUP */
#define ACK_SLICE      200 /* entries per ship_ack call */
#define SLICE          64  /* XLENs per pipelined round trip */
#define CLAIM_EVERY_MS 5000
#define COUNT_EVERY_MS 500
#define COPY_CHUNK     65536
#define RATE_SAMPLES   3 /* 2 intervals of COUNT_EVERY_MS: one second */

enum step {
    ST_IDLE = 0,  /* no batch in PostgreSQL */
    ST_BEGIN,     /* BEGIN + staging table */
    ST_COPY,      /* COPY sent, waiting for COPY_IN, then streaming data */
    ST_INSERT,    /* INSERT ... ON CONFLICT, admin rows, COMMIT */
    ST_FAST_COPY, /* fast path: BEGIN + COPY straight into transactions */
    ST_FAST_COMMIT,
    ST_ROLLBACK,  /* after a failed statement */
    ST_COMMITTED, /* committed; acknowledgements pending in Redis */
};

enum pgstate { PG_DOWN = 0, PG_CONNECTING, PG_READY };

/* One row of the batch: its stream entry, and its bytes in the COPY buffer. */
struct ack {
    uint32_t bucket;
    int dead; /* dead-lettered (and acknowledged there) while the batch was split */
    char id[48];
    size_t off, len;
};

static struct {
    const struct rd_config *cfg;
    pthread_t thread;
    struct event_base *base;
    struct event *tick_ev, *stop_ev, *pg_ev, *pause_ev, *count_ev;
    char consumer[160];
    struct rd_pgparams pgparams;

    struct rd_rsc *rc; /* one Redis, or each primary of a cluster */
    int64_t redis_retry_ms;
    int groups_ready;
    int reading_pel; /* after a start: re-read this consumer's pending entries first */
    uint32_t next_bucket;
    int64_t next_claim_ms;
    int64_t next_full_scan_ms;
    uint32_t *scan;                               /* room for every bucket number */
    atomic_ullong dirty[RD_BUCKETS_MAX / 64 + 1]; /* set by workers: buckets written to */

    PGconn *pg;
    enum pgstate pgstate;
    short pg_waiting; /* EV_READ / EV_WRITE the connection waits for */
    int pg_backoff_ms;
    int64_t pg_retry_ms;

    enum step step;
    int failed;
    char fail_state[6]; /* SQLSTATE of the attempt's first failed statement */
    char fail_msg[300];
    struct rd_sbuf copy;
    size_t copy_row, copy_pos; /* the next row of the window to send, the next byte */
    int copying;               /* COPY_IN received, data or the end not yet all queued */
    /* A batch that fails for a row's data (SQLSTATE class 22 or 23) is split in halves until
     * the rows at fault stand alone; those are dead-lettered, the rest are shipped. The
     * current attempt covers rows [win_lo, win_hi); windows still to do wait in wstack. */
    size_t win_lo, win_hi;
    size_t *wstack; /* pairs lo, hi */
    size_t nwstack, wstack_cap;
    long dead_rows; /* rows of this batch dead-lettered by a split */
    long rows;
    int batch_admin; /* the batch holds admin rows (coupon_*): they need the staging path */
    int fast;        /* this attempt takes the fast path */
    int fast_failed; /* the fast path failed for this batch: the staging path takes it */
    struct ack *acks;
    size_t nacks, cap;
    int64_t batch_started_ms;

    atomic_llong backlog, backlog_at_ms, backlog_seq, last_commit_ms;
    int64_t started_ms;
    atomic_ullong shipped;
    atomic_ullong batches, dead, pg_connects, pg_failures, redis_failures;
    atomic_llong rows_per_sec_milli;
    struct rd_mhist batch_time;
    unsigned long long rate_rows[RATE_SAMPLES]; /* shipped, sampled each backlog count */
    int64_t rate_ms[RATE_SAMPLES];
    unsigned rate_next;
} S;

long long rd_shipper_backlog(void)
{
    return atomic_load(&S.backlog);
}

void rd_shipper_hint(uint32_t bucket)
{
    atomic_ullong *w = &S.dirty[bucket / 64];
    unsigned long long bit = 1ULL << (bucket % 64);
    /* test first: a worker setting a bit already set does not take the line from others */
    if (!(atomic_load_explicit(w, memory_order_relaxed) & bit))
        atomic_fetch_or_explicit(w, bit, memory_order_release);
}

unsigned long long rd_shipper_rows(void)
{
    return atomic_load(&S.shipped);
}

void rd_shipper_stats(struct rd_shipper_stats *st)
{
    memset(st, 0, sizeof(*st));
    /* the count's number first: its value is stored before the number goes up, so the
     * backlog read after it is that count's or a later one's, never an earlier one's */
    st->backlog_seq = atomic_load(&S.backlog_seq);
    st->backlog = atomic_load(&S.backlog);
    st->backlog_at_ms = atomic_load(&S.backlog_at_ms);
    st->last_commit_ms = atomic_load(&S.last_commit_ms);
    st->started_ms = S.started_ms;
    st->rows = atomic_load(&S.shipped);
    st->batches = rd_counter_get(&S.batches);
    st->dead_letters = rd_counter_get(&S.dead);
    st->pg_connects = rd_counter_get(&S.pg_connects);
    st->pg_failures = rd_counter_get(&S.pg_failures);
    st->redis_failures = rd_counter_get(&S.redis_failures);
    st->rows_per_sec = (double)atomic_load(&S.rows_per_sec_milli) / 1000.0;
    rd_mhist_add(&st->batch_time, &S.batch_time);
}

/* The shipping rate over the last second, from samples taken with each backlog count. */
static void sample_rate(void)
{
    unsigned i = S.rate_next % RATE_SAMPLES;
    unsigned oldest = (S.rate_next + 1) % RATE_SAMPLES;
    S.rate_rows[i] = atomic_load(&S.shipped);
    S.rate_ms[i] = rd_mono_ms();
    S.rate_next++;
    if (S.rate_next < RATE_SAMPLES)
        return;
    int64_t dt = S.rate_ms[i] - S.rate_ms[oldest];
    if (dt > 0)
        atomic_store(&S.rows_per_sec_milli, (long long)((S.rate_rows[i] - S.rate_rows[oldest]) *
                                                        1000000ULL / (unsigned long long)dt));
}

static void schedule_tick(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(S.tick_ev, &tv);
}

/* ---- Redis (synchronous: this thread has nothing else to do while it waits) ------------- */

static void redis_drop(const char *why)
{
    if (!S.rc)
        return;
    rd_warn("event=shipper_redis_down err=\"%s\"", why);
    rd_counter_inc(&S.redis_failures, 1);
    rd_rsc_free(S.rc);
    S.rc = NULL;
    S.redis_retry_ms = rd_mono_ms() + 500;
}

static int redis_ensure(void)
{
    if (S.rc)
        return 0;
    if (rd_mono_ms() < S.redis_retry_ms)
        return -1;
    char err[200];
    struct rd_rsc *c = rd_rsc_connect(S.cfg, 1000, 2000, err, sizeof(err));
    if (!c) {
        rd_debug("event=shipper_redis_connect_failed err=\"%s\"", err);
        S.redis_retry_ms = rd_mono_ms() + 500;
        return -1;
    }
    S.rc = c;
    S.groups_ready = 0;
    return 0;
}

/* One command; NULL (and the connection dropped) on a transport error. */
static redisReply *cmd(int argc, const char **argv, const size_t *lens)
{
    if (redis_ensure() < 0)
        return NULL;
    redisReply *r = rd_rsc_command_argv(S.rc, argc, argv, lens);
    if (!r)
        redis_drop(rd_rsc_errstr(S.rc));
    return r;
}

static void log_key(char *buf, uint32_t b)
{
    rd_key_log(buf, RD_KEY_MAX, b);
}

/* One XGROUP CREATE per bucket, pipelined SLICE at a time. Every reply is read, whatever
 * the first one said: after a Redis restart the first answers are LOADING, and a reply left
 * unread would answer the next command on this connection (the backlog count, a read). */
static int create_groups(void)
{
    char key[RD_KEY_MAX];
    redisReply *rs[SLICE];
    int ok = 1, loading = 0;
    for (int first = 0; first < S.cfg->buckets && S.rc; first += SLICE) {
        int n = S.cfg->buckets - first < SLICE ? S.cfg->buckets - first : SLICE;
        for (int b = first; b < first + n; b++) {
            log_key(key, (uint32_t)b);
            rd_rsc_append(S.rc, "XGROUP CREATE %s " GROUP " 0 MKSTREAM", key);
        }
        if (rd_rsync_read(S.rc, n, rs) < 0) {
            redis_drop(rd_rsc_errstr(S.rc));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            if (rs[i]->type != REDIS_REPLY_ERROR || rd_rsync_is_err(rs[i], "BUSYGROUP"))
                continue;
            if (rd_rsync_is_err(rs[i], "LOADING"))
                loading = 1;
            else if (ok)
                rd_error("event=shipper_group_failed err=\"%s\"", rs[i]->str);
            ok = 0;
        }
        rd_rsync_free(rs, n);
    }
    if (loading)
        rd_info("event=shipper_waiting reason=redis_loading");
    S.groups_ready = ok;
    return ok ? 0 : -1;
}

static void add_ack(uint32_t bucket, const char *id, size_t off, size_t len)
{
    if (S.nacks == S.cap) {
        S.cap = S.cap ? S.cap * 2 : 256;
        S.acks = realloc(S.acks, S.cap * sizeof(*S.acks));
        if (!S.acks)
            abort();
    }
    struct ack *a = &S.acks[S.nacks++];
    a->bucket = bucket;
    a->dead = 0;
    snprintf(a->id, sizeof(a->id), "%s", id);
    a->off = off;
    a->len = len;
}

/* Copies an entry that cannot be shipped to {b}:dead, with why and the fields given (flat
 * name, value pairs), and acknowledges it there and then. Returns 0, or -1 if Redis did not
 * take it (the entry stays pending and comes round again). */
static int dead_letter_argv(uint32_t bucket, const char *id, const char *why, int nf,
                            const char *const *f, const size_t *fl)
{
    char key[RD_KEY_MAX], dead[RD_KEY_MAX];
    log_key(key, bucket);
    snprintf(dead, sizeof(dead), "{%04u}:dead", bucket);
    const char *argv[260];
    size_t lens[260];
    int n = 0;
    argv[n] = "XADD", lens[n++] = 4;
    argv[n] = dead, lens[n++] = strlen(dead);
    argv[n] = "*", lens[n++] = 1;
    argv[n] = "source_id", lens[n++] = 9;
    argv[n] = id, lens[n++] = strlen(id);
    argv[n] = "error", lens[n++] = 5;
    argv[n] = why, lens[n++] = strlen(why);
    for (int i = 0; i + 1 < nf && n < 258; i += 2) {
        argv[n] = f[i], lens[n++] = fl[i];
        argv[n] = f[i + 1], lens[n++] = fl[i + 1];
    }
    redisReply *r = cmd(n, argv, lens);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        if (r)
            freeReplyObject(r);
        return -1; /* not acknowledged: it will come round again */
    }
    rd_counter_inc(&S.dead, 1);
    freeReplyObject(r);
    rd_error("event=dead_letter stream=%s id=%s reason=\"%s\"", key, id, why);
    const char *ack[] = {"XACK", key, GROUP, id};
    r = cmd(4, ack, NULL);
    if (r)
        freeReplyObject(r);
    return 0;
}

/* The same for an entry as read from its stream (fields: its flat field list, or NULL). */
static void dead_letter(uint32_t bucket, const char *id, const redisReply *fields, const char *why)
{
    const char *f[256] = {0};
    size_t fl[256] = {0};
    int nf = 0;
    for (size_t i = 0; fields && i < fields->elements && nf < 256; i++) {
        f[nf] = fields->element[i]->str ? fields->element[i]->str : "";
        fl[nf++] = fields->element[i]->str ? fields->element[i]->len : 0;
    }
    (void)dead_letter_argv(bucket, id, why, nf, f, fl);
}

/* Adds one stream entry [id, [f, v, ...]] of bucket b to the batch. */
static void take_entry(uint32_t b, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *id = e->element[0]->str;
    const redisReply *f = e->element[1];
    if (f->type != REDIS_REPLY_ARRAY) {
        /* pending but deleted from the stream: nothing is left to ship */
        dead_letter(b, id, NULL, "entry deleted while pending");
        return;
    }
    size_t n = f->elements / 2;
    const char *names[64], *values[64];
    size_t nl[64], vl[64];
    if (n > 64)
        n = 64;
    for (size_t i = 0; i < n; i++) {
        names[i] = f->element[2 * i]->str;
        nl[i] = f->element[2 * i]->len;
        values[i] = f->element[2 * i + 1]->str;
        vl[i] = f->element[2 * i + 1]->len;
    }
    if (n == 1 && nl[0] == 1 && names[0] && names[0][0] == RD_ENTRY_PACKED[0] && values[0])
        n = rd_entry_unpack(values[0], vl[0], names, nl, values, vl, 64);
    char sid[80];
    snprintf(sid, sizeof(sid), "{%04u}:%s", b, id);
    for (size_t i = 0; i < n; i++)
        if (nl[i] == 4 && memcmp(names[i], "kind", 4) == 0 && vl[i] > 7 &&
            memcmp(values[i], "coupon_", 7) == 0)
            S.batch_admin = 1;
    size_t off = S.copy.len;
    if (rd_ledger_row(&S.copy, sid, names, nl, values, vl, n) < 0) {
        dead_letter(b, id, f, "not a ledger entry");
        return;
    }
    S.rows++;
    add_ack(b, id, off, S.copy.len - off);
}

/* Reads the given buckets' new entries (pending ones while S.reading_pel), a pipelined
 * chunk at a time, until the batch is full. A bucket that may hold more than it gave is
 * marked dirty again. Returns the number of buckets read, or -1 if Redis was lost. */
static int read_buckets(const uint32_t *list, int n, int *got_any)
{
    char key[RD_KEY_MAX], count[24];
    int done = 0;
    while (done < n && S.rows < S.cfg->ship_batch) {
        int chunk = n - done < READ_CHUNK ? n - done : READ_CHUNK;
        long want = (long)S.cfg->ship_batch - S.rows;
        if (want > READ_SLICE)
            want = READ_SLICE;
        snprintf(count, sizeof(count), "%ld", want);
        for (int i = 0; i < chunk; i++) {
            log_key(key, list[done + i]);
            rd_rsc_append(S.rc, "XREADGROUP GROUP " GROUP " %s COUNT %s STREAMS %s %s", S.consumer,
                          count, key, S.reading_pel ? "0" : ">");
        }
        /* All replies of the chunk are read before any entry is handled: handling may send
         * commands of its own (dead letters), which must not interleave with the pipeline. */
        redisReply *rs[READ_CHUNK];
        if (rd_rsync_read(S.rc, chunk, rs) < 0) {
            redis_drop(rd_rsc_errstr(S.rc));
            return -1;
        }
        for (int i = 0; i < chunk; i++) {
            redisReply *r = rs[i];
            uint32_t b = list[done + i];
            if (r->type == REDIS_REPLY_ERROR) {
                if (rd_rsync_is_err(r, "NOGROUP"))
                    S.groups_ready = 0; /* Redis lost its data: recreate the groups */
                else
                    rd_warn("event=shipper_read_failed err=\"%s\"", r->str);
            } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && S.rc) {
                const redisReply *entries = r->element[0]->element[1];
                for (size_t j = 0; j < entries->elements && S.rc; j++) {
                    take_entry(b, entries->element[j]);
                    *got_any = 1;
                }
                if ((long)entries->elements >= want)
                    rd_shipper_hint(b); /* a full read: there may be more */
            }
            freeReplyObject(r);
        }
        if (!S.rc)
            return -1;
        done += chunk;
    }
    return done;
}

/* Fills the batch. Buckets the workers of this process wrote to (rd_shipper_hint) are read
 * first: with a hot coupon that is one stream instead of all of them. Every
 * ship_interval_ms, and until the pending list is drained after a start, every bucket is
 * read in turn, which also picks up what other redeemd processes wrote. */
static void collect(void)
{
    const int nb = S.cfg->buckets;
    int got_any = 0;
    /* a bucket read in full is hinted again, so this goes on until the batch is full or
     * every hinted stream is drained */
    while (!S.reading_pel && S.rows < S.cfg->ship_batch) {
        uint32_t *list = S.scan, n = 0;
        for (int w = 0; w < (nb + 63) / 64; w++) {
            uint64_t bits = atomic_exchange_explicit(&S.dirty[w], 0, memory_order_acquire);
            while (bits) {
                int bit = __builtin_ctzll(bits);
                bits &= bits - 1;
                list[n++] = (uint32_t)(w * 64 + bit);
            }
        }
        if (n == 0)
            break;
        long before = S.rows;
        int done = read_buckets(list, (int)n, &got_any);
        if (done < 0)
            return;
        for (uint32_t i = (uint32_t)done; i < n; i++)
            rd_shipper_hint(list[i]); /* the batch filled up first: next time */
        if (S.rows == before)
            break; /* hinted but empty: do not spin while hints keep coming */
    }
    int64_t now = rd_mono_ms();
    if (!S.reading_pel && now < S.next_full_scan_ms)
        return;
    /* the full round, from where the last one stopped so that every bucket gets its turn */
    int scanned = 0;
    while (scanned < nb && S.rows < S.cfg->ship_batch) {
        int chunk = nb - scanned < READ_CHUNK ? nb - scanned : READ_CHUNK;
        uint32_t list[READ_CHUNK];
        for (int i = 0; i < chunk; i++)
            list[i] = (S.next_bucket + (uint32_t)i) % (uint32_t)nb;
        int done = read_buckets(list, chunk, &got_any);
        if (done < 0)
            return;
        S.next_bucket = (S.next_bucket + (uint32_t)done) % (uint32_t)nb;
        scanned += done;
        if (done < chunk)
            break;
    }
    if (scanned >= nb)
        S.next_full_scan_ms = now + S.cfg->ship_interval_ms;
    if (S.reading_pel && scanned >= nb && !got_any) {
        S.reading_pel = 0; /* the pending list is drained; new entries from now on */
        rd_info("event=shipper_pending_drained consumer=%s", S.consumer);
    }
}

/* Entries another consumer (a crashed process) left pending: claim them, or dead-letter
 * those that have failed too often. */
static void claim_stale(void)
{
    char key[RD_KEY_MAX], idle[16];
    snprintf(idle, sizeof(idle), "%d", S.cfg->ship_claim_idle_ms);
    for (int b = 0; b < S.cfg->buckets && S.rc && S.rows < S.cfg->ship_batch; b++) {
        log_key(key, (uint32_t)b);
        redisReply *p = rd_rsc_command(S.rc, "XPENDING %s " GROUP " IDLE %s - + 100", key, idle);
        if (!p) {
            redis_drop(rd_rsc_errstr(S.rc));
            return;
        }
        for (size_t i = 0; p->type == REDIS_REPLY_ARRAY && i < p->elements && S.rc; i++) {
            const redisReply *row = p->element[i];
            if (row->type != REDIS_REPLY_ARRAY || row->elements < 4)
                continue;
            const char *id = row->element[0]->str;
            long long deliveries = row->element[3]->integer;
            redisReply *c =
                rd_rsc_command(S.rc, "XCLAIM %s " GROUP " %s %s %s", key, S.consumer, idle, id);
            if (!c) {
                redis_drop(rd_rsc_errstr(S.rc));
                break;
            }
            if (c->type == REDIS_REPLY_ARRAY && c->elements == 1) {
                const redisReply *e = c->element[0];
                if (deliveries >= S.cfg->ship_max_deliveries && e->type == REDIS_REPLY_ARRAY &&
                    e->elements == 2)
                    dead_letter((uint32_t)b, id, e->element[1], "too many deliveries");
                else {
                    rd_info("event=shipper_claimed stream=%s id=%s deliveries=%lld", key, id,
                            deliveries);
                    take_entry((uint32_t)b, e);
                }
            }
            freeReplyObject(c);
        }
        freeReplyObject(p);
    }
}

/* Sums XLEN over the streams, SLICE at a time: Redis runs a whole pipeline it has read in
 * one go, and a thousand XLENs at once would hold every checkout call behind them. A count
 * that is not whole (Redis loading, or gone) is published as unknown (-1), never as the
 * part that was counted. */
static void count_backlog(void)
{
    char key[RD_KEY_MAX];
    redisReply *rs[SLICE];
    long long total = 0;
    for (int first = 0; first < S.cfg->buckets; first += SLICE) {
        int n = S.cfg->buckets - first < SLICE ? S.cfg->buckets - first : SLICE;
        for (int b = first; b < first + n; b++) {
            log_key(key, (uint32_t)b);
            rd_rsc_append(S.rc, "XLEN %s", key);
        }
        if (rd_rsync_read(S.rc, n, rs) < 0) {
            redis_drop(rd_rsc_errstr(S.rc));
            atomic_store(&S.backlog, -1);
            return;
        }
        int whole = 1;
        for (int i = 0; i < n; i++) {
            if (rs[i]->type == REDIS_REPLY_INTEGER)
                total += rs[i]->integer;
            else
                whole = 0;
        }
        if (!whole) {
            rd_debug("event=backlog_unknown err=\"%s\"",
                     rs[0]->type == REDIS_REPLY_ERROR ? rs[0]->str : "unexpected reply");
            rd_rsync_free(rs, n);
            atomic_store(&S.backlog, -1);
            return;
        }
        rd_rsync_free(rs, n);
    }
    atomic_store(&S.backlog, total);
    atomic_store(&S.backlog_at_ms, rd_now_ms());
    atomic_fetch_add(&S.backlog_seq, 1); /* after the value: a reader seeing n sees its count */
}

static int cmp_ack(const void *a, const void *b)
{
    const struct ack *x = a, *y = b;
    return x->bucket < y->bucket ? -1 : x->bucket > y->bucket;
}

/* Acknowledges the committed batch, bucket by bucket (rows dead-lettered by a split were
 * acknowledged then). Returns 0 when all are done. */
static int acknowledge(void)
{
    const struct rd_lua_script *s = &rd_lua_scripts[RD_LUA_SHIP_ACK];
    size_t live = 0;
    for (size_t k = 0; k < S.nacks; k++)
        if (!S.acks[k].dead)
            S.acks[live++] = S.acks[k];
    S.nacks = live;
    if (S.nacks > 1)
        qsort(S.acks, S.nacks, sizeof(*S.acks), cmp_ack);
    size_t i = 0;
    while (i < S.nacks) {
        uint32_t b = S.acks[i].bucket;
        char key[RD_KEY_MAX];
        log_key(key, b);
        struct rd_cmd c;
        rd_cmd_script(&c, RD_LUA_SHIP_ACK);
        rd_cmd_key(&c, RD_SHIP_ACK_K_LOG, key);
        rd_cmd_arg(&c, RD_SHIP_ACK_A_GROUP, GROUP);
        size_t j = i;
        for (; j < S.nacks && S.acks[j].bucket == b && j - i < ACK_SLICE; j++)
            rd_cmd_push(&c, S.acks[j].id, strlen(S.acks[j].id));
        const char *why;
        if (rd_cmd_check(&c, &why) < 0) {
            rd_error("event=bad_command script=ship_ack why=\"%s\"", why);
            abort(); /* the shipper's own bug: acknowledging nothing would redo for ever */
        }
        redisReply *r = cmd(c.argc, c.argv, c.lens);
        if (r && rd_rsync_is_err(r, "NOSCRIPT")) {
            freeReplyObject(r);
            const char *la[] = {"SCRIPT", "LOAD", s->body};
            size_t ll[] = {6, 4, s->len};
            r = cmd(3, la, ll);
            if (r)
                freeReplyObject(r);
            continue; /* try the same bucket again */
        }
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            if (r) {
                rd_warn("event=shipper_ack_failed err=\"%s\"",
                        r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
                freeReplyObject(r);
            }
            /* keep what is left; the next tick retries (a re-ack is harmless) */
            memmove(S.acks, S.acks + i, (S.nacks - i) * sizeof(*S.acks));
            S.nacks -= i;
            return -1;
        }
        freeReplyObject(r);
        i = j;
    }
    S.nacks = 0;
    return 0;
}

/* ---- PostgreSQL (nonblocking, on this loop) -------------------------------------------- */

static void pg_io(evutil_socket_t fd, short what, void *arg);

static void pg_wait(short what)
{
    if (S.pg_ev)
        event_free(S.pg_ev);
    S.pg_ev = event_new(S.base, PQsocket(S.pg), what, pg_io, NULL);
    S.pg_waiting = what;
    event_add(S.pg_ev, NULL);
}

static void pg_down(const char *why)
{
    char msg[300];
    snprintf(msg, sizeof(msg), "%s", why);
    msg[strcspn(msg, "\n")] = '\0';
    if (S.pgstate != PG_DOWN) {
        rd_warn("event=shipper_pg_down err=\"%s\" batch_rows=%ld", msg, S.rows);
        rd_counter_inc(&S.pg_failures, 1);
    }
    if (S.pg_ev) {
        event_free(S.pg_ev); /* before PQfinish closes the socket it watches */
        S.pg_ev = NULL;
    }
    if (S.pg)
        PQfinish(S.pg);
    S.pg = NULL;
    S.pgstate = PG_DOWN;
    if (S.step != ST_COMMITTED)
        S.step = ST_IDLE; /* the batch stays in memory and is sent again */
    S.pg_retry_ms = rd_mono_ms() + S.pg_backoff_ms;
    S.pg_backoff_ms = S.pg_backoff_ms * 2 > 5000 ? 5000 : S.pg_backoff_ms * 2;
    schedule_tick(S.pg_backoff_ms);
}

static void pg_connect(void)
{
    rd_counter_inc(&S.pg_connects, 1);
    S.pg = rd_pg_connect_start(&S.pgparams);
    if (!S.pg || PQstatus(S.pg) == CONNECTION_BAD) {
        pg_down(S.pg ? PQerrorMessage(S.pg) : "out of memory");
        return;
    }
    S.pgstate = PG_CONNECTING;
    pg_wait(EV_WRITE);
}

static int pg_send(const char *sql, enum step next)
{
    if (!PQsendQuery(S.pg, sql)) {
        pg_down(PQerrorMessage(S.pg));
        return -1;
    }
    S.step = next;
    S.failed = 0;
    pg_wait(PQflush(S.pg) == 1 ? EV_READ | EV_WRITE : EV_READ);
    return 0;
}

static void start_batch(void)
{
    if (S.win_hi == 0) { /* a new batch: one window, all of it */
        S.win_lo = 0;
        S.win_hi = S.nacks;
        S.batch_started_ms = rd_mono_ms();
    }
    S.copy_row = S.win_lo;
    S.copy_pos = S.win_lo < S.nacks ? S.acks[S.win_lo].off : 0;
    S.copying = 0;
    S.fail_state[0] = S.fail_msg[0] = '\0';
    /* The fast path COPYs straight into the ledger: one pass, no staging table, no sort. It
     * fails only when a row is already there (a batch shipped again after a crash between
     * COMMIT and XACK) or its month has no partition yet; the batch then rolls back and
     * takes the staging path, which inserts ON CONFLICT DO NOTHING and creates partitions.
     * Admin rows always take the staging path (they also update the audit log and the
     * coupon mirror, in stream order). */
    S.fast = !S.batch_admin && !S.fast_failed;
    if (S.fast) {
        pg_send("BEGIN; COPY transactions (" RD_LEDGER_COLUMNS ") FROM STDIN", ST_FAST_COPY);
        return;
    }
    pg_send("BEGIN; CREATE TEMP TABLE IF NOT EXISTS staging (LIKE transactions INCLUDING "
            "DEFAULTS, seq bigserial) ON COMMIT DELETE ROWS",
            ST_BEGIN);
}

static void batch_done(void)
{
    atomic_store(&S.last_commit_ms, rd_now_ms());
    atomic_fetch_add(&S.shipped, (unsigned long long)(S.rows - S.dead_rows));
    rd_counter_inc(&S.batches, 1);
    rd_mhist_observe(&S.batch_time, (uint64_t)(rd_mono_ms() - S.batch_started_ms) * 1000);
    rd_debug("event=shipped rows=%ld ms=%lld", S.rows,
             (long long)(rd_mono_ms() - S.batch_started_ms));
    S.copy.len = 0;
    S.rows = S.dead_rows = 0;
    S.batch_admin = S.fast_failed = 0;
    S.win_lo = S.win_hi = S.nwstack = 0;
    S.step = ST_IDLE;
    S.pg_backoff_ms = 100;
}

/* The next window of a split batch; returns 0 when there is none left. */
static int next_window(void)
{
    if (S.nwstack == 0)
        return 0;
    S.nwstack--;
    S.win_lo = S.wstack[2 * S.nwstack];
    S.win_hi = S.wstack[2 * S.nwstack + 1];
    return 1;
}

static void after_commit(void)
{
    rd_webhooks_hint(); /* the commit may have made deliveries due */
    if (next_window()) {
        start_batch();
        return;
    }
    S.step = ST_COMMITTED;
    if (S.cfg->ship_pause_after_commit_ms > 0) {
        rd_info("event=ship_committed rows=%ld action=pause_before_xack ms=%d", S.rows,
                S.cfg->ship_pause_after_commit_ms);
        int ms = S.cfg->ship_pause_after_commit_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(S.pause_ev, &tv);
        return;
    }
    schedule_tick(0);
}

/* Streams the COPY data of the window's live rows (they lie one after the other in
 * S.copy; dead-lettered ones are skipped); returns 1 when all is queued and ended, 0 when
 * it must wait for the socket (nonblocking libpq refuses to queue more), -1 when the
 * connection failed. */
static int pg_copy_data(void)
{
    while (S.copy_row < S.win_hi) {
        const struct ack *a = &S.acks[S.copy_row];
        if (a->dead || S.copy_pos >= a->off + a->len) {
            S.copy_row++;
            if (S.copy_row < S.win_hi && S.copy_pos < S.acks[S.copy_row].off)
                S.copy_pos = S.acks[S.copy_row].off;
            continue;
        }
        /* this row's rest and the live rows after it, up to COPY_CHUNK */
        size_t end = a->off + a->len;
        for (size_t j = S.copy_row + 1;
             j < S.win_hi && !S.acks[j].dead && end - S.copy_pos < COPY_CHUNK; j++)
            end = S.acks[j].off + S.acks[j].len;
        size_t n = end - S.copy_pos;
        if (n > COPY_CHUNK)
            n = COPY_CHUNK;
        int rc = PQputCopyData(S.pg, S.copy.buf + S.copy_pos, (int)n);
        if (rc < 0) {
            pg_down(PQerrorMessage(S.pg));
            return -1;
        }
        if (rc == 0) {
            pg_wait(EV_READ | EV_WRITE); /* the send buffer is full */
            return 0;
        }
        S.copy_pos += n;
    }
    int rc = PQputCopyEnd(S.pg, NULL);
    if (rc < 0) {
        pg_down(PQerrorMessage(S.pg));
        return -1;
    }
    if (rc == 0) {
        pg_wait(EV_READ | EV_WRITE);
        return 0;
    }
    S.copying = 0;
    return 1;
}

/* A failure that lies in a row's data (class 22, data exception; 23, integrity constraint),
 * not in PostgreSQL's state or our schema: only then is splitting the batch the answer. A
 * failure of any other class (connection, timeout, missing column) is retried as a whole,
 * for dead-lettering rows over a schema problem would empty the ledger into dead letters. */
static int row_fault(void)
{
    return !strncmp(S.fail_state, "22", 2) || !strncmp(S.fail_state, "23", 2);
}

/* The window failed for a row's data: halve it, or, down to one row, dead-letter that row
 * with PostgreSQL's error and go on with the rest of the batch. */
static void split_window(void)
{
    size_t lo = S.win_lo, hi = S.win_hi;
    if (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (S.nwstack * 2 + 2 > S.wstack_cap) {
            S.wstack_cap = S.wstack_cap ? S.wstack_cap * 2 : 64;
            S.wstack = realloc(S.wstack, S.wstack_cap * sizeof(*S.wstack));
            if (!S.wstack)
                abort();
        }
        S.wstack[2 * S.nwstack] = mid;
        S.wstack[2 * S.nwstack + 1] = hi;
        S.nwstack++;
        S.win_hi = mid;
        rd_info("event=shipper_split rows=%zu first=%zu sqlstate=%s", hi - lo, mid - lo,
                S.fail_state);
        start_batch();
        return;
    }
    if (lo < hi) {
        struct ack *a = &S.acks[lo];
        const char *f[4] = {"sqlstate", S.fail_state, "row", S.copy.buf + a->off};
        size_t fl[4] = {8, strlen(S.fail_state), 3, a->len ? a->len - 1 : 0}; /* no '\n' */
        /* not taken by Redis: left out of the batch's acknowledgement, it stays pending
         * and comes round again */
        (void)dead_letter_argv(a->bucket, a->id, S.fail_msg, 4, f, fl);
        a->dead = 1;
        S.dead_rows++;
    }
    after_commit(); /* the next window, or the end of the batch */
}

/* All results of the current step are in. */
static void step_finished(void)
{
    if (S.failed && S.step != ST_ROLLBACK) {
        pg_send("ROLLBACK", ST_ROLLBACK);
        return;
    }
    switch (S.step) {
    case ST_BEGIN:
        pg_send("COPY staging (" RD_LEDGER_COLUMNS ") FROM STDIN", ST_COPY);
        break;
    case ST_FAST_COPY:
        /* the summaries and the webhook events of these rows, in their transaction */
        pg_send("SELECT rd_summarize(); SELECT rd_webhook_events(); COMMIT", ST_FAST_COMMIT);
        break;
    case ST_FAST_COMMIT:
        after_commit();
        break;
    case ST_COPY:
        pg_send("SELECT rd_ensure_partition(min(ts)) FROM staging "
                "GROUP BY date_trunc('month', ts AT TIME ZONE 'UTC'); "
                "INSERT INTO transactions (" RD_LEDGER_COLUMNS ") SELECT " RD_LEDGER_COLUMNS
                " FROM staging ORDER BY seq ON CONFLICT DO NOTHING; "
                "SELECT rd_apply_admin_rows(); SELECT rd_summarize(); "
                "SELECT rd_webhook_events(); COMMIT",
                ST_INSERT);
        break;
    case ST_INSERT:
        after_commit();
        break;
    case ST_ROLLBACK:
        if (S.fast) {
            /* expected now and then (see start_batch): the staging path, at once */
            S.fast_failed = 1;
            S.step = ST_IDLE;
            start_batch();
            break;
        }
        if (row_fault()) {
            split_window();
            break;
        }
        /* a statement failed with the connection intact: retry the batch after a pause */
        S.step = ST_IDLE;
        S.pg_retry_ms = rd_mono_ms() + S.pg_backoff_ms;
        schedule_tick(S.pg_backoff_ms);
        S.pg_backoff_ms = S.pg_backoff_ms * 2 > 5000 ? 5000 : S.pg_backoff_ms * 2;
        break;
    default:
        break;
    }
}

static void pg_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)arg;
    if (S.pgstate == PG_CONNECTING) {
        switch (PQconnectPoll(S.pg)) {
        case PGRES_POLLING_READING:
            pg_wait(EV_READ); /* the socket may change between polls: re-armed each time */
            return;
        case PGRES_POLLING_WRITING:
            pg_wait(EV_WRITE);
            return;
        case PGRES_POLLING_OK:
            PQsetnonblocking(S.pg, 1);
            S.pgstate = PG_READY;
            S.pg_backoff_ms = 100;
            rd_info("event=shipper_pg_connected");
            event_free(S.pg_ev);
            S.pg_ev = NULL;
            schedule_tick(0);
            return;
        default:
            pg_down(PQerrorMessage(S.pg));
            return;
        }
    }
    if (what & EV_WRITE) {
        if (S.copying) {
            if (PQflush(S.pg) < 0) {
                pg_down(PQerrorMessage(S.pg));
                return;
            }
            int rc = pg_copy_data();
            if (rc <= 0)
                return;
        }
        int f = PQflush(S.pg);
        if (f < 0) {
            pg_down(PQerrorMessage(S.pg));
            return;
        }
        if (f == 1 && !(what & EV_READ)) {
            pg_wait(EV_READ | EV_WRITE);
            return;
        }
    }
    if (!PQconsumeInput(S.pg)) {
        pg_down(PQerrorMessage(S.pg));
        return;
    }
    while (!PQisBusy(S.pg)) {
        PGresult *res = PQgetResult(S.pg);
        if (!res) {
            step_finished();
            return;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN) {
            PQclear(res);
            S.copying = 1;
            int rc = pg_copy_data();
            if (rc < 0)
                return;
            if (rc == 0)
                return; /* waiting for the socket */
            if (PQflush(S.pg) == 1) {
                pg_wait(EV_READ | EV_WRITE);
                return;
            }
            continue;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            char msg[300];
            snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
            msg[strcspn(msg, "\n")] = '\0';
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            if (!S.failed) {
                snprintf(S.fail_state, sizeof(S.fail_state), "%s", state ? state : "");
                snprintf(S.fail_msg, sizeof(S.fail_msg), "%s", msg);
            }
            /* expected: the fast path's fallback; a row fault is split (and logged when
             * its row is dead-lettered) */
            int quiet = S.fast || (state && (!strncmp(state, "22", 2) || !strncmp(state, "23", 2)));
            rd_log(quiet ? RD_LOG_INFO : RD_LOG_ERROR,
                   "event=shipper_statement_failed step=%d sqlstate=%s err=\"%s\"%s", S.step,
                   state ? state : "-", msg, S.fast ? " action=staging_path" : "");
            S.failed = 1;
        }
        PQclear(res);
    }
    if (PQstatus(S.pg) == CONNECTION_BAD) {
        pg_down(PQerrorMessage(S.pg));
        return;
    }
    pg_wait(EV_READ); /* events are one-shot: wait for the rest of the results */
}

/* ---- the loop ----------------------------------------------------------------------------- */

/* With min_replica_acks, a batch ships only once its entries are on that many replicas:
 * an entry shipped from a primary that dies before replicating it would be a ledger row for
 * a write the new primary never had (its client got 503 and retries: a second row).
 * rd_rsc_wait covers every entry the primaries that were read had. Short: the batch is
 * dropped and read again from this consumer's pending entries. */
static void ensure_replicated(void)
{
    int got = rd_rsc_wait(S.rc, S.cfg->min_replica_acks, S.cfg->replica_ack_timeout_ms);
    if (got < 0) {
        redis_drop(rd_rsc_errstr(S.rc));
    } else if (got >= S.cfg->min_replica_acks) {
        return;
    } else {
        rd_warn("event=shipper_batch_unreplicated rows=%ld replicas=%d wanted=%d", S.rows, got,
                S.cfg->min_replica_acks);
    }
    S.copy.len = 0;
    S.rows = 0;
    S.nacks = 0;
    S.batch_admin = 0;
    S.reading_pel = 1;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    int64_t now = rd_mono_ms();
    int again_ms = S.cfg->ship_interval_ms;

    if (redis_ensure() == 0 && !S.groups_ready)
        create_groups();
    if (S.rc && S.groups_ready) {
        if (S.step == ST_COMMITTED && S.rc && !evtimer_pending(S.pause_ev, NULL)) {
            if (acknowledge() == 0)
                batch_done();
        }
        if (S.step == ST_IDLE && S.rows == 0 && S.rc) {
            if (now >= S.next_claim_ms && !S.reading_pel) {
                claim_stale();
                S.next_claim_ms = now + CLAIM_EVERY_MS;
            }
            if (S.rc)
                collect();
            if (S.rc && S.rows > 0 && S.cfg->min_replica_acks > 0)
                ensure_replicated();
        }
    }
    if (S.step == ST_IDLE && S.rows > 0) {
        if (S.pgstate == PG_READY)
            start_batch();
        else if (S.pgstate == PG_DOWN && now >= S.pg_retry_ms)
            pg_connect();
        if (S.rows >= S.cfg->ship_batch)
            again_ms = 0;
    }
    if (S.step == ST_IDLE && S.rows == 0 && S.nacks == 0 && S.pgstate == PG_DOWN &&
        now >= S.pg_retry_ms)
        pg_connect(); /* connect ahead, so the first batch does not wait */
    if (!evtimer_pending(S.tick_ev, NULL))
        schedule_tick(again_ms);
}

/* Its own timer: the tick slows down to the PostgreSQL reconnect backoff during an outage,
 * exactly when the backlog matters most. */
static void on_count(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    sample_rate();
    if (redis_ensure() == 0)
        count_backlog();
    else
        atomic_store(&S.backlog, -1); /* not known while Redis cannot be asked */
}

static void on_pause_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    schedule_tick(0);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    event_base_loopexit(S.base, NULL);
}

static void *shipper_main(void *arg)
{
    (void)arg;
    rd_log_set_thread_name("shipper");
    rd_info("event=shipper_started consumer=%s buckets=%d batch=%d", S.consumer, S.cfg->buckets,
            S.cfg->ship_batch);
    schedule_tick(0);
    event_base_dispatch(S.base);
    if (S.pg_ev)
        event_free(S.pg_ev);
    if (S.pg)
        PQfinish(S.pg);
    if (S.rc)
        rd_rsc_free(S.rc);
    event_free(S.tick_ev);
    event_free(S.stop_ev);
    event_free(S.pause_ev);
    event_free(S.count_ev);
    event_base_free(S.base);
    rd_sbuf_free(&S.copy);
    rd_pgparams_free(&S.pgparams);
    free(S.acks);
    free(S.wstack);
    free(S.scan);
    return NULL;
}

int rd_shipper_start(const struct rd_config *cfg)
{
    memset(&S, 0, sizeof(S));
    S.cfg = cfg;
    atomic_store(&S.backlog, -1);
    S.started_ms = rd_now_ms();
    S.reading_pel = 1;
    S.scan = malloc((size_t)cfg->buckets * sizeof(*S.scan));
    if (!S.scan)
        return -1;
    S.pg_backoff_ms = 100;
    rd_sbuf_init(&S.copy);
    if (cfg->shipper_name[0]) {
        snprintf(S.consumer, sizeof(S.consumer), "%s", cfg->shipper_name);
    } else {
        char host[128] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(S.consumer, sizeof(S.consumer), "redeemd-%s", host);
    }
    /* statement_timeout bounds a stuck batch; NOTICEs (IF NOT EXISTS) stay out of our log */
    char err[300];
    if (rd_pgparams_init(&S.pgparams, cfg->pg_conninfo, "redeemd-shipper",
                         "-c statement_timeout=30000 -c client_min_messages=warning "
                         "-c TimeZone=UTC",
                         err, sizeof(err)) < 0) {
        rd_error("event=pg_conninfo_invalid err=\"%s\"", err);
        return -1;
    }
    S.base = event_base_new();
    if (!S.base)
        return -1;
    S.tick_ev = evtimer_new(S.base, on_tick, NULL);
    S.pause_ev = evtimer_new(S.base, on_pause_over, NULL);
    S.stop_ev = event_new(S.base, -1, 0, on_stop, NULL);
    S.count_ev = event_new(S.base, -1, EV_PERSIST, on_count, NULL);
    if (!S.tick_ev || !S.stop_ev || !S.pause_ev || !S.count_ev)
        return -1;
    event_add(S.stop_ev, NULL);
    struct timeval ctv = {0, COUNT_EVERY_MS * 1000};
    event_add(S.count_ev, &ctv);
    return pthread_create(&S.thread, NULL, shipper_main, NULL) == 0 ? 0 : -1;
}

void rd_shipper_stop(void)
{
    event_active(S.stop_ev, EV_TIMEOUT, 0);
    pthread_join(S.thread, NULL);
}
