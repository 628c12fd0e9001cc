/* SPDX-License-Identifier: MIT
 *
 * Request bodies as the handlers read them: the strict JSON parse, then the parser of one
 * route (first input byte): coupon create, coupon patch, validate/redeem, pay, recharge, a
 * batch's format and template. Properties: an accepted coupon passes its own checks and
 * survives the round trip through its Redis hash fields; an accepted code format
 * round-trips through its JSON and generates codes it recognises.
 */
#include "fuzz.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rd/codefmt.h"
#include "rd/coupon.h"
#include "rd/json_util.h"
#include "rd/request.h"

#define NOW  1900000000000LL /* 2030-03-17: a fixed clock, as tests inject one */
#define MAXB 100000000LL

static int fixed_random(void *buf, size_t n, void *arg)
{
    (void)arg;
    memset(buf, 0x5a, n);
    return 0;
}

static void coupon_roundtrip(const struct rd_coupon *c)
{
    struct rd_verr e;
    CHECK(rd_coupon_check(c, &e) == 0);
    const char *names[RD_COUPON_NFIELDS], *values[RD_COUPON_NFIELDS];
    char scratch[RD_COUPON_SCRATCH];
    rd_coupon_fields(c, names, values, scratch);
    size_t nl[RD_COUPON_NFIELDS], vl[RD_COUPON_NFIELDS];
    for (int i = 0; i < RD_COUPON_NFIELDS; i++) {
        nl[i] = strlen(names[i]);
        vl[i] = strlen(values[i]);
    }
    struct rd_coupon back;
    rd_coupon_init(&back);
    CHECK(rd_coupon_from_hash(&back, names, nl, values, vl, RD_COUPON_NFIELDS) == 0);
    json_t *j = rd_coupon_to_json(&back, NOW);
    CHECK(j);
    json_decref(j);
    rd_coupon_free(&back);
}

static void codefmt(const json_t *body)
{
    struct rd_codefmt f;
    struct rd_verr e;
    if (rd_codefmt_parse(&f, json_object_get(body, "format"), &e) < 0)
        return;
    CHECK(rd_codefmt_space(&f) > 0);
    json_t *j = rd_codefmt_to_json(&f);
    struct rd_codefmt g;
    CHECK(rd_codefmt_parse(&g, j, &e) == 0);
    CHECK(!strcmp(f.prefix, g.prefix) && !strcmp(f.pattern, g.pattern) &&
          !strcmp(f.alphabet, g.alphabet));
    json_decref(j);
    char code[RD_CODE_MAX + 1];
    if (rd_codefmt_generate(&f, code, fixed_random, NULL) == 0)
        CHECK(rd_codefmt_matches(&f, code));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct rd_verr e;
    json_t *body = rd_json_parse_object((const char *)data + 1, size - 1, &e);
    if (!body) {
        CHECK(e.msg[0]); /* every refusal says why */
        return 0;
    }
    struct rd_coupon c;
    rd_coupon_init(&c);
    struct rd_redeem_req r;
    memset(&r, 0, sizeof(r));
    switch (data[0] % 6) {
    case 0:
        if (rd_coupon_from_create(&c, body, NOW, MAXB, &e) == 0)
            coupon_roundtrip(&c);
        break;
    case 1: { /* a patch of a coupon that exists */
        json_t *base =
            json_pack("{s:s, s:{s:s, s:i}, s:s, s:{s:i}}", "code", "BASE-1", "discount", "type",
                      "percent", "value", 1000, "currency", "EUR", "limits", "total", 10);
        CHECK(rd_coupon_from_create(&c, base, NOW, MAXB, &e) == 0);
        json_decref(base);
        if (rd_coupon_apply_patch(&c, body, NOW, &e) == 0)
            coupon_roundtrip(&c);
        break;
    }
    case 2:
        if (rd_redeem_req_parse(&r, body, &e) == 0) {
            uint8_t fp[8], f2[8];
            rd_redeem_req_fingerprint(&r, fp);
            rd_redeem_req_fingerprint(&r, f2);
            CHECK(memcmp(fp, f2, 8) == 0);
        }
        break;
    case 3:
        if (rd_pay_req_parse(&r, body, "GIFT-1", &e) == 0)
            CHECK(r.order_amount > 0);
        break;
    case 4:
        (void)rd_recharge_req_parse(&r, body, "GIFT-1", &e);
        break;
    default: {
        codefmt(body);
        json_t *tpl = json_object_get(body, "template");
        if (json_is_object(tpl) && rd_coupon_from_create(&c, tpl, NOW, MAXB, &e) == 0)
            coupon_roundtrip(&c);
        break;
    }
    }
    rd_redeem_req_free(&r);
    rd_coupon_free(&c);
    json_decref(body);
    return 0;
}
