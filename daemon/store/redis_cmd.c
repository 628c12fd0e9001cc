/* SPDX-License-Identifier: MIT
 *
 * Commands built from the scripts' contracts (see redis_cmd.h).
 */
#include <stdlib.h>
#include <string.h>

#include "rd/cluster.h"
#include "rd/lua_scripts.h"
#include "store/redis_cmd.h"
#include "rd/json_util.h"

/* ---- building -------------------------------------------------------------------------- */

/* "numkeys" as EVALSHA and FCALL take it: every script names a handful of keys */
static const char *const small[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8"};

void rd_cmd_script(struct rd_cmd *c, enum rd_lua_id script)
{
    const struct rd_lua_script *s = &rd_lua_scripts[script];
    c->script = (int)script;
    c->overflow = 0;
    c->slots = 3 + s->nkeys + s->nargs;
    if (s->nkeys >= (int)(sizeof(small) / sizeof(small[0])) || c->slots > 64) {
        c->overflow = 1;
        c->slots = 3;
    }
    c->argc = c->slots;
    if (s->fname[0]) { /* in the library (lua_scripts.h): FCALL <function> numkeys ... */
        c->argv[0] = "FCALL";
        c->lens[0] = 5;
        c->argv[1] = s->fname;
        c->lens[1] = strlen(s->fname);
    } else {
        c->argv[0] = "EVALSHA";
        c->lens[0] = 7;
        c->argv[1] = s->sha1;
        c->lens[1] = 40;
    }
    c->argv[2] = small[c->overflow ? 0 : s->nkeys];
    c->lens[2] = 1;
    c->set = 7; /* the first three */
}

void rd_cmd_plain(struct rd_cmd *c)
{
    c->script = -1;
    c->slots = c->argc = 0;
    c->set = 0;
    c->overflow = 0;
}

static void set_slot(struct rd_cmd *c, int slot, int limit, const char *s, size_t n)
{
    if (slot < 3 || slot >= limit) {
        c->overflow = 1; /* a key or argument the contract does not name */
        return;
    }
    c->argv[slot] = s;
    c->lens[slot] = n;
    c->set |= 1ULL << slot;
}

void rd_cmd_key(struct rd_cmd *c, int key, const char *s)
{
    int nkeys = c->script >= 0 ? rd_lua_scripts[c->script].nkeys : 0;
    set_slot(c, 3 + key, 3 + (key < nkeys ? nkeys : 0), s, strlen(s));
}

void rd_cmd_argn(struct rd_cmd *c, int arg, const char *s, size_t n)
{
    int nkeys = c->script >= 0 ? rd_lua_scripts[c->script].nkeys : 0;
    set_slot(c, 3 + nkeys + arg, c->script >= 0 ? c->slots : 0, s, n);
}

void rd_cmd_arg(struct rd_cmd *c, int arg, const char *s)
{
    rd_cmd_argn(c, arg, s, strlen(s));
}

void rd_cmd_push(struct rd_cmd *c, const char *s, size_t n)
{
    if (c->argc >= RD_CMD_MAXARGS || (c->script >= 0 && !rd_lua_scripts[c->script].variadic)) {
        c->overflow = 1;
        return;
    }
    c->argv[c->argc] = s;
    c->lens[c->argc++] = n;
}

int rd_cmd_check(const struct rd_cmd *c, const char **why)
{
    if (c->overflow) {
        *why = "a word past the command's limit, or a key or argument its contract has not";
        return -1;
    }
    uint64_t all = c->slots >= 64 ? ~0ULL : (1ULL << c->slots) - 1;
    if ((c->set & all) != all) {
        *why = "a key or argument of the script's contract was not given";
        return -1;
    }
    if (c->argc == 0) {
        *why = "an empty command";
        return -1;
    }
    return 0;
}

/* ---- routing ------------------------------------------------------------------------------ */

int rd_cmd_slot(const struct rd_cmd *c)
{
    return rd_cluster_command_slot(c->argc, c->argv, c->lens);
}

/* "<c><n>\r\n" at p; returns the end */
static char *resp_len(char *p, char c, size_t n)
{
    *p++ = c;
    p += rd_fmt_i64(p, (int64_t)n);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

long rd_cmd_format(const struct rd_cmd *c, char **out)
{
    size_t total = 1 + 20 + 2;
    for (int i = 0; i < c->argc; i++)
        total += 1 + 20 + 2 + c->lens[i] + 2;
    char *buf = malloc(total + 1), *p = buf;
    if (!buf)
        abort(); /* only out of memory */
    p = resp_len(p, '*', (size_t)c->argc);
    for (int i = 0; i < c->argc; i++) {
        p = resp_len(p, '$', c->lens[i]);
        memcpy(p, c->argv[i], c->lens[i]);
        p += c->lens[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    *p = '\0';
    *out = buf;
    return (long)(p - buf);
}
