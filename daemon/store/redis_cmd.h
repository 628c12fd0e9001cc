/* SPDX-License-Identifier: MIT
 *
 * Redis commands built from the scripts' contracts: a script's keys and arguments are set by
 * the names its header gives them (@keys, @argv; RD_<SCRIPT>_K_*, RD_<SCRIPT>_A_* in the
 * generated rd/lua_script_ids.h), and a command that leaves one out, or sets one the script
 * does not take, is refused before it is sent, as Redis refuses a command of the wrong
 * arity. Used by the workers' async client and by the blocking callers (shipper, batch
 * thread, reconcile, redeemctl) alike.
 *
 * Owns nothing: the strings are borrowed until the command is sent. Thread: any.
 */
#ifndef RD_REDIS_CMD_H
#define RD_REDIS_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "rd/lua_script_ids.h"

#define RD_CMD_MAXARGS 256 /* a script's named slots are at most 64 (the set mask) */

/*
 * A command being built, on the caller's stack. A script call (rd_cmd_script) takes its keys
 * and arguments by the names of its contract (RD_<SCRIPT>_K_*, RD_<SCRIPT>_A_*, generated
 * from the script's @keys and @argv lines), and, if the script is variadic, extra arguments
 * after them (rd_cmd_push); a plain command (rd_cmd_plain) takes its words in order. Strings
 * are borrowed until the command is sent: it is formatted then.
 */
struct rd_cmd {
    int script;   /* enum rd_lua_id, or -1 for a plain command */
    int slots;    /* EVALSHA sha numkeys, the keys and the arguments its contract names */
    int argc;     /* slots, then pushed words */
    uint64_t set; /* the slots given so far */
    int overflow; /* a word past RD_CMD_MAXARGS, or a key or argument the script has not */
    const char *argv[RD_CMD_MAXARGS];
    size_t lens[RD_CMD_MAXARGS];
};

void rd_cmd_script(struct rd_cmd *c, enum rd_lua_id script);
void rd_cmd_plain(struct rd_cmd *c);
void rd_cmd_key(struct rd_cmd *c, int key, const char *s);
void rd_cmd_arg(struct rd_cmd *c, int arg, const char *s);
void rd_cmd_argn(struct rd_cmd *c, int arg, const char *s, size_t n);
/** A plain command's next word, or a variadic script's next extra argument. */
void rd_cmd_push(struct rd_cmd *c, const char *s, size_t n);
/**
 * 0 when c is whole: every key and argument of its script's contract given, extras only for
 * a variadic script. Else -1 and *why (a caller's bug: such a command is never sent), as
 * Redis refuses a command of the wrong arity before running it.
 */
int rd_cmd_check(const struct rd_cmd *c, const char **why);

/** The Redis Cluster slot of c's first key, or -1: rd_cluster_command_slot(). */
int rd_cmd_slot(const struct rd_cmd *c);

/**
 * c as the RESP bytes Redis reads (what hiredis' redisFormatCommandArgv makes, without its
 * sprintf per argument): *out is malloc'd, to be freed with free(). Returns the length.
 */
long rd_cmd_format(const struct rd_cmd *c, char **out);

#endif
