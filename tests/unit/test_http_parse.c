/* SPDX-License-Identifier: MIT
 * HTTP request heads, chunked bodies and query strings: what every client byte goes through
 * first, checked at each of its bounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#include "rd/http_parse.h"

/* Parses s (copied: the parser writes into its buffer); returns the status. */
static enum rd_status parse(const char *s, struct rd_http_head *h, char **keep)
{
    size_t n = strlen(s), from = 0;
    char *buf = malloc(n + 1);
    memcpy(buf, s, n + 1);
    size_t hl = rd_http_head_len(buf, n, &from);
    const char *why;
    enum rd_status st = rd_http_parse_head(buf, hl ? hl : n, h, &why);
    if (st != RD_OK)
        assert_non_null(why);
    *keep = buf;
    return st;
}

static void head_end_is_found_however_it_arrives(void **state)
{
    (void)state;
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY";
    size_t full = strlen(req) - 4;
    /* byte by byte, resuming where the last call stopped */
    size_t from = 0, got = 0;
    for (size_t n = 1; n <= strlen(req) && !got; n++)
        got = rd_http_head_len(req, n, &from);
    assert_int_equal(got, full);
    from = 0;
    assert_int_equal(rd_http_head_len("GET / HTTP/1.0\n\n", 16, &from), 16); /* bare LF */
    from = 0;
    assert_int_equal(rd_http_head_len("\r\n\r\nGET / HTTP/1.0\r\n\r\n", 22, &from), 22);
    from = 0;
    assert_int_equal(rd_http_head_len("GET / HTTP/1.1\r\nHost: x\r\n", 25, &from), 0);
    assert_true(from <= 25);
}

static void a_plain_request(void **state)
{
    (void)state;
    struct rd_http_head h;
    char *b;
    assert_int_equal(parse("POST /v1/validate?a=1&b=2 HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           "application/json \r\nContent-Length: 12\r\n\r\n",
                           &h, &b),
                     RD_OK);
    assert_int_equal(h.method, RD_HM_POST);
    assert_string_equal(h.path, "/v1/validate");
    assert_string_equal(h.query, "a=1&b=2");
    assert_int_equal(h.minor, 1);
    assert_int_equal(h.content_length, 12);
    assert_true(h.keep_alive);
    assert_string_equal(rd_http_field(&h, "content-type"), "application/json");
    assert_null(rd_http_field(&h, "accept"));
    free(b);
    assert_int_equal(parse("GET http://example.com:8080/healthz?x HTTP/1.0\r\nConnection: "
                           "Keep-Alive\r\n\r\n",
                           &h, &b),
                     RD_OK);
    assert_string_equal(h.path, "/healthz");
    assert_string_equal(h.query, "x");
    assert_true(h.keep_alive);
    free(b);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n", &h, &b),
                     RD_OK);
    assert_false(h.keep_alive);
    free(b);
    assert_int_equal(parse("BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", &h, &b), RD_OK);
    assert_int_equal(h.method, RD_HM_UNKNOWN);
    assert_string_equal(h.method_name, "BREW");
    free(b);
}

static void malformed_heads_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        enum rd_status st;
    } cases[] = {
        {"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\n\r\n", RD_E_INVALID_REQUEST}, /* no Host */
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", RD_E_HTTP_VERSION},
        {"GET / HTTP/1.2\r\nHost: x\r\n\r\n", RD_E_HTTP_VERSION},
        {"GET / HTTQ/1.1\r\nHost: x\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET * HTTP/1.1\r\nHost: x\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET x HTTP/1.1\r\nHost: x\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\nHost: x\rx\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
         RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456789\r\n\r\n",
         RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: "
         "chunked\r\n\r\n",
         RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
         RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
         RD_E_NOT_IMPLEMENTED},
        {"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", RD_E_INVALID_REQUEST},
        {"GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", RD_E_EXPECTATION_FAILED},
        {"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", RD_E_INVALID_REQUEST},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rd_http_head h;
        char *b;
        enum rd_status st = parse(cases[i].req, &h, &b);
        if (st != cases[i].st)
            fail_msg("case %zu: %d, not %d: %s", i, st, cases[i].st, cases[i].req);
        free(b);
    }
    /* equal repeated lengths are one length */
    struct rd_http_head h;
    char *b;
    assert_int_equal(
        parse("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n", &h,
              &b),
        RD_OK);
    assert_int_equal(h.content_length, 5);
    free(b);
}

static void method_and_field_count_at_their_bounds(void **state)
{
    (void)state;
    struct rd_http_head h;
    char *b, req[8192];
    char m[RD_HTTP_MAX_METHOD + 2];
    memset(m, 'M', sizeof(m));
    m[RD_HTTP_MAX_METHOD] = '\0';
    snprintf(req, sizeof(req), "%s / HTTP/1.1\r\nHost: x\r\n\r\n", m);
    assert_int_equal(parse(req, &h, &b), RD_OK);
    free(b);
    m[RD_HTTP_MAX_METHOD] = 'M';
    m[RD_HTTP_MAX_METHOD + 1] = '\0';
    snprintf(req, sizeof(req), "%s / HTTP/1.1\r\nHost: x\r\n\r\n", m);
    assert_int_equal(parse(req, &h, &b), RD_E_INVALID_REQUEST);
    free(b);
    /* Host plus 63 more fields: the last one fits; one more is 431 */
    size_t n = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 1; i < RD_HTTP_MAX_FIELDS; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "X-%d: v\r\n", i);
    snprintf(req + n, sizeof(req) - n, "\r\n");
    assert_int_equal(parse(req, &h, &b), RD_OK);
    assert_int_equal(h.nfields, RD_HTTP_MAX_FIELDS);
    assert_string_equal(rd_http_field(&h, "x-63"), "v");
    free(b);
    snprintf(req + n, sizeof(req) - n, "X-64: v\r\n\r\n");
    assert_int_equal(parse(req, &h, &b), RD_E_HEADERS_TOO_LARGE);
    free(b);
}

static int decode(const char *in, size_t max, struct rd_sbuf *out, size_t *used)
{
    struct rd_chunked c;
    memset(&c, 0, sizeof(c));
    out->len = 0;
    return rd_chunked_decode(&c, in, strlen(in), used, out, max);
}

static void chunked_bodies(void **state)
{
    (void)state;
    struct rd_sbuf out;
    rd_sbuf_init(&out);
    size_t used;
    const char *body = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
    assert_int_equal(decode(body, 100, &out, &used), 1);
    assert_string_equal(out.buf, "hello world");
    assert_int_equal(used, strlen(body) - 4);
    /* split anywhere, the same result */
    for (size_t cut = 1; cut < strlen(body) - 4; cut++) {
        struct rd_chunked c;
        memset(&c, 0, sizeof(c));
        out.len = 0;
        size_t u1, u2;
        assert_int_equal(rd_chunked_decode(&c, body, cut, &u1, &out, 100), 0);
        assert_int_equal(u1, cut);
        assert_int_equal(rd_chunked_decode(&c, body + cut, strlen(body) - cut, &u2, &out, 100), 1);
        assert_int_equal(cut + u2, strlen(body) - 4);
        assert_string_equal(out.buf, "hello world");
    }
    /* exactly max fits; one byte more is too large */
    assert_int_equal(decode("b\r\nhello world\r\n0\r\n\r\n", 11, &out, &used), 1);
    assert_int_equal(decode("b\r\nhello world\r\n0\r\n\r\n", 10, &out, &used), -2);
    assert_int_equal(decode("fffffffffffffffff\r\n", 100, &out, &used), -2);
    assert_int_equal(decode("zz\r\n", 100, &out, &used), -1);
    assert_int_equal(decode("\r\n", 100, &out, &used), -1);
    assert_int_equal(decode("2\r\nabX\r\n", 100, &out, &used), -1);
    assert_int_equal(decode("2;\x01\r\n", 100, &out, &used), -1);
    /* a size line longer than RD_HTTP_CHUNK_LINE */
    char longline[RD_HTTP_CHUNK_LINE + 16];
    memset(longline, 'x', sizeof(longline));
    longline[0] = '1';
    longline[1] = ';';
    longline[sizeof(longline) - 1] = '\0';
    assert_int_equal(decode(longline, 100, &out, &used), -1);
    rd_sbuf_free(&out);
}

static void query_strings(void **state)
{
    (void)state;
    struct rd_query q;
    const char *why;
    assert_int_equal(rd_query_parse("a=1&b=x%20y+z&&c&d=%7E", &q, &why), RD_OK);
    assert_int_equal(q.n, 4);
    assert_string_equal(q.names[1], "b");
    assert_string_equal(q.values[1], "x y z");
    assert_string_equal(q.names[2], "c");
    assert_string_equal(q.values[2], "");
    assert_string_equal(q.values[3], "~");
    rd_query_free(&q);
    assert_int_equal(rd_query_parse(NULL, &q, &why), RD_OK);
    assert_int_equal(q.n, 0);
    rd_query_free(&q);
    assert_int_equal(rd_query_parse("a=%zz", &q, &why), RD_E_INVALID_REQUEST);
    rd_query_free(&q);
    assert_int_equal(rd_query_parse("a=%00", &q, &why), RD_E_INVALID_REQUEST);
    rd_query_free(&q);
    assert_int_equal(rd_query_parse("a=%4", &q, &why), RD_E_INVALID_REQUEST);
    rd_query_free(&q);
    /* RD_QUERY_MAX parameters parse; one more does not */
    char buf[RD_QUERY_MAX * 8 + 16];
    size_t n = 0;
    for (int i = 0; i < RD_QUERY_MAX; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%sp=%d", i ? "&" : "", i);
    assert_int_equal(rd_query_parse(buf, &q, &why), RD_OK);
    assert_int_equal(q.n, RD_QUERY_MAX);
    rd_query_free(&q);
    snprintf(buf + n, sizeof(buf) - n, "&p=x");
    assert_int_equal(rd_query_parse(buf, &q, &why), RD_E_INVALID_REQUEST);
    assert_non_null(strstr(why, "too many"));
    rd_query_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(head_end_is_found_however_it_arrives),
        cmocka_unit_test(a_plain_request),
        cmocka_unit_test(malformed_heads_are_refused),
        cmocka_unit_test(method_and_field_count_at_their_bounds),
        cmocka_unit_test(chunked_bodies),
        cmocka_unit_test(query_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
