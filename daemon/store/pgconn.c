/* SPDX-License-Identifier: MIT
 *
 * libpq connection parameters from the user's conninfo (see pgconn.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pgconn.h"

int rd_pgparams_init(struct rd_pgparams *p, const char *conninfo, const char *app,
                     const char *settings, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    char *perr = NULL;
    p->_opts = PQconninfoParse(conninfo, &perr);
    if (!p->_opts) {
        snprintf(err, errlen, "pg_conninfo: %s", perr ? perr : "out of memory");
        if (err[0])
            err[strcspn(err, "\n")] = '\0';
        PQfreemem(perr);
        return -1;
    }
    size_t n = 0;
    for (PQconninfoOption *o = p->_opts; o->keyword; o++)
        n++;
    p->keys = calloc(n + 3, sizeof(*p->keys));
    p->vals = calloc(n + 3, sizeof(*p->vals));
    if (!p->keys || !p->vals) {
        rd_pgparams_free(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *user_options = NULL;
    int have_app = 0, have_timeout = 0;
    size_t k = 0;
    for (PQconninfoOption *o = p->_opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (!strcmp(o->keyword, "options")) {
            user_options = o->val;
            continue;
        }
        have_app |= !strcmp(o->keyword, "application_name");
        have_timeout |= !strcmp(o->keyword, "connect_timeout");
        p->keys[k] = o->keyword;
        p->vals[k++] = o->val;
    }
    if (!have_app && app) {
        p->keys[k] = "application_name";
        p->vals[k++] = app;
    }
    if (!have_timeout) {
        p->keys[k] = "connect_timeout";
        p->vals[k++] = "3"; /* a dead server must not hold a thread or a reconnect long */
    }
    if (user_options || settings) {
        size_t len = (user_options ? strlen(user_options) : 0) + (settings ? strlen(settings) : 0);
        p->_options = malloc(len + 2);
        if (!p->_options) {
            rd_pgparams_free(p);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        /* ours last: for a setting given twice the server keeps the last, and the settings
         * we pass are the ones a connection of this kind relies on */
        snprintf(p->_options, len + 2, "%s%s%s", user_options ? user_options : "",
                 user_options && settings ? " " : "", settings ? settings : "");
        p->keys[k] = "options";
        p->vals[k++] = p->_options;
    }
    p->keys[k] = NULL;
    p->vals[k] = NULL;
    return 0;
}

void rd_pgparams_free(struct rd_pgparams *p)
{
    if (p->_opts)
        PQconninfoFree(p->_opts);
    free(p->keys);
    free(p->vals);
    free(p->_options);
    memset(p, 0, sizeof(*p));
}

const char *rd_pgparams_get(const struct rd_pgparams *p, const char *keyword)
{
    for (size_t i = 0; p->keys && p->keys[i]; i++)
        if (!strcmp(p->keys[i], keyword))
            return p->vals[i];
    return NULL;
}

PGconn *rd_pg_connect(const struct rd_pgparams *p)
{
    return PQconnectdbParams(p->keys, p->vals, 0);
}

PGconn *rd_pg_connect_start(const struct rd_pgparams *p)
{
    return PQconnectStartParams(p->keys, p->vals, 0);
}
