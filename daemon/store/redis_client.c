/* SPDX-License-Identifier: MIT
 *
 * hiredis 0.14 async wrapper: connect, script loading, watchdog, reconnect.
 */
#include <hiredis/adapters/libevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "store/redis_client.h"
#include "rd/log.h"
#include "rd/rdtime.h"
#include "rd/lua_scripts.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define WATCHDOG_MS    50

static void schedule_reconnect(struct rd_redis *r)
{
    r->state = RD_REDIS_CLOSED;
    r->ac = NULL;
    int ms = r->backoff_ms;
    /* +-25% jitter so that every worker does not hit a restarting Redis at once
     * (xorshift64*: this thread's own, seeded from the CSPRNG at start) */
    r->jitter ^= r->jitter >> 12;
    r->jitter ^= r->jitter << 25;
    r->jitter ^= r->jitter >> 27;
    ms += (int)((r->jitter * 2685821657736338717ULL >> 33) % (uint64_t)(ms / 2 + 1)) - ms / 4;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(r->reconnect_ev, &tv);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* Detaches and frees the context; hiredis completes every pending call with NULL. */
static void drop(struct rd_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    rd_warn("event=redis_drop reason=\"%s\" inflight=%d", why, r->inflight);
    ac->data = NULL;
    r->ac = NULL;
    redisAsyncFree(ac);
    r->inflight = 0;
    schedule_reconnect(r);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rd_redis *r = ac->data;
    if (!r)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context itself after a failed connect. */
        rd_debug("event=redis_connect_failed err=\"%s\"", ac->errstr);
        r->inflight = 0;
        schedule_reconnect(r);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rd_redis *r = ac->data;
    (void)status;
    if (!r)
        return;
    rd_warn("event=redis_disconnected err=\"%s\"", ac->errstr);
    r->inflight = 0;
    schedule_reconnect(r);
}

static void load_done(struct rd_redis *r, int ok, const char *what)
{
    if (!ok && !r->load_failed) {
        r->load_failed = 1;
        rd_error("event=redis_setup_failed what=\"%s\"", what);
    }
    if (--r->loads_pending > 0)
        return;
    if (r->load_failed) {
        drop(r, "setup failed");
        return;
    }
    r->state = RD_REDIS_READY;
    r->backoff_ms = BACKOFF_MIN_MS;
    rd_info("event=redis_ready scripts=%zu reconnects=%llu", rd_lua_script_count,
            rd_counter_get(&r->reconnects));
    if (r->on_ready)
        r->on_ready(r, r->on_ready_arg);
}

static void on_script_loaded(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    struct rd_redis *r = ac->data;
    const struct rd_lua_script *s = &rd_lua_scripts[(intptr_t)priv];
    if (!r)
        return;
    r->inflight--;
    r->last_progress_ms = rd_mono_ms();
    if (!reply)
        return; /* the connection failed; on_connect/on_disconnect handle it */
    int ok = reply && reply->type == REDIS_REPLY_STRING && reply->len == 40 &&
             memcmp(reply->str, s->sha1, 40) == 0;
    if (reply && !ok)
        rd_error("event=script_load_failed script=%s reply=\"%.*s\"", s->name,
                 reply->type == REDIS_REPLY_ERROR || reply->type == REDIS_REPLY_STRING
                     ? (int)reply->len
                     : 0,
                 reply->str ? reply->str : "");
    load_done(r, ok, s->name);
}

static void on_meta(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    struct rd_redis *r = ac->data;
    (void)priv;
    if (!r)
        return;
    r->inflight--;
    r->last_progress_ms = rd_mono_ms();
    if (!reply)
        return;
    int ok = 0;
    if (reply && reply->type == REDIS_REPLY_STRING) {
        ok = atoi(reply->str) == r->cfg->buckets;
        if (!ok)
            rd_error("event=bucket_mismatch redis_buckets=%s config_buckets=%d "
                     "msg=\"this Redis was installed with another bucket count; set "
                     "buckets=%s\"",
                     reply->str, r->cfg->buckets, reply->str);
    }
    load_done(r, ok, "rd:meta buckets");
}

static void on_ignored(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rd_redis *r = ac->data;
    (void)reply;
    (void)priv;
    if (r) {
        r->inflight--;
        r->last_progress_ms = rd_mono_ms();
    }
}

static void connect_now(struct rd_redis *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->cfg->redis_host, r->cfg->redis_port);
    if (!ac) {
        schedule_reconnect(r);
        return;
    }
    if (ac->err) {
        rd_debug("event=redis_connect_failed err=\"%s\"", ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    rd_counter_inc(&r->reconnects, 1);
    r->ac = ac;
    ac->data = r;
    r->state = RD_REDIS_CONNECTING;
    r->connect_started_ms = r->last_progress_ms = rd_mono_ms();
    r->load_failed = 0;
    r->inflight = 0;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);

    /* Queued now; hiredis sends them once the socket connects. */
    char buckets[16];
    snprintf(buckets, sizeof(buckets), "%d", r->cfg->buckets);
    const char *setnx[] = {"HSETNX", "rd:meta", "buckets", buckets};
    const char *get[] = {"HGET", "rd:meta", "buckets"};
    r->loads_pending = 1 + (int)rd_lua_script_count;
    redisAsyncCommandArgv(ac, on_ignored, NULL, 4, setnx, NULL);
    redisAsyncCommandArgv(ac, on_meta, NULL, 3, get, NULL);
    r->inflight += 2;
    for (size_t i = 0; i < rd_lua_script_count; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", rd_lua_scripts[i].body};
        size_t lens[] = {6, 4, rd_lua_scripts[i].len};
        redisAsyncCommandArgv(ac, on_script_loaded, (void *)(intptr_t)i, 3, argv, lens);
        r->inflight++;
    }
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    struct rd_redis *r = arg;
    (void)fd;
    (void)what;
    if (!r->ac)
        return;
    int64_t now = rd_mono_ms();
    if (r->state == RD_REDIS_CONNECTING && now - r->connect_started_ms > r->cfg->redis_timeout_ms) {
        drop(r, "connect timeout");
    } else if (r->inflight > 0 && now - r->last_progress_ms > r->cfg->redis_timeout_ms) {
        drop(r, "reply timeout");
    }
}

int rd_redis_start(struct rd_redis *r, struct event_base *base, const struct rd_config *cfg,
                   void (*on_ready)(struct rd_redis *, void *), void *arg)
{
    memset(r, 0, sizeof(*r));
    r->base = base;
    r->cfg = cfg;
    r->on_ready = on_ready;
    r->on_ready_arg = arg;
    r->backoff_ms = BACKOFF_MIN_MS;
    if (getrandom(&r->jitter, sizeof(r->jitter), 0) != sizeof(r->jitter) || r->jitter == 0)
        r->jitter = (uint64_t)rd_mono_us() | 1; /* only jitter depends on it */
    r->reconnect_ev = evtimer_new(base, on_reconnect_timer, r);
    r->watchdog_ev = event_new(base, -1, EV_PERSIST, on_watchdog, r);
    if (!r->reconnect_ev || !r->watchdog_ev)
        return -1;
    struct timeval tv = {0, WATCHDOG_MS * 1000};
    event_add(r->watchdog_ev, &tv);
    connect_now(r);
    return 0;
}

void rd_redis_stop(struct rd_redis *r)
{
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    r->state = RD_REDIS_CLOSED;
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    if (r->reconnect_ev)
        event_free(r->reconnect_ev);
    if (r->watchdog_ev)
        event_free(r->watchdog_ev);
    r->reconnect_ev = r->watchdog_ev = NULL;
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
                                           "READONLY", "TRYAGAIN", "CLUSTERDOWN", NULL};
    if (!reply || reply->type != REDIS_REPLY_ERROR)
        return 0;
    for (const char *const *p = prefixes; *p; p++)
        if (strncmp(reply->str, *p, strlen(*p)) == 0)
            return 1;
    return 0;
}

/* ---- calls ----------------------------------------------------------------------------- */

static int send_call(struct rd_redis *r, struct rd_rcall *c);

static void on_reply(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    struct rd_rcall *c = priv;
    struct rd_redis *r = c->redis;
    /* ac->data is NULL once we dropped the connection; c->redis stays valid regardless. */
    if (ac->data) {
        r->inflight--;
        r->last_progress_ms = rd_mono_ms();
    }
    if (reply && reply->type == REDIS_REPLY_ERROR && c->script >= 0 && !c->retried &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && ac->data) {
        /* The script cache was flushed under us. NOSCRIPT means the script did not run, so
         * loading it and sending the call again, in order on this connection, is safe. */
        const struct rd_lua_script *s = &rd_lua_scripts[c->script];
        const char *argv[] = {"SCRIPT", "LOAD", s->body};
        size_t lens[] = {6, 4, s->len};
        rd_warn("event=noscript script=%s action=reload", s->name);
        redisAsyncCommandArgv(r->ac, on_ignored, NULL, 3, argv, lens);
        r->inflight++;
        c->retried = 1;
        if (send_call(r, c) == 0)
            return;
        reply = NULL;
    }
    if (reply)
        rd_mhist_observe(&r->rtt, (uint64_t)(rd_mono_us() - c->sent_us));
    free(c->cmd); /* before the callback, which may free c with its request */
    c->cmd = NULL;
    c->cb(r, reply, c->arg);
}

static int send_call(struct rd_redis *r, struct rd_rcall *c)
{
    c->sent_us = rd_mono_us();
    if (redisAsyncFormattedCommand(r->ac, on_reply, c, c->cmd, (size_t)c->cmdlen) != REDIS_OK)
        return -1;
    if (r->inflight++ == 0)
        r->last_progress_ms = rd_mono_ms();
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
    if (r->state != RD_REDIS_READY || !r->ac)
        return -1;
    c->redis = r;
    c->script = cmd->script;
    c->retried = 0;
    c->cmd = NULL;
    c->cmdlen = redisFormatCommandArgv(&c->cmd, cmd->argc, (const char **)cmd->argv, cmd->lens);
    if (c->cmdlen < 0 || !c->cmd)
        abort(); /* only out of memory */
    if (send_call(r, c) < 0) {
        free(c->cmd);
        c->cmd = NULL;
        return -1;
    }
    return 0;
}
