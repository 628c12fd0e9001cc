/* SPDX-License-Identifier: MIT
 *
 * HTTP/1.x request parsing (RFC 9112), with no I/O: the server core (daemon/server/httpd.c) finds
 * where a request head ends, copies it out and parses it here in place; a chunked body is
 * decoded here too. Everything a client sends passes through these functions first, so they
 * are strict, bounded, and fuzzed (tests/fuzz/).
 *
 * Strings in a parsed head point into the caller's buffer, which the parser NUL-terminates
 * in place; they live as long as that buffer.
 */
#ifndef RD_HTTP_PARSE_H
#define RD_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rd/json_util.h"
#include "rd/status.h"

#define RD_HTTP_MAX_FIELDS 64    /* header fields in one request; more is 431 */
#define RD_HTTP_MAX_METHOD 32    /* bytes of a method token */
#define RD_HTTP_CHUNK_LINE 1024  /* bytes of a chunk-size line with its extensions */
#define RD_HTTP_TRAILERS   16384 /* bytes of trailer fields after a chunked body */

enum rd_hmethod {
    RD_HM_UNKNOWN = 0, /* a well-formed token no route knows */
    RD_HM_GET,
    RD_HM_HEAD,
    RD_HM_POST,
    RD_HM_PUT,
    RD_HM_DELETE,
    RD_HM_PATCH,
    RD_HM_OPTIONS,
    RD_HM_TRACE,
    RD_HM_CONNECT,
};

struct rd_hfield {
    const char *name;  /* as sent (compare case-insensitively) */
    const char *value; /* leading and trailing whitespace removed */
    size_t value_len;
};

struct rd_http_head {
    enum rd_hmethod method;
    const char *method_name;
    const char *path;  /* origin-form path ("/v1/..."), the path of an absolute-form
                          target, "*", or "" for CONNECT's authority-form */
    const char *query; /* after '?' (not decoded), or NULL */
    int minor;         /* HTTP/1.minor: 0 or 1 */
    struct rd_hfield fields[RD_HTTP_MAX_FIELDS];
    int nfields;
    int64_t content_length; /* -1: none given */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* the connection may carry another request after this one */
    bool expect_continue;   /* Expect: 100-continue */
};

/**
 * Where the head at the start of buf ends: the length of the request line, the fields and
 * the empty line (leading empty lines included), or 0 when the end is not in buf yet. *from
 * keeps the scan position between calls on a growing buffer (start it at 0), so that a head
 * trickled in byte by byte costs its length once, not its length squared.
 */
size_t rd_http_head_len(const char *buf, size_t len, size_t *from);

/**
 * Parses the complete head buf[0..len) in place. Returns RD_OK, or the refusal with *why (a
 * static message): RD_E_INVALID_REQUEST (malformed; also a missing Host in HTTP/1.1, both
 * Content-Length and Transfer-Encoding, conflicting lengths), RD_E_HEADERS_TOO_LARGE (more
 * than RD_HTTP_MAX_FIELDS fields), RD_E_HTTP_VERSION (not HTTP/1.0 or 1.1),
 * RD_E_NOT_IMPLEMENTED (a transfer coding other than chunked), RD_E_EXPECTATION_FAILED (an
 * Expect other than 100-continue). On a refusal h->minor and h->keep_alive still say how to
 * answer, and the fields parsed so far stay readable.
 */
enum rd_status rd_http_parse_head(char *buf, size_t len, struct rd_http_head *h, const char **why);

/** The value of the first field called name (case-insensitive), or NULL. */
const char *rd_http_field(const struct rd_http_head *h, const char *name);
/** The last field of that name (X-Forwarded-For: a proxy adds its line after the client's). */
const char *rd_http_field_last(const struct rd_http_head *h, const char *name);

/** The method token of m ("GET"), or NULL for RD_HM_UNKNOWN. */
const char *rd_http_method_name(enum rd_hmethod m);

/** A chunked body being decoded; zero it before the first call. */
struct rd_chunked {
    int state;
    uint64_t left; /* data bytes left in the current chunk */
    size_t line;   /* bytes of the current size line or trailer */
    size_t total;  /* trailer bytes so far */
};

/**
 * Decodes in[0..n) of a chunked body, appending its data to out. Returns 1 when the body has
 * ended (*used: how many bytes of in were its last), 0 when all n bytes were used and more
 * are needed, -1 when it is malformed, -2 when the data would exceed max bytes in all.
 */
int rd_chunked_decode(struct rd_chunked *c, const char *in, size_t n, size_t *used,
                      struct rd_sbuf *out, size_t max);

/* ---- query strings ------------------------------------------------------------------- */

#define RD_QUERY_MAX 64 /* name=value pairs in one query string; more is refused */

/** A decoded query string: names and values point into buf (owned). */
struct rd_query {
    int n;
    const char *names[RD_QUERY_MAX];
    const char *values[RD_QUERY_MAX];
    char *buf;
};

/**
 * Splits q (may be NULL) at '&' and '=' and decodes %XX and '+'. Returns RD_OK, or
 * RD_E_INVALID_REQUEST with *why: a malformed %-escape, an encoded NUL or control character,
 * more than RD_QUERY_MAX parameters. out is always safe to rd_query_free().
 */
enum rd_status rd_query_parse(const char *q, struct rd_query *out, const char **why);
void rd_query_free(struct rd_query *q);

#endif
