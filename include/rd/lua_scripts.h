/* SPDX-License-Identifier: MIT
 *
 * The Redis scripts of scripts/lua/, embedded at build time (scripts/cmake/embed_lua.cmake)
 * with the SHA1 of their exact bytes; those marked @function also as one Redis Function
 * library. Index the table with enum rd_lua_id.
 */
#ifndef RD_LUA_SCRIPTS_H
#define RD_LUA_SCRIPTS_H

#include <stddef.h>

struct rd_lua_script {
    const char *name;
    const char *body;
    size_t len;
    char sha1[41];
    int nkeys, nargs;  /* its contract: KEYS and ARGV it names (@keys, @argv) */
    int variadic;      /* it takes further arguments after them */
    const char *fname; /* its function in rd_lua_library (@function), called with FCALL; "" */
};

extern const struct rd_lua_script rd_lua_scripts[];
extern const size_t rd_lua_script_count;

/* The Redis Function library of the @function scripts (FUNCTION LOAD at every connect: see
 * embed_lua.cmake), and its name, "redeemd_<digest of its text>". */
extern const char rd_lua_library[];
extern const size_t rd_lua_library_len;
extern const char rd_lua_library_name[];

#endif
