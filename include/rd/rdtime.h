/* SPDX-License-Identifier: MIT
 *
 * Time in redeemd: UTC epoch milliseconds inside, RFC 3339 on the wire. Daily and weekly
 * repeat-count windows are the calendar day and the ISO week (Monday start) in UTC, shifted
 * by a coupon's fixed utc_offset_minutes. A window is identified by an index (days or weeks
 * since the epoch in local time); scripts/lua/redeem.lua computes the same indices with the
 * same formulas, and tests hold both to the same boundaries.
 */
#ifndef RD_TIME_H
#define RD_TIME_H

#include <stddef.h>
#include <stdint.h>

#define RD_MS_PER_DAY     86400000LL
#define RD_OFFSET_MAX_MIN 840 /* UTC+14:00 */

/** Day index of ms in a zone offset_min minutes east of UTC (floor division). */
int64_t rd_time_day_index(int64_t ms, int offset_min);
/** ISO week index: weeks since Monday 1969-12-29 in the given zone. */
int64_t rd_time_week_index(int64_t ms, int offset_min);
/** UTC ms at which local day `day` starts. */
int64_t rd_time_day_start(int64_t day, int offset_min);
/** UTC ms at which local ISO week `week` starts (its Monday 00:00). */
int64_t rd_time_week_start(int64_t week, int offset_min);
/** ISO 8601 week-numbering year and week (1..53) of ms in the zone. */
void rd_time_iso_week(int64_t ms, int offset_min, int *iso_year, int *iso_week);

/** Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
int64_t rd_time_days_from_civil(int64_t y, unsigned m, unsigned d);
void rd_time_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

/**
 * Formats ms as RFC 3339 UTC, "2026-11-21T15:04:05Z", with ".mmm" only when the milliseconds
 * are not zero. buf must hold RD_TIME_BUFSZ bytes. Returns buf.
 */
#define RD_TIME_BUFSZ 40
char *rd_time_format(int64_t ms, char *buf);

/**
 * Parses RFC 3339 ("2026-11-21T15:04:05Z", "…05.123+05:30"; 'T'/'t' and 'Z'/'z' accepted,
 * fractions beyond milliseconds truncated). Years 1970..9999. Returns 0 or -1.
 */
int rd_time_parse(const char *s, int64_t *ms);

/**
 * A retention window: "<n>mo" (calendar months), "<n>y" (12 n months) or "<n>d" (days),
 * n from 1 to 1200 months or 36500 days. Returns 0 or -1.
 */
struct rd_keep {
    int months, days;
};
int rd_keep_parse(const char *s, struct rd_keep *keep);
/** The start of what a window keeps at now: now less the window, months by the calendar
 * (31 March less a month is 28 or 29 February). */
int64_t rd_keep_cutoff(int64_t now_ms, struct rd_keep keep);

/* Clocks. The wall clock is read only where a request is stamped (tests inject theirs);
 * durations use the monotonic one. */
int64_t rd_now_ms(void);
int64_t rd_mono_ms(void);
int64_t rd_mono_us(void);

#endif
