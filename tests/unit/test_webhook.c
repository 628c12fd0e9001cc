/* SPDX-License-Identifier: MIT
 * Webhooks: URLs, private addresses, HMAC-SHA256 (RFC 4231), signatures, the retry schedule. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#include "rd/webhook.h"

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void hmac_vectors(void **state)
{
    (void)state;
    uint8_t mac[32], key[131];
    char h[65];
    memset(key, 0x0b, 20);
    rd_hmac_sha256(key, 20, "Hi There", 8, mac);
    hex(mac, 32, h);
    assert_string_equal(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    rd_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    hex(mac, 32, h);
    assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(key, 0xaa, 131); /* a key longer than a block is hashed first */
    const char *m = "Test Using Larger Than Block-Size Key - Hash Key First";
    rd_hmac_sha256(key, 131, m, strlen(m), mac);
    hex(mac, 32, h);
    assert_string_equal(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    char sig[128];
    rd_webhook_signature("Jefe", 0, "what do ya want for nothing?", 28, sig, sizeof(sig));
    /* "0." then the body: the same as HMAC over "0.what do ya ..." */
    rd_hmac_sha256("Jefe", 4, "0.what do ya want for nothing?", 30, mac);
    hex(mac, 32, h);
    char want[128];
    snprintf(want, sizeof(want), "t=0,v1=%s", h);
    assert_string_equal(sig, want);
}

static void urls(void **state)
{
    (void)state;
    struct rd_url u;
    const char *why;
    assert_int_equal(rd_url_parse("http://hooks.example.com/in?x=1", &u, &why), 0);
    assert_string_equal(u.host, "hooks.example.com");
    assert_int_equal(u.port, 80);
    assert_string_equal(u.path, "/in?x=1");
    assert_false(u.host_is_ip);
    assert_false(u.tls);
    assert_int_equal(rd_url_parse("https://hooks.example.com/in", &u, &why), 0);
    assert_true(u.tls);
    assert_int_equal(u.port, 443);
    assert_string_equal(u.host, "hooks.example.com");
    assert_int_equal(rd_url_parse("https://[2606:4700::1]:8443", &u, &why), 0);
    assert_int_equal(u.port, 8443);
    assert_true(u.tls && u.host_is_ip);
    assert_int_equal(rd_url_parse("http://127.0.0.1:9000", &u, &why), 0);
    assert_string_equal(u.path, "/");
    assert_int_equal(u.port, 9000);
    assert_true(u.host_is_ip);
    assert_int_equal(rd_url_parse("http://[::1]:8080/x", &u, &why), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 8080);
    static const char *const bad[] = {"",
                                      "ftp://x/",
                                      "HTTP://x/",
                                      "https:/x/",
                                      "https://",
                                      "http://",
                                      "http:///x",
                                      "http://a b/",
                                      "http://user:pw@x/",
                                      "http://x:0/",
                                      "http://x:65536/",
                                      "http://x:80a/",
                                      "http://x/#frag",
                                      "http://[::1/",
                                      "http://[::1]x/",
                                      "http://x_y/",
                                      "http://é/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rd_url_parse(bad[i], &u, &why), -1);
    /* at the bound */
    char *big = malloc(RD_URL_MAX + 2);
    memcpy(big, "http://x/", 9);
    memset(big + 9, 'a', RD_URL_MAX - 9);
    big[RD_URL_MAX] = '\0';
    assert_int_equal(rd_url_parse(big, &u, &why), 0);
    big[RD_URL_MAX] = 'a';
    big[RD_URL_MAX + 1] = '\0';
    assert_int_equal(rd_url_parse(big, &u, &why), -1);
    free(big);
}

static void private_addresses(void **state)
{
    (void)state;
    static const char *const priv[] = {"127.0.0.1",
                                       "10.1.2.3",
                                       "172.31.255.255",
                                       "192.168.0.1",
                                       "169.254.169.254",
                                       "100.64.0.1",
                                       "0.0.0.0",
                                       "::1",
                                       "::",
                                       "fd00::1",
                                       "fe80::1",
                                       "::ffff:127.0.0.1",
                                       "::ffff:10.0.0.1",
                                       "224.0.0.1",
                                       "255.255.255.255"};
    for (size_t i = 0; i < sizeof(priv) / sizeof(priv[0]); i++)
        assert_int_equal(rd_ip_is_private(priv[i]), 1);
    static const char *const pub[] = {"8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"};
    for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++)
        assert_int_equal(rd_ip_is_private(pub[i]), 0);
    assert_int_equal(rd_ip_is_private("example.com"), -1);
}

static void events_and_backoff(void **state)
{
    (void)state;
    assert_true(rd_webhook_event_known("redemption.created"));
    assert_true(rd_webhook_event_known("fraud.rate_limited"));
    assert_false(rd_webhook_event_known("redemption"));
    assert_int_equal(rd_webhook_backoff_ms(1, 10000, 0), 10000);
    assert_int_equal(rd_webhook_backoff_ms(2, 10000, 0), 20000);
    assert_int_equal(rd_webhook_backoff_ms(30, 10000, 0), 3600000);
    assert_true(rd_webhook_backoff_ms(1, 10000, 0.999) < 12000);
    /* a day of retries is about 30 attempts: the schedule reaches an hour and stays */
    int64_t total = 0;
    int n = 0;
    while (total < 86400000LL)
        total += rd_webhook_backoff_ms(++n, 10000, 0.5);
    assert_in_range(n, 20, 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hmac_vectors),
        cmocka_unit_test(urls),
        cmocka_unit_test(private_addresses),
        cmocka_unit_test(events_and_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
