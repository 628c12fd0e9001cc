/* SPDX-License-Identifier: MIT
 * Outbox entry -> COPY row: columns, escaping, NULLs, discount, refusals. */
#include <stdio.h>
#include <string.h>

#include "test_util.h"

#include "rd/ledger.h"

/* Renders an entry given as "name", "value", ... NULL; returns the row or NULL. */
static char *render(struct rd_sbuf *b, ...)
{
    const char *names[32], *values[32];
    size_t nl[32], vl[32], n = 0;
    va_list ap;
    va_start(ap, b);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        names[n] = k;
        values[n] = va_arg(ap, const char *);
        nl[n] = strlen(k);
        vl[n] = strlen(values[n]);
        n++;
    }
    va_end(ap);
    rd_sbuf_init(b);
    if (rd_ledger_row(b, "{0001}:5-0", names, nl, values, vl, n) < 0)
        return NULL;
    return b->buf;
}

static void accepted_redeem(void **state)
{
    (void)state;
    struct rd_sbuf b;
    char *row =
        render(&b, "id", "rdm_1", "ts", "1795276277283", "kind", "redeem", "outcome", "accepted",
               "reason", "", "code", "SAVE", "campaign", "", "user", "u\t1", "order", "", "amount",
               "2599", "currency", "EUR", "dtype", "percent", "dvalue", "1000", "dmax", "",
               "min_order", "", "ip", "127.0.0.1", "key", "abcdefgh", "req", "r1", "idem", "k\\1",
               "day", "20778", "week", "2968", NULL);
    assert_non_null(row);
    assert_string_equal(row, "rdm_1\t2026-11-21T15:51:17.283Z\tredeem\taccepted\t\\N\tSAVE\t\\N\t"
                             "u\\t1\t\\N\t\\N\t2599\t259\t\\N\t\\N\tEUR\t127.0.0.1\tabcdefgh\tr1\t"
                             "k\\\\1\t20778\t2968\t{0001}:5-0\t\\N\t127.0.0.1\t\\N\t\\N\t\\N\n");
    rd_sbuf_free(&b);
    /* the customer: client_ip is theirs, peer_ip the caller's, then session, device, email */
    row = render(&b, "id", "rdm_2", "ts", "0", "kind", "validate", "outcome", "rejected", "ip",
                 "203.0.113.9", "cx",
                 "10.0.0.5\x1fsess-1\x1f\x1f"
                 "ab\tc",
                 NULL);
    assert_non_null(row);
    assert_non_null(strstr(row, "\t203.0.113.9\t"));
    assert_non_null(strstr(row, "\t10.0.0.5\tsess-1\t\\N\tab\\tc\n"));
    rd_sbuf_free(&b);
    /* a cx cut short, or with a peer that is no address: what is there, NULL for the rest */
    row = render(&b, "id", "rdm_3", "ts", "0", "kind", "validate", "outcome", "rejected", "ip",
                 "203.0.113.9", "cx", "nope\x1fs", NULL);
    assert_non_null(row);
    assert_non_null(strstr(row, "\t\\N\ts\t\\N\t\\N\n"));
    rd_sbuf_free(&b);
}

/* A use's entry carries no id: the row's is made from the entry's place and tag, and what
 * the use had left goes to details (a replay after shipping answers it again). */
static void use_without_id(void **state)
{
    (void)state;
    struct rd_sbuf b;
    char *row = render(&b, "tag", "k3j9fq", "ts", "1795276277283", "kind", "pay", "outcome",
                       "accepted", "paid", "300", "balance", "700", "left", ",1,0,", NULL);
    assert_non_null(row);
    assert_memory_equal(row, "rdm_0001_5-0_k3j9fq\t", 20);
    assert_non_null(strstr(row, "\t{0001}:5-0\t{\"remaining\":{\"total\":null,\"user\":1,"
                                "\"user_daily\":0,\"user_weekly\":null}}\t\\N\t\\N\t\\N\t\\N\n"));
    rd_sbuf_free(&b);
    /* a tag that cannot make an id: not a row (dead letter) */
    assert_null(render(&b, "tag", "k3j", "ts", "1", "kind", "pay", "outcome", "accepted", NULL));
    rd_sbuf_free(&b);
    assert_null(render(&b, "ts", "1", "kind", "pay", "outcome", "accepted", NULL));
    rd_sbuf_free(&b);
}

/* A packed use entry (one field, values in RD_ENTRY_FIELDS' order) makes the same row as
 * the same entry written a field per value (redeemd before the packing, still shipped). */
/* A packed answer (redeem.lua's ok): its parts, the empty ones included, at and past max. */
static void packed_values(void **state)
{
    (void)state;
    static const char ok[] = "ok\0"
                             "0\0rdm_0001_5-0_k3j9fq\0"
                             "1795276277283\0percent\0"
                             "1000\0\0\0"
                             "4\0\0\0";
    const size_t vl = sizeof(ok) - 1, parts = 12;
    const char *p[16];
    size_t l[16];
    assert_int_equal(rd_unpack_values(ok, vl, p, l, 16), parts);
    assert_string_equal(p[0], "ok");
    assert_string_equal(p[2], "rdm_0001_5-0_k3j9fq");
    assert_int_equal(l[2], strlen("rdm_0001_5-0_k3j9fq"));
    assert_string_equal(p[8], "4");
    for (size_t i = 9; i < parts; i++) /* trailing empty values are parts too */
        assert_int_equal(l[i], 0);
    assert_int_equal(rd_unpack_values(ok, vl, p, l, parts), parts);     /* exactly max */
    assert_int_equal(rd_unpack_values(ok, vl, p, l, parts - 1), parts); /* one too many */
    assert_string_equal(p[parts - 2], "");
    assert_int_equal(rd_unpack_values("", 0, p, l, 1), 1); /* "" is one empty value */
    assert_int_equal(l[0], 0);
    assert_int_equal(rd_unpack_values("", 0, p, l, 0), 1); /* no room: more than max */
}

static void packed_entry(void **state)
{
    (void)state;
    static const char packed[] = "k3j9fq\0"
                                 "1795276277283\0redeem\0accepted\0\0SAVE\0spring\0u1\0o-7\0"
                                 "2599\0EUR\0percent\0001000\0\0\00020778\0002968\0"
                                 "4,0,,\0\0\000127.0.0.1\0abcdefgh\0r1\0k1\0"
                                 "10.0.0.5\x1fs\x1f\x1f";
    const char *names[64], *values[64];
    size_t nl[64], vl[64];
    size_t n = rd_entry_unpack(packed, sizeof(packed) - 1, names, nl, values, vl, 64);
    assert_int_equal(n, RD_ENTRY_NFIELDS);
    assert_string_equal(names[0], "tag");
    assert_int_equal(vl[4], 0); /* reason: empty */
    assert_int_equal(nl[24], 2);
    assert_memory_equal(values[24], "10.0.0.5\x1fs\x1f\x1f", vl[24]);
    struct rd_sbuf a, b;
    rd_sbuf_init(&a);
    assert_int_equal(rd_ledger_row(&a, "{0001}:5-0", names, nl, values, vl, n), 0);
    char *row = render(&b, "tag", "k3j9fq", "ts", "1795276277283", "kind", "redeem", "outcome",
                       "accepted", "reason", "", "code", "SAVE", "campaign", "spring", "user", "u1",
                       "order", "o-7", "amount", "2599", "currency", "EUR", "dtype", "percent",
                       "dvalue", "1000", "dmax", "", "min_order", "", "day", "20778", "week",
                       "2968", "left", "4,0,,", "ip", "127.0.0.1", "key", "abcdefgh", "req", "r1",
                       "idem", "k1", "cx", "10.0.0.5\x1fs\x1f\x1f", NULL);
    assert_non_null(row);
    assert_string_equal(a.buf, row);
    assert_non_null(strstr(row, "\t2599\t259\t")); /* the discount from the packed fields */
    rd_sbuf_free(&a);
    rd_sbuf_free(&b);
    /* cut short: what is there; at the bound max: no more than max */
    n = rd_entry_unpack("t\0"
                        "5",
                        3, names, nl, values, vl, 64);
    assert_int_equal(n, 2);
    assert_memory_equal(values[1], "5", vl[1]);
    assert_int_equal(rd_entry_unpack(packed, sizeof(packed) - 1, names, nl, values, vl, 3), 3);
    assert_int_equal(rd_entry_unpack("", 0, names, nl, values, vl, 64), 1);
    assert_int_equal(vl[0], 0);
}

/* The prelude's rd_entry decodes with its own copy of the list: it must be this one. */
static void prelude_lists_the_same_fields(void **state)
{
    (void)state;
    FILE *f = fopen(RD_SOURCE_DIR "/scripts/lua/lib/prelude.lua", "r");
    assert_non_null(f);
    char line[1024], want[1024] = "-- entry fields:";
    for (int i = 0; i < RD_ENTRY_NFIELDS; i++) {
        strcat(want, " ");
        strcat(want, rd_entry_fields[i]);
    }
    int found = 0;
    while (fgets(line, sizeof(line), f)) {
        char *p = line;
        while (*p == ' ')
            p++;
        if (strncmp(p, "-- entry fields:", 16) == 0) {
            p[strcspn(p, "\n")] = '\0';
            assert_string_equal(p, want);
            found = 1;
            /* and the Lua table under it names the same, in the same order */
            char lua[4096] = "";
            while (fgets(line, sizeof(line), f) && !strstr(line, "}")) {
                strcat(lua, line);
            }
            strcat(lua, line);
            const char *q = lua;
            for (int i = 0; i < RD_ENTRY_NFIELDS; i++) {
                q = strchr(q, '\'');
                assert_non_null(q);
                size_t len = strcspn(q + 1, "'");
                assert_int_equal(len, strlen(rd_entry_fields[i]));
                assert_memory_equal(q + 1, rd_entry_fields[i], len);
                q += len + 2;
            }
            assert_null(strchr(q, '\''));
        }
    }
    fclose(f);
    assert_true(found);
}

static void rejected_and_admin(void **state)
{
    (void)state;
    struct rd_sbuf b;
    char *row = render(&b, "id", "x", "ts", "0", "kind", "redeem", "outcome", "rejected", "reason",
                       "limit_total_reached", "amount", "abc", "ip", "not-an-ip", NULL);
    assert_non_null(row);
    /* no discount for a rejection; unparsable amount and ip become NULL */
    assert_non_null(strstr(row, "\tlimit_total_reached\t"));
    assert_non_null(strstr(row, "\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"));
    rd_sbuf_free(&b);
    row =
        render(&b, "id", "a1", "ts", "1000", "kind", "coupon_update", "outcome", "accepted",
               "before", "{\"l_total\":\"5\"}", "after", "{\"l_total\":\"3\"}", "ip", "::1", NULL);
    assert_non_null(row);
    assert_non_null(strstr(row, "\t::1\t"));
    assert_non_null(strstr(row, "{\"before\":{\"l_total\":\"5\"},\"after\":{\"l_total\":\"3\"}}"));
    rd_sbuf_free(&b);
}

static void refused(void **state)
{
    (void)state;
    struct rd_sbuf b;
    assert_null(render(&b, "ts", "1", "kind", "redeem", "outcome", "accepted", NULL));
    rd_sbuf_free(&b);
    assert_null(render(&b, "id", "x", "ts", "soon", "kind", "redeem", "outcome", "a", NULL));
    rd_sbuf_free(&b);
    assert_null(
        render(&b, "id", "x", "ts", "99999999999999999", "kind", "r", "outcome", "a", NULL));
    rd_sbuf_free(&b);
    assert_null(render(&b, "id", "x", "ts", "1", "outcome", "a", NULL));
    assert_int_equal(b.len, 0); /* nothing half-written */
    rd_sbuf_free(&b);
}

static void copy_escaping(void **state)
{
    (void)state;
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    rd_copy_field(&b, "a\\b\tc\nd\re", 9);
    assert_string_equal(b.buf, "a\\\\b\\tc\\nd\\re");
    rd_sbuf_free(&b);
}

/* Filter values reach PostgreSQL as one array literal: quotes and backslashes escaped. */
static void text_arrays(void **state)
{
    (void)state;
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    const char *v[] = {"a", "b c", "q\"uote", "back\\slash", "{x,y}", ""};
    rd_pg_text_array(&b, v, 6, NULL);
    assert_string_equal(b.buf, "{\"a\",\"b c\",\"q\\\"uote\",\"back\\\\slash\",\"{x,y}\",\"\"}");
    b.len = 0;
    rd_pg_text_array(&b, v, 2, "%");
    assert_string_equal(b.buf, "{\"a%\",\"b c%\"}");
    b.len = 0;
    rd_pg_text_array(&b, v, 0, NULL);
    assert_string_equal(b.buf, "{}");
    rd_sbuf_free(&b);
}

/* the integers of answers and ledger rows, written without printf: its output for every
 * magnitude and both extremes */
static void integers_as_printf_writes_them(void **state)
{
    (void)state;
    const int64_t v[] = {0,         1,         -1,           9,      10,
                         99,        100,       12345,        -98765, 999999999999LL,
                         INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char mine[21], ref[32];
        size_t n = rd_fmt_i64(mine, v[i]);
        snprintf(ref, sizeof(ref), "%lld", (long long)v[i]);
        assert_int_equal(n, strlen(ref));
        assert_memory_equal(mine, ref, n);
    }
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    rd_sbuf_add_i64(&b, -42);
    rd_sbuf_add_i64(&b, 7);
    assert_string_equal(b.buf, "-427");
    rd_sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(integers_as_printf_writes_them),
        cmocka_unit_test(accepted_redeem),
        cmocka_unit_test(use_without_id),
        cmocka_unit_test(packed_values),
        cmocka_unit_test(packed_entry),
        cmocka_unit_test(prelude_lists_the_same_fields),
        cmocka_unit_test(rejected_and_admin),
        cmocka_unit_test(refused),
        cmocka_unit_test(copy_escaping),
        cmocka_unit_test(text_arrays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
