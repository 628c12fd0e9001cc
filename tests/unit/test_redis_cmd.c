/* SPDX-License-Identifier: MIT
 * Commands built from the scripts' contracts: refused unless every key and argument the
 * contract names is given, and nothing it does not name. */
#include <string.h>

#include "test_util.h"

#include "rd/lua_scripts.h"
#include "store/redis_cmd.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>

static void share(struct rd_cmd *c, int skip)
{
    rd_cmd_script(c, RD_LUA_SHARE);
    rd_cmd_key(c, RD_SHARE_K_COUPON, "{0001}:c:A");
    rd_cmd_key(c, RD_SHARE_K_LOG, "{0001}:log");
    const char *v[RD_SHARE_NARGS] = {"1", "t", "link", "", "ip", "k", "r", "A"};
    for (int a = 0; a < RD_SHARE_NARGS; a++)
        if (a != skip)
            rd_cmd_arg(c, a, v[a]);
}

static void whole_commands_pass(void **state)
{
    (void)state;
    struct rd_cmd c;
    const char *why = NULL;
    share(&c, -1);
    assert_int_equal(rd_cmd_check(&c, &why), 0);
    assert_int_equal(c.argc, 3 + RD_SHARE_NKEYS + RD_SHARE_NARGS);
    assert_string_equal(c.argv[0], "EVALSHA");
    assert_memory_equal(c.argv[1], rd_lua_scripts[RD_LUA_SHARE].sha1, 40);
    assert_string_equal(c.argv[2], "2"); /* numkeys, from the contract */
    assert_string_equal(c.argv[3 + RD_SHARE_NKEYS + RD_SHARE_A_CODE], "A");
}

/* A script in the function library (@function) is called with FCALL and its function's
 * name, which carries the library's digest; the rest of the call is as for EVALSHA. */
static void library_scripts_are_fcalls(void **state)
{
    (void)state;
    struct rd_cmd c;
    rd_cmd_script(&c, RD_LUA_REDEEM);
    assert_string_equal(c.argv[0], "FCALL");
    assert_memory_equal(c.argv[1], "redeem_", 7);
    assert_int_equal(c.lens[1], strlen(rd_lua_scripts[RD_LUA_REDEEM].fname));
    assert_non_null(strstr(rd_lua_library, c.argv[1]));
    assert_memory_equal(c.argv[1] + 7, rd_lua_library_name + 8, strlen(rd_lua_library_name) - 8);
    assert_string_equal(c.argv[2], "7");
    assert_int_equal(c.argc, 3 + RD_REDEEM_NKEYS + RD_REDEEM_NARGS);
    rd_cmd_script(&c, RD_LUA_PAY);
    assert_string_equal(c.argv[0], "FCALL");
    assert_memory_equal(c.argv[1], "pay_", 4);
    rd_cmd_script(&c, RD_LUA_REVERSE); /* not in the library */
    assert_string_equal(c.argv[0], "EVALSHA");
    assert_string_equal(rd_lua_scripts[RD_LUA_REVERSE].fname, "");
    assert_int_equal(strlen(rd_lua_library), rd_lua_library_len);
    assert_memory_equal(rd_lua_library, "#!lua name=", 11);
}

/* The call's bytes are hiredis' own: its formatter is the reference (empty, binary and long
 * arguments, a variadic tail). */
static void formatted_as_hiredis_formats(void **state)
{
    (void)state;
    struct rd_cmd c;
    rd_cmd_plain(&c);
    static char big[70000];
    memset(big, 'x', sizeof(big));
    const char *words[] = {"XADD", "", "a\r\nb", "0", "-12345678901234"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        rd_cmd_push(&c, words[i], strlen(words[i]));
    rd_cmd_push(&c, "\0bin\0", 5);
    rd_cmd_push(&c, big, sizeof(big));
    char *mine = NULL, *ref = NULL;
    long n = rd_cmd_format(&c, &mine);
    int rn = redisFormatCommandArgv(&ref, c.argc, c.argv, c.lens);
    assert_int_equal(n, rn);
    assert_memory_equal(mine, ref, (size_t)n);
    free(mine);
    redisFreeCommand(ref);
    struct rd_cmd s;
    share(&s, -1);
    n = rd_cmd_format(&s, &mine);
    rn = redisFormatCommandArgv(&ref, s.argc, s.argv, s.lens);
    assert_int_equal(n, rn);
    assert_memory_equal(mine, ref, (size_t)n);
    free(mine);
    redisFreeCommand(ref);
}

static void a_missing_argument_is_refused(void **state)
{
    (void)state;
    struct rd_cmd c;
    const char *why = NULL;
    for (int skip = 0; skip < RD_SHARE_NARGS; skip++) {
        share(&c, skip);
        assert_int_equal(rd_cmd_check(&c, &why), -1);
        assert_non_null(strstr(why, "not given"));
    }
    rd_cmd_script(&c, RD_LUA_SHARE); /* keys missing too */
    assert_int_equal(rd_cmd_check(&c, &why), -1);
}

static void what_the_contract_does_not_name_is_refused(void **state)
{
    (void)state;
    struct rd_cmd c;
    const char *why = NULL;
    share(&c, -1);
    rd_cmd_arg(&c, RD_SHARE_NARGS, "one too many");
    assert_int_equal(rd_cmd_check(&c, &why), -1);
    share(&c, -1);
    rd_cmd_key(&c, RD_SHARE_NKEYS, "{0001}:x");
    assert_int_equal(rd_cmd_check(&c, &why), -1);
    share(&c, -1);
    rd_cmd_push(&c, "extra", 5); /* share.lua is not variadic */
    assert_int_equal(rd_cmd_check(&c, &why), -1);
    /* a variadic script takes extras after its named arguments */
    rd_cmd_script(&c, RD_LUA_SHIP_ACK);
    rd_cmd_key(&c, RD_SHIP_ACK_K_LOG, "{0001}:log");
    rd_cmd_arg(&c, RD_SHIP_ACK_A_GROUP, "pgsink");
    for (int i = 0; i < RD_CMD_MAXARGS - 5; i++)
        rd_cmd_push(&c, "1-0", 3);
    assert_int_equal(rd_cmd_check(&c, &why), 0);
    rd_cmd_push(&c, "1-0", 3);
    rd_cmd_push(&c, "1-0", 3); /* past RD_CMD_MAXARGS */
    assert_int_equal(rd_cmd_check(&c, &why), -1);
    /* a plain command is its words */
    rd_cmd_plain(&c);
    assert_int_equal(rd_cmd_check(&c, &why), -1);
    rd_cmd_push(&c, "PING", 4);
    assert_int_equal(rd_cmd_check(&c, &why), 0);
    rd_cmd_key(&c, 0, "x"); /* a plain command has no contract to name keys by */
    assert_int_equal(rd_cmd_check(&c, &why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_commands_pass),
        cmocka_unit_test(library_scripts_are_fcalls),
        cmocka_unit_test(formatted_as_hiredis_formats),
        cmocka_unit_test(a_missing_argument_is_refused),
        cmocka_unit_test(what_the_contract_does_not_name_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
