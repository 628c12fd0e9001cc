/* SPDX-License-Identifier: MIT
 *
 * HTTP/1.x request heads and chunked bodies (see rd/http_parse.h).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rd/http_parse.h"

/* Empty lines a client may send before its request line (RFC 9112 2.2 asks servers to
 * ignore at least one); more is a malformed request. Bounded so that no scan restarts over
 * an unbounded run of them. */
#define LEADING_MAX 8

static size_t leading_empty(const char *buf, size_t len)
{
    size_t s = 0;
    while (s < len && s < LEADING_MAX && (buf[s] == '\r' || buf[s] == '\n'))
        s++;
    return s;
}

size_t rd_http_head_len(const char *buf, size_t len, size_t *from)
{
    size_t s = leading_empty(buf, len);
    size_t i = *from > s ? *from : s;
    for (; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
        if (i + 2 >= len)
            break; /* too few bytes after this line end to tell: look again from here */
    }
    *from = i;
    return 0;
}

/* RFC 9110 5.6.2 tchar */
static int tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr(extra, c) != NULL);
}

static const struct {
    const char *name;
    enum rd_hmethod m;
} methods[] = {
    {"GET", RD_HM_GET},         {"HEAD", RD_HM_HEAD},     {"POST", RD_HM_POST},
    {"PUT", RD_HM_PUT},         {"DELETE", RD_HM_DELETE}, {"PATCH", RD_HM_PATCH},
    {"OPTIONS", RD_HM_OPTIONS}, {"TRACE", RD_HM_TRACE},   {"CONNECT", RD_HM_CONNECT},
};

const char *rd_http_method_name(enum rd_hmethod m)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (methods[i].m == m)
            return methods[i].name;
    return NULL;
}

/* The end of the line starting at p (its '\n'), and in *content_end where its content
 * ends (before a '\r'). NULL when there is no '\n' before end. */
static char *line_end(char *p, char *end, char **content_end)
{
    char *lf = memchr(p, '\n', (size_t)(end - p));
    if (!lf)
        return NULL;
    *content_end = lf > p && lf[-1] == '\r' ? lf - 1 : lf;
    return lf;
}

static enum rd_status refuse(const char **why, enum rd_status st, const char *msg)
{
    *why = msg;
    return st;
}

static enum rd_status parse_request_line(char *p, char *e, struct rd_http_head *h, const char **why)
{
    char *m = p;
    while (p < e && tchar((unsigned char)*p))
        p++;
    size_t mlen = (size_t)(p - m);
    if (mlen == 0 || mlen > RD_HTTP_MAX_METHOD || p == e || *p != ' ')
        return refuse(why, RD_E_INVALID_REQUEST, "malformed request line (method)");
    *p++ = '\0';
    h->method_name = m;
    h->method = RD_HM_UNKNOWN;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (!strcmp(methods[i].name, m))
            h->method = methods[i].m;

    char *t = p;
    while (p<e && * p> 0x20 && *p < 0x7f && *p != '#')
        p++;
    if (p == t || p == e || *p != ' ')
        return refuse(why, RD_E_INVALID_REQUEST, "malformed request line (target)");
    *p++ = '\0';

    /* HTTP/d.d and nothing after it */
    if (e - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' ||
        p[7] < '0' || p[7] > '9')
        return refuse(why, RD_E_INVALID_REQUEST, "malformed request line (version)");
    if (p[5] != '1' || p[7] > '1')
        return refuse(why, RD_E_HTTP_VERSION, "only HTTP/1.0 and HTTP/1.1 are served");
    h->minor = p[7] - '0';

    /* the target's forms (RFC 9112 3.2) */
    h->query = NULL;
    if (t[0] == '/') {
        h->path = t;
    } else if (!strcmp(t, "*")) {
        if (h->method != RD_HM_OPTIONS)
            return refuse(why, RD_E_INVALID_REQUEST, "'*' is a target for OPTIONS only");
        h->path = t;
        return RD_OK;
    } else if (h->method == RD_HM_CONNECT) {
        h->path = ""; /* authority-form: no resource of ours */
        return RD_OK;
    } else if (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8)) {
        char *a = strstr(t, "://") + 3;
        char *slash = a + strcspn(a, "/?");
        if (*slash == '/') {
            h->path = slash;
        } else {
            h->path = "/";
            if (*slash == '?')
                h->query = slash + 1;
            return RD_OK;
        }
    } else {
        return refuse(why, RD_E_INVALID_REQUEST, "malformed request target");
    }
    char *q = strchr(h->path, '?');
    if (q) {
        *q = '\0';
        h->query = q + 1;
    }
    return RD_OK;
}

/* Splits a comma-separated list value; calls fn on each trimmed, non-empty element until it
 * returns nonzero (returned). */
static int each_element(const char *v, size_t n, int (*fn)(const char *s, size_t len, void *arg),
                        void *arg)
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (b > a) {
            int rc = fn(v + a, b - a, arg);
            if (rc)
                return rc;
        }
        i = j + 1;
    }
    return 0;
}

static int is_token(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

struct cl_state {
    int64_t value;
};

/* one element of a Content-Length value: digits only, equal to any seen before */
static int cl_element(const char *s, size_t len, void *arg)
{
    struct cl_state *st = arg;
    if (len > 18)
        return 1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 1;
        v = v * 10 + (s[i] - '0');
    }
    if (st->value >= 0 && st->value != v)
        return 1;
    st->value = v;
    return 0;
}

struct conn_state {
    bool close, keep_alive;
};

static int conn_element(const char *s, size_t len, void *arg)
{
    struct conn_state *st = arg;
    if (is_token(s, len, "close"))
        st->close = true;
    else if (is_token(s, len, "keep-alive"))
        st->keep_alive = true;
    return 0;
}

struct te_state {
    int n;
    bool last_chunked, chunked_before;
};

static int te_element(const char *s, size_t len, void *arg)
{
    struct te_state *st = arg;
    if (st->last_chunked)
        st->chunked_before = true; /* a coding after chunked */
    st->last_chunked = is_token(s, len, "chunked");
    st->n++;
    return 0;
}

enum rd_status rd_http_parse_head(char *buf, size_t len, struct rd_http_head *h, const char **why)
{
    h->method = RD_HM_UNKNOWN;
    h->method_name = "";
    h->path = "";
    h->query = NULL;
    h->minor = 1;
    h->nfields = 0;
    h->content_length = -1;
    h->chunked = h->keep_alive = h->expect_continue = false;
    *why = NULL;

    char *end = buf + len, *p = buf + leading_empty(buf, len), *ce;
    char *lf = line_end(p, end, &ce);
    if (!lf)
        return refuse(why, RD_E_INVALID_REQUEST, "malformed request line");
    enum rd_status st = parse_request_line(p, ce, h, why);
    if (st != RD_OK)
        return st;

    /* header fields (RFC 9112 5) */
    for (p = lf + 1;; p = lf + 1) {
        if (p >= end || !(lf = line_end(p, end, &ce)))
            return refuse(why, RD_E_INVALID_REQUEST, "the header block does not end");
        if (ce == p)
            break; /* the empty line */
        if (*p == ' ' || *p == '\t')
            return refuse(why, RD_E_INVALID_REQUEST, "obsolete line folding in a header field");
        char *name = p;
        while (p < ce && tchar((unsigned char)*p))
            p++;
        if (p == name || p == ce || *p != ':')
            return refuse(why, RD_E_INVALID_REQUEST, "malformed header field name");
        *p++ = '\0';
        while (p < ce && (*p == ' ' || *p == '\t'))
            p++;
        char *v = p, *ve = ce;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (char *c = v; c < ve; c++)
            if ((unsigned char)*c < 0x20 ? *c != '\t' : *c == 0x7f)
                return refuse(why, RD_E_INVALID_REQUEST, "a control character in a header field");
        if (h->nfields == RD_HTTP_MAX_FIELDS)
            return refuse(why, RD_E_HEADERS_TOO_LARGE, "too many header fields");
        *ve = '\0'; /* a space, the CR or the LF: the line's end is known already */
        struct rd_hfield *f = &h->fields[h->nfields++];
        f->name = name;
        f->value = v;
        f->value_len = (size_t)(ve - v);
    }

    /* what the fields mean for the message's framing and the connection */
    struct cl_state cl = {-1};
    struct conn_state conn = {false, false};
    struct te_state te = {0, false, false};
    int hosts = 0, cls = 0, tes = 0, expect_other = 0;
    for (int i = 0; i < h->nfields; i++) {
        const struct rd_hfield *f = &h->fields[i];
        if (!strcasecmp(f->name, "content-length")) {
            cls++;
            if (each_element(f->value, f->value_len, cl_element, &cl) || cl.value < 0)
                return refuse(why, RD_E_INVALID_REQUEST, "malformed or conflicting Content-Length");
        } else if (!strcasecmp(f->name, "transfer-encoding")) {
            tes++;
            each_element(f->value, f->value_len, te_element, &te);
        } else if (!strcasecmp(f->name, "connection")) {
            each_element(f->value, f->value_len, conn_element, &conn);
        } else if (!strcasecmp(f->name, "expect")) {
            if (is_token(f->value, f->value_len, "100-continue"))
                h->expect_continue = h->minor == 1;
            else
                expect_other = 1;
        } else if (!strcasecmp(f->name, "host")) {
            hosts++;
        }
    }
    h->keep_alive = h->minor == 1 ? !conn.close : conn.keep_alive && !conn.close;
    if (h->minor == 1 && hosts != 1)
        return refuse(why, RD_E_INVALID_REQUEST, "an HTTP/1.1 request needs one Host field");
    if (tes) {
        if (cls)
            return refuse(why, RD_E_INVALID_REQUEST, "both Content-Length and Transfer-Encoding");
        if (h->minor == 0)
            return refuse(why, RD_E_INVALID_REQUEST, "Transfer-Encoding in HTTP/1.0");
        if (!te.last_chunked)
            return refuse(why, RD_E_INVALID_REQUEST, "the last transfer coding is not chunked");
        if (te.n > 1 || te.chunked_before)
            return refuse(why, RD_E_NOT_IMPLEMENTED, "only the chunked transfer coding is served");
        h->chunked = true;
    }
    h->content_length = cls ? cl.value : -1;
    if (expect_other)
        return refuse(why, RD_E_EXPECTATION_FAILED, "only Expect: 100-continue is served");
    return RD_OK;
}

const char *rd_http_field(const struct rd_http_head *h, const char *name)
{
    for (int i = 0; i < h->nfields; i++)
        if (!strcasecmp(h->fields[i].name, name))
            return h->fields[i].value;
    return NULL;
}

const char *rd_http_field_last(const struct rd_http_head *h, const char *name)
{
    for (int i = h->nfields - 1; i >= 0; i--)
        if (!strcasecmp(h->fields[i].name, name))
            return h->fields[i].value;
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ---- query strings ---------------------------------------------------------------------- */

/* Decodes s in place (it only shrinks); -1 on a bad escape or a control character. */
static int url_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        char c = *p;
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = hexval(p[1]), lo = hi >= 0 ? hexval(p[2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            p += 2;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f)
            return -1;
        *o++ = c;
    }
    *o = '\0';
    return 0;
}

enum rd_status rd_query_parse(const char *q, struct rd_query *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    *why = NULL;
    if (!q || !*q)
        return RD_OK;
    out->buf = strdup(q);
    if (!out->buf)
        abort();
    char *save = NULL;
    for (char *part = strtok_r(out->buf, "&", &save); part; part = strtok_r(NULL, "&", &save)) {
        if (out->n == RD_QUERY_MAX) {
            *why = "too many query parameters";
            return RD_E_INVALID_REQUEST;
        }
        char *eq = strchr(part, '=');
        if (eq)
            *eq = '\0';
        if (url_decode(part) < 0 || (eq && url_decode(eq + 1) < 0)) {
            *why = "malformed %-escape or control character in the query string";
            return RD_E_INVALID_REQUEST;
        }
        out->names[out->n] = part;
        out->values[out->n++] = eq ? eq + 1 : "";
    }
    return RD_OK;
}

void rd_query_free(struct rd_query *q)
{
    free(q->buf);
    memset(q, 0, sizeof(*q));
}

/* ---- chunked bodies (RFC 9112 7.1) ------------------------------------------------------ */

enum {
    C_SIZE = 0, /* hex digits of a chunk size */
    C_EXT,      /* extensions after the size, up to the line's end */
    C_SIZE_LF,  /* the LF after the size line's CR */
    C_DATA,
    C_DATA_CR, /* the CRLF after a chunk's data */
    C_DATA_LF,
    C_TRAILER,      /* the start of a trailer line (or of the final empty line) */
    C_TRAILER_LINE, /* inside a trailer field */
    C_END_LF,       /* the LF of the final empty line */
};

int rd_chunked_decode(struct rd_chunked *c, const char *in, size_t n, size_t *used,
                      struct rd_sbuf *out, size_t max)
{
    size_t i = 0;
    while (i < n) {
        char ch = in[i];
        switch (c->state) {
        case C_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (++c->line > 15)
                    return -2; /* 16 hex digits and more: far past any max */
                c->left = c->left * 16 + (uint64_t)v;
                i++;
                continue;
            }
            if (c->line == 0)
                return -1;
            if (ch == ';' || ch == ' ' || ch == '\t')
                c->state = C_EXT;
            else if (ch == '\r')
                c->state = C_SIZE_LF;
            else if (ch == '\n')
                goto size_done;
            else
                return -1;
            i++;
            continue;
        }
        case C_EXT:
            if (++c->line > RD_HTTP_CHUNK_LINE)
                return -1;
            if (ch == '\r')
                c->state = C_SIZE_LF;
            else if (ch == '\n')
                goto size_done;
            else if ((unsigned char)ch < 0x20 && ch != '\t')
                return -1;
            i++;
            continue;
        case C_SIZE_LF:
            if (ch != '\n')
                return -1;
        size_done:
            i++;
            c->line = 0;
            if (c->left == 0) {
                c->state = C_TRAILER;
            } else {
                if (c->left > max || out->len + c->left > max)
                    return -2;
                c->state = C_DATA;
            }
            continue;
        case C_DATA: {
            size_t k = n - i;
            if (k > c->left)
                k = (size_t)c->left;
            rd_sbuf_add(out, in + i, k);
            c->left -= k;
            i += k;
            if (c->left == 0)
                c->state = C_DATA_CR;
            continue;
        }
        case C_DATA_CR:
            if (ch == '\r')
                c->state = C_DATA_LF;
            else if (ch == '\n')
                c->state = C_SIZE;
            else
                return -1;
            i++;
            continue;
        case C_DATA_LF:
            if (ch != '\n')
                return -1;
            c->state = C_SIZE;
            i++;
            continue;
        case C_TRAILER:
            if (ch == '\n') {
                *used = i + 1;
                return 1;
            }
            c->state = ch == '\r' ? C_END_LF : C_TRAILER_LINE;
            if (ch != '\r')
                c->total++;
            i++;
            continue;
        case C_TRAILER_LINE:
            if (++c->total > RD_HTTP_TRAILERS)
                return -1;
            if (ch == '\n')
                c->state = C_TRAILER;
            i++;
            continue;
        case C_END_LF:
            if (ch != '\n')
                return -1;
            *used = i + 1;
            return 1;
        default:
            return -1;
        }
    }
    *used = n;
    return 0;
}
