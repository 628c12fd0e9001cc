/* SPDX-License-Identifier: MIT
 * Key naming, bucket hashing, transaction ids, API key shapes and records. */
#include <stdio.h>
#include <string.h>

#include "test_util.h"

#include "rd/keys.h"

static void key_names(void **state)
{
    (void)state;
    char buf[RD_KEY_MAX];
    assert_int_equal(rd_key_coupon(buf, sizeof(buf), 42, "SAVE10"), 15);
    assert_string_equal(buf, "{0042}:c:SAVE10");
    rd_key_users(buf, sizeof(buf), 7, "X-1");
    assert_string_equal(buf, "{0007}:u:X-1");
    rd_key_idem_v1(buf, sizeof(buf), 1023, "C", "abcdefgh", "k:1");
    assert_string_equal(buf, "{1023}:i:C:abcdefgh:k:1");
    rd_key_redemption_v1(buf, sizeof(buf), 9, "rdm_0009_x");
    assert_string_equal(buf, "{0009}:r:rdm_0009_x");
    rd_key_mark(buf, sizeof(buf), 9, "rdm_0009_x");
    assert_string_equal(buf, "{0009}:x:rdm_0009_x");
    /* slices of 43,200,000 ms (a day's records, half a day each): the slice now is in */
    rd_key_idem(buf, sizeof(buf), 5, 43200000, 1764547200000LL);
    assert_string_equal(buf, "{0005}:i:43200000:40846");
    rd_key_idem(buf, sizeof(buf), 5, 43200000, 1764547200000LL + 43199999);
    assert_string_equal(buf, "{0005}:i:43200000:40846");
    rd_key_idem(buf, sizeof(buf), 5, 43200000, 1764547200000LL + 43200000);
    assert_string_equal(buf, "{0005}:i:43200000:40847");
    rd_key_log(buf, sizeof(buf), 9999);
    assert_string_equal(buf, "{9999}:log");
    char tiny[8];
    assert_int_equal(rd_key_coupon(tiny, sizeof(tiny), 1, "LONGCODE"), -1);
}

/* Keys are written without printf: the same bytes and the same answer as snprintf at every
 * buffer size around the bound (one short: -1 and a cut, terminated key), and buckets of
 * five digits as %04u writes them. */
static void keys_as_printf_writes_them(void **state)
{
    (void)state;
    char want[RD_KEY_MAX], got[RD_KEY_MAX];
    const uint32_t buckets[] = {0, 7, 42, 999, 1023, 9999, 10000, 4294967295u};
    for (size_t k = 0; k < sizeof(buckets) / sizeof(buckets[0]); k++) {
        uint32_t b = buckets[k];
        int wn = snprintf(want, sizeof(want), "{%04u}:i:%s:%s:%s", b, "CODE-1", "abcdefgh", "k:1");
        for (size_t sz = 1; sz <= (size_t)wn + 2; sz++) {
            memset(got, 'x', sizeof(got));
            int n = rd_key_idem_v1(got, sz, b, "CODE-1", "abcdefgh", "k:1");
            assert_int_equal(n, (size_t)wn < sz ? wn : -1);
            assert_int_equal(strlen(got), (size_t)wn < sz ? (size_t)wn : sz - 1);
            assert_memory_equal(got, want, strlen(got));
        }
        snprintf(want, sizeof(want), "{%04u}:log", b);
        assert_int_equal(rd_key_log(got, sizeof(got), b), (int)strlen(want));
        assert_string_equal(got, want);
        snprintf(want, sizeof(want), "{%04u}:i:%lld:%lld", b, 43200000LL,
                 1764547200000LL / 43200000);
        rd_key_idem(got, sizeof(got), b, 43200000, 1764547200000LL);
        assert_string_equal(got, want);
    }
    assert_int_equal(rd_key_log(got, 0, 1), -1);
}

static void buckets(void **state)
{
    (void)state;
    /* FNV-1a 32 of "a" is 0xe40c292c. */
    assert_int_equal(rd_bucket_of("a", 1, 0xffffffffu), 0xe40c292cu % 0xffffffffu);
    assert_int_equal(rd_bucket_of("SAVE10", 6, 1024), rd_bucket_of("SAVE10", 6, 1024));
    unsigned hits[16] = {0};
    char code[16];
    for (int i = 0; i < 16000; i++) {
        int n = snprintf(code, sizeof(code), "CODE%d", i);
        hits[rd_bucket_of(code, (size_t)n, 16)]++;
    }
    for (int i = 0; i < 16; i++)
        assert_true(hits[i] > 800 && hits[i] < 1200); /* roughly even spread */
}

static void txn_ids(void **state)
{
    (void)state;
    uint8_t rnd[20];
    for (int i = 0; i < 20; i++)
        rnd[i] = (uint8_t)(i * 13);
    char id[RD_TXN_ID_LEN + 1];
    rd_txn_id_make(id, 417, rnd);
    assert_int_equal(strlen(id), RD_TXN_ID_LEN);
    assert_memory_equal(id, "rdm_0417_", 9);
    assert_int_equal(rd_txn_id_bucket(id, 1024), 417);
    assert_int_equal(rd_txn_id_bucket(id, 400), -1); /* bucket beyond this install */
    char bad[RD_TXN_ID_LEN + 1];
    memcpy(bad, id, sizeof(bad));
    bad[12] = 'U'; /* not in the alphabet */
    assert_int_equal(rd_txn_id_bucket(bad, 1024), -1);
    assert_int_equal(rd_txn_id_bucket("rdm_0417_short", 1024), -1);
    assert_int_equal(rd_txn_id_bucket("", 1024), -1);
}

/* A use's id names its outbox entry: bucket, stream id, tag. */
static void use_ids(void **state)
{
    (void)state;
    char id[RD_TXN_ID_MAX + 1];
    assert_int_equal(rd_use_id_format(id, 42, "1764547200123-7", 15, "k3j9fq", 6), 31);
    assert_string_equal(id, "rdm_0042_1764547200123-7_k3j9fq");
    struct rd_txn_ref ref;
    assert_int_equal(rd_txn_id_parse(id, 1024, &ref), 0);
    assert_int_equal(ref.bucket, 42);
    assert_string_equal(ref.sid, "1764547200123-7");
    assert_string_equal(ref.tag, "k3j9fq");
    assert_int_equal(rd_txn_id_bucket(id, 1024), 42);
    assert_int_equal(rd_txn_id_parse(id, 42, &ref), -1); /* bucket beyond this install */

    /* an id of 0.1 (and of rows that are not uses) names no entry */
    uint8_t rnd[20] = {0};
    char old[RD_TXN_ID_LEN + 1];
    rd_txn_id_make(old, 7, rnd);
    assert_int_equal(rd_txn_id_parse(old, 1024, &ref), 0);
    assert_int_equal(ref.bucket, 7);
    assert_string_equal(ref.sid, "");

    /* the largest stream id there is fits, and anything malformed is not an id */
    assert_true(rd_use_id_format(id, 9999, "18446744073709551615-18446744073709551615", 41,
                                 "zzzzzz", 6) > 0);
    assert_int_equal(rd_txn_id_parse(id, 10000, &ref), 0);
    assert_string_equal(ref.sid, "18446744073709551615-18446744073709551615");
    static const char *const bad[] = {
        "rdm_0042_1764547200123-7_k3j9f",          /* tag too short */
        "rdm_0042_1764547200123-7_k3j9fqq",        /* too long */
        "rdm_0042_1764547200123-7_k3j9fU",         /* not in the alphabet */
        "rdm_0042_1764547200123_k3j9fq",           /* no sequence */
        "rdm_0042_-7_k3j9fq",                      /* no time */
        "rdm_0042_01764547200123-7_k3j9fq",        /* a leading zero */
        "rdm_0042_1764547200123-7-1_k3j9fq",       /* one dash */
        "rdm_0042_123456789012345678901-7_k3j9fq", /* 21 digits */
        "rdm_004x_1764547200123-7_k3j9fq",
        "rdm_0042_1764547200123-7_",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rd_txn_id_parse(bad[i], 1024, &ref), -1);
    assert_int_equal(rd_use_id_format(id, 1, "1-1", 3, "abc", 3), -1);

    /* tags: 30 bits as 6 symbols, the lowest first */
    char tag[RD_USE_TAG_LEN + 1];
    rd_use_tag_make((const uint8_t[4]){0xff, 0xff, 0xff, 0xff}, tag);
    assert_string_equal(tag, "zzzzzz");
    rd_use_tag_make((const uint8_t[4]){0, 0, 0, 33}, tag);
    assert_string_equal(tag, "110000");
    assert_int_equal(rd_use_id_format(id, 1, "x-1", 3, "k3j9fq", 6), -1);
}

static void api_keys(void **state)
{
    (void)state;
    uint8_t rnd[40] = {0};
    rnd[0] = 1;
    char key[RD_APIKEY_LEN + 1], id[RD_APIKEY_ID_LEN + 1];
    rd_apikey_make(key, id, rnd);
    assert_int_equal(strlen(key), RD_APIKEY_LEN);
    assert_int_equal(rd_apikey_check_shape(key, strlen(key)), 0);
    assert_memory_equal(key + 4, id, RD_APIKEY_ID_LEN);
    key[10] = '!';
    assert_int_equal(rd_apikey_check_shape(key, strlen(key)), -1);
    assert_int_equal(rd_apikey_check_shape("rdk_", 4), -1);

    unsigned s;
    assert_int_equal(rd_scopes_parse("admin,fraud", 11, &s), 0);
    assert_int_equal(s, RD_SCOPE_ADMIN | RD_SCOPE_FRAUD);
    assert_int_equal(rd_scopes_parse("admin,", 6, &s), -1);
    assert_int_equal(rd_scopes_parse("root", 4, &s), -1);
    assert_int_equal(rd_scopes_parse("", 0, &s), -1);
    char buf[32];
    rd_scopes_format(RD_SCOPE_REDEEM | RD_SCOPE_ADMIN, buf, sizeof(buf));
    assert_string_equal(buf, "admin,redeem");

    struct rd_apikey_record rec = {"abcdefgh", RD_SCOPE_REDEEM, 1700000000000LL, 0, "pos|one"};
    char v[256];
    assert_true(rd_apikey_record_format(&rec, v, sizeof(v)) > 0);
    assert_string_equal(v, "abcdefgh|redeem|1700000000000|0|pos|one");
    struct rd_apikey_record back;
    assert_int_equal(rd_apikey_record_parse(v, strlen(v), &back), 0);
    assert_string_equal(back.id, "abcdefgh");
    assert_string_equal(back.name, "pos|one");
    assert_int_equal(back.created_ms, 1700000000000LL);
    assert_int_equal(rd_apikey_record_parse("abc|redeem|1|0|x", 16, &back), -1);
    assert_int_equal(rd_apikey_record_parse("abcdefgh|redeem|1|2|x", 21, &back), -1);
    assert_int_equal(rd_apikey_record_parse("abcdefgh|redeem", 15, &back), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_names), cmocka_unit_test(keys_as_printf_writes_them),
        cmocka_unit_test(buckets),   cmocka_unit_test(txn_ids),
        cmocka_unit_test(use_ids),   cmocka_unit_test(api_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
