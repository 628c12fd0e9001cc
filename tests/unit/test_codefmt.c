/* SPDX-License-Identifier: MIT
 * Batch code formats: parsing and its errors, the size of the space, generation (shape,
 * uniformity of the draw), and check symbols that catch typing mistakes. */
#include <string.h>

#include "test_util.h"

#include "rd/codefmt.h"

static int parse(struct rd_codefmt *f, const char *json, struct rd_verr *e)
{
    json_t *o = json ? json_loads(json, 0, NULL) : NULL;
    if (json)
        assert_non_null(o);
    int rc = rd_codefmt_parse(f, o, e);
    json_decref(o);
    return rc;
}

/* A counter as the random source: every byte is the next value, so draws are predictable. */
static int counter(void *buf, size_t n, void *arg)
{
    uint8_t *b = buf, *next = arg;
    for (size_t i = 0; i < n; i++)
        b[i] = (*next)++;
    return 0;
}

static void defaults_and_space(void **state)
{
    (void)state;
    struct rd_codefmt f;
    struct rd_verr e;
    assert_int_equal(parse(&f, NULL, &e), 0);
    assert_int_equal(f.len, 10);
    assert_int_equal(f.nrandom, 10);
    assert_string_equal(f.alphabet, RD_CODE_ALPHABET);
    assert_true(rd_codefmt_space(&f) == 819628286980801ULL); /* 31^10 */

    assert_int_equal(
        parse(&f, "{\"prefix\":\"sum-\",\"pattern\":\"##-#\",\"alphabet\":\"ab\"}", &e), 0);
    assert_string_equal(f.prefix, "SUM-");
    assert_string_equal(f.pattern, "##-#");
    assert_string_equal(f.alphabet, "AB");
    assert_int_equal(f.len, 8);
    assert_true(rd_codefmt_space(&f) == 8);
    /* what the job stores is read back to the same format */
    json_t *j = rd_codefmt_to_json(&f);
    struct rd_codefmt g;
    assert_int_equal(rd_codefmt_parse(&g, j, &e), 0);
    json_decref(j);
    assert_memory_equal(&f, &g, sizeof(f));

    /* 36^64 does not fit: the space saturates instead of wrapping */
    assert_int_equal(
        parse(&f, "{\"length\":64,\"alphabet\":\"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\"}", &e), 0);
    assert_true(rd_codefmt_space(&f) == UINT64_MAX);
}

static void bad_formats(void **state)
{
    (void)state;
    struct rd_codefmt f;
    struct rd_verr e;
    static const struct {
        const char *json, *field;
    } cases[] = {
        {"{\"length\":0}", "format.length"},
        {"{\"length\":65}", "format.length"},
        {"{\"length\":8,\"pattern\":\"##\"}", "format.pattern"},
        {"{\"pattern\":\"ABC\"}", "format.pattern"},
        {"{\"pattern\":\"#_#\"}", "format.pattern"},
        {"{\"alphabet\":\"AA\"}", "format.alphabet"},
        {"{\"alphabet\":\"A\"}", "format.alphabet"},
        {"{\"alphabet\":\"AB-\"}", "format.alphabet"},
        {"{\"prefix\":\"X Y\"}", "format.prefix"},
        {"{\"prefix\":\"-X\"}", "format"},
        {"{\"pattern\":\"##-\"}", "format"},
        {"{\"length\":2}", "format"},
        {"{\"prefix\":\"P\",\"length\":64}", "format"},
        {"{\"check\":1}", "format.check"},
        {"{\"size\":3}", "format.size"},
        {"[]", "format"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse(&f, cases[i].json, &e), -1);
        assert_string_equal(e.field, cases[i].field);
    }
    /* a pattern ending in '-' is fine when a check symbol follows it */
    assert_int_equal(parse(&f, "{\"pattern\":\"###-\",\"check\":true}", &e), 0);
}

static void generates_the_shape(void **state)
{
    (void)state;
    struct rd_codefmt f;
    struct rd_verr e;
    assert_int_equal(
        parse(&f, "{\"prefix\":\"VIP\",\"pattern\":\"-##-##\",\"alphabet\":\"0123\"}", &e), 0);
    uint8_t next = 0;
    char code[RD_CODE_MAX + 1];
    assert_int_equal(rd_codefmt_generate(&f, code, counter, &next), 0);
    assert_string_equal(code, "VIP-01-23");
    assert_true(rd_codefmt_matches(&f, code));
    assert_false(rd_codefmt_matches(&f, "VIP-01-24"));
    assert_false(rd_codefmt_matches(&f, "VIP-01-2"));
    assert_false(rd_codefmt_matches(&f, "VIQ-01-23"));

    /* alphabet of 3: bytes 255 (>= 255 = 256 - 256 % 3) are rejected, not folded onto 'A' */
    assert_int_equal(parse(&f, "{\"length\":3,\"alphabet\":\"ABC\"}", &e), 0);
    next = 254;
    assert_int_equal(rd_codefmt_generate(&f, code, counter, &next), 0);
    assert_string_equal(code, "CAB"); /* 254 % 3 = 2, 255 skipped, 0, 1 */
}

static void uniform_over_many_draws(void **state)
{
    (void)state;
    struct rd_codefmt f;
    struct rd_verr e;
    assert_int_equal(parse(&f, "{\"length\":4,\"alphabet\":\"ABCDEFG\"}", &e), 0);
    unsigned counts[7] = {0};
    uint8_t next = 0;
    char code[8];
    for (int i = 0; i < 252; i++) { /* 1008 symbols: 4 passes over the 252 bytes kept */
        assert_int_equal(rd_codefmt_generate(&f, code, counter, &next), 0);
        for (int k = 0; k < 4; k++)
            counts[code[k] - 'A']++;
    }
    /* the counter walks every byte value; after rejection each symbol is equally likely */
    for (int k = 0; k < 7; k++)
        assert_int_equal(counts[k], 144);
}

static void check_symbol_catches_typos(void **state)
{
    (void)state;
    struct rd_codefmt f;
    struct rd_verr e;
    assert_int_equal(parse(&f, "{\"prefix\":\"GIFT-\",\"length\":8,\"check\":true}", &e), 0);
    assert_int_equal(f.len, 14);
    uint8_t next = 7;
    char code[RD_CODE_MAX + 1];
    for (int round = 0; round < 200; round++) {
        assert_int_equal(rd_codefmt_generate(&f, code, counter, &next), 0);
        assert_true(rd_codefmt_matches(&f, code));
        /* every single substitution of a random or check symbol is caught */
        for (size_t i = 5; i < f.len; i++) {
            char keep = code[i];
            for (const char *a = f.alphabet; *a; a++) {
                if (*a == keep)
                    continue;
                code[i] = *a;
                assert_false(rd_codefmt_matches(&f, code));
            }
            code[i] = keep;
        }
        /* with the default (odd) alphabet every swap of two different neighbours too */
        for (size_t i = 5; i + 1 < f.len; i++) {
            char a = code[i], b = code[i + 1];
            if (a == b)
                continue;
            code[i] = b;
            code[i + 1] = a;
            assert_false(rd_codefmt_matches(&f, code));
            code[i] = a;
            code[i + 1] = b;
        }
    }
    /* the classic Luhn case: digits, check over "7992739871" is 3 */
    assert_int_equal(parse(&f,
                           "{\"pattern\":\"##########\",\"alphabet\":\"0123456789\","
                           "\"check\":true}",
                           &e),
                     0);
    assert_true(rd_codefmt_matches(&f, "79927398713"));
    assert_false(rd_codefmt_matches(&f, "79927398710"));
    assert_false(rd_codefmt_matches(&f, "97927398713")); /* neighbours swapped */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_and_space),         cmocka_unit_test(bad_formats),
        cmocka_unit_test(generates_the_shape),        cmocka_unit_test(uniform_over_many_draws),
        cmocka_unit_test(check_symbol_catches_typos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
