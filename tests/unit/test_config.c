/* SPDX-License-Identifier: MIT
 * Configuration: defaults, file, environment, flags, precedence and every kind of bad value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#include "rd/config.h"

static void defaults_are_valid(void **state)
{
    (void)state;
    struct rd_config c;
    char err[512];
    rd_config_defaults(&c);
    assert_int_equal(rd_config_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(c.port, 8080);
    assert_int_equal(c.buckets, 1024);
    assert_int_equal(c.max_body_bytes, 65536);
    assert_false(c.test_clock);
    assert_string_equal(c.metrics, "loopback");
}

static void metrics_access_is_a_word_or_a_list(void **state)
{
    (void)state;
    struct rd_config c;
    char err[512];
    rd_config_defaults(&c);
    assert_int_equal(rd_config_set(&c, "metrics", "any", "t", err, sizeof(err)), 0);
    assert_int_equal(rd_config_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(rd_config_set(&c, "metrics", "10.0.0.0/8,192.0.2.7", "t", err, sizeof(err)),
                     0);
    assert_int_equal(rd_config_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(rd_config_set(&c, "metrics", "public", "t", err, sizeof(err)), 0);
    assert_int_equal(rd_config_validate(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "metrics must be loopback, any, off or a list of addresses"));
}

static void set_values(void **state)
{
    (void)state;
    struct rd_config c;
    char err[512];
    rd_config_defaults(&c);
    assert_int_equal(rd_config_set(&c, "redis-port", "7000", "t", err, sizeof(err)), 0);
    assert_int_equal(c.redis_port, 7000);
    assert_int_equal(rd_config_set(&c, "access_log", "yes", "t", err, sizeof(err)), 0);
    assert_true(c.access_log);
    struct {
        const char *name, *value, *needle;
    } bad[] = {
        {"port", "70000", "from 0 to 65535"},
        {"port", "12x", "integer"},
        {"port", "", "integer"},
        {"workers", "-1", "from 0 to 256"},
        {"access_log", "maybe", "true or false"},
        {"log_level", "loud", "debug, info"},
        {"nope", "1", "unknown setting"},
        {"port", " 80", "integer"},
        {"buckets", "99999999999999999999", "integer"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(rd_config_set(&c, bad[i].name, bad[i].value, "flag --x", err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, bad[i].needle));
        assert_non_null(strstr(err, "flag --x"));
    }
}

static void precedence(void **state)
{
    (void)state;
    char path[] = "/tmp/rd_test_cfg_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# comment\nport = 9001\nredis_port=7001  # trailing\nlog_level = \"debug\"\n\n");
    fclose(f);
    char flag_cfg[64];
    snprintf(flag_cfg, sizeof(flag_cfg), "--config=%s", path);
    char *argv[] = {"redeemd", flag_cfg, "--redis_port", "7003", "--access-log", NULL};
    char *envp[] = {"REDEEMD_PORT=9002", "REDEEMD_REDIS_PORT=7002", "OTHER=1", NULL};
    struct rd_config c;
    char err[512];
    bool help;
    assert_int_equal(rd_config_load(&c, 5, argv, envp, &help, err, sizeof(err)), 0);
    assert_int_equal(c.port, 9002);       /* env beats file */
    assert_int_equal(c.redis_port, 7003); /* flag beats env */
    assert_string_equal(c.log_level, "debug");
    assert_true(c.access_log);
    assert_false(help);
    unlink(path);
}

static void bad_sources(void **state)
{
    (void)state;
    struct rd_config c;
    char err[512];
    bool help;
    char *envp[] = {"REDEEMD_PROT=1", NULL};
    char *argv[] = {"redeemd", NULL};
    assert_int_equal(rd_config_load(&c, 1, argv, envp, &help, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "REDEEMD_PROT"));
    char *argv2[] = {"redeemd", "stray", NULL};
    assert_int_equal(rd_config_load(&c, 2, argv2, NULL, &help, err, sizeof(err)), -1);
    char *argv3[] = {"redeemd", "--config=/nonexistent/x.conf", NULL};
    assert_int_equal(rd_config_load(&c, 2, argv3, NULL, &help, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/x.conf"));
    char *argv4[] = {"redeemd", "--listen_addr=localhost", NULL};
    assert_int_equal(rd_config_load(&c, 2, argv4, NULL, &help, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "numeric"));
    char *argv5[] = {"redeemd", "--port", NULL};
    assert_int_equal(rd_config_load(&c, 2, argv5, NULL, &help, err, sizeof(err)), -1);
    char *argv6[] = {"redeemd", "--help", NULL};
    assert_int_equal(rd_config_load(&c, 2, argv6, NULL, &help, err, sizeof(err)), 0);
    assert_true(help);

    char path[] = "/tmp/rd_test_cfg_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "port = 80\nthis line has no equals\n");
    fclose(f);
    assert_int_equal(rd_config_load_file(&c, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":2"));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_valid),
        cmocka_unit_test(set_values),
        cmocka_unit_test(metrics_access_is_a_word_or_a_list),
        cmocka_unit_test(precedence),
        cmocka_unit_test(bad_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
