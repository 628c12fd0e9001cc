/* SPDX-License-Identifier: MIT
 *
 * The listings' statement builders from any query string (first byte: which listing, CSV or
 * pages), and the CSV writer. Properties: a statement never has more parameters than it may
 * send, references exactly the parameters it has, and a CSV field reads back as written.
 */
#include "fuzz.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd/listing.h"

static void statement(const uint8_t *data, size_t size, int which, int csv)
{
    char *q = malloc(size + 1);
    memcpy(q, data, size);
    q[size] = '\0';
    struct rd_stmt st;
    struct rd_query query;
    struct rd_verr e;
    long limit;
    memset(&st, 0, sizeof(st));
    if (rd_listing_build(&st, &query, &limit, which, q, csv, 1900000000000LL, &e) == 0) {
        CHECK(!st.overflow && st.nparams <= RD_STMT_MAXPARAMS);
        /* pages are 1..RD_PAGE_MAX rows; an export is all of it, or its first limit rows */
        CHECK((csv && limit == -1) || (limit >= 1 && limit <= RD_PAGE_MAX));
        for (int n = 1; n <= st.nparams + 1; n++) {
            char ref[16];
            snprintf(ref, sizeof(ref), "$%d", n);
            /* "$1" is also found in "$12": check whole references */
            int used = 0;
            for (const char *p = st.sql.buf; (p = strstr(p, ref)); p++)
                used |= p[strlen(ref)] < '0' || p[strlen(ref)] > '9';
            CHECK(used == (n <= st.nparams));
        }
    } else {
        CHECK(e.msg[0]); /* every refusal says why */
    }
    rd_stmt_free(&st);
    rd_query_free(&query);
    free(q);
}

/* Reads one CSV field back from s (as a spreadsheet would). */
static size_t csv_read(const char *s, size_t n, char *out)
{
    size_t o = 0;
    if (n == 0 || s[0] != '"') {
        memcpy(out, s, n);
        return n;
    }
    for (size_t i = 1; i < n; i++) {
        if (s[i] == '"') {
            if (i + 1 < n && s[i + 1] == '"') {
                out[o++] = '"';
                i++;
                continue;
            }
            CHECK(i == n - 1); /* the closing quote ends the field */
            return o;
        }
        out[o++] = s[i];
    }
    CHECK(0 && "unterminated quoted field");
    return o;
}

static void csv(const uint8_t *data, size_t size)
{
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    rd_csv_field(&b, (const char *)data, size);
    char *back = malloc(b.len + 1);
    size_t n = csv_read(b.buf ? b.buf : "", b.len, back);
    CHECK(n == size && (size == 0 || memcmp(back, data, size) == 0));
    free(back);
    rd_sbuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 5) {
    case 0:
    case 1:
        statement(data + 1, size - 1, RD_LIST_TRANSACTIONS, data[0] % 5);
        break;
    case 2:
    case 3:
        statement(data + 1, size - 1, RD_LIST_COUPONS, data[0] % 5 - 2);
        break;
    default:
        csv(data + 1, size - 1);
        break;
    }
    return 0;
}
