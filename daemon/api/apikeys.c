/* SPDX-License-Identifier: MIT
 *
 * API key cache.
 */
#include <stdlib.h>
#include <string.h>

#include "api/apikeys.h"
#include "rd/log.h"
#include "rd/sha256.h"

static int cmp_key(const void *a, const void *b)
{
    return strcmp(((const struct rd_apikey *)a)->hash, ((const struct rd_apikey *)b)->hash);
}

static void on_loaded(struct rd_redis *r, redisReply *reply, void *arg)
{
    struct rd_apikeys *k = arg;
    (void)r;
    k->loading = 0;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        if (reply)
            rd_warn("event=apikeys_load_failed type=%d", reply->type);
        return;
    }
    size_t n = reply->elements / 2, m = 0;
    struct rd_apikey *v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        abort();
    for (size_t i = 0; i < n; i++) {
        redisReply *h = reply->element[2 * i], *val = reply->element[2 * i + 1];
        struct rd_apikey_record rec;
        if (h->type != REDIS_REPLY_STRING || h->len != 64 || val->type != REDIS_REPLY_STRING ||
            rd_apikey_record_parse(val->str, val->len, &rec) < 0) {
            rd_warn("event=apikey_record_skipped reason=malformed");
            continue;
        }
        if (rec.revoked)
            continue;
        memcpy(v[m].hash, h->str, 64);
        v[m].hash[64] = '\0';
        memcpy(v[m].id, rec.id, sizeof(v[m].id));
        v[m].scopes = rec.scopes;
        m++;
    }
    qsort(v, m, sizeof(*v), cmp_key);
    free(k->v);
    k->v = v;
    k->n = m;
    if (!k->loaded)
        rd_info("event=apikeys_loaded count=%zu", m);
    __atomic_store_n(&k->loaded, 1, __ATOMIC_RELAXED); /* read by other workers' /readyz */
}

void rd_apikeys_reload(struct rd_apikeys *k)
{
    if (k->loading)
        return;
    struct rd_cmd cmd;
    rd_cmd_plain(&cmd);
    rd_cmd_push(&cmd, "HGETALL", 7);
    rd_cmd_push(&cmd, RD_KEY_APIKEYS, strlen(RD_KEY_APIKEYS));
    k->call.cb = on_loaded;
    k->call.arg = k;
    if (rd_redis_call(k->redis, &cmd, &k->call) == 0)
        k->loading = 1;
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rd_apikeys_reload(arg);
}

int rd_apikeys_start(struct rd_apikeys *k, struct event_base *base, struct rd_redis *redis,
                     int refresh_ms)
{
    memset(k, 0, sizeof(*k));
    k->redis = redis;
    k->refresh_ev = event_new(base, -1, EV_PERSIST, on_refresh, k);
    if (!k->refresh_ev)
        return -1;
    struct timeval tv = {refresh_ms / 1000, (refresh_ms % 1000) * 1000};
    return event_add(k->refresh_ev, &tv);
}

void rd_apikeys_stop(struct rd_apikeys *k)
{
    if (k->refresh_ev)
        event_free(k->refresh_ev);
    k->refresh_ev = NULL;
    free(k->v);
    k->v = NULL;
    k->n = 0;
}

const struct rd_apikey *rd_apikeys_find(const struct rd_apikeys *k, const char *key, size_t len)
{
    struct rd_apikey probe;
    if (rd_apikey_check_shape(key, len) < 0 || k->n == 0)
        return NULL;
    rd_sha256_hex(key, len, probe.hash);
    return bsearch(&probe, k->v, k->n, sizeof(*k->v), cmp_key);
}
