/* SPDX-License-Identifier: MIT
 *
 * Share messages and links (see rd/share.h).
 */
#include "rd/share.h"

#include <stdio.h>
#include <string.h>

#include "rd/rdtime.h"

size_t rd_share_message(const char *intro, const char *code, int64_t expires_at, int offset_min,
                        char *out)
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char until[64] = "no expiry";
    if (expires_at >= 0) {
        /* expires_at is the first instant it no longer works: the last valid day is the day
         * of the instant before, in the coupon's own time zone */
        int64_t local = expires_at - 1 + (int64_t)offset_min * 60000;
        int64_t day = local >= 0 ? local / RD_MS_PER_DAY : -((-local - 1) / RD_MS_PER_DAY) - 1;
        int64_t y;
        unsigned m, d;
        rd_time_civil_from_days(day, &y, &m, &d);
        snprintf(until, sizeof(until), "valid until %u %s %lld", d, months[m - 1], (long long)y);
    }
    int n =
        snprintf(out, RD_SHARE_MSG_MAX, "%.*s\n\n%s (%s)", RD_SHARE_INTRO_MAX, intro, code, until);
    return n < RD_SHARE_MSG_MAX ? (size_t)n : RD_SHARE_MSG_MAX - 1;
}

size_t rd_url_encode(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            out[n++] = (char)ch;
        } else {
            out[n++] = '%';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    out[n] = '\0';
    return n;
}

void rd_share_whatsapp_url(const char *message, char *out)
{
    memcpy(out, "https://wa.me/?text=", 20);
    rd_url_encode(message, out + 20);
}
