/* SPDX-License-Identifier: MIT
 *
 * Redis Cluster's slot arithmetic and redirections (rd/cluster.h).
 */
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include "rd/cluster.h"

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the checksum Redis Cluster hashes keys
 * with (Redis' crc16.c), one table lookup per byte. */
static uint16_t crc16(const char *buf, size_t len)
{
    static uint16_t table[256];
    static int ready; /* benign race: every thread computes the same table */
    if (!ready) {
        for (int i = 0; i < 256; i++) {
            uint16_t c = (uint16_t)(i << 8);
            for (int b = 0; b < 8; b++)
                c = (uint16_t)(c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1);
            table[i] = c;
        }
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ table[((crc >> 8) ^ (uint8_t)buf[i]) & 0xff]);
    return crc;
}

uint16_t rd_cluster_keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(key + from, '}', len - from);
        if (close && close > key + from) /* "{}" hashes the whole key */
            return crc16(key + from, (size_t)(close - key) - from) & (RD_CLUSTER_SLOTS - 1);
    }
    return crc16(key, len) & (RD_CLUSTER_SLOTS - 1);
}

void rd_slotmap_clear(struct rd_slotmap *m)
{
    for (int i = 0; i < RD_CLUSTER_SLOTS; i++)
        m->slot_node[i] = RD_SLOT_NONE;
    m->nnodes = 0;
}

int rd_slotmap_node(struct rd_slotmap *m, const char *host, size_t hostlen, int port)
{
    if (hostlen == 0 || hostlen >= RD_CLUSTER_HOST_MAX || port <= 0 || port > 65535)
        return -1;
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].port == port && strlen(m->nodes[i].host) == hostlen &&
            memcmp(m->nodes[i].host, host, hostlen) == 0)
            return i;
    if (m->nnodes == RD_CLUSTER_NODES_MAX)
        return -1;
    struct rd_cluster_node *n = &m->nodes[m->nnodes];
    memcpy(n->host, host, hostlen);
    n->host[hostlen] = '\0';
    n->port = port;
    return m->nnodes++;
}

int rd_slotmap_assign(struct rd_slotmap *m, int lo, int hi, int idx)
{
    if (lo < 0 || hi >= RD_CLUSTER_SLOTS || lo > hi || idx < 0 || idx >= m->nnodes)
        return -1;
    for (int s = lo; s <= hi; s++)
        m->slot_node[s] = (uint16_t)idx;
    return 0;
}

int rd_slotmap_uncovered(const struct rd_slotmap *m)
{
    int n = 0;
    for (int s = 0; s < RD_CLUSTER_SLOTS; s++)
        n += m->slot_node[s] == RD_SLOT_NONE;
    return n;
}

/* "host:port" in s[0..len): the port after the last ':' (so an IPv6 host keeps its colons) */
static int split_addr(const char *s, size_t len, char host[RD_CLUSTER_HOST_MAX], int *port)
{
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ':')
            colon = s + i;
    if (!colon)
        return -1;
    size_t hl = (size_t)(colon - s), pl = len - hl - 1;
    if (hl >= RD_CLUSTER_HOST_MAX || pl == 0 || pl > 5)
        return -1;
    int p = 0;
    for (size_t i = 0; i < pl; i++) {
        if (colon[1 + i] < '0' || colon[1 + i] > '9')
            return -1;
        p = p * 10 + (colon[1 + i] - '0');
    }
    if (p <= 0 || p > 65535)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    *port = p;
    return 0;
}

enum rd_redirect rd_cluster_redirect_parse(const char *err, size_t len, struct rd_redirection *r)
{
    memset(r, 0, sizeof(*r));
    enum rd_redirect kind;
    size_t at;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
        kind = RD_REDIRECT_MOVED;
        at = 6;
    } else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
        kind = RD_REDIRECT_ASK;
        at = 4;
    } else {
        return RD_REDIRECT_NONE;
    }
    int slot = 0;
    size_t d = 0;
    while (at < len && err[at] >= '0' && err[at] <= '9' && d < 6) {
        slot = slot * 10 + (err[at++] - '0');
        d++;
    }
    if (d == 0 || slot >= RD_CLUSTER_SLOTS || at >= len || err[at] != ' ')
        return RD_REDIRECT_NONE;
    at++;
    size_t end = at;
    while (end < len && err[end] != ' ')
        end++;
    if (split_addr(err + at, end - at, r->host, &r->port) < 0)
        return RD_REDIRECT_NONE;
    r->kind = kind;
    r->slot = slot;
    return kind;
}

int rd_cluster_seeds_parse(const char *s, struct rd_cluster_node *out, int max, const char **why)
{
    int n = 0;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        while (len && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (n == max) {
            *why = "names more nodes than redeemd keeps (64)";
            return -1;
        }
        if (len == 0 || split_addr(s, len, out[n].host, &out[n].port) < 0 || !out[n].host[0]) {
            *why = "must be host:port[,host:port...]";
            return -1;
        }
        n++;
        if (!end)
            break;
        s = end + 1;
    }
    if (n == 0) {
        *why = "must be host:port[,host:port...]";
        return -1;
    }
    return n;
}

static int word_is(const char *w, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(w, name, n) == 0;
}

int rd_cluster_command_slot(int argc, const char *const *argv, const size_t *lens)
{
    static const char *const keyless[] = {"SCAN",     "SCRIPT", "CLUSTER",  "PING",     "INFO",
                                          "WAIT",     "ASKING", "READONLY", "DBSIZE",   "CONFIG",
                                          "FLUSHALL", "MULTI",  "EXEC",     "FUNCTION", NULL};
    if (argc < 2)
        return -1;
    for (const char *const *k = keyless; *k; k++)
        if (word_is(argv[0], lens[0], *k))
            return -1;
    int at = 1;
    if (word_is(argv[0], lens[0], "EVALSHA") || word_is(argv[0], lens[0], "EVAL") ||
        word_is(argv[0], lens[0], "EVALSHA_RO") || word_is(argv[0], lens[0], "EVAL_RO") ||
        word_is(argv[0], lens[0], "FCALL")) {
        if (argc < 4 || (lens[2] == 1 && argv[2][0] == '0'))
            return -1;
        at = 3;
    } else if (word_is(argv[0], lens[0], "XREADGROUP") || word_is(argv[0], lens[0], "XREAD")) {
        at = -1;
        for (int i = 1; i + 1 < argc; i++)
            if (word_is(argv[i], lens[i], "STREAMS")) {
                at = i + 1;
                break;
            }
        if (at < 0)
            return -1;
    } else if (word_is(argv[0], lens[0], "XGROUP") || word_is(argv[0], lens[0], "XINFO") ||
               word_is(argv[0], lens[0], "MEMORY") || word_is(argv[0], lens[0], "OBJECT")) {
        at = 2;
    }
    return at < argc ? rd_cluster_keyslot(argv[at], lens[at]) : -1;
}
