/* SPDX-License-Identifier: MIT
 *
 * Calendar arithmetic on epoch milliseconds. days_from_civil/civil_from_days are Howard
 * Hinnant's public-domain algorithms; everything uses floor division so that instants before
 * a boundary never round up into the next period.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rd/rdtime.h"

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

int64_t rd_time_day_index(int64_t ms, int offset_min)
{
    return floor_div(ms + (int64_t)offset_min * 60000, RD_MS_PER_DAY);
}

/* Day 0 (1970-01-01) was a Thursday, so Monday 1969-12-29 is day -3. */
int64_t rd_time_week_index(int64_t ms, int offset_min)
{
    return floor_div(rd_time_day_index(ms, offset_min) + 3, 7);
}

int64_t rd_time_day_start(int64_t day, int offset_min)
{
    return day * RD_MS_PER_DAY - (int64_t)offset_min * 60000;
}

int64_t rd_time_week_start(int64_t week, int offset_min)
{
    return rd_time_day_start(week * 7 - 3, offset_min);
}

int64_t rd_time_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void rd_time_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void rd_time_iso_week(int64_t ms, int offset_min, int *iso_year, int *iso_week)
{
    /* The ISO year is the year of this week's Thursday: Monday (week * 7 - 3) plus three. */
    int64_t thursday = rd_time_week_index(ms, offset_min) * 7;
    int64_t y;
    unsigned m, d;
    rd_time_civil_from_days(thursday, &y, &m, &d);
    int64_t jan1 = rd_time_days_from_civil(y, 1, 1);
    *iso_year = (int)y;
    *iso_week = (int)((thursday - jan1) / 7 + 1);
}

/* n digits of v, zero-padded, at p; returns p + n */
static char *pad(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

char *rd_time_format(int64_t ms, char *buf)
{
    /* on every answer and ledger row: written by hand, printf costs several times more */
    int64_t day = floor_div(ms, RD_MS_PER_DAY);
    int64_t rem = ms - day * RD_MS_PER_DAY;
    int64_t y;
    unsigned mo, d;
    rd_time_civil_from_days(day, &y, &mo, &d);
    unsigned secs = (unsigned)(rem / 1000), millis = (unsigned)(rem % 1000);
    char *p = buf;
    if (y < 0 || y > 9999) { /* outside RFC 3339's four digits: as printf would write it */
        p += snprintf(p, 24, "%04lld", (long long)y);
    } else {
        p = pad(p, (unsigned)y, 4);
    }
    *p++ = '-';
    p = pad(p, mo, 2);
    *p++ = '-';
    p = pad(p, d, 2);
    *p++ = 'T';
    p = pad(p, secs / 3600, 2);
    *p++ = ':';
    p = pad(p, secs / 60 % 60, 2);
    *p++ = ':';
    p = pad(p, secs % 60, 2);
    if (millis) {
        *p++ = '.';
        p = pad(p, millis, 3);
    }
    *p++ = 'Z';
    *p = '\0';
    return buf;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int rd_time_parse(const char *s, int64_t *ms)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int y, mo, d, h, mi, se, millis = 0;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        return -1;
    if (*p != 'T' && *p != 't')
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
        return -1;
    if (*p == '.') {
        p++;
        int n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n < 3)
                millis = millis * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0 || n > 9)
            return -1;
        for (; n < 3; n++)
            millis *= 10;
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (*p != '\0')
        return -1;
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
        return -1;
    int dim = mdays[mo - 1] + (mo == 2 && is_leap(y));
    if (d > dim)
        return -1;
    int64_t days = rd_time_days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t v = days * RD_MS_PER_DAY + ((int64_t)h * 3600 + mi * 60 + se) * 1000 + millis -
                (int64_t)off * 60000;
    if (v < 0)
        return -1;
    *ms = v;
    return 0;
}

int rd_keep_parse(const char *s, struct rd_keep *keep)
{
    size_t digits = strspn(s, "0123456789");
    if (digits == 0 || digits > 5 || (s[0] == '0'))
        return -1;
    long n = strtol(s, NULL, 10);
    const char *unit = s + digits;
    keep->months = keep->days = 0;
    if (!strcmp(unit, "mo") && n <= 1200)
        keep->months = (int)n;
    else if (!strcmp(unit, "y") && n <= 100)
        keep->months = (int)n * 12;
    else if (!strcmp(unit, "d") && n <= 36500)
        keep->days = (int)n;
    else
        return -1;
    return 0;
}

int64_t rd_keep_cutoff(int64_t now_ms, struct rd_keep keep)
{
    int64_t day = now_ms / RD_MS_PER_DAY, in_day = now_ms % RD_MS_PER_DAY;
    int64_t y;
    unsigned m, d;
    rd_time_civil_from_days(day, &y, &m, &d);
    int64_t mi = y * 12 + (m - 1) - keep.months;
    y = mi / 12;
    m = (unsigned)(mi % 12) + 1;
    /* the last day of the target month when it is shorter than d */
    static const unsigned len[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned last = len[m - 1] + (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
    if (d > last)
        d = last;
    return (rd_time_days_from_civil(y, m, d) - keep.days) * RD_MS_PER_DAY + in_day;
}

int64_t rd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rd_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rd_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
