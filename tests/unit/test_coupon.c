/* SPDX-License-Identifier: MIT
 * Coupon validation (create and PATCH), the Redis hash round trip and the API view. */
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#include "rd/coupon.h"
#include "rd/rdtime.h"

#define NOW 1795000000000LL /* an injected clock: 2026-11-18T... */

static json_t *J(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, 0, &e);
    assert_non_null(v);
    return v;
}

/* Validates body as a create; returns the failing field or "" on success. */
static const char *create_field(const char *body, struct rd_coupon *c)
{
    static struct rd_verr e;
    json_t *b = J(body);
    rd_coupon_init(c);
    int rc = rd_coupon_from_create(c, b, NOW, 100000000, &e);
    json_decref(b);
    return rc == 0 ? "" : e.field;
}

static void create_ok(void **state)
{
    (void)state;
    struct rd_coupon c;
    assert_string_equal(
        create_field("{\"code\":\"save-10\",\"discount\":{\"type\":\"percent\",\"value\":1500,"
                     "\"max_amount\":500},\"currency\":\"eur\",\"expires_in_days\":30,"
                     "\"limits\":{\"total\":100,\"per_user\":2,\"per_user_daily\":1,"
                     "\"per_user_weekly\":null},\"campaign\":\"bf\",\"tags\":[\"VIP\"],"
                     "\"metadata\":{\"a\":\"b\"},\"utc_offset_minutes\":-300}",
                     &c),
        "");
    assert_string_equal(c.code, "SAVE-10");
    assert_string_equal(c.currency, "EUR");
    assert_int_equal(c.expires_at, NOW + 30 * RD_MS_PER_DAY);
    assert_int_equal(c.limit_total, 100);
    assert_int_equal(c.limit_weekly, -1);
    assert_int_equal(c.utc_offset_min, -300);
    assert_string_equal(c.tags_json, "[\"VIP\"]");
    rd_coupon_free(&c);
    /* no code: left empty for the daemon to generate */
    assert_string_equal(create_field("{\"discount\":{\"type\":\"percent\",\"value\":1}}", &c), "");
    assert_string_equal(c.code, "");
    rd_coupon_free(&c);
}

static void create_rejects(void **state)
{
    (void)state;
    struct {
        const char *body, *field;
    } cases[] = {
        {"{}", "discount"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10001}}", "discount.value"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":0}}", "discount.value"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":-5}}", "discount.value"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":1.5}}", "discount.value"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":\"10\"}}", "discount.value"},
        {"{\"discount\":{\"type\":\"bogus\",\"value\":10}}", "discount.type"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10,\"extra\":1}}", "discount.extra"},
        {"{\"discount\":{\"type\":\"fixed\",\"value\":500}}", "currency"},
        {"{\"discount\":{\"type\":\"fixed\",\"value\":1000000000000001},\"currency\":\"EUR\"}",
         "discount.value"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"code\":\"a b\"}", "code"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"currency\":\"EURO\"}", "currency"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"limits\":{\"total\":0}}",
         "limits.total"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"limits\":{\"per_user\":-1}}",
         "limits.per_user"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"limits\":{\"daily\":1}}",
         "limits.daily"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"expires_in_days\":0}",
         "expires_in_days"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"expires_in_days\":3651}",
         "expires_in_days"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"expires_at\":\"tomorrow\"}",
         "expires_at"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"expires_at\":\"2020-01-01T00:00:"
         "00Z\"}",
         "expires_at"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"starts_at\":\"2030-02-01T00:00:00Z\","
         "\"expires_at\":\"2030-01-01T00:00:00Z\"}",
         "expires_at"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"expires_at\":\"2030-01-01T00:00:"
         "00Z\","
         "\"expires_in_days\":3}",
         "expires_in_days"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"utc_offset_minutes\":841}",
         "utc_offset_minutes"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"tags\":[1]}", "tags[0]"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"metadata\":{\"a\":1}}", "metadata.a"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"kind\":\"gift\"}", "kind"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"colour\":\"red\"}", "colour"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"campaign\":\"\"}", "campaign"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rd_coupon c;
        const char *f = create_field(cases[i].body, &c);
        if (strcmp(f, cases[i].field) != 0)
            fail_msg("case %zu: %s: field \"%s\", expected \"%s\"", i, cases[i].body, f,
                     cases[i].field);
        rd_coupon_free(&c);
    }
}

static void patch(void **state)
{
    (void)state;
    struct rd_coupon c;
    struct rd_verr e;
    create_field("{\"code\":\"P1\x2dX\",\"discount\":{\"type\":\"percent\",\"value\":1000},"
                 "\"limits\":{\"total\":5}}",
                 &c);
    c.used = 4;
    json_t *b = J("{\"limits\":{\"total\":3,\"per_user\":1},\"campaign\":\"x\"}");
    assert_int_equal(rd_coupon_apply_patch(&c, b, NOW + 5, &e), 0);
    json_decref(b);
    assert_int_equal(c.limit_total, 3);
    assert_int_equal(c.used, 4); /* usage untouched: the lower limit now blocks */
    assert_string_equal(rd_coupon_status(&c, NOW + 5), "exhausted");
    assert_int_equal(c.updated_at, NOW + 5);
    b = J("{\"limits\":{\"total\":null}}");
    assert_int_equal(rd_coupon_apply_patch(&c, b, NOW, &e), 0);
    json_decref(b);
    assert_int_equal(c.limit_total, -1);
    b = J("{\"code\":\"OTHER\"}");
    assert_int_equal(rd_coupon_apply_patch(&c, b, NOW, &e), -1);
    assert_string_equal(e.field, "code");
    json_decref(b);
    b = J("{\"discount\":{\"type\":\"fixed\"}}"); /* fixed needs a currency */
    assert_int_equal(rd_coupon_apply_patch(&c, b, NOW, &e), -1);
    assert_string_equal(e.field, "currency");
    json_decref(b);
    b = J("{}");
    assert_int_equal(rd_coupon_apply_patch(&c, b, NOW, &e), -1);
    json_decref(b);
    rd_coupon_free(&c);
}

static void hash_roundtrip_and_view(void **state)
{
    (void)state;
    struct rd_coupon c, back;
    create_field("{\"code\":\"RT-1\",\"discount\":{\"type\":\"fixed\",\"value\":250,\"min_order\":"
                 "1000},\"currency\":\"USD\",\"starts_at\":\"2026-12-01T00:00:00Z\","
                 "\"expires_at\":\"2026-12-31T00:00:00Z\",\"tags\":[\"a\"]}",
                 &c);
    const char *names[RD_COUPON_NFIELDS], *values[RD_COUPON_NFIELDS];
    char scratch[RD_COUPON_SCRATCH];
    rd_coupon_fields(&c, names, values, scratch);
    size_t nl[RD_COUPON_NFIELDS + 2], vl[RD_COUPON_NFIELDS + 2];
    const char *n2[RD_COUPON_NFIELDS + 2], *v2[RD_COUPON_NFIELDS + 2];
    for (int i = 0; i < RD_COUPON_NFIELDS; i++) {
        n2[i] = names[i];
        v2[i] = values[i];
    }
    n2[RD_COUPON_NFIELDS] = "used";
    v2[RD_COUPON_NFIELDS] = "7";
    n2[RD_COUPON_NFIELDS + 1] = "ver";
    v2[RD_COUPON_NFIELDS + 1] = "3";
    for (int i = 0; i < RD_COUPON_NFIELDS + 2; i++) {
        nl[i] = strlen(n2[i]);
        vl[i] = strlen(v2[i]);
    }
    rd_coupon_init(&back);
    assert_int_equal(rd_coupon_from_hash(&back, n2, nl, v2, vl, RD_COUPON_NFIELDS + 2), 0);
    assert_string_equal(back.code, "RT-1");
    assert_int_equal(back.discount.type, RD_DISCOUNT_FIXED);
    assert_int_equal(back.discount.min_order, 1000);
    assert_int_equal(back.discount.max_amount, -1);
    assert_int_equal(back.starts_at, c.starts_at);
    assert_int_equal(back.used, 7);
    assert_int_equal(back.ver, 3);
    json_t *view = rd_coupon_to_json(&back, c.starts_at - 1);
    assert_string_equal(json_string_value(json_object_get(view, "status")), "scheduled");
    assert_string_equal(json_string_value(json_object_get(view, "starts_at")),
                        "2026-12-01T00:00:00Z");
    assert_true(json_is_null(json_object_get(json_object_get(view, "limits"), "total")));
    json_decref(view);
    assert_string_equal(rd_coupon_status(&back, c.expires_at), "expired");
    back.disabled = 1;
    assert_string_equal(rd_coupon_status(&back, c.starts_at), "disabled");
    rd_coupon_free(&c);
    rd_coupon_free(&back);
    /* a hash that is not a coupon */
    const char *bn[] = {"used"}, *bv[] = {"1"};
    size_t bnl[] = {4}, bvl[] = {1};
    rd_coupon_init(&back);
    assert_int_equal(rd_coupon_from_hash(&back, bn, bnl, bv, bvl, 1), -1);
    rd_coupon_free(&back);
}

static void vouchers(void **state)
{
    (void)state;
    struct rd_coupon c;
    assert_string_equal(create_field("{\"kind\":\"voucher\",\"code\":\"GIFT-1\",\"balance\":5000,"
                                     "\"currency\":\"eur\",\"limits\":{\"per_user_daily\":3}}",
                                     &c),
                        "");
    assert_int_equal(c.kind, RD_KIND_VOUCHER);
    assert_int_equal(c.balance, 5000);
    assert_int_equal(c.loaded, 5000);
    assert_int_equal(c.limit_daily, 3);
    assert_string_equal(rd_coupon_status(&c, NOW), "active");
    json_t *view = rd_coupon_to_json(&c, NOW);
    assert_true(json_is_null(json_object_get(view, "discount")));
    assert_int_equal(json_integer_value(json_object_get(view, "outstanding")), 5000);
    json_decref(view);
    c.balance = 0;
    assert_string_equal(rd_coupon_status(&c, NOW), "exhausted");
    rd_coupon_free(&c);
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{\"kind\":\"voucher\",\"currency\":\"EUR\"}", "balance"},
        {"{\"kind\":\"voucher\",\"balance\":0,\"currency\":\"EUR\"}", "balance"},
        {"{\"kind\":\"voucher\",\"balance\":-5,\"currency\":\"EUR\"}", "balance"},
        {"{\"kind\":\"voucher\",\"balance\":1.5,\"currency\":\"EUR\"}", "balance"},
        {"{\"kind\":\"voucher\",\"balance\":100000001,\"currency\":\"EUR\"}", "balance"},
        {"{\"kind\":\"voucher\",\"balance\":100}", "currency"},
        {"{\"kind\":\"voucher\",\"balance\":100,\"currency\":\"EUR\",\"discount\":{\"type\":"
         "\"fixed\",\"value\":1}}",
         "discount"},
        {"{\"discount\":{\"type\":\"percent\",\"value\":10},\"balance\":100}", "balance"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_string_equal(create_field(bad[i].body, &c), bad[i].field);
        rd_coupon_free(&c);
    }
    /* a PATCH never touches the money */
    create_field("{\"kind\":\"voucher\",\"balance\":100,\"currency\":\"EUR\"}", &c);
    struct rd_verr e;
    json_t *p = J("{\"balance\":1000000}");
    assert_int_equal(rd_coupon_apply_patch(&c, p, NOW, &e), -1);
    assert_string_equal(e.field, "balance");
    json_decref(p);
    p = J("{\"currency\":\"USD\"}");
    assert_int_equal(rd_coupon_apply_patch(&c, p, NOW, &e), -1);
    assert_string_equal(e.field, "currency");
    json_decref(p);
    p = J("{\"limits\":{\"per_user\":2}}");
    assert_int_equal(rd_coupon_apply_patch(&c, p, NOW, &e), 0);
    json_decref(p);
    rd_coupon_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_ok), cmocka_unit_test(create_rejects),
        cmocka_unit_test(patch),     cmocka_unit_test(hash_roundtrip_and_view),
        cmocka_unit_test(vouchers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
