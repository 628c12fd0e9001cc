/* SPDX-License-Identifier: MIT
 *
 * Hot coupons' shards (see rd/shards.h).
 */
#include "rd/shards.h"

#include <stdio.h>
#include <string.h>

#include "rd/code.h"
#include "rd/keys.h"

int rd_shard_layout_parse(const char *s, size_t len, uint32_t nbuckets, struct rd_shard_layout *out)
{
    out->n = 0;
    size_t i = 0;
    while (i <= len) {
        if (out->n == RD_SHARDS_MAX)
            return -1;
        uint32_t b = 0;
        size_t d = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && d < 5) {
            b = b * 10 + (uint32_t)(s[i] - '0');
            i++, d++;
        }
        if (d == 0 || b >= nbuckets || (i < len && s[i] != ','))
            return -1;
        for (int k = 0; k < out->n; k++)
            if (out->bucket[k] == b)
                return -1;
        out->bucket[out->n++] = b;
        i++; /* past the ',' (or the end) */
    }
    return out->n >= 2 ? 0 : -1;
}

int rd_shard_layout_format(const struct rd_shard_layout *l, char *buf, size_t sz)
{
    size_t at = 0;
    if (sz == 0)
        return -1;
    buf[0] = '\0';
    for (int i = 0; i < l->n; i++) {
        int w = snprintf(buf + at, sz - at, i ? ",%u" : "%u", l->bucket[i]);
        if (w < 0 || (size_t)w >= sz - at)
            return -1;
        at += (size_t)w;
    }
    return (int)at;
}

int rd_shard_of_user(const char *user, size_t len, int n)
{
    /* FNV-1a like the buckets, but salted: a user's shard must not follow their bucket */
    uint32_t h = 2166136261u ^ 0x5bd1e995u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)user[i];
        h *= 16777619u;
    }
    return n > 0 ? (int)(h % (uint32_t)n) : 0;
}

int64_t rd_shard_share(int64_t total, int n, int i)
{
    if (total <= 0 || n <= 0)
        return 0;
    return total / n + (i < total % n ? 1 : 0);
}

int rd_shard_place(const char *code, uint32_t home, uint32_t nbuckets, int n,
                   int (*node_of)(uint32_t bucket, void *arg), void *arg,
                   struct rd_shard_layout *out)
{
    if (n < 2 || n > RD_SHARDS_MAX || home >= nbuckets || nbuckets < (uint32_t)n)
        return -1;
    out->n = 1;
    out->bucket[0] = home;
    /* Rounds: in each, at most one new shard per node (the home's node counts in the first),
     * so K shards on P primaries put ceil(K/P) on a node at most. A node index past 63
     * never counts as taken. */
    int node = node_of ? node_of(home, arg) : 0;
    uint64_t taken = (node >= 0 && node < 64) ? 1ull << node : 0;
    char cand[RD_CODE_MAX + 16];
    for (int round = 0; round <= RD_SHARDS_MAX && out->n < n; round++) {
        int added = 0;
        for (uint32_t j = 1; j <= 64u * RD_SHARDS_MAX && out->n < n; j++) {
            int w = snprintf(cand, sizeof(cand), "%s#%u", code, j);
            if (w < 0 || (size_t)w >= sizeof(cand))
                return -1;
            uint32_t b = rd_bucket_of(cand, (size_t)w, nbuckets);
            int dup = 0;
            for (int k = 0; k < out->n; k++)
                dup |= out->bucket[k] == b;
            node = node_of ? node_of(b, arg) : 0;
            int ok = node >= 0 && node < 64;
            if (dup || (ok && (taken >> node & 1)))
                continue;
            if (ok)
                taken |= 1ull << node;
            out->bucket[out->n++] = b;
            added++;
        }
        if (!added && round > 0)
            break; /* no bucket left that is not a shard already */
        taken = 0;
    }
    return out->n == n ? 0 : -1;
}

int rd_move_id_check(const char *s, size_t len)
{
    if (len != RD_MOVE_ID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}
