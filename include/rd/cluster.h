/* SPDX-License-Identifier: MIT
 *
 * Redis Cluster's arithmetic, free of sockets: which slot a key hashes to (CRC16 of its hash
 * tag, as Redis' own keyHashSlot), which node serves a slot, and what a redirection
 * ("MOVED 3999 10.0.0.1:6381", "ASK ...") says. The connections that use it live in
 * daemon/store (redis_route.c: the workers' async calls; redis_sync.c: the blocking callers).
 *
 * Owns: a slot map owns its node table (fixed size, no allocation). Thread: any; a map is
 * used by one thread at a time (each worker and each job keeps its own).
 */
#ifndef RD_CLUSTER_H
#define RD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#define RD_CLUSTER_SLOTS     16384
#define RD_CLUSTER_NODES_MAX 64 /* primaries a map can name; CLUSTER SLOTS beyond it is refused */
#define RD_CLUSTER_HOST_MAX  64 /* an address as CLUSTER SLOTS or a redirection gives it */
#define RD_SLOT_NONE         0xffff

/** The slot of key[0..len): CRC16-XMODEM of the hash tag ({...}, first '{' to the first '}'
 * after it, not empty) or of the whole key, mod 16384. */
uint16_t rd_cluster_keyslot(const char *key, size_t len);

struct rd_cluster_node {
    char host[RD_CLUSTER_HOST_MAX];
    int port;
};

/* slot -> index into nodes[], RD_SLOT_NONE while no node is known to serve it */
struct rd_slotmap {
    uint16_t slot_node[RD_CLUSTER_SLOTS];
    struct rd_cluster_node nodes[RD_CLUSTER_NODES_MAX];
    int nnodes;
};

void rd_slotmap_clear(struct rd_slotmap *m);
/** The index of host:port, added if new; -1 when the table is full or host too long. */
int rd_slotmap_node(struct rd_slotmap *m, const char *host, size_t hostlen, int port);
/** Slots lo..hi (inclusive) served by node idx; -1 on a bad range or index. */
int rd_slotmap_assign(struct rd_slotmap *m, int lo, int hi, int idx);
/** Slots without a node (0 when the map covers the whole key space). */
int rd_slotmap_uncovered(const struct rd_slotmap *m);

/*
 * A redirection error reply: "MOVED <slot> <host>:<port>" (the slot lives there now) or
 * "ASK <slot> <host>:<port>" (this one command goes there, preceded by ASKING). An IPv6 host
 * is the part before the last ':'. An empty host ("MOVED 1 :6380", a node that does not know
 * its address) means the node that answered; the caller substitutes it.
 */
enum rd_redirect { RD_REDIRECT_NONE = 0, RD_REDIRECT_MOVED, RD_REDIRECT_ASK };
struct rd_redirection {
    enum rd_redirect kind;
    int slot;
    char host[RD_CLUSTER_HOST_MAX];
    int port;
};
/** Parses err[0..len) into r: its kind, or RD_REDIRECT_NONE when it is no (valid) redirection. */
enum rd_redirect rd_cluster_redirect_parse(const char *err, size_t len, struct rd_redirection *r);

/**
 * The slot of a command's first key, from its words (argv[i] of lens[i] bytes): a script's
 * first key (EVALSHA sha numkeys key...), the stream after STREAMS (XREADGROUP, XREAD), the
 * key after the subcommand (XGROUP CREATE key, MEMORY USAGE key), else the word after the
 * command. -1 for a command without keys (SCAN, SCRIPT, CLUSTER, PING, INFO, WAIT...), which
 * any node may take, and for a command too short to name its key.
 */
int rd_cluster_command_slot(int argc, const char *const *argv, const size_t *lens);

/** Parses "host:port[,host:port...]" (the redis_cluster setting) into at most max nodes;
 * the count, or -1 with *why. */
int rd_cluster_seeds_parse(const char *s, struct rd_cluster_node *out, int max, const char **why);

#endif
