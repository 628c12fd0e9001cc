/* SPDX-License-Identifier: MIT
 *
 * libpq connection parameters for redeemd's own connections, built from the user's
 * pg_conninfo in either form libpq accepts (keywords, or a postgresql:// URI) plus what one
 * kind of connection needs: an application_name and a connect_timeout where the user set
 * none, and server settings ("-c name=value ...") added after the user's own options=,
 * never instead of them. Appending keywords to the user's string, as was done before,
 * breaks the URI form and silently replaces options=.
 *
 * Owns the parsed options and the merged strings until rd_pgparams_free(). Thread: any (each
 * user keeps its own).
 */
#ifndef RD_PGCONN_H
#define RD_PGCONN_H

#include <libpq-fe.h>
#include <stddef.h>

struct rd_pgparams {
    const char **keys; /* NULL-terminated, for PQconnectdbParams / PQconnectStartParams */
    const char **vals;
    /* private */
    PQconninfoOption *_opts;
    char *_options;
};

/**
 * Parses conninfo and adds app (application_name default) and settings (server options
 * appended to the user's, may be NULL). Returns 0, or -1 with err (libpq's message) when
 * conninfo cannot be parsed.
 */
int rd_pgparams_init(struct rd_pgparams *p, const char *conninfo, const char *app,
                     const char *settings, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void rd_pgparams_free(struct rd_pgparams *p);
/** The value given for keyword, or NULL. Borrowed. */
const char *rd_pgparams_get(const struct rd_pgparams *p, const char *keyword);

/** Blocking connect (threads of their own, tools). Never NULL; check PQstatus. */
PGconn *rd_pg_connect(const struct rd_pgparams *p);
/** Nonblocking connect start for an event loop (PQconnectPoll follows). May be NULL. */
PGconn *rd_pg_connect_start(const struct rd_pgparams *p);

#endif
