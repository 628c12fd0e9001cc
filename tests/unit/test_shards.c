/* SPDX-License-Identifier: MIT
 * Hot coupons' shards: layouts, a user's shard, splitting a total, placement over nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#include "rd/shards.h"

static void layouts(void **state)
{
    (void)state;
    struct rd_shard_layout l;
    char buf[RD_SHARD_LAYOUT_SZ];
    assert_int_equal(rd_shard_layout_parse("7,1023,0", 8, 1024, &l), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.bucket[0], 7);
    assert_int_equal(l.bucket[1], 1023);
    assert_int_equal(l.bucket[2], 0);
    assert_int_equal(rd_shard_layout_format(&l, buf, sizeof(buf)), 8);
    assert_string_equal(buf, "7,1023,0");
    static const char *const bad[] = {"",       "7",   "7,",   ",7",   "7,,8",     "7,7",
                                      "7,1024", "7,x", "-1,2", "7, 8", "100000,1", "7;8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rd_shard_layout_parse(bad[i], strlen(bad[i]), 1024, &l), -1);
    /* the bound: RD_SHARDS_MAX buckets parse, one more does not */
    char s[256] = "";
    size_t at = 0;
    for (int i = 0; i <= RD_SHARDS_MAX; i++)
        at += (size_t)snprintf(s + at, sizeof(s) - at, i ? ",%d" : "%d", 9000 + i);
    assert_int_equal(rd_shard_layout_parse(s, at, 10000, &l), -1);
    at = strlen(s) - 5; /* drop ",9016" */
    assert_int_equal(rd_shard_layout_parse(s, at, 10000, &l), 0);
    assert_int_equal(l.n, RD_SHARDS_MAX);
    /* the widest layout fits the buffer made for it */
    for (int i = 0; i < RD_SHARDS_MAX; i++)
        l.bucket[i] = 9984u + (uint32_t)i;
    assert_int_equal(rd_shard_layout_format(&l, buf, sizeof(buf)), RD_SHARDS_MAX * 5 - 1);
    assert_int_equal(rd_shard_layout_format(&l, buf, 10), -1);
}

static void users_and_shares(void **state)
{
    (void)state;
    int seen[4] = {0};
    char u[32];
    for (int i = 0; i < 4000; i++) {
        int n = snprintf(u, sizeof(u), "user-%d", i);
        int s = rd_shard_of_user(u, (size_t)n, 4);
        assert_in_range(s, 0, 3);
        assert_int_equal(s, rd_shard_of_user(u, (size_t)n, 4)); /* stable */
        seen[s]++;
    }
    for (int s = 0; s < 4; s++)
        assert_in_range(seen[s], 800, 1200); /* spread, not all on one */
    int64_t sum = 0;
    for (int i = 0; i < 3; i++)
        sum += rd_shard_share(1000, 3, i);
    assert_int_equal(sum, 1000);
    assert_int_equal(rd_shard_share(1000, 3, 0), 334);
    assert_int_equal(rd_shard_share(1000, 3, 2), 333);
    assert_int_equal(rd_shard_share(2, 3, 2), 0);
    assert_int_equal(rd_shard_share(0, 3, 0), 0);
}

/* three nodes, slots by bucket number as a stand-in for a slot map */
static int node3(uint32_t bucket, void *arg)
{
    (void)arg;
    return (int)(bucket % 3);
}

static void placement(void **state)
{
    (void)state;
    struct rd_shard_layout l, again;
    assert_int_equal(rd_shard_place("SUMMER", 5, 1024, 3, node3, NULL, &l), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.bucket[0], 5);
    int nodes = 0;
    for (int i = 0; i < 3; i++)
        nodes |= 1 << node3(l.bucket[i], NULL);
    assert_int_equal(nodes, 7); /* one shard per node */
    assert_int_equal(rd_shard_place("SUMMER", 5, 1024, 3, node3, NULL, &again), 0);
    assert_int_equal(again.n, l.n);
    assert_memory_equal(l.bucket, again.bucket,
                        3 * sizeof(l.bucket[0])); /* every daemon draws the same */
    /* more shards than nodes: at most ceil(K/P) per node */
    assert_int_equal(rd_shard_place("SUMMER", 5, 1024, 7, node3, NULL, &l), 0);
    int per[3] = {0};
    for (int i = 0; i < 7; i++) {
        per[node3(l.bucket[i], NULL)]++;
        for (int k = 0; k < i; k++)
            assert_int_not_equal(l.bucket[i], l.bucket[k]);
    }
    for (int p = 0; p < 3; p++)
        assert_in_range(per[p], 2, 3);
    /* without a cluster: distinct buckets */
    assert_int_equal(rd_shard_place("SUMMER", 5, 1024, RD_SHARDS_MAX, NULL, NULL, &l), 0);
    assert_int_equal(l.n, RD_SHARDS_MAX);
    /* out of range, and too few buckets to hold them */
    assert_int_equal(rd_shard_place("SUMMER", 5, 1024, 1, NULL, NULL, &l), -1);
    assert_int_equal(rd_shard_place("SUMMER", 5, 1024, RD_SHARDS_MAX + 1, NULL, NULL, &l), -1);
    assert_int_equal(rd_shard_place("SUMMER", 1, 2, 3, NULL, NULL, &l), -1);
    assert_int_equal(rd_shard_place("SUMMER", 1, 3, 3, NULL, NULL, &l), 0);
}

static void move_ids(void **state)
{
    (void)state;
    assert_true(rd_move_id_check("0123456789abcdef", 16));
    assert_false(rd_move_id_check("0123456789abcdeF", 16));
    assert_false(rd_move_id_check("0123456789abcde", 15));
    assert_false(rd_move_id_check("0123456789abcdef0", 17));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(layouts),
        cmocka_unit_test(users_and_shares),
        cmocka_unit_test(placement),
        cmocka_unit_test(move_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
