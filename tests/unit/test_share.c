/* SPDX-License-Identifier: MIT
 * Share messages: the last valid day in the coupon's zone, and the WhatsApp link's encoding. */
#include <string.h>

#include "test_util.h"

#include "rd/rdtime.h"
#include "rd/share.h"

static int64_t at(const char *s)
{
    int64_t ms;
    assert_int_equal(rd_time_parse(s, &ms), 0);
    return ms;
}

static void message_names_code_and_last_day(void **state)
{
    (void)state;
    char m[RD_SHARE_MSG_MAX];
    rd_share_message("Hurry up!", "C1477D25", at("2025-07-19T00:00:00Z"), 0, m);
    /* expiring at midnight: the 18th is the last day it works */
    assert_string_equal(m, "Hurry up!\n\nC1477D25 (valid until 18 Jul 2025)");
    rd_share_message("Hi", "X", at("2025-07-19T00:00:00.001Z"), 0, m);
    assert_string_equal(m, "Hi\n\nX (valid until 19 Jul 2025)");
    /* in New York (UTC-5) 03:00 UTC on the 19th is still the 18th */
    rd_share_message("Hi", "X", at("2025-07-19T03:00:00Z"), -300, m);
    assert_string_equal(m, "Hi\n\nX (valid until 18 Jul 2025)");
    rd_share_message("Hi", "X", -1, 0, m);
    assert_string_equal(m, "Hi\n\nX (no expiry)");
    rd_share_message("", "X", at("1970-01-01T00:00:00Z"), 0, m);
    assert_string_equal(m, "\n\nX (valid until 31 Dec 1969)");
}

static void url_encoding(void **state)
{
    (void)state;
    char out[256];
    rd_url_encode("a b&c=d/é\n~._-", out);
    assert_string_equal(out, "a%20b%26c%3Dd%2F%C3%A9%0A~._-");
    char url[RD_SHARE_URL_MAX];
    rd_share_whatsapp_url("Hi!\n\nX (no expiry)", url);
    assert_string_equal(url, "https://wa.me/?text=Hi%21%0A%0AX%20%28no%20expiry%29");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(message_names_code_and_last_day),
        cmocka_unit_test(url_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
