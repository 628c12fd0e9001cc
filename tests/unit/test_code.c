/* SPDX-License-Identifier: MIT
 * Code normalisation and generation. */
#include <string.h>

#include "test_util.h"

#include "rd/code.h"

static void normalize(void **state)
{
    (void)state;
    char out[RD_CODE_MAX + 1];
    assert_int_equal(rd_code_normalize("save-10x", 8, out), 0);
    assert_string_equal(out, "SAVE-10X");
    const char *bad[] = {"ab", "-ABC", "ABC-", "AB C", "ABÇ", "A_B", "AB\nC", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rd_code_normalize(bad[i], strlen(bad[i]), out), -1);
    char longc[RD_CODE_MAX + 2];
    memset(longc, 'A', sizeof(longc));
    assert_int_equal(rd_code_normalize(longc, RD_CODE_MAX, out), 0);
    assert_int_equal(rd_code_normalize(longc, RD_CODE_MAX + 1, out), -1);
}

/* A deterministic byte stream 0, 1, 2, ... standing in for the CSPRNG. */
static int counter_rnd(void *buf, size_t n, void *arg)
{
    unsigned *next = arg;
    for (size_t i = 0; i < n; i++)
        ((uint8_t *)buf)[i] = (uint8_t)(*next)++;
    return 0;
}

static int failing_rnd(void *buf, size_t n, void *arg)
{
    (void)buf;
    (void)n;
    (void)arg;
    return -1;
}

static void generate(void **state)
{
    (void)state;
    char out[64];
    unsigned next = 0;
    assert_int_equal(rd_code_generate(out, RD_CODE_GEN_LEN, counter_rnd, &next), 0);
    assert_int_equal(strlen(out), RD_CODE_GEN_LEN);
    assert_string_equal(out, "23456789ABCDE"); /* bytes 0..12 map straight onto the alphabet */
    /* no look-alikes anywhere in the alphabet */
    assert_null(strpbrk(RD_CODE_ALPHABET, "01OIL"));
    /* bytes >= 248 would bias the draw and are skipped */
    next = 245;
    assert_int_equal(rd_code_generate(out, 4, counter_rnd, &next), 0);
    assert_int_equal(out[0], RD_CODE_ALPHABET[245 % 31]);
    assert_int_equal(out[3], RD_CODE_ALPHABET[0]); /* 248..255 skipped, then 0 */
    assert_true(rd_code_entropy_bits(RD_CODE_GEN_LEN) >= 60.0);
    assert_int_equal(rd_code_generate(out, 4, failing_rnd, NULL), -1);
    /* generated codes are valid codes */
    char norm[RD_CODE_MAX + 1];
    next = 7;
    rd_code_generate(out, RD_CODE_GEN_LEN, counter_rnd, &next);
    assert_int_equal(rd_code_normalize(out, strlen(out), norm), 0);
}

static void uniform(void **state)
{
    (void)state;
    /* Over every byte value each symbol appears exactly 8 times: no bias. */
    unsigned next = 0, counts[31] = {0};
    char out[249];
    assert_int_equal(rd_code_generate(out, 248, counter_rnd, &next), 0);
    for (int i = 0; i < 248; i++)
        counts[strchr(RD_CODE_ALPHABET, out[i]) - RD_CODE_ALPHABET]++;
    for (int i = 0; i < 31; i++)
        assert_int_equal(counts[i], 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(normalize),
        cmocka_unit_test(generate),
        cmocka_unit_test(uniform),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
