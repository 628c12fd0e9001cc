/* SPDX-License-Identifier: MIT
 * Redis Cluster slots, slot maps, redirections and the redis_cluster setting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#include "rd/cluster.h"
#include "rd/keys.h"

/* What redis-server 7.0.15 answers to CLUSTER KEYSLOT for each key (tests/cluster checks
 * more of them against a live cluster): hash tags, empty tags, a tag's first '}' only. */
static void keyslots_as_redis_computes_them(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        int slot;
    } v[] = {{"", 0},
             {"{}", 15257},
             {"{}x", 10595},
             {"a{b}c", 3300},
             {"{{a}}", 10276},
             {"a{}{b}", 15033},
             {"foo", 12182},
             {"123456789", 12739},
             {"{0001}:c:X", 2731},
             {"{1023}:log", 14911},
             {"rd:meta", 8110},
             {"rd:apikeys", 1605},
             {"{rd}:meta", 537},
             {"{user1000}.following", 3443},
             {"a}{b}", 3300},
             {"{", 4092},
             {"}", 12090},
             {"{a", 10276},
             {"x{y}", 12222},
             {"{0000}", 6794},
             {"{9999}:u:A", 7389}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        assert_int_equal(rd_cluster_keyslot(v[i].key, strlen(v[i].key)), v[i].slot);
    /* every key of a bucket is in its tag's slot, whatever follows */
    char a[RD_KEY_MAX], b[RD_KEY_MAX];
    rd_key_coupon(a, sizeof(a), 17, "SAVE10");
    rd_key_log(b, sizeof(b), 17);
    assert_int_equal(rd_cluster_keyslot(a, strlen(a)), rd_cluster_keyslot(b, strlen(b)));
    /* bytes past a NUL count: the length is the key's */
    assert_int_not_equal(rd_cluster_keyslot("a\0b", 3), rd_cluster_keyslot("a", 1));
}

static void slot_maps(void **state)
{
    (void)state;
    struct rd_slotmap *m = malloc(sizeof(*m));
    assert_non_null(m);
    rd_slotmap_clear(m);
    assert_int_equal(rd_slotmap_uncovered(m), RD_CLUSTER_SLOTS);
    int a = rd_slotmap_node(m, "127.0.0.1", 9, 7000);
    int b = rd_slotmap_node(m, "127.0.0.1", 9, 7001);
    assert_int_equal(a, 0);
    assert_int_equal(b, 1);
    assert_int_equal(rd_slotmap_node(m, "127.0.0.1", 9, 7000), 0); /* known: the same index */
    assert_int_equal(rd_slotmap_assign(m, 0, 8191, a), 0);
    assert_int_equal(rd_slotmap_assign(m, 8192, 16383, b), 0);
    assert_int_equal(rd_slotmap_uncovered(m), 0);
    assert_int_equal(m->slot_node[8191], a);
    assert_int_equal(m->slot_node[8192], b);
    assert_int_equal(rd_slotmap_assign(m, 5, 4, a), -1);
    assert_int_equal(rd_slotmap_assign(m, 0, 16384, a), -1);
    assert_int_equal(rd_slotmap_assign(m, 0, 1, 2), -1);
    /* the node table's bound */
    for (int i = 2; i < RD_CLUSTER_NODES_MAX; i++)
        assert_int_equal(rd_slotmap_node(m, "10.0.0.1", 8, 1000 + i), i);
    assert_int_equal(rd_slotmap_node(m, "10.0.0.1", 8, 999), -1);
    assert_int_equal(rd_slotmap_node(m, "10.0.0.1", 8, 1002), 2);
    char longhost[RD_CLUSTER_HOST_MAX + 1];
    memset(longhost, 'h', sizeof(longhost));
    rd_slotmap_clear(m);
    assert_int_equal(rd_slotmap_node(m, longhost, RD_CLUSTER_HOST_MAX, 1), -1);
    assert_int_equal(rd_slotmap_node(m, longhost, RD_CLUSTER_HOST_MAX - 1, 1), 0);
    assert_int_equal(rd_slotmap_node(m, "h", 1, 0), -1);
    assert_int_equal(rd_slotmap_node(m, "h", 1, 65536), -1);
    free(m);
}

static void redirections(void **state)
{
    (void)state;
    struct rd_redirection r;
#define P(s) rd_cluster_redirect_parse(s, strlen(s), &r)
    assert_int_equal(P("MOVED 3999 127.0.0.1:6381"), RD_REDIRECT_MOVED);
    assert_int_equal(r.slot, 3999);
    assert_string_equal(r.host, "127.0.0.1");
    assert_int_equal(r.port, 6381);
    assert_int_equal(P("ASK 16383 ::1:7002"), RD_REDIRECT_ASK);
    assert_int_equal(r.slot, 16383);
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.port, 7002);
    assert_int_equal(P("MOVED 0 :7000"), RD_REDIRECT_MOVED); /* the answering node's address */
    assert_string_equal(r.host, "");
    assert_int_equal(P("MOVED 16384 a:1"), RD_REDIRECT_NONE);
    assert_int_equal(P("MOVED 1 a"), RD_REDIRECT_NONE);
    assert_int_equal(P("MOVED 1 a:"), RD_REDIRECT_NONE);
    assert_int_equal(P("MOVED 1 a:70000"), RD_REDIRECT_NONE);
    assert_int_equal(P("MOVED x a:1"), RD_REDIRECT_NONE);
    assert_int_equal(P("MOVED  a:1"), RD_REDIRECT_NONE);
    assert_int_equal(P("TRYAGAIN Multiple keys request during rehashing of slot"),
                     RD_REDIRECT_NONE);
    assert_int_equal(P("CLUSTERDOWN The cluster is down"), RD_REDIRECT_NONE);
    assert_int_equal(P("MOVED"), RD_REDIRECT_NONE);
    char big[200];
    snprintf(big, sizeof(big), "MOVED 1 %0*d:1", RD_CLUSTER_HOST_MAX, 0); /* host at the bound */
    assert_int_equal(P(big), RD_REDIRECT_NONE);
    snprintf(big, sizeof(big), "MOVED 1 %0*d:1", RD_CLUSTER_HOST_MAX - 1, 0);
    assert_int_equal(P(big), RD_REDIRECT_MOVED);
    /* not NUL-terminated at len: only len bytes are read */
    assert_int_equal(rd_cluster_redirect_parse("MOVED 12 h:77xyz", 12, &r), RD_REDIRECT_MOVED);
    assert_int_equal(r.port, 7);
#undef P
}

static void seeds(void **state)
{
    (void)state;
    struct rd_cluster_node n[4];
    const char *why = NULL;
    assert_int_equal(rd_cluster_seeds_parse("127.0.0.1:7000", n, 4, &why), 1);
    assert_string_equal(n[0].host, "127.0.0.1");
    assert_int_equal(n[0].port, 7000);
    assert_int_equal(rd_cluster_seeds_parse("a:1, b:2 ,c:3", n, 4, &why), 3);
    assert_string_equal(n[1].host, "b");
    assert_int_equal(n[2].port, 3);
    assert_int_equal(rd_cluster_seeds_parse("a:1,b:2,c:3,d:4", n, 4, &why), 4);
    assert_int_equal(rd_cluster_seeds_parse("a:1,b:2,c:3,d:4,e:5", n, 4, &why), -1);
    assert_non_null(why);
    assert_int_equal(rd_cluster_seeds_parse("", n, 4, &why), -1);
    assert_int_equal(rd_cluster_seeds_parse("a", n, 4, &why), -1);
    assert_int_equal(rd_cluster_seeds_parse(":1", n, 4, &why), -1);
    assert_int_equal(rd_cluster_seeds_parse("a:1,,b:2", n, 4, &why), -1);
    assert_int_equal(rd_cluster_seeds_parse("a:0", n, 4, &why), -1);
}

static int slot_of(int argc, const char *const *argv)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return rd_cluster_command_slot(argc, argv, lens);
}

static void command_slots(void **state)
{
    (void)state;
    const int log17 = rd_cluster_keyslot("{0017}:log", 10);
    const char *evalsha[] = {"EVALSHA", "abc", "2", "{0017}:log", "{0017}:c:X", "arg"};
    assert_int_equal(slot_of(6, evalsha), log17);
    const char *nokeys[] = {"EVALSHA", "abc", "0", "arg"};
    assert_int_equal(slot_of(4, nokeys), -1);
    const char *xread[] = {"XREADGROUP", "GROUP",   "g",          "c", "COUNT",
                           "10",         "STREAMS", "{0017}:log", ">"};
    assert_int_equal(slot_of(9, xread), log17);
    const char *xread_short[] = {"XREADGROUP", "GROUP", "g", "c", "STREAMS"};
    assert_int_equal(slot_of(5, xread_short), -1);
    const char *xgroup[] = {"XGROUP", "CREATE", "{0017}:log", "g", "0", "MKSTREAM"};
    assert_int_equal(slot_of(6, xgroup), log17);
    const char *mem[] = {"memory", "usage", "{0017}:log"};
    assert_int_equal(slot_of(3, mem), log17);
    const char *hget[] = {"HGET", "rd:meta", "buckets"};
    assert_int_equal(slot_of(3, hget), 8110);
    const char *scan[] = {"SCAN", "0", "MATCH", "x"};
    assert_int_equal(slot_of(4, scan), -1);
    const char *load[] = {"SCRIPT", "LOAD", "return 1"};
    assert_int_equal(slot_of(3, load), -1);
    const char *slots[] = {"CLUSTER", "SLOTS"};
    assert_int_equal(slot_of(2, slots), -1);
    const char *alone[] = {"XLEN"};
    assert_int_equal(slot_of(1, alone), -1);
    const char *xgroup_short[] = {"XGROUP", "HELP"};
    assert_int_equal(slot_of(2, xgroup_short), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keyslots_as_redis_computes_them),
        cmocka_unit_test(slot_maps),
        cmocka_unit_test(redirections),
        cmocka_unit_test(seeds),
        cmocka_unit_test(command_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
