/* SPDX-License-Identifier: MIT
 *
 * The checkout's answers written as text (rd_use_answer_text) are the documents jansson
 * builds (rd_redeem_answer_json, rd_pay_answer_json): equal once parsed, for strings that
 * need escaping, limits that are null, with and without an order id, integers at their
 * extremes.
 */
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#include "api/api.h"

static void check(const struct rd_use_answer *x, int pay)
{
    struct rd_sbuf b;
    rd_sbuf_init(&b);
    rd_use_answer_text(&b, x, pay);
    json_error_t err;
    json_t *got = json_loadb(b.buf, b.len, 0, &err);
    assert_non_null(got);
    json_t *want = pay ? rd_pay_answer_json(x) : rd_redeem_answer_json(x);
    assert_true(json_equal(got, want));
    /* the same members in the same order (jansson keeps the order it was given) */
    char *a = json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER),
         *w = json_dumps(want, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(a, w);
    free(a);
    free(w);
    json_decref(got);
    json_decref(want);
    rd_sbuf_free(&b);
}

static void answers_as_jansson_builds_them(void **state)
{
    (void)state;
    struct rd_use_answer x = {.id = "rdm_0042_1764543210123-0_k3j9fq",
                              .code = "SPRING15",
                              .user = "alice",
                              .currency = "EUR",
                              .order = "1001",
                              .created_ms = 1764543210123LL,
                              .amount = 2599,
                              .discount = 389,
                              .balance_after = 3001,
                              .rem = {999, 1, 0, -1}};
    check(&x, 0);
    check(&x, 1);
    x.order = "";
    x.user = "quote\" back\\slash \x01 ctl \xc3\xa9 utf-8 /";
    x.created_ms = 0;
    x.rem[0] = x.rem[1] = x.rem[2] = x.rem[3] = -1;
    x.amount = INT64_MAX;
    x.discount = 0;
    x.balance_after = 0;
    check(&x, 0);
    check(&x, 1);
    x.rem[0] = 0;
    x.rem[3] = 123456789012LL;
    check(&x, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(answers_as_jansson_builds_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
