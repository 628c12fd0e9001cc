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
    struct rd_redeem_req a = {"SAVE", "u1", 100, "EUR", NULL, NULL, {NULL, NULL, NULL, NULL}},
                         b = a;
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

static json_t *body_with(const char *customer)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"code\":\"SAVE10\",\"user_id\":\"u\",\"order_amount\":100,"
             "\"currency\":\"EUR\",\"customer\":%s}",
             customer);
    json_t *b = json_loads(text, 0, NULL);
    assert_non_null(b);
    return b;
}

static void customers(void **state)
{
    (void)state;
    struct rd_redeem_req r;
    struct rd_verr e;
    json_t *b = body_with("{\"ip\":\"2001:db8::7\",\"session_id\":\"s-1\","
                          "\"device_id\":\"d\",\"email_hash\":\"ab12\"}");
    assert_int_equal(rd_redeem_req_parse(&r, b, &e), 0);
    assert_string_equal(r.customer.ip, "2001:db8::7");
    assert_string_equal(r.customer.session_id, "s-1");
    char cx[RD_CX_MAX];
    assert_int_equal(rd_cx_format("10.0.0.9", &r.customer, cx, sizeof(cx)),
                     (int)strlen("10.0.0.9\x1fs-1\x1f"
                                 "d\x1f"
                                 "ab12"));
    assert_string_equal(cx, "10.0.0.9\x1fs-1\x1f"
                            "d\x1f"
                            "ab12");
    /* the customer is context: the same request with other details is the same request */
    uint8_t f1[8], f2[8];
    rd_redeem_req_fingerprint(&r, f1);
    rd_redeem_req_free(&r);
    json_decref(b);
    b = body_with("null");
    assert_int_equal(rd_redeem_req_parse(&r, b, &e), 0);
    assert_null(r.customer.ip);
    rd_redeem_req_fingerprint(&r, f2);
    assert_memory_equal(f1, f2, 8);
    rd_redeem_req_free(&r);
    json_decref(b);
    /* the widest of each field fits the outbox field made for it */
    char big[RD_CUSTOMER_FIELD_MAX + 1];
    memset(big, 'x', RD_CUSTOMER_FIELD_MAX);
    big[RD_CUSTOMER_FIELD_MAX] = '\0';
    struct rd_customer wide = {NULL, big, big, big};
    assert_true(
        rd_cx_format("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", &wide, cx, sizeof(cx)) > 0);
    static const struct {
        const char *customer, *field;
    } bad[] = {{"\"1.2.3.4\"", "customer"},
               {"{\"ip\":\"1.2.3\"}", "customer.ip"},
               {"{\"ip\":\"localhost\"}", "customer.ip"},
               {"{\"ip\":7}", "customer.ip"},
               {"{\"session_id\":\"\"}", "customer.session_id"},
               {"{\"device_id\":\"a\\u001fb\"}", "customer.device_id"},
               {"{\"email_hash\":\"\u00e9\"}", "customer.email_hash"},
               {"{\"phone\":\"1\"}", "customer.phone"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        b = body_with(bad[i].customer);
        assert_int_equal(rd_redeem_req_parse(&r, b, &e), -1);
        assert_string_equal(e.field, bad[i].field);
        rd_redeem_req_free(&r);
        json_decref(b);
    }
    /* at the bound: 128 characters pass, 129 do not */
    char text[512];
    snprintf(text, sizeof(text), "{\"session_id\":\"%s\"}", big);
    b = body_with(text);
    assert_int_equal(rd_redeem_req_parse(&r, b, &e), 0);
    rd_redeem_req_free(&r);
    json_decref(b);
    snprintf(text, sizeof(text), "{\"session_id\":\"%sy\"}", big);
    b = body_with(text);
    assert_int_equal(rd_redeem_req_parse(&r, b, &e), -1);
    assert_string_equal(e.field, "customer.session_id");
    rd_redeem_req_free(&r);
    json_decref(b);
}

static void forwarded_for(void **state)
{
    (void)state;
    char out[RD_CUSTOMER_IP_MAX + 1];
    const char *proxies = "10.0.0.0/8";
    assert_int_equal(rd_xff_customer("203.0.113.7", proxies, out, sizeof(out)), 0);
    assert_string_equal(out, "203.0.113.7");
    /* read from the right: what our proxies appended is skipped, what the client wrote
     * before the first of them is not believed */
    assert_int_equal(rd_xff_customer("6.6.6.6, 203.0.113.7, 10.1.1.1", proxies, out, sizeof(out)),
                     0);
    assert_string_equal(out, "203.0.113.7");
    assert_int_equal(rd_xff_customer("10.2.2.2,10.1.1.1", proxies, out, sizeof(out)), 0);
    assert_string_equal(out, "10.2.2.2");
    assert_int_equal(rd_xff_customer(" 2001:db8::1 ", proxies, out, sizeof(out)), 0);
    assert_string_equal(out, "2001:db8::1");
    static const char *const bad[] = {"",           ",",         "unknown", "203.0.113.7,",
                                      "1.2.3.4, x", "1.2.3.4:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rd_xff_customer(bad[i], proxies, out, sizeof(out)), -1);
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
        cmocka_unit_test(customers), cmocka_unit_test(forwarded_for), cmocka_unit_test(ip_lists),
        cmocka_unit_test(fields),    cmocka_unit_test(fingerprints),  cmocka_unit_test(idem_fields),
        cmocka_unit_test(headers),   cmocka_unit_test(sbuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
