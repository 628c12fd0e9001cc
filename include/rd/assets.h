/* SPDX-License-Identifier: MIT
 *
 * Files built into the daemon (scripts/cmake/embed_files.cmake): the web console (console/)
 * and the OpenAPI document (docs/openapi.json), served from memory so that a daemon is one
 * binary and the console always matches the API it calls.
 *
 * Owns: nothing (static data). Thread: any.
 */
#ifndef RD_ASSETS_H
#define RD_ASSETS_H

#include <stddef.h>

struct rd_asset {
    const char *path; /* relative to the source tree: "console/index.html" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
    const char *etag; /* "\"<sha1>\"" */
};

extern const struct rd_asset rd_assets[];
extern const size_t rd_assets_n;

/** The asset at path, or NULL. */
const struct rd_asset *rd_asset_find(const char *path);

#endif
