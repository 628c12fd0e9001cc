/* SPDX-License-Identifier: MIT
 * Time buckets: day and ISO-week boundaries, offsets, year ends, leap years, RFC 3339. */
#include <string.h>

#include "test_util.h"

#include "rd/rdtime.h"

static int64_t at(const char *s)
{
    int64_t ms;
    assert_int_equal(rd_time_parse(s, &ms), 0);
    return ms;
}

static void day_boundaries(void **state)
{
    (void)state;
    int64_t d = rd_time_day_index(at("2026-11-21T23:59:59.999Z"), 0);
    assert_int_equal(rd_time_day_index(at("2026-11-22T00:00:00Z"), 0), d + 1);
    assert_int_equal(rd_time_day_start(d + 1, 0), at("2026-11-22T00:00:00Z"));
    /* Before the epoch floor division must not round toward zero. */
    assert_int_equal(rd_time_day_index(-1, 0), -1);
}

static void offsets(void **state)
{
    (void)state;
    /* 23:30 UTC is already the next day at UTC+01:00, still the same day at UTC-05:00. */
    int64_t t = at("2026-11-21T23:30:00Z");
    assert_int_equal(rd_time_day_index(t, 60), rd_time_day_index(t, 0) + 1);
    assert_int_equal(rd_time_day_index(t, -300), rd_time_day_index(t, 0));
    /* The local day at +05:30 starts at 18:30 UTC the day before. */
    int64_t day = rd_time_day_index(t, 330);
    assert_int_equal(rd_time_day_start(day, 330), at("2026-11-21T18:30:00Z"));
    assert_int_equal(rd_time_day_index(at("2026-11-21T18:29:59.999Z"), 330), day - 1);
    assert_int_equal(rd_time_day_index(at("2026-11-21T18:30:00Z"), 330), day);
}

static void iso_weeks(void **state)
{
    (void)state;
    int y, w;
    /* 2026-11-23 is a Monday: a new week starts, the Sunday before is in the old one. */
    int64_t sun = at("2026-11-22T23:59:59Z"), mon = at("2026-11-23T00:00:00Z");
    assert_int_equal(rd_time_week_index(mon, 0), rd_time_week_index(sun, 0) + 1);
    assert_int_equal(rd_time_week_start(rd_time_week_index(sun, 0) + 1, 0), mon);
    rd_time_iso_week(mon, 0, &y, &w);
    assert_int_equal(y, 2026);
    assert_int_equal(w, 48);
    /* Year ends: 2026-01-01 (Thursday) is in 2026-W01; 2027-01-01 (Friday) in 2026-W53. */
    rd_time_iso_week(at("2026-01-01T12:00:00Z"), 0, &y, &w);
    assert_int_equal(y, 2026);
    assert_int_equal(w, 1);
    rd_time_iso_week(at("2027-01-01T12:00:00Z"), 0, &y, &w);
    assert_int_equal(y, 2026);
    assert_int_equal(w, 53);
    /* 2024-12-30 (Monday) already belongs to 2025-W01. */
    rd_time_iso_week(at("2024-12-30T00:00:00Z"), 0, &y, &w);
    assert_int_equal(y, 2025);
    assert_int_equal(w, 1);
    /* The week starts on the local Monday: Sunday 23:00 UTC is Monday at UTC+02:00. */
    assert_int_equal(rd_time_week_index(at("2026-11-22T23:00:00Z"), 120),
                     rd_time_week_index(mon, 0));
}

static void leap_years(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(rd_time_parse("2028-02-29T00:00:00Z", &ms), 0);
    assert_int_equal(rd_time_parse("2026-02-29T00:00:00Z", &ms), -1);
    assert_int_equal(rd_time_parse("2100-02-29T00:00:00Z", &ms), -1);
    assert_int_equal(rd_time_parse("2000-02-29T00:00:00Z", &ms), 0);
    assert_int_equal(rd_time_day_index(at("2028-03-01T00:00:00Z"), 0) -
                         rd_time_day_index(at("2028-02-28T00:00:00Z"), 0),
                     2);
    char buf[RD_TIME_BUFSZ];
    assert_string_equal(rd_time_format(at("2028-02-29T13:14:15.016Z"), buf),
                        "2028-02-29T13:14:15.016Z");
}

static void rfc3339(void **state)
{
    (void)state;
    char buf[RD_TIME_BUFSZ];
    assert_int_equal(at("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(at("2026-11-21T10:00:00+05:30"), at("2026-11-21T04:30:00Z"));
    assert_int_equal(at("2026-11-21t10:00:00.123456789z"), at("2026-11-21T10:00:00.123Z"));
    assert_string_equal(rd_time_format(at("2026-12-31T23:59:59Z"), buf), "2026-12-31T23:59:59Z");
    /* written by hand: the padding of every part, at both ends of the range */
    assert_string_equal(rd_time_format(0, buf), "1970-01-01T00:00:00Z");
    assert_string_equal(rd_time_format(7, buf), "1970-01-01T00:00:00.007Z");
    assert_string_equal(rd_time_format(at("2001-02-03T04:05:06.090Z"), buf),
                        "2001-02-03T04:05:06.090Z");
    assert_string_equal(rd_time_format(253402300799999LL, buf), "9999-12-31T23:59:59.999Z");
    int64_t ms;
    const char *bad[] = {"2026-11-21",           "2026-11-21T10:00:00",   "2026-13-01T00:00:00Z",
                         "2026-11-31T00:00:00Z", "2026-11-21T24:00:00Z",  "2026-11-21T10:00:00+5",
                         "1969-12-31T23:59:59Z", "2026-11-21T10:00:00Zx", "",
                         "2026-11-21T10:00:00.Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rd_time_parse(bad[i], &ms), -1);
}

static void civil_roundtrip(void **state)
{
    (void)state;
    for (int64_t z = -1000; z < 200000; z += 37) {
        int64_t y;
        unsigned m, d;
        rd_time_civil_from_days(z, &y, &m, &d);
        assert_int_equal(rd_time_days_from_civil(y, m, d), z);
    }
}

static void keep_windows(void **state)
{
    (void)state;
    struct rd_keep k;
    assert_int_equal(rd_keep_parse("13mo", &k), 0);
    assert_int_equal(k.months, 13);
    assert_int_equal(k.days, 0);
    assert_int_equal(rd_keep_cutoff(at("2031-06-15T10:30:00Z"), k), at("2030-05-15T10:30:00Z"));
    /* a shorter month: the last day of it */
    assert_int_equal(rd_keep_parse("1mo", &k), 0);
    assert_int_equal(rd_keep_cutoff(at("2032-03-31T00:00:00Z"), k), at("2032-02-29T00:00:00Z"));
    assert_int_equal(rd_keep_cutoff(at("2031-03-31T00:00:00Z"), k), at("2031-02-28T00:00:00Z"));
    assert_int_equal(rd_keep_cutoff(at("2031-01-10T00:00:00Z"), k), at("2030-12-10T00:00:00Z"));
    assert_int_equal(rd_keep_parse("2y", &k), 0);
    assert_int_equal(k.months, 24);
    assert_int_equal(rd_keep_parse("400d", &k), 0);
    assert_int_equal(k.days, 400);
    assert_int_equal(rd_keep_cutoff(at("2031-06-15T00:00:00Z"), k), at("2030-05-11T00:00:00Z"));
    /* at the bounds, and what is not a window */
    assert_int_equal(rd_keep_parse("1200mo", &k), 0);
    assert_int_equal(rd_keep_parse("100y", &k), 0);
    assert_int_equal(rd_keep_parse("36500d", &k), 0);
    static const char *const bad[] = {"1201mo", "101y", "36501d", "0mo",  "013mo", "",         "mo",
                                      "13",     "13m",  "-1mo",   "1.5y", "13mo ", "99999999d"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rd_keep_parse(bad[i], &k), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(day_boundaries), cmocka_unit_test(offsets),
        cmocka_unit_test(iso_weeks),      cmocka_unit_test(leap_years),
        cmocka_unit_test(rfc3339),        cmocka_unit_test(civil_roundtrip),
        cmocka_unit_test(keep_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
