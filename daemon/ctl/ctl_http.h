/* SPDX-License-Identifier: MIT
 *
 * redeemctl's HTTP client (see ctl_http.c). Thread: redeemctl's only one.
 */
#ifndef RD_CTL_HTTP_H
#define RD_CTL_HTTP_H

#include <stdio.h>

struct rd_ctl_target {
    char host[256];
    int port;
    const char *key; /* API key, borrowed */
};

/**
 * Sends one request (body may be NULL). A 2xx body is written to out; any other body, or all
 * of it when out is NULL, is returned in *err_body (malloc'd, the caller frees). Returns the
 * HTTP status, or -1 when redeemd cannot be reached.
 */
int rd_ctl_http(const struct rd_ctl_target *t, const char *method, const char *path,
                const char *accept, const char *body, FILE *out, char **err_body);

/** Prints an error envelope (or the bare status) to stderr. */
void rd_ctl_print_error(int status, const char *body);

#endif
