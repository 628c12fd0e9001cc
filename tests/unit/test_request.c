/* SPDX-License-Identifier: MIT
 * Checkout request validation, fingerprints, header checks and body parsing. */
#include <string.h>

#include "test_util.h"

#include "rd/json_util.h"
#include "rd/request.h"

static const char *parse_field(const char *body)
{
    static struct rd_verr e;
    struct rd_redeem_req r;
    json_t *b = rd_json_parse_object(body, strlen(body), &e);
    if (!b)
        return e.field;
    int rc = rd_redeem_req_parse(&r, b, &e);
    rd_redeem_req_free(&r);
    json_decref(b);
    return rc == 0 ? "" : e.field;
}

static void fields(void **state)
{
    (void)state;
    assert_string_equal(
        parse_field(
            "{\"code\":\"ab-c\",\"user_id\":\"u\",\"order_amount\":1,\"currency\":\"eur\"}"),
        "");
    struct {
        const char *body, *field;
    } cases[] = {
        {"{\"user_id\":\"u\",\"order_amount\":1,\"currency\":\"EUR\"}", "code"},
        {"{\"code\":5,\"user_id\":\"u\",\"order_amount\":1,\"currency\":\"EUR\"}", "code"},
        {"{\"code\":\"A B\",\"user_id\":\"u\",\"order_amount\":1,\"currency\":\"EUR\"}", "code"},
        {"{\"code\":\"ABC\",\"user_id\":\"\",\"order_amount\":1,\"currency\":\"EUR\"}", "user_id"},
        {"{\"code\":\"ABC\",\"user_id\":\"a\\nb\",\"order_amount\":1,\"currency\":\"EUR\"}",
         "user_id"},
        {"{\"code\":\"ABC\",\"user_id\":\"u\",\"order_amount\":0,\"currency\":\"EUR\"}",
         "order_amount"},
        {"{\"code\":\"ABC\",\"user_id\":\"u\",\"order_amount\":-1,\"currency\":\"EUR\"}",
         "order_amount"},
        {"{\"code\":\"ABC\",\"user_id\":\"u\",\"order_amount\":1.5,\"currency\":\"EUR\"}",
         "order_amount"},
        {"{\"code\":\"ABC\",\"user_id\":\"u\",\"order_amount\":\"1\",\"currency\":\"EUR\"}",
         "order_amount"},
        {"{\"code\":\"ABC\",\"user_id\":\"u\",\"order_amount\":1000000000000001,\"currency\":"
         "\"EUR\"}",
         "order_amount"},
        {"{\"code\":\"ABC\",\"user_id\":\"u\",\"order_amount\":99999999999999999999999,"
         "\"currency\":\"EUR\"}",
         "order_amount"},
        {"{\"code\":\"ABC\",\"user_id\":\"u\",\"order_amount\":1,\"currency\":\"E1R\"}",
         "currency"},
        {"{\"code\":\"ABC\",\"user_id\":\"u\",\"order_amount\":1,\"currency\":\"EUR\",\"x\":1}",
         "x"},
        {"{\"code\":\"ABC\",\"user_id\":\"u\",\"order_amount\":1,\"currency\":\"EUR\",\"metadata\":"
         "[]}",
         "metadata"},
        {"[1,2]", "body"},
        {"{\"code\":\"ABC\",", "body"},
        {"{\"code\":\"ABC\",\"code\":\"ABD\"}", "body"},
        {"{\"code\":\"\xff\xfe\"}", "body"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *f = parse_field(cases[i].body);
        if (strcmp(f, cases[i].field) != 0)
            fail_msg("case %zu: field \"%s\", expected \"%s\"", i, f, cases[i].field);
    }
}

static void fingerprints(void **state)
{
    (void)state;
    struct rd_redeem_req a = {"SAVE", "u1", 100, "EUR", NULL, NULL}, b = a;
    uint8_t fa[8], fb[8];
    rd_redeem_req_fingerprint(&a, fa);
    rd_redeem_req_fingerprint(&b, fb);
    assert_memory_equal(fa, fb, 8);
    b.order_amount = 101;
    rd_redeem_req_fingerprint(&b, fb);
    assert_memory_not_equal(fa, fb, 8);
    b = a;
    b.order_id = "";
    rd_redeem_req_fingerprint(&b, fb);
    assert_memory_not_equal(fa, fb, 8); /* absent and empty differ */
    b = a;
    b.user_id = "u";
    strcpy(b.code, "SAVE1"); /* ("SAVE","u1") vs ("SAVE1","u") */
    rd_redeem_req_fingerprint(&b, fb);
    assert_memory_not_equal(fa, fb, 8);
}

static void idem_fields(void **state)
{
    (void)state;
    uint8_t a[RD_IDEM_DIGEST_LEN], b[RD_IDEM_DIGEST_LEN];
    rd_idem_digest("SAVE", "abcdefgh", "k1", a);
    rd_idem_digest("SAVE", "abcdefgh", "k1", b);
    assert_memory_equal(a, b, RD_IDEM_DIGEST_LEN);
    rd_idem_digest("SAVE", "abcdefgh", "k2", b);
    assert_memory_not_equal(a, b, RD_IDEM_FIELD_LEN);
    rd_idem_digest("SAVEa", "bcdefgh", "k1", b); /* the parts are separated */
    assert_memory_not_equal(a, b, RD_IDEM_FIELD_LEN);
    /* keys that differ only in their last of 255 characters are different records */
    char k1[RD_IDEM_KEY_MAX + 1], k2[RD_IDEM_KEY_MAX + 1];
    memset(k1, 'x', RD_IDEM_KEY_MAX);
    k1[RD_IDEM_KEY_MAX] = '\0';
    memcpy(k2, k1, sizeof(k1));
    k2[RD_IDEM_KEY_MAX - 1] = 'y';
    rd_idem_digest("SAVE", "abcdefgh", k1, a);
    rd_idem_digest("SAVE", "abcdefgh", k2, b);
    assert_memory_not_equal(a, b, RD_IDEM_FIELD_LEN);
}

static void headers(void **state)
{
    (void)state;
    assert_int_equal(rd_idem_key_check("order-1001"), 0);
    assert_int_equal(rd_idem_key_check(""), -1);
    assert_int_equal(rd_idem_key_check("has space"), -1);
    char longk[300];
    memset(longk, 'k', sizeof(longk));
    longk[255] = '\0';
    assert_int_equal(rd_idem_key_check(longk), 0);
    longk[255] = 'k';
    longk[256] = '\0';
    assert_int_equal(rd_idem_key_check(longk), -1);
    assert_int_equal(rd_request_id_check("abc-123"), 0);
    assert_int_equal(rd_request_id_check("a\tb"), -1);
    char out[4];
    assert_int_equal(rd_currency_normalize("usd", out), 0);
    assert_string_equal(out, "USD");
    assert_int_equal(rd_currency_normalize("US", out), -1);
}

static void sbuf(void **state)
{
    (void)state;
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    rd_sbuf_add_jstr(&b, "a\"b\\c\n\x01", 7);
    assert_string_equal(b.buf, "\"a\\\"b\\\\c\\u000a\\u0001\"");
    for (int i = 0; i < 1000; i++)
        rd_sbuf_addf(&b, "%d,", i);
    assert_true(b.len > 3000);
    rd_sbuf_free(&b);
}

static void ip_lists(void **state)
{
    (void)state;
    assert_int_equal(rd_ip_in_list("127.0.0.0/8,::1", "127.0.0.2"), 1);
    assert_int_equal(rd_ip_in_list("127.0.0.0/8,::1", "::1"), 1);
    assert_int_equal(rd_ip_in_list("127.0.0.0/8,::1", "10.0.0.1"), 0);
    assert_int_equal(rd_ip_in_list("10.0.0.0/8, 192.0.2.7", "192.0.2.7"), 1);
    assert_int_equal(rd_ip_in_list("192.0.2.7", "192.0.2.8"), 0);
    /* prefixes that end inside a byte, and at their bounds */
    assert_int_equal(rd_ip_in_list("10.1.128.0/17", "10.1.255.1"), 1);
    assert_int_equal(rd_ip_in_list("10.1.128.0/17", "10.1.127.1"), 0);
    assert_int_equal(rd_ip_in_list("0.0.0.0/0", "203.0.113.9"), 1);
    assert_int_equal(rd_ip_in_list("203.0.113.9/32", "203.0.113.9"), 1);
    assert_int_equal(rd_ip_in_list("2001:db8::/33", "2001:db8:7fff::1"), 1);
    assert_int_equal(rd_ip_in_list("2001:db8::/33", "2001:db8:8000::1"), 0);
    assert_int_equal(rd_ip_in_list("10.0.0.0/8", "::ffff:10.0.0.1"), 0); /* families apart */
    /* malformed lists and addresses */
    assert_int_equal(rd_ip_in_list("10.0.0.0/33", "10.0.0.1"), -1);
    assert_int_equal(rd_ip_in_list("10.0.0.0/", "10.0.0.1"), -1);
    assert_int_equal(rd_ip_in_list("10.0.0.0/8x", "10.0.0.1"), -1);
    assert_int_equal(rd_ip_in_list("localhost", "10.0.0.1"), -1);
    assert_int_equal(rd_ip_in_list("", "10.0.0.1"), -1);
    assert_int_equal(rd_ip_in_list("10.0.0.0/8,", "10.0.0.1"), -1);
    assert_int_equal(rd_ip_in_list("10.0.0.0/8", "nope"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ip_lists),    cmocka_unit_test(fields),  cmocka_unit_test(fingerprints),
        cmocka_unit_test(idem_fields), cmocka_unit_test(headers), cmocka_unit_test(sbuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
