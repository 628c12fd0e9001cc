/* SPDX-License-Identifier: MIT
 * Connection parameters from the user's conninfo: both forms libpq accepts, the user's own
 * options= kept and ours added after them, our defaults only where the user set nothing. */
#include <string.h>

#include "test_util.h"

#include "store/pgconn.h"

static void keyword_form_gets_our_defaults(void **state)
{
    (void)state;
    struct rd_pgparams p;
    char err[300];
    assert_int_equal(rd_pgparams_init(&p, "host=127.0.0.1 port=5440 dbname=redeemd user=u",
                                      "redeemd-read", "-c statement_timeout=5000", err,
                                      sizeof(err)),
                     0);
    assert_string_equal(rd_pgparams_get(&p, "host"), "127.0.0.1");
    assert_string_equal(rd_pgparams_get(&p, "port"), "5440");
    assert_string_equal(rd_pgparams_get(&p, "application_name"), "redeemd-read");
    assert_string_equal(rd_pgparams_get(&p, "connect_timeout"), "3");
    assert_string_equal(rd_pgparams_get(&p, "options"), "-c statement_timeout=5000");
    rd_pgparams_free(&p);
}

static void uri_form_and_user_options_are_kept(void **state)
{
    (void)state;
    struct rd_pgparams p;
    char err[300];
    /* appending " connect_timeout=3 options=..." to this used to make it unparseable */
    assert_int_equal(rd_pgparams_init(&p,
                                      "postgresql://u@127.0.0.1:5440/redeemd?application_name=mine&"
                                      "connect_timeout=9&options=-c%20lock_timeout%3D100",
                                      "redeemd-read", "-c statement_timeout=5000", err,
                                      sizeof(err)),
                     0);
    assert_string_equal(rd_pgparams_get(&p, "dbname"), "redeemd");
    assert_string_equal(rd_pgparams_get(&p, "user"), "u");
    assert_string_equal(rd_pgparams_get(&p, "application_name"), "mine");
    assert_string_equal(rd_pgparams_get(&p, "connect_timeout"), "9");
    assert_string_equal(rd_pgparams_get(&p, "options"),
                        "-c lock_timeout=100 -c statement_timeout=5000");
    /* each keyword once: libpq would keep the last of two */
    int options = 0;
    for (size_t i = 0; p.keys[i]; i++)
        options += !strcmp(p.keys[i], "options");
    assert_int_equal(options, 1);
    rd_pgparams_free(&p);
}

static void no_settings_keeps_user_options_alone(void **state)
{
    (void)state;
    struct rd_pgparams p;
    char err[300];
    assert_int_equal(
        rd_pgparams_init(&p, "dbname=x options='-c search_path=a'", NULL, NULL, err, sizeof(err)),
        0);
    assert_string_equal(rd_pgparams_get(&p, "options"), "-c search_path=a");
    assert_null(rd_pgparams_get(&p, "application_name"));
    rd_pgparams_free(&p);
    assert_int_equal(rd_pgparams_init(&p, "dbname=x", NULL, NULL, err, sizeof(err)), 0);
    assert_null(rd_pgparams_get(&p, "options"));
    rd_pgparams_free(&p);
}

static void unparseable_conninfo_is_an_error(void **state)
{
    (void)state;
    struct rd_pgparams p;
    char err[300];
    assert_int_equal(rd_pgparams_init(&p, "host=x nosuchkeyword=1", "a", NULL, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "nosuchkeyword"));
    assert_int_equal(rd_pgparams_init(&p, "postgresql://[::1", "a", NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "pg_conninfo"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keyword_form_gets_our_defaults),
        cmocka_unit_test(uri_form_and_user_options_are_kept),
        cmocka_unit_test(no_settings_keeps_user_options_alone),
        cmocka_unit_test(unparseable_conninfo_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
