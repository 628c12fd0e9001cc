/* SPDX-License-Identifier: MIT
 *
 * A worker's cache of API keys (SHA-256 hashes, scopes, revocation) loaded from the Redis
 * hash rd:apikeys when the connection becomes ready and every key_refresh_ms after, so
 * checking a key never costs a Redis round trip and revocation takes effect within one
 * refresh. Owns a sorted array of entries, replaced whole on each load. Worker thread only.
 */
#ifndef RD_APIKEYS_H
#define RD_APIKEYS_H

#include <event2/event.h>
#include <stddef.h>

#include "rd/keys.h"
#include "store/redis_client.h"

struct rd_apikey {
    char hash[65];
    char id[RD_APIKEY_ID_LEN + 1];
    unsigned scopes;
};

struct rd_apikeys {
    struct rd_apikey *v; /* owned, sorted by hash; revoked keys are left out */
    size_t n;
    int loaded;
    int loading;
    struct rd_redis *redis; /* borrowed */
    struct event *refresh_ev;
    struct rd_rcall call;
};

int rd_apikeys_start(struct rd_apikeys *k, struct event_base *base, struct rd_redis *redis,
                     int refresh_ms);
/** Starts a load now (called when Redis becomes ready). */
void rd_apikeys_reload(struct rd_apikeys *k);
void rd_apikeys_stop(struct rd_apikeys *k);
/** Finds a presented key; returns a borrowed entry valid until the next reload, or NULL. */
const struct rd_apikey *rd_apikeys_find(const struct rd_apikeys *k, const char *key, size_t len);

#endif
