/* SPDX-License-Identifier: MIT
 *
 * hiredis 0.14 async client: connections per node, script loading, watchdog, reconnect, and
 * in a cluster the slot map and the redirections (see redis_client.h).
 */
#include <hiredis/adapters/libevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "store/redis_client.h"
#include "rd/keys.h"
#include "rd/log.h"
#include "rd/rdtime.h"
#include "rd/lua_scripts.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define WATCHDOG_MS    50
#define RESEND_MS      10 /* a redirected call whose node is not ready yet tries again */
#define RETRY_MS       50 /* after TRYAGAIN or CLUSTERDOWN */
#define REFRESH_GAP_MS 100

static void connect_now(struct rd_rconn *k);
static int send_on(struct rd_rconn *k, struct rd_rcall *c);
static void conn_ready(struct rd_rconn *k);
static void conn_lost(struct rd_rconn *k);

/* ---- connections ------------------------------------------------------------------------ */

static void fail_unwaited(struct rd_rconn *k);

static void schedule_reconnect(struct rd_rconn *k)
{
    struct rd_redis *r = k->owner;
    fail_unwaited(k);
    k->state = RD_REDIS_CLOSED;
    k->ac = NULL;
    int ms = k->backoff_ms;
    /* +-25% jitter so that every worker does not hit a restarting Redis at once
     * (xorshift64*: this worker's own, seeded from the CSPRNG at start) */
    r->jitter ^= r->jitter >> 12;
    r->jitter ^= r->jitter << 25;
    r->jitter ^= r->jitter >> 27;
    ms += (int)((r->jitter * 2685821657736338717ULL >> 33) % (uint64_t)(ms / 2 + 1)) - ms / 4;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(k->reconnect_ev, &tv);
    k->backoff_ms = k->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : k->backoff_ms * 2;
    conn_lost(k);
}

/* Detaches and frees the context; hiredis completes every pending call with NULL. */
static void drop(struct rd_rconn *k, const char *why)
{
    redisAsyncContext *ac = k->ac;
    if (!ac)
        return;
    rd_warn("event=redis_drop node=%s:%d reason=\"%s\" inflight=%d", k->host, k->port, why,
            k->inflight);
    ac->data = NULL;
    k->ac = NULL;
    redisAsyncFree(ac);
    k->inflight = 0;
    schedule_reconnect(k);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rd_rconn *k = ac->data;
    if (!k)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context itself after a failed connect. */
        rd_debug("event=redis_connect_failed node=%s:%d err=\"%s\"", k->host, k->port, ac->errstr);
        k->inflight = 0;
        schedule_reconnect(k);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rd_rconn *k = ac->data;
    (void)status;
    if (!k)
        return;
    rd_warn("event=redis_disconnected node=%s:%d err=\"%s\"", k->host, k->port, ac->errstr);
    k->inflight = 0;
    schedule_reconnect(k);
}

static void progress(struct rd_rconn *k)
{
    k->inflight--;
    k->last_progress_ms = rd_mono_ms();
}

static void load_done(struct rd_rconn *k, int ok, const char *what)
{
    if (!ok && !k->load_failed) {
        k->load_failed = 1;
        rd_error("event=redis_setup_failed node=%s:%d what=\"%s\"", k->host, k->port, what);
    }
    if (--k->loads_pending > 0)
        return;
    if (k->load_failed) {
        drop(k, "setup failed");
        return;
    }
    k->state = RD_REDIS_READY;
    k->backoff_ms = BACKOFF_MIN_MS;
    rd_info("event=redis_ready node=%s:%d scripts=%zu reconnects=%llu", k->host, k->port,
            rd_lua_script_count, rd_counter_get(&k->owner->reconnects));
    conn_ready(k);
}

static void on_script_loaded(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    struct rd_rconn *k = ac->data;
    const struct rd_lua_script *s = &rd_lua_scripts[(intptr_t)priv];
    if (!k)
        return;
    progress(k);
    if (!reply)
        return; /* the connection failed; on_connect/on_disconnect handle it */
    int ok = reply->type == REDIS_REPLY_STRING && reply->len == 40 &&
             memcmp(reply->str, s->sha1, 40) == 0;
    if (!ok)
        rd_error("event=script_load_failed script=%s reply=\"%.*s\"", s->name,
                 reply->type == REDIS_REPLY_ERROR || reply->type == REDIS_REPLY_STRING
                     ? (int)reply->len
                     : 0,
                 reply->str ? reply->str : "");
    load_done(k, ok, s->name);
}

/* FUNCTION LOAD of the library: its name back, or "already exists" (loaded by an earlier
 * connection or another daemon of this version: the name is a digest of the text). */
static int library_loaded(const redisReply *reply)
{
    if (!reply)
        return 0;
    if (reply->type == REDIS_REPLY_STRING)
        return strcmp(reply->str, rd_lua_library_name) == 0;
    return reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "already exists") != NULL;
}

static void on_library_loaded(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    struct rd_rconn *k = ac->data;
    (void)priv;
    if (!k)
        return;
    progress(k);
    if (!reply)
        return; /* the connection failed; on_connect/on_disconnect handle it */
    int ok = library_loaded(reply);
    if (!ok)
        rd_error("event=function_load_failed library=%s reply=\"%.*s\"", rd_lua_library_name,
                 reply->type == REDIS_REPLY_ERROR || reply->type == REDIS_REPLY_STRING
                     ? (int)reply->len
                     : 0,
                 reply->str ? reply->str : "");
    load_done(k, ok, "FUNCTION LOAD");
}

static void load_library(struct rd_rconn *k, redisCallbackFn *cb)
{
    const char *argv[] = {"FUNCTION", "LOAD", rd_lua_library};
    size_t lens[] = {8, 4, rd_lua_library_len};
    redisAsyncCommandArgv(k->ac, cb, NULL, 3, argv, lens);
    k->inflight++;
}

static void on_ignored(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rd_rconn *k = ac->data;
    (void)reply;
    (void)priv;
    if (k)
        progress(k);
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

static void connect_now(struct rd_rconn *k)
{
    struct rd_redis *r = k->owner;
    redisAsyncContext *ac = redisAsyncConnect(k->host, k->port);
    if (!ac) {
        schedule_reconnect(k);
        return;
    }
    if (ac->err) {
        rd_debug("event=redis_connect_failed node=%s:%d err=\"%s\"", k->host, k->port, ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(k);
        return;
    }
    rd_counter_inc(&r->reconnects, 1);
    k->ac = ac;
    ac->data = k;
    k->state = RD_REDIS_CONNECTING;
    k->connect_started_ms = k->last_progress_ms = rd_mono_ms();
    k->load_failed = 0;
    k->inflight = 0;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Queued now; hiredis sends them once the socket connects. */
    k->loads_pending = (int)rd_lua_script_count + 1;
    for (size_t i = 0; i < rd_lua_script_count; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", rd_lua_scripts[i].body};
        size_t lens[] = {6, 4, rd_lua_scripts[i].len};
        redisAsyncCommandArgv(ac, on_script_loaded, (void *)(intptr_t)i, 3, argv, lens);
        k->inflight++;
    }
    load_library(k, on_library_loaded);
}

/* The connection to node idx of the map (cluster) or to the one Redis (idx 0), made on
 * first use. NULL when the table is full. */
static struct rd_rconn *conn_at(struct rd_redis *r, int idx, const char *host, int port)
{
    if (idx < 0 || idx >= RD_CLUSTER_NODES_MAX)
        return NULL;
    if (idx < r->nconns && r->conns[idx])
        return r->conns[idx];
    struct rd_rconn *k = calloc(1, sizeof(*k));
    if (!k)
        abort(); /* only out of memory */
    k->owner = r;
    k->idx = idx;
    snprintf(k->host, sizeof(k->host), "%s", host);
    k->port = port;
    k->backoff_ms = BACKOFF_MIN_MS;
    k->unwaited_tail = &k->unwaited;
    k->reconnect_ev = evtimer_new(r->base, on_reconnect_timer, k);
    if (!k->reconnect_ev)
        abort();
    r->conns[idx] = k;
    if (idx >= r->nconns)
        r->nconns = idx + 1;
    connect_now(k);
    return k;
}

/* ---- routing ---------------------------------------------------------------------------- */

static struct rd_rconn *conn_of_slot(struct rd_redis *r, int slot)
{
    if (!r->cluster)
        return r->conns[0];
    if (slot < 0) { /* any node that is up */
        for (int i = 0; i < r->nconns; i++)
            if (r->conns[i] && r->conns[i]->state == RD_REDIS_READY)
                return r->conns[i];
        return NULL;
    }
    int idx = r->map->slot_node[slot];
    return idx == RD_SLOT_NONE || idx >= r->nconns ? NULL : r->conns[idx];
}

static int slot_of(const char *key)
{
    return rd_cluster_keyslot(key, strlen(key));
}

/* READY when the install is checked and every slot's node is READY */
static void update_state(struct rd_redis *r)
{
    enum rd_redis_state was = r->state;
    int ok = r->meta_ok;
    if (ok && !r->cluster) {
        ok = r->conns[0]->state == RD_REDIS_READY;
    } else if (ok) {
        int up[RD_CLUSTER_NODES_MAX] = {0};
        for (int i = 0; i < r->nconns; i++)
            up[i] = r->conns[i] && r->conns[i]->state == RD_REDIS_READY;
        for (int s = 0; s < RD_CLUSTER_SLOTS && ok; s++) {
            int idx = r->map->slot_node[s];
            ok = idx != RD_SLOT_NONE && idx < r->nconns && up[idx];
        }
    }
    /* read by /readyz on other workers (rd_workers_ready) */
    __atomic_store_n(&r->state, ok ? RD_REDIS_READY : RD_REDIS_CONNECTING, __ATOMIC_RELAXED);
    if (r->state == RD_REDIS_READY && was != RD_REDIS_READY) {
        rd_info("event=redis_routes_ready nodes=%d cluster=%d", r->nconns, r->cluster);
        if (r->on_ready)
            r->on_ready(r, r->on_ready_arg);
    }
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *priv);

/* Formats nothing: c->cmd is already the RESP bytes. */
static int send_on(struct rd_rconn *k, struct rd_rcall *c)
{
    if (!k || k->state != RD_REDIS_READY || !k->ac)
        return -1;
    if (c->asking) {
        redisAsyncCommand(k->ac, on_ignored, NULL, "ASKING");
        k->inflight++;
    }
    c->conn = k;
    c->sent_us = rd_mono_us();
    if (redisAsyncFormattedCommand(k->ac, on_reply, c, c->cmd, (size_t)c->cmdlen) != REDIS_OK)
        return -1;
    if (k->inflight++ == 0)
        k->last_progress_ms = rd_mono_ms();
    k->unflushed = 1;
    if (!k->owner->flush_armed) {
        k->owner->flush_armed = 1;
        event_active(k->owner->flush_ev, EV_TIMEOUT, 1);
    }
    return 0;
}

/* Runs after the callbacks of the loop pass that queued calls (an active event is run in
 * the same pass): writes each connection's queued calls in one write. hiredis then disarms
 * the write event its command armed, in the same pass, so libevent's changelist never
 * hands either change to epoll. What a full socket does not take waits for that event as
 * before. A context still connecting is left alone (hiredis would take it as connected). */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct rd_redis *r = arg;
    (void)fd;
    (void)what;
    r->flush_armed = 0;
    for (int i = 0; i < r->nconns; i++) {
        struct rd_rconn *k = r->conns[i];
        if (!k || !k->unflushed)
            continue;
        k->unflushed = 0;
        if (k->ac && (k->ac->c.flags & REDIS_CONNECTED))
            redisAsyncHandleWrite(k->ac); /* may drop the context: k->ac is not used after */
    }
}

static void finish(struct rd_redis *r, struct rd_rcall *c, redisReply *reply)
{
    if (reply)
        rd_mhist_observe(&r->rtt, (uint64_t)(rd_mono_us() - c->sent_us));
    free(c->cmd); /* before the callback, which may free c with its request */
    c->cmd = NULL;
    c->cb(r, reply, c->arg);
}

/* ---- acknowledged means replicated: WAIT, one per group of replies ---------------------- */

static redisReply *dup_reply(const redisReply *x)
{
    redisReply *y = calloc(1, sizeof(*y));
    if (!y)
        abort(); /* only out of memory */
    y->type = x->type;
    y->integer = x->integer;
    if (x->str) {
        y->str = malloc(x->len + 1);
        if (!y->str)
            abort();
        memcpy(y->str, x->str, x->len + 1);
        y->len = x->len;
    }
    if (x->element) {
        y->element = calloc(x->elements ? x->elements : 1, sizeof(*y->element));
        if (!y->element)
            abort();
        y->elements = x->elements;
        for (size_t i = 0; i < x->elements; i++)
            y->element[i] = dup_reply(x->element[i]);
    }
    return y;
}

/* Delivers a group: its held replies if ok, else NULL (outcome unknown). */
static void deliver_group(struct rd_redis *r, struct rd_rcall *head, int ok, int short_acks)
{
    while (head) {
        struct rd_rcall *c = head;
        head = c->next_wait;
        c->next_wait = NULL;
        redisReply *held = c->held;
        c->held = NULL;
        c->unconfirmed = 0;
        if (ok)
            rd_counter_inc(&r->waited_calls, 1);
        else
            rd_counter_inc(&r->wait_short, 1);
        c->unconfirmed = !ok && short_acks;
        finish(r, c, ok ? held : NULL);
        freeReplyObject(held);
    }
}

static void fail_unwaited(struct rd_rconn *k)
{
    struct rd_rcall *head = k->unwaited;
    k->unwaited = NULL;
    k->unwaited_tail = &k->unwaited;
    k->wait_out = 0;
    deliver_group(k->owner, head, 0, 0);
}

struct wait_group {
    struct rd_rconn *k;
    struct rd_rcall *head;
};

static void send_wait(struct rd_rconn *k);

static void on_wait(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    struct wait_group *g = priv;
    struct rd_rconn *k = g->k;
    struct rd_redis *r = k->owner;
    int live = ac->data != NULL;
    if (live) {
        progress(k);
        k->wait_out = 0;
    }
    int ok =
        reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= r->cfg->min_replica_acks;
    if (reply && !ok)
        rd_warn("event=replica_acks_short node=%s:%d wanted=%d got=%lld calls_failed=1", k->host,
                k->port, r->cfg->min_replica_acks,
                reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1LL);
    deliver_group(r, g->head, ok, reply != NULL);
    free(g);
    if (live && k->unwaited)
        send_wait(k);
}

static void send_wait(struct rd_rconn *k)
{
    struct rd_redis *r = k->owner;
    if (k->wait_out || !k->unwaited || !k->ac)
        return;
    struct wait_group *g = malloc(sizeof(*g));
    if (!g)
        abort();
    g->k = k;
    g->head = k->unwaited;
    k->unwaited = NULL;
    k->unwaited_tail = &k->unwaited;
    char n[16], ms[16];
    snprintf(n, sizeof(n), "%d", r->cfg->min_replica_acks);
    snprintf(ms, sizeof(ms), "%d", r->cfg->replica_ack_timeout_ms);
    const char *argv[] = {"WAIT", n, ms};
    if (redisAsyncCommandArgv(k->ac, on_wait, g, 3, argv, NULL) != REDIS_OK) {
        deliver_group(r, g->head, 0, 0);
        free(g);
        return;
    }
    k->wait_out = 1;
    if (k->inflight++ == 0)
        k->last_progress_ms = rd_mono_ms();
    rd_counter_inc(&r->waits, 1);
}

/* A durable call's reply: held until a WAIT on its connection confirms it. */
static void hold(struct rd_rconn *k, struct rd_rcall *c, const redisReply *reply)
{
    c->held = dup_reply(reply);
    c->next_wait = NULL;
    if (!k->unwaited_tail)
        k->unwaited_tail = &k->unwaited;
    *k->unwaited_tail = c;
    k->unwaited_tail = &c->next_wait;
    send_wait(k);
}

static void arm_resend(struct rd_redis *r, int64_t due_ms)
{
    if (evtimer_pending(r->resend_ev, NULL) && r->resend_due_ms <= due_ms)
        return;
    int64_t ms = due_ms - rd_mono_ms();
    if (ms < 1)
        ms = 1;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    r->resend_due_ms = due_ms;
    evtimer_add(r->resend_ev, &tv);
}

/* The call goes out again from the resend timer at due_ms (at once if delay_ms is 0). */
static void wait_and_resend(struct rd_redis *r, struct rd_rcall *c, int delay_ms)
{
    c->due_ms = rd_mono_ms() + delay_ms;
    c->next_wait = r->waiting;
    r->waiting = c;
    arm_resend(r, c->due_ms);
}

static void resend_waiting(struct rd_redis *r)
{
    struct rd_rcall *list = r->waiting, *keep = NULL;
    r->waiting = NULL;
    int64_t now = rd_mono_ms();
    while (list) {
        struct rd_rcall *c = list;
        list = c->next_wait;
        c->next_wait = NULL;
        if (c->due_ms > now) {
            c->next_wait = keep;
            keep = c;
            continue;
        }
        struct rd_rconn *k = c->target >= 0 && c->target < r->nconns ? r->conns[c->target]
                                                                     : conn_of_slot(r, c->slot);
        if (send_on(k, c) == 0)
            continue;
        if (now - c->first_ms > r->cfg->redis_timeout_ms) {
            finish(r, c, NULL); /* never ran, but the caller answers the same 503 */
            continue;
        }
        c->due_ms = now + RESEND_MS;
        c->next_wait = keep;
        keep = c;
    }
    /* calls added by callbacks above stay too */
    while (keep) {
        struct rd_rcall *c = keep;
        keep = c->next_wait;
        c->next_wait = r->waiting;
        r->waiting = c;
        arm_resend(r, c->due_ms);
    }
}

static void on_resend(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    resend_waiting(arg);
}

/* A redirection or a cluster state error: 1 if the call will go out again. */
static int redirected(struct rd_redis *r, struct rd_rcall *c, const redisReply *reply)
{
    if (!r->cluster || c->redirects >= RD_REDIS_REDIRECTS_MAX)
        return 0;
    struct rd_redirection to;
    enum rd_redirect kind = rd_cluster_redirect_parse(reply->str, reply->len, &to);
    if (kind != RD_REDIRECT_NONE) {
        const char *host = to.host[0] ? to.host : c->conn->host;
        int idx = rd_slotmap_node(r->map, host, strlen(host), to.port);
        if (idx < 0 || !conn_at(r, idx, host, to.port))
            return 0;
        c->redirects++;
        rd_counter_inc(&r->redirects, 1);
        if (kind == RD_REDIRECT_MOVED) {
            r->map->slot_node[to.slot] = (uint16_t)idx;
            r->refresh_soon = 1;
            c->target = -1;
            c->asking = 0;
        } else {
            c->target = idx;
            c->asking = 1;
        }
        if (send_on(r->conns[idx], c) == 0)
            return 1;
        wait_and_resend(r, c, 0);
        return 1;
    }
    if (strncmp(reply->str, "TRYAGAIN", 8) == 0 || strncmp(reply->str, "CLUSTERDOWN", 11) == 0) {
        c->redirects++;
        c->target = -1;
        c->asking = 0;
        r->refresh_soon = 1;
        wait_and_resend(r, c, RETRY_MS);
        return 1;
    }
    return 0;
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    struct rd_rcall *c = priv;
    struct rd_redis *r = c->redis;
    struct rd_rconn *k = c->conn;
    /* ac->data is NULL once we dropped the connection; c->conn stays valid regardless. */
    if (ac->data)
        progress(k);
    if (reply && reply->type == REDIS_REPLY_ERROR && c->script >= 0 && !c->retried &&
        (strncmp(reply->str, "NOSCRIPT", 8) == 0 ||
         strcmp(reply->str, "ERR Function not found") == 0) &&
        ac->data) {
        /* The script cache was flushed under us (SCRIPT FLUSH, FUNCTION FLUSH, a restart
         * without persistence). Either error means the script did not run, so loading it
         * and sending the call again, in order on this connection, is safe. */
        const struct rd_lua_script *s = &rd_lua_scripts[c->script];
        rd_warn("event=noscript node=%s:%d script=%s action=reload", k->host, k->port, s->name);
        if (s->fname[0]) {
            load_library(k, on_ignored);
        } else {
            const char *argv[] = {"SCRIPT", "LOAD", s->body};
            size_t lens[] = {6, 4, s->len};
            redisAsyncCommandArgv(k->ac, on_ignored, NULL, 3, argv, lens);
            k->inflight++;
        }
        c->retried = 1;
        c->asking = 0;
        if (send_on(k, c) == 0)
            return;
        reply = NULL;
    }
    if (reply && reply->type == REDIS_REPLY_ERROR && redirected(r, c, reply))
        return;
    if (!reply && r->cluster)
        r->refresh_soon = 1; /* the node may be gone: a failover moves its slots */
    if (reply && c->durable && r->cfg->min_replica_acks > 0 && ac->data &&
        reply->type != REDIS_REPLY_ERROR) {
        hold(k, c, reply);
        return;
    }
    finish(r, c, reply);
}

/* Sends without the install check (the check's own calls, the map's). */
static int route(struct rd_redis *r, const struct rd_cmd *cmd, struct rd_rcall *c)
{
    c->redis = r;
    c->script = cmd->script;
    c->retried = c->redirects = c->asking = 0;
    c->held = NULL;
    c->target = -1;
    c->next_wait = NULL;
    c->slot = r->cluster ? rd_cmd_slot(cmd) : -1;
    c->first_ms = rd_mono_ms();
    struct rd_rconn *k = conn_of_slot(r, c->slot);
    if (!k || k->state != RD_REDIS_READY)
        return -1;
    c->cmd = NULL;
    c->cmdlen = (int)rd_cmd_format(cmd, &c->cmd);
    if (send_on(k, c) < 0) {
        free(c->cmd);
        c->cmd = NULL;
        return -1;
    }
    return 0;
}

int rd_redis_call(struct rd_redis *r, const struct rd_cmd *cmd, struct rd_rcall *c)
{
    const char *why;
    if (rd_cmd_check(cmd, &why) < 0) {
        rd_error("event=bad_command script=%s why=\"%s\"",
                 cmd->script >= 0 ? rd_lua_scripts[cmd->script].name : cmd->argv[0], why);
        return -2;
    }
    if (!r->meta_ok)
        return -1;
    return route(r, cmd, c);
}

/* ---- the install check: rd:meta buckets -------------------------------------------------- */

static void on_meta(struct rd_redis *r, redisReply *reply, void *arg)
{
    (void)arg;
    r->meta_pending = 0;
    int ok = 0;
    if (reply && reply->type == REDIS_REPLY_STRING) {
        ok = atoi(reply->str) == r->cfg->buckets;
        if (!ok)
            rd_error("event=bucket_mismatch redis_buckets=%s config_buckets=%d "
                     "msg=\"this Redis was installed with another bucket count; set "
                     "buckets=%s\"",
                     reply->str, r->cfg->buckets, reply->str);
    } else if (reply) {
        rd_error("event=redis_setup_failed what=\"rd:meta buckets\" reply=\"%.*s\"",
                 reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 0,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    }
    r->meta_ok = ok;
    if (!ok) {
        /* a wrong install stays refused; a lost reply is asked again by the next tick */
        struct rd_rconn *k = conn_of_slot(r, slot_of(RD_KEY_META));
        if (reply && k)
            drop(k, "setup failed");
    }
    update_state(r);
}

static void on_meta_set(struct rd_redis *r, redisReply *reply, void *arg)
{
    (void)r;
    (void)reply;
    (void)arg;
}

static void check_meta(struct rd_redis *r)
{
    if (r->meta_pending)
        return;
    char buckets[16];
    snprintf(buckets, sizeof(buckets), "%d", r->cfg->buckets);
    struct rd_cmd set, get;
    rd_cmd_plain(&set);
    rd_cmd_push(&set, "HSETNX", 6);
    rd_cmd_push(&set, RD_KEY_META, strlen(RD_KEY_META));
    rd_cmd_push(&set, "buckets", 7);
    rd_cmd_push(&set, buckets, strlen(buckets));
    rd_cmd_plain(&get);
    rd_cmd_push(&get, "HGET", 4);
    rd_cmd_push(&get, RD_KEY_META, strlen(RD_KEY_META));
    rd_cmd_push(&get, "buckets", 7);
    r->meta_calls[0].cb = on_meta_set;
    r->meta_calls[1].cb = on_meta;
    /* in order on one connection: the HGET sees the HSETNX */
    if (route(r, &set, &r->meta_calls[0]) < 0)
        return;
    if (route(r, &get, &r->meta_calls[1]) < 0)
        return; /* the set's reply arrives; the next tick asks again */
    r->meta_pending = 1;
}

/* ---- the slot map (cluster) --------------------------------------------------------------- */

static void on_slots(struct rd_redis *r, redisReply *reply, void *arg)
{
    (void)arg;
    r->refresh_pending = 0;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        r->refresh_soon = 1;
        return;
    }
    /* [[start, end, [host, port, id, ...], replicas...], ...] */
    uint16_t before[RD_CLUSTER_SLOTS];
    memcpy(before, r->map->slot_node, sizeof(before));
    for (int s = 0; s < RD_CLUSTER_SLOTS; s++)
        r->map->slot_node[s] = RD_SLOT_NONE;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        const redisReply *h = e->element[2]->element[0];
        /* an empty or "?" host: the node does not know its address; it is the one asked */
        const char *host =
            h->len == 0 || (h->len == 1 && h->str[0] == '?') ? r->refresh_call.conn->host : h->str;
        int port = (int)e->element[2]->element[1]->integer;
        int idx = rd_slotmap_node(r->map, host, strlen(host), port);
        if (idx < 0) {
            rd_error("event=cluster_map_refused node=%s:%d why=\"more than %d nodes, or a bad "
                     "address\"",
                     host, port, RD_CLUSTER_NODES_MAX);
            continue;
        }
        if (!conn_at(r, idx, host, port))
            continue;
        rd_slotmap_assign(r->map, (int)e->element[0]->integer, (int)e->element[1]->integer, idx);
    }
    /* a slot's node that is down: its replica may be taking over, look again soon */
    unsigned char serves[RD_CLUSTER_NODES_MAX] = {0};
    for (int sl = 0; sl < RD_CLUSTER_SLOTS; sl++)
        if (r->map->slot_node[sl] != RD_SLOT_NONE)
            serves[r->map->slot_node[sl]] = 1;
    for (int i = 0; i < r->nconns; i++)
        if (serves[i] && (!r->conns[i] || r->conns[i]->state != RD_REDIS_READY))
            r->refresh_soon = 1;
    if (memcmp(before, r->map->slot_node, sizeof(before)) != 0)
        rd_info("event=cluster_map nodes=%d uncovered=%d", r->nconns, rd_slotmap_uncovered(r->map));
    update_state(r);
}

static void refresh_map(struct rd_redis *r)
{
    if (r->refresh_pending)
        return;
    struct rd_cmd cmd;
    rd_cmd_plain(&cmd);
    rd_cmd_push(&cmd, "CLUSTER", 7);
    rd_cmd_push(&cmd, "SLOTS", 5);
    r->refresh_call.cb = on_slots;
    if (route(r, &cmd, &r->refresh_call) == 0) {
        r->refresh_pending = 1;
        r->refresh_soon = 0;
        r->next_refresh_ms = rd_mono_ms() + r->cfg->redis_cluster_refresh_ms;
    }
}

/* ---- a connection's state changes ---------------------------------------------------------- */

static void conn_ready(struct rd_rconn *k)
{
    struct rd_redis *r = k->owner;
    if (r->cluster) {
        r->refresh_soon = 1;
        refresh_map(r);
    }
    /* a new connection to the node of rd:meta may be another Redis: check it again */
    if (k == conn_of_slot(r, r->cluster ? slot_of(RD_KEY_META) : -1)) {
        r->meta_ok = 0;
        check_meta(r);
    }
    update_state(r);
}

static void conn_lost(struct rd_rconn *k)
{
    struct rd_redis *r = k->owner;
    if (r->cluster)
        r->refresh_soon = 1;
    update_state(r);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    struct rd_redis *r = arg;
    (void)fd;
    (void)what;
    int64_t now = rd_mono_ms();
    for (int i = 0; i < r->nconns; i++) {
        struct rd_rconn *k = r->conns[i];
        if (!k || !k->ac)
            continue;
        if (k->state == RD_REDIS_CONNECTING &&
            now - k->connect_started_ms > r->cfg->redis_timeout_ms) {
            drop(k, "connect timeout");
        } else if (k->inflight > 0 && now - k->last_progress_ms > r->cfg->redis_timeout_ms) {
            drop(k, "reply timeout");
        }
    }
    if (r->cluster &&
        (now >= r->next_refresh_ms ||
         (r->refresh_soon &&
          now >= r->next_refresh_ms - r->cfg->redis_cluster_refresh_ms + REFRESH_GAP_MS)))
        refresh_map(r);
    if (!r->meta_ok && !r->meta_pending)
        check_meta(r);
}

int rd_redis_start(struct rd_redis *r, struct event_base *base, const struct rd_config *cfg,
                   void (*on_ready)(struct rd_redis *, void *), void *arg)
{
    memset(r, 0, sizeof(*r));
    r->base = base;
    r->cfg = cfg;
    r->on_ready = on_ready;
    r->on_ready_arg = arg;
    __atomic_store_n(&r->state, RD_REDIS_CONNECTING, __ATOMIC_RELAXED);
    if (getrandom(&r->jitter, sizeof(r->jitter), 0) != sizeof(r->jitter) || r->jitter == 0)
        r->jitter = (uint64_t)rd_mono_us() | 1; /* only jitter depends on it */
    r->watchdog_ev = event_new(base, -1, EV_PERSIST, on_watchdog, r);
    r->resend_ev = evtimer_new(base, on_resend, r);
    r->flush_ev = event_new(base, -1, 0, on_flush, r);
    if (!r->watchdog_ev || !r->resend_ev || !r->flush_ev)
        return -1;
    struct timeval tv = {0, WATCHDOG_MS * 1000};
    event_add(r->watchdog_ev, &tv);
    if (!cfg->redis_cluster[0]) {
        conn_at(r, 0, cfg->redis_host, cfg->redis_port);
        return 0;
    }
    r->cluster = 1;
    r->map = malloc(sizeof(*r->map));
    if (!r->map)
        return -1;
    rd_slotmap_clear(r->map);
    struct rd_cluster_node seeds[RD_CLUSTER_NODES_MAX];
    const char *why;
    int n = rd_cluster_seeds_parse(cfg->redis_cluster, seeds, RD_CLUSTER_NODES_MAX, &why);
    for (int i = 0; i < n; i++) {
        int idx = rd_slotmap_node(r->map, seeds[i].host, strlen(seeds[i].host), seeds[i].port);
        if (idx >= 0)
            conn_at(r, idx, seeds[i].host, seeds[i].port);
    }
    return n > 0 ? 0 : -1;
}

void rd_redis_stop(struct rd_redis *r)
{
    __atomic_store_n(&r->state, RD_REDIS_CLOSED, __ATOMIC_RELAXED);
    r->meta_ok = 0;
    /* calls waiting for a resend never ran: they end as every pending call does */
    while (r->waiting) {
        struct rd_rcall *c = r->waiting;
        r->waiting = c->next_wait;
        finish(r, c, NULL);
    }
    for (int i = 0; i < r->nconns; i++) {
        struct rd_rconn *k = r->conns[i];
        if (!k)
            continue;
        fail_unwaited(k);
        redisAsyncContext *ac = k->ac;
        k->ac = NULL;
        k->state = RD_REDIS_CLOSED;
        if (ac) { /* completes its pending calls with NULL, the install check's and map's too */
            ac->data = NULL;
            redisAsyncFree(ac);
        }
        if (k->reconnect_ev)
            event_free(k->reconnect_ev);
        free(k);
        r->conns[i] = NULL;
    }
    if (r->watchdog_ev)
        event_free(r->watchdog_ev);
    if (r->resend_ev)
        event_free(r->resend_ev);
    if (r->flush_ev)
        event_free(r->flush_ev);
    r->watchdog_ev = r->resend_ev = r->flush_ev = NULL;
    free(r->map);
    r->map = NULL;
}

const char *rd_redis_field(const redisReply *flat, const char *name)
{
    for (size_t i = 0; i + 1 < flat->elements; i += 2)
        if (flat->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(flat->element[i]->str, name) == 0)
            return flat->element[i + 1]->str ? flat->element[i + 1]->str : "";
    return "";
}

int rd_redis_error_is_unavailable(const redisReply *reply)
{
    static const char *const prefixes[] = {"LOADING",  "BUSY",     "OOM",         "MASTERDOWN",
                                           "READONLY", "TRYAGAIN", "CLUSTERDOWN", "MOVED",
                                           "ASK ",     NULL};
    if (!reply || reply->type != REDIS_REPLY_ERROR)
        return 0;
    for (const char *const *p = prefixes; *p; p++)
        if (strncmp(reply->str, *p, strlen(*p)) == 0)
            return 1;
    return 0;
}
