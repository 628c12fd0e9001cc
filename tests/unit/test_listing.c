/* SPDX-License-Identifier: MIT
 * The listings' statements from their query strings: filters repeat as "any of" in one array
 * parameter, other parameters come once, the bounds hold exactly at their limit. */
#include <stdio.h>
#include <string.h>

#include "test_util.h"

#include "rd/listing.h"

#define NOW 1900000000000LL

static int build(enum rd_listing which, const char *query, int csv, struct rd_stmt *st, long *limit,
                 struct rd_verr *e)
{
    struct rd_query q;
    memset(st, 0, sizeof(*st));
    int rc = rd_listing_build(st, &q, limit, which, query, csv, NOW, e);
    rd_query_free(&q);
    return rc;
}

/* Every $n the statement uses is a parameter it has, and it uses each of them. */
static void params_match(const struct rd_stmt *st)
{
    assert_false(st->overflow);
    for (int n = 1; n <= st->nparams; n++) {
        char ref[16];
        snprintf(ref, sizeof(ref), "$%d", n);
        assert_non_null(strstr(st->sql.buf, ref));
    }
    char past[16];
    snprintf(past, sizeof(past), "$%d", st->nparams + 1);
    assert_null(strstr(st->sql.buf, past));
}

static void filters_are_any_of_in_one_parameter(void **state)
{
    (void)state;
    struct rd_stmt st;
    struct rd_verr e;
    long limit;
    assert_int_equal(build(RD_LIST_TRANSACTIONS,
                           "user_id=a&user_id=b%22q&kind=pay&kind=refund&code=spring-1&limit=5", 0,
                           &st, &limit, &e),
                     0);
    params_match(&st);
    assert_int_equal(limit, 5);
    assert_int_equal(st.nparams, 3);
    assert_string_equal(st.params[0], "SPRING-1"); /* codes are normalised */
    assert_string_equal(st.params[1], "{\"pay\",\"refund\"}");
    assert_string_equal(st.params[2], "{\"a\",\"b\\\"q\"}");
    /* one value: a plain comparison, which an index in page order can serve */
    assert_non_null(strstr(st.sql.buf, "code = $1::text"));
    /* the first filter with several values: one ordered arm per value, each a page long */
    assert_non_null(strstr(st.sql.buf, "user_id = ($3::text[])[1] ORDER BY txid, txn_id LIMIT 6)"
                                       " UNION ALL ("));
    assert_non_null(strstr(st.sql.buf, "user_id = ($3::text[])[2] ORDER BY txid, txn_id LIMIT 6)"
                                       ") t ORDER BY "));
    assert_null(strstr(st.sql.buf, "($3::text[])[3]"));
    assert_non_null(strstr(st.sql.buf, "kind = ANY($2::text[])"));
    assert_non_null(strstr(st.sql.buf, "t.txn_id LIMIT 6"));
    rd_stmt_free(&st);
    /* an export reads every row: no arms */
    assert_int_equal(build(RD_LIST_TRANSACTIONS, "user_id=a&user_id=b", 1, &st, &limit, &e), 0);
    params_match(&st);
    assert_non_null(strstr(st.sql.buf, "user_id = ANY($1::text[]) ORDER BY txid, txn_id"));
    assert_null(strstr(st.sql.buf, "UNION"));
    rd_stmt_free(&st);
    assert_int_equal(build(RD_LIST_COUPONS,
                           "status=used&status=expired&tag=VIP&tag=Gold&prefix=ab&prefix=CD", 1,
                           &st, &limit, &e),
                     0);
    params_match(&st);
    assert_int_equal(limit, -1);
    assert_null(strstr(st.sql.buf, "LIMIT"));
    assert_non_null(strstr(st.sql.buf, "OR x.used > 0"));
    assert_non_null(strstr(st.sql.buf, "m.code LIKE ANY("));
    /* used or expired: no necessary condition on uses (expired needs none) */
    assert_null(strstr(st.sql.buf, "u.used > 0"));
    rd_stmt_free(&st);
}

static void time_windows_bound_the_walk(void **state)
{
    (void)state;
    struct rd_stmt st;
    struct rd_verr e;
    long limit;
    assert_int_equal(build(RD_LIST_TRANSACTIONS, "from=2030-01-01T00:00:00Z", 0, &st, &limit, &e),
                     0);
    params_match(&st);
    assert_non_null(strstr(st.sql.buf, " AND txid = ANY(ARRAY(SELECT txid FROM ledger_batches "
                                       "WHERE max_ts >= $1::timestamptz))"));
    rd_stmt_free(&st);
    assert_int_equal(build(RD_LIST_TRANSACTIONS,
                           "kind=pay&from=2030-01-01T00:00:00Z&to=2030-01-02T00:00:00Z", 0, &st,
                           &limit, &e),
                     0);
    params_match(&st);
    assert_non_null(strstr(st.sql.buf, "WHERE max_ts >= $2::timestamptz AND min_ts < "
                                       "$3::timestamptz))"));
    rd_stmt_free(&st);
    /* "to" alone: the walk from the oldest row finds the window's rows first */
    assert_int_equal(build(RD_LIST_TRANSACTIONS, "to=2030-01-02T00:00:00Z", 0, &st, &limit, &e), 0);
    assert_null(strstr(st.sql.buf, "ledger_batches"));
    rd_stmt_free(&st);
}

static void rare_statuses_walk_their_index(void **state)
{
    (void)state;
    static const struct {
        const char *q, *has, *lacks;
    } cases[] = {
        {"status=exhausted", "u.used > 0", "m.archived)"},
        {"status=used&status=exhausted", "u.used > 0", NULL},
        {"status=exhausted&status=active", NULL, "u.used > 0"},
        {"status=archived", "AND m.archived)", "u.used > 0"},
        {"status=archived&status=disabled", NULL, "AND m.archived)"},
        {"status=expired", "AND m.eff_expires <= $1::bigint)", "u.used > 0"},
        {"status=scheduled", "AND m.eff_starts > $1::bigint)", "eff_expires"},
        {"status=disabled", "AND m.eff_disabled)", "u.used > 0"},
        {"status=expired&status=scheduled", NULL, "eff_"},
        {"status=used&status=active", NULL, "u.used > 0"},
        {"", NULL, "u.used > 0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rd_stmt st;
        struct rd_verr e;
        long limit;
        assert_int_equal(build(RD_LIST_COUPONS, cases[i].q, 0, &st, &limit, &e), 0);
        params_match(&st);
        if (cases[i].has)
            assert_non_null(strstr(st.sql.buf, cases[i].has));
        if (cases[i].lacks)
            assert_null(strstr(st.sql.buf, cases[i].lacks));
        rd_stmt_free(&st);
    }
}

static void counts_at_their_bounds(void **state)
{
    (void)state;
    struct rd_stmt st;
    struct rd_verr e;
    long limit;
    char q[4096];
    size_t n = 0;
    for (int i = 0; i < RD_FILTER_MAX_VALUES; i++)
        n += (size_t)snprintf(q + n, sizeof(q) - n, "%suser_id=u%d", i ? "&" : "", i);
    assert_int_equal(build(RD_LIST_TRANSACTIONS, q, 0, &st, &limit, &e), 0);
    params_match(&st);
    rd_stmt_free(&st);
    snprintf(q + n, sizeof(q) - n, "&user_id=one-more");
    assert_int_equal(build(RD_LIST_TRANSACTIONS, q, 0, &st, &limit, &e), -1);
    assert_string_equal(e.field, "user_id");
    rd_stmt_free(&st);
    /* every filter and parameter of the coupon listing at once (8 values each: 59 pairs,
     * within a query string's RD_QUERY_MAX): within the statement's parameters */
    n = 0;
    for (int i = 0; i < 8; i++)
        n += (size_t)snprintf(q + n, sizeof(q) - n,
                              "status=used&kind=voucher&campaign=c%d&tag=t%d&prefix=P%d&batch=b%d&",
                              i, i, i, i);
    snprintf(q + n, sizeof(q) - n,
             "created_from=2030-01-01T00:00:00Z&created_to=2031-01-01T00:00:00Z&expires_from="
             "2030-01-01T00:00:00Z&expires_to=2031-01-01T00:00:00Z&shared=true&limit=1000&"
             "cursor=ABC");
    assert_int_equal(build(RD_LIST_COUPONS, q, 0, &st, &limit, &e), 0);
    params_match(&st);
    assert_true(st.nparams <= RD_STMT_MAXPARAMS);
    rd_stmt_free(&st);
    for (int i = 0; i < RD_STMT_MAXPARAMS + 4; i++)
        rd_stmt_param(&st, "x");
    assert_int_equal(st.nparams, RD_STMT_MAXPARAMS);
    assert_true(st.overflow);
    rd_stmt_free(&st);
}

static void refusals_name_the_parameter(void **state)
{
    (void)state;
    static const struct {
        enum rd_listing which;
        const char *q, *field;
    } cases[] = {
        {RD_LIST_TRANSACTIONS, "limit=5&limit=6", "limit"},
        {RD_LIST_TRANSACTIONS, "limit=1001", "limit"},
        {RD_LIST_TRANSACTIONS, "nope=1", "nope"},
        {RD_LIST_TRANSACTIONS, "kind=pay&kind=gift", "kind"},
        {RD_LIST_TRANSACTIONS, "client_ip=10.0.0.0/33", "client_ip"},
        {RD_LIST_TRANSACTIONS, "reason=because", "reason"},
        {RD_LIST_TRANSACTIONS, "cursor=1.X", "cursor"},
        {RD_LIST_TRANSACTIONS, "from=yesterday", "from"},
        {RD_LIST_TRANSACTIONS, "code=", "code"},
        {RD_LIST_TRANSACTIONS, "code=a%zz", "query"},
        {RD_LIST_COUPONS, "status=gone", "status"},
        {RD_LIST_COUPONS, "prefix=a_b", "prefix"},
        {RD_LIST_COUPONS, "shared=maybe", "shared"},
        {RD_LIST_COUPONS, "cursor=A&cursor=B", "cursor"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rd_stmt st;
        struct rd_verr e;
        long limit;
        if (build(cases[i].which, cases[i].q, 0, &st, &limit, &e) != -1)
            fail_msg("accepted: %s", cases[i].q);
        if (strcmp(e.field, cases[i].field) != 0)
            fail_msg("%s: field %s, not %s", cases[i].q, e.field, cases[i].field);
        rd_stmt_free(&st);
    }
}

static void csv_fields(void **state)
{
    (void)state;
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    rd_csv_field(&b, "plain", 5);
    rd_sbuf_add(&b, "|", 1);
    rd_csv_field(&b, "a,b", 3);
    rd_sbuf_add(&b, "|", 1);
    rd_csv_field(&b, "say \"hi\"", 8);
    rd_sbuf_add(&b, "|", 1);
    rd_csv_field(&b, "two\r\nlines", 10);
    rd_sbuf_add(&b, "|", 1);
    rd_csv_field(&b, "", 0);
    assert_string_equal(b.buf, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\r\nlines\"|");
    rd_sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(filters_are_any_of_in_one_parameter),
        cmocka_unit_test(rare_statuses_walk_their_index),
        cmocka_unit_test(time_windows_bound_the_walk),
        cmocka_unit_test(counts_at_their_bounds),
        cmocka_unit_test(refusals_name_the_parameter),
        cmocka_unit_test(csv_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
