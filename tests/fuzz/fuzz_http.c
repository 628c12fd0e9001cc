/* SPDX-License-Identifier: MIT
 *
 * The request head parser, the chunked body decoder and the query string decoder: every byte
 * a client sends meets these first. The first input byte picks the parser; the rest is its
 * input. Besides crashes, the properties checked are the bounds the server relies on.
 */
#include "fuzz.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rd/http_parse.h"

static void head(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    /* the end of the head, found in one go and byte by byte, is the same */
    size_t from = 0, whole = rd_http_head_len(buf, size, &from), step = 0;
    from = 0;
    for (size_t n = 1; n <= size && !step; n++)
        step = rd_http_head_len(buf, n, &from);
    CHECK(step == whole);
    CHECK(whole <= size);
    struct rd_http_head h;
    const char *why;
    enum rd_status st = rd_http_parse_head(buf, whole ? whole : size, &h, &why);
    CHECK(st == RD_OK || why);
    CHECK(h.nfields <= RD_HTTP_MAX_FIELDS);
    if (st == RD_OK) {
        CHECK(h.path && h.method_name);
        CHECK(h.content_length >= -1);
        CHECK(!(h.chunked && h.content_length >= 0));
        for (int i = 0; i < h.nfields; i++)
            CHECK(strlen(h.fields[i].value) == h.fields[i].value_len);
    }
    free(buf);
}

static void chunked(const uint8_t *data, size_t size)
{
    /* whole, and in pieces of a size the first byte picks: the same body, or the same error */
    if (size < 1)
        return;
    size_t piece = (size_t)data[0] % 7 + 1, max = 4096;
    data++;
    size--;
    struct rd_chunked c1, c2;
    memset(&c1, 0, sizeof(c1));
    memset(&c2, 0, sizeof(c2));
    struct rd_sbuf a, b;
    rd_sbuf_init(&a);
    rd_sbuf_init(&b);
    size_t used1 = 0;
    int r1 = rd_chunked_decode(&c1, (const char *)data, size, &used1, &a, max);
    int r2 = 0;
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < piece ? size - off : piece, used = 0;
        r2 = rd_chunked_decode(&c2, (const char *)data + off, n, &used, &b, max);
        CHECK(used <= n);
        off += used;
        if (r2 != 0)
            break;
    }
    CHECK(r1 == r2);
    CHECK(a.len <= max && b.len <= max);
    if (r1 == 1) {
        CHECK(used1 == off && a.len == b.len && (a.len == 0 || !memcmp(a.buf, b.buf, a.len)));
    }
    rd_sbuf_free(&a);
    rd_sbuf_free(&b);
}

static void query(const uint8_t *data, size_t size)
{
    char *q = malloc(size + 1);
    memcpy(q, data, size);
    q[size] = '\0';
    struct rd_query out;
    const char *why;
    enum rd_status st = rd_query_parse(q, &out, &why);
    CHECK(out.n <= RD_QUERY_MAX);
    if (st == RD_OK)
        for (int i = 0; i < out.n; i++)
            for (const char *p = out.values[i]; *p; p++)
                CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    rd_query_free(&out);
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        head(data + 1, size - 1);
        break;
    case 1:
        chunked(data + 1, size - 1);
        break;
    default:
        query(data + 1, size - 1);
        break;
    }
    return 0;
}
