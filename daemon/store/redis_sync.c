/* SPDX-License-Identifier: MIT
 *
 * Blocking Redis, one Redis or a cluster's primaries, pipelines always read to their end
 * (see redis_sync.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rd/cluster.h"
#include "store/redis_sync.h"

#define WORDS_MAX 16 /* enough to find any key rd_cluster_command_slot looks for */
#define RETRY_MS  50

struct pend {
    int node;
    char *cmd; /* owned: RESP bytes, kept until read in case it must go out again */
    size_t len;
    redisReply *reply; /* owned: read ahead of the caller's read (rd_rsync_read) */
};

struct rd_rsc {
    const struct rd_config *cfg;
    struct timeval ctv, tv;
    int cluster;
    struct rd_slotmap *map; /* cluster only */
    redisContext *ctx[RD_CLUSTER_NODES_MAX];
    int primaries[RD_CLUSTER_NODES_MAX];      /* map nodes that serve slots */
    unsigned char used[RD_CLUSTER_NODES_MAX]; /* sent a command since the last rd_rsc_wait */
    int nprimaries;
    struct pend *pend;
    int npend, cap;
    char err[200];
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static redisContext *open_ctx(struct rd_rsc *c, const char *host, int port)
{
    redisContext *x = redisConnectWithTimeout(host, port, c->ctv);
    if (!x || x->err) {
        snprintf(c->err, sizeof(c->err), "%s:%d: %s", host, port, x ? x->errstr : "out of memory");
        if (x)
            redisFree(x);
        return NULL;
    }
    if (c->tv.tv_sec || c->tv.tv_usec)
        redisSetTimeout(x, c->tv);
    return x;
}

/* The connection to map node i, made on first use. */
static redisContext *node_ctx(struct rd_rsc *c, int i)
{
    if (i < 0 || i >= RD_CLUSTER_NODES_MAX)
        return NULL;
    if (!c->ctx[i]) {
        if (!c->cluster)
            return NULL;
        c->ctx[i] = open_ctx(c, c->map->nodes[i].host, c->map->nodes[i].port);
    }
    return c->ctx[i];
}

/* Reads the map from CLUSTER SLOTS of any node that answers (the primaries first, then
 * the seeds). 0, or -1 with c->err. */
static int load_map(struct rd_rsc *c)
{
    for (int i = 0; i < c->map->nnodes; i++) {
        redisContext *x = node_ctx(c, i);
        if (!x)
            continue;
        redisReply *r = redisCommand(x, "CLUSTER SLOTS");
        if (!r) {
            snprintf(c->err, sizeof(c->err), "%s:%d: %s", c->map->nodes[i].host,
                     c->map->nodes[i].port, x->errstr);
            redisFree(x);
            c->ctx[i] = NULL;
            continue;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
            snprintf(c->err, sizeof(c->err), "%s:%d: CLUSTER SLOTS: %s", c->map->nodes[i].host,
                     c->map->nodes[i].port, r->type == REDIS_REPLY_ERROR ? r->str : "no map");
            freeReplyObject(r);
            continue;
        }
        for (int s = 0; s < RD_CLUSTER_SLOTS; s++)
            c->map->slot_node[s] = RD_SLOT_NONE;
        c->nprimaries = 0;
        for (size_t k = 0; k < r->elements; k++) {
            const redisReply *e = r->element[k];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
                e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
                e->element[2]->element[0]->type != REDIS_REPLY_STRING)
                continue;
            const redisReply *h = e->element[2]->element[0];
            const char *host =
                h->len == 0 || (h->len == 1 && h->str[0] == '?') ? c->map->nodes[i].host : h->str;
            int idx = rd_slotmap_node(c->map, host, strlen(host),
                                      (int)e->element[2]->element[1]->integer);
            if (idx < 0 || rd_slotmap_assign(c->map, (int)e->element[0]->integer,
                                             (int)e->element[1]->integer, idx) < 0)
                continue;
            int known = 0;
            for (int p = 0; p < c->nprimaries; p++)
                known |= c->primaries[p] == idx;
            if (!known)
                c->primaries[c->nprimaries++] = idx;
        }
        freeReplyObject(r);
        if (rd_slotmap_uncovered(c->map) > 0) {
            snprintf(c->err, sizeof(c->err), "the cluster does not serve every slot yet");
            return -1;
        }
        return 0;
    }
    return -1;
}

struct rd_rsc *rd_rsc_connect(const struct rd_config *cfg, int connect_ms, int timeout_ms,
                              char *err, size_t errlen)
{
    struct rd_rsc *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->cfg = cfg;
    c->ctv = (struct timeval){connect_ms / 1000, (connect_ms % 1000) * 1000};
    c->tv = (struct timeval){timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (!cfg->redis_cluster[0]) {
        c->ctx[0] = open_ctx(c, cfg->redis_host, cfg->redis_port);
        c->nprimaries = 1;
        if (c->ctx[0])
            return c;
    } else {
        c->cluster = 1;
        c->map = malloc(sizeof(*c->map));
        if (!c->map)
            abort();
        rd_slotmap_clear(c->map);
        struct rd_cluster_node seeds[RD_CLUSTER_NODES_MAX];
        const char *why;
        int n = rd_cluster_seeds_parse(cfg->redis_cluster, seeds, RD_CLUSTER_NODES_MAX, &why);
        for (int i = 0; i < n; i++)
            rd_slotmap_node(c->map, seeds[i].host, strlen(seeds[i].host), seeds[i].port);
        int ok = n > 0 && load_map(c) == 0;
        for (int p = 0; ok && p < c->nprimaries; p++)
            ok = node_ctx(c, c->primaries[p]) != NULL;
        if (ok)
            return c;
    }
    snprintf(err, errlen, "%s", c->err[0] ? c->err : "no Redis node answered");
    rd_rsc_free(c);
    return NULL;
}

void rd_rsc_free(struct rd_rsc *c)
{
    if (!c)
        return;
    for (int i = 0; i < RD_CLUSTER_NODES_MAX; i++)
        if (c->ctx[i])
            redisFree(c->ctx[i]);
    for (int i = 0; i < c->npend; i++) {
        free(c->pend[i].cmd);
        if (c->pend[i].reply)
            freeReplyObject(c->pend[i].reply);
    }
    free(c->pend);
    free(c->map);
    free(c);
}

const char *rd_rsc_errstr(const struct rd_rsc *c)
{
    return c ? c->err : "";
}

int rd_rsc_nodes(const struct rd_rsc *c)
{
    return c->nprimaries;
}

/* ---- the pipeline ------------------------------------------------------------------------ */

/* The words of a formatted command ("*N\r\n$len\r\nword\r\n..."), at most max. */
static int resp_words(const char *cmd, size_t len, const char **w, size_t *wl, int max)
{
    const char *p = cmd, *end = cmd + len;
    if (p >= end || *p != '*')
        return 0;
    long n = strtol(p + 1, NULL, 10);
    p = memchr(p, '\n', (size_t)(end - p));
    int got = 0;
    while (p && ++p < end && got < n && got < max && *p == '$') {
        long l = strtol(p + 1, NULL, 10);
        p = memchr(p, '\n', (size_t)(end - p));
        if (!p || l < 0 || p + 1 + l > end)
            break;
        w[got] = p + 1;
        wl[got++] = (size_t)l;
        p += 1 + l + 1; /* the word, then "\r" ("\n" is skipped by the loop) */
    }
    return got;
}

static int slot_of(const char *cmd, size_t len)
{
    const char *w[WORDS_MAX];
    size_t wl[WORDS_MAX];
    int n = resp_words(cmd, len, w, wl, WORDS_MAX);
    return rd_cluster_command_slot(n, w, wl);
}

/* The primary (map node index) that serves slot; 0 with one Redis; -1 if none is known. */
static int node_of(struct rd_rsc *c, int slot)
{
    if (!c->cluster)
        return 0;
    if (slot < 0)
        return c->primaries[0];
    int idx = c->map->slot_node[slot];
    return idx == RD_SLOT_NONE ? -1 : idx;
}

/* Takes cmd (owned) into the pipeline of node (-1: by its key). */
static int push(struct rd_rsc *c, char *cmd, int len, int node)
{
    if (len < 0 || !cmd)
        return -1;
    if (node < 0)
        node = node_of(c, slot_of(cmd, (size_t)len));
    redisContext *x = node_ctx(c, node);
    if (!x || redisAppendFormattedCommand(x, cmd, (size_t)len) != REDIS_OK) {
        snprintf(c->err, sizeof(c->err), "%s", x ? x->errstr : "no node serves the key's slot");
        free(cmd);
        return -1;
    }
    if (c->npend == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->pend = realloc(c->pend, (size_t)c->cap * sizeof(*c->pend));
        if (!c->pend)
            abort();
    }
    c->pend[c->npend++] = (struct pend){node, cmd, (size_t)len, NULL};
    c->used[node] = 1;
    return 0;
}

int rd_rsc_append(struct rd_rsc *c, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    return push(c, cmd, len, -1);
}

int rd_rsc_append_argv(struct rd_rsc *c, int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    return push(c, cmd, len, -1);
}

/* A transport error: every connection may hold unread replies now, so c is done. */
static int broken(struct rd_rsc *c, redisContext *x, redisReply **out, int got, int n)
{
    snprintf(c->err, sizeof(c->err), "%s", x && x->errstr[0] ? x->errstr : "connection lost");
    rd_rsync_free(out, got);
    for (int k = got; k < n; k++)
        out[k] = NULL;
    for (int i = 0; i < c->npend; i++) {
        free(c->pend[i].cmd);
        if (c->pend[i].reply)
            freeReplyObject(c->pend[i].reply);
    }
    c->npend = 0;
    return -1;
}

/* One pending command again on node (after ASKING when asking), its reply into *out. */
static int resend(struct rd_rsc *c, const struct pend *p, int node, int asking, redisReply **out)
{
    redisContext *x = node_ctx(c, node);
    if (!x)
        return -1;
    if (asking)
        redisAppendCommand(x, "ASKING");
    redisAppendFormattedCommand(x, p->cmd, p->len);
    void *rep = NULL;
    if (asking) {
        if (redisGetReply(x, &rep) != REDIS_OK || !rep)
            return -1;
        freeReplyObject(rep);
        rep = NULL;
    }
    if (redisGetReply(x, &rep) != REDIS_OK || !rep)
        return -1;
    *out = rep;
    return 0;
}

/* Follows redirections of reply *r to pending command p: the final reply in *r. */
static int follow(struct rd_rsc *c, const struct pend *p, redisReply **r)
{
    for (int tries = 0; tries < RD_RSC_REDIRECTS_MAX; tries++) {
        const redisReply *e = *r;
        if (e->type != REDIS_REPLY_ERROR)
            return 0;
        struct rd_redirection to;
        enum rd_redirect kind = rd_cluster_redirect_parse(e->str, e->len, &to);
        int node;
        if (kind != RD_REDIRECT_NONE) {
            const char *host = to.host[0] ? to.host : c->map->nodes[p->node].host;
            node = rd_slotmap_node(c->map, host, strlen(host), to.port);
            if (node < 0)
                return 0;
            if (kind == RD_REDIRECT_MOVED) {
                c->map->slot_node[to.slot] = (uint16_t)node;
                (void)load_map(c); /* the rest of the map moved too, most likely */
            }
        } else if (rd_rsync_is_err(e, "TRYAGAIN") || rd_rsync_is_err(e, "CLUSTERDOWN")) {
            sleep_ms(RETRY_MS);
            (void)load_map(c);
            node = node_of(c, slot_of(p->cmd, p->len));
            if (node < 0)
                return 0;
        } else {
            return 0;
        }
        redisReply *again = NULL;
        if (resend(c, p, node, kind == RD_REDIRECT_ASK, &again) < 0) {
            redisContext *x = node_ctx(c, node);
            snprintf(c->err, sizeof(c->err), "%s",
                     x ? x->errstr
                       : "redirected to a node "
                         "that does not answer");
            return -1;
        }
        freeReplyObject(*r);
        *r = again;
    }
    return 0;
}

int rd_rsync_read(struct rd_rsc *c, int n, redisReply **out)
{
    if (n > c->npend) /* an append failed: the caller's count is not the pipeline's */
        return broken(c, NULL, out, 0, n);
    /* The whole pipeline is read, not only the first n (the batch thread reads its template
     * writes before the codes appended with them): a command sent again after a redirection
     * must find no reply still unread ahead of its own on its connection. */
    for (int i = 0; i < c->npend; i++) {
        if (c->pend[i].reply)
            continue;
        redisContext *x = node_ctx(c, c->pend[i].node);
        void *rep = NULL;
        if (!x || redisGetReply(x, &rep) != REDIS_OK || !rep)
            return broken(c, x, out, 0, n);
        c->pend[i].reply = rep;
    }
    for (int i = 0; c->cluster && i < c->npend; i++)
        if (c->pend[i].reply->type == REDIS_REPLY_ERROR &&
            follow(c, &c->pend[i], &c->pend[i].reply) < 0)
            return broken(c, NULL, out, 0, n);
    for (int i = 0; i < n; i++) {
        out[i] = c->pend[i].reply;
        free(c->pend[i].cmd);
    }
    memmove(c->pend, c->pend + n, (size_t)(c->npend - n) * sizeof(*c->pend));
    c->npend -= n;
    return 0;
}

static redisReply *one(struct rd_rsc *c, char *cmd, int len, int node)
{
    if (len < 0 || !cmd)
        return NULL;
    /* a command without keys (SCRIPT LOAD) goes to every primary */
    if (c->cluster && node < 0 && slot_of(cmd, (size_t)len) < 0 && c->nprimaries > 1) {
        redisReply *last = NULL;
        for (int p = 0; p < c->nprimaries; p++) {
            char *copy = malloc((size_t)len);
            if (!copy)
                abort();
            memcpy(copy, cmd, (size_t)len);
            redisReply *r = NULL;
            if (push(c, copy, len, c->primaries[p]) < 0 || rd_rsync_read(c, 1, &r) < 0) {
                if (last)
                    freeReplyObject(last);
                free(cmd);
                return NULL;
            }
            if (last && last->type == REDIS_REPLY_ERROR) {
                freeReplyObject(r);
                continue;
            }
            if (last)
                freeReplyObject(last);
            last = r;
        }
        free(cmd);
        return last;
    }
    redisReply *r = NULL;
    if (push(c, cmd, len, node) < 0 || rd_rsync_read(c, 1, &r) < 0)
        return NULL;
    return r;
}

redisReply *rd_rsc_command(struct rd_rsc *c, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    return one(c, cmd, len, -1);
}

redisReply *rd_rsc_command_argv(struct rd_rsc *c, int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    return one(c, cmd, len, -1);
}

redisReply *rd_rsc_command_node(struct rd_rsc *c, int node, const char *fmt, ...)
{
    if (node < 0 || node >= c->nprimaries)
        return NULL;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    return one(c, cmd, len, c->cluster ? c->primaries[node] : 0);
}

/* A key node serves ("rd:ack:{<n>}", the first n whose slot is there): a write of this
 * connection's own before its WAIT. */
static void ack_key(const struct rd_rsc *c, int node, char *out, size_t sz)
{
    for (int n = 0; n < 1000000; n++) {
        int len = snprintf(out, sz, "rd:ack:{%d}", n);
        if (!c->cluster || c->map->slot_node[rd_cluster_keyslot(out, (size_t)len)] == node)
            return;
    }
}

int rd_rsc_wait(struct rd_rsc *c, int replicas, int timeout_ms)
{
    int nodes[RD_CLUSTER_NODES_MAX], n = 0;
    for (int i = 0; i < RD_CLUSTER_NODES_MAX; i++)
        if (c->used[i])
            nodes[n++] = i;
    /* WAIT counts replicas that have this connection's last write. Reading an outbox is
     * such a write (Redis propagates XREADGROUP's delivery as XCLAIM, a re-read of the
     * pending list too), but which commands propagate is Redis' detail: a marker write of our
     * own covers every entry the node had when it ran, whatever this connection did before
     * (one SET per primary per batch, only with min_replica_acks). */
    for (int i = 0; i < n; i++) {
        char key[32], *cmd = NULL;
        ack_key(c, nodes[i], key, sizeof(key));
        int len = redisFormatCommand(&cmd, "SET %s 1 PX 60000", key);
        if (push(c, cmd, len, nodes[i]) < 0)
            return -1;
        cmd = NULL;
        len = redisFormatCommand(&cmd, "WAIT %d %d", replicas, timeout_ms);
        if (push(c, cmd, len, nodes[i]) < 0)
            return -1;
    }
    redisReply *rs[2 * RD_CLUSTER_NODES_MAX];
    if (n > 0 && rd_rsync_read(c, 2 * n, rs) < 0)
        return -1;
    int fewest = replicas;
    for (int i = 0; i < n; i++) {
        long long got =
            rs[2 * i]->type != REDIS_REPLY_ERROR && rs[2 * i + 1]->type == REDIS_REPLY_INTEGER
                ? rs[2 * i + 1]->integer
                : 0;
        if (got < fewest)
            fewest = (int)got;
        c->used[nodes[i]] = 0;
    }
    rd_rsync_free(rs, 2 * n);
    return fewest;
}

void rd_rsync_free(redisReply **out, int n)
{
    for (int i = 0; i < n; i++) {
        if (out[i])
            freeReplyObject(out[i]);
        out[i] = NULL;
    }
}

int rd_rsync_is_err(const redisReply *r, const char *prefix)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

redisReply *rd_rsync_call(struct rd_rsc *c, const struct rd_cmd *cmd, const char **why)
{
    *why = NULL;
    if (rd_cmd_check(cmd, why) < 0)
        return NULL;
    return rd_rsc_command_argv(c, cmd->argc, (const char **)cmd->argv, cmd->lens);
}

int rd_rsync_append(struct rd_rsc *c, const struct rd_cmd *cmd, const char **why)
{
    *why = NULL;
    if (rd_cmd_check(cmd, why) < 0)
        return -1;
    return rd_rsc_append_argv(c, cmd->argc, (const char **)cmd->argv, cmd->lens);
}
