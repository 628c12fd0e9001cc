/* SPDX-License-Identifier: MIT
 *
 * What the daemon serves besides the API: the web console (/console/, files built in from
 * console/), the OpenAPI document (/openapi.json, from docs/openapi.json) and /v1/me, which
 * tells a key's holder what the key may do (the console shows what its scopes allow; the
 * API still checks every call).
 *
 * The console's pages are public (they hold no data; every call they make carries the key
 * the user typed). They are sent with a Content-Security-Policy that allows scripts and
 * styles from this origin only, no inline script, and calls to this origin only.
 */
#include <string.h>

#include "api/api.h"
#include "rd/assets.h"

#define CONSOLE_CSP                                                                                \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const struct rd_asset *rd_asset_find(const char *path)
{
    for (size_t i = 0; i < rd_assets_n; i++)
        if (strcmp(rd_assets[i].path, path) == 0)
            return &rd_assets[i];
    return NULL;
}

static void serve(struct rd_req *r, const struct rd_asset *a)
{
    rd_hreq_add_header(r->hr, "Cache-Control", "no-cache");
    rd_hreq_add_header(r->hr, "ETag", a->etag);
    rd_hreq_add_header(r->hr, "X-Content-Type-Options", "nosniff");
    rd_hreq_add_header(r->hr, "Content-Security-Policy", CONSOLE_CSP);
    rd_hreq_add_header(r->hr, "X-Frame-Options", "DENY");
    rd_hreq_add_header(r->hr, "Referrer-Policy", "no-referrer");
    rd_reply_text(r, 200, a->type, (const char *)a->data, a->len);
}

void rd_h_console(struct rd_req *r)
{
    if (strcmp(r->path, "/console") == 0) { /* relative URLs in the page need the slash */
        rd_hreq_add_header(r->hr, "Location", "/console/");
        rd_reply_text(r, 308, "text/plain; charset=utf-8", "/console/\n", 11);
        return;
    }
    char path[160];
    const char *name = r->param ? r->param : "index.html";
    const struct rd_asset *a = NULL;
    /* one segment (the router cut it at '/'): only the files built in, never a file system */
    if (strlen(name) < 64) {
        snprintf(path, sizeof(path), "console/%s", name);
        a = rd_asset_find(path);
    }
    if (!a) {
        rd_reply_error(r, RD_E_NOT_FOUND, "no such file in the console", NULL);
        return;
    }
    serve(r, a);
}

void rd_h_openapi(struct rd_req *r)
{
    const struct rd_asset *a = rd_asset_find("docs/openapi.json");
    if (!a) {
        rd_reply_error(r, RD_E_NOT_FOUND, NULL, NULL);
        return;
    }
    /* tools on other origins (an editor, a client generator in a browser) may read it */
    rd_hreq_add_header(r->hr, "Access-Control-Allow-Origin", "*");
    serve(r, a);
}

void rd_h_me(struct rd_req *r)
{
    json_t *scopes = json_array();
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{RD_SCOPE_ADMIN, "admin"}, {RD_SCOPE_REDEEM, "redeem"}, {RD_SCOPE_FRAUD, "fraud"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (r->scopes & names[i].bit)
            json_array_append_new(scopes, json_string(names[i].name));
    rd_reply_json(r, 200, json_pack("{s:s, s:o}", "key_id", r->key_id, "scopes", scopes));
}
