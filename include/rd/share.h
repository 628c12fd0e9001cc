/* SPDX-License-Identifier: MIT
 *
 * Sharing a code with a customer (POST /v1/coupons/{code}/share): the message, as the seed
 * coupon manager wrote it, and the WhatsApp link that opens a chat with it. Pure functions.
 */
#ifndef RD_SHARE_H
#define RD_SHARE_H

#include <stddef.h>
#include <stdint.h>

#define RD_SHARE_INTRO_MAX 1000
#define RD_SHARE_MSG_MAX   (RD_SHARE_INTRO_MAX + 200)
#define RD_SHARE_URL_MAX   (3 * RD_SHARE_MSG_MAX + 32)

/**
 * "<intro>\n\n<CODE> (valid until 18 Jul 2025)", or "(no expiry)" when expires_at < 0; the
 * date is the last day the code works, in the coupon's UTC offset. out holds
 * RD_SHARE_MSG_MAX bytes. Returns the length.
 */
size_t rd_share_message(const char *intro, const char *code, int64_t expires_at, int offset_min,
                        char *out);

/** Percent-encodes s (RFC 3986: all but A-Z a-z 0-9 - . _ ~) into out (3 * len + 1). */
size_t rd_url_encode(const char *s, char *out);

/** "https://wa.me/?text=<encoded message>" into out (RD_SHARE_URL_MAX bytes). */
void rd_share_whatsapp_url(const char *message, char *out);

#endif
