/* SPDX-License-Identifier: MIT
 *
 * Webhooks' URLs, addresses, signatures and retry schedule (see rd/webhook.h).
 */
#include "rd/webhook.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd/request.h"
#include "rd/sha256.h"

const char *const rd_webhook_event_names[RD_WEBHOOK_EVENTS] = {
    "redemption.created", "redemption.reversed", "voucher.paid",      "voucher.refunded",
    "voucher.recharged",  "coupon.created",      "coupon.updated",    "coupon.disabled",
    "coupon.exhausted",   "batch.completed",     "fraud.rate_limited"};

int rd_webhook_event_known(const char *name)
{
    for (int i = 0; i < RD_WEBHOOK_EVENTS; i++)
        if (strcmp(name, rd_webhook_event_names[i]) == 0)
            return 1;
    return 0;
}

int rd_url_parse(const char *url, struct rd_url *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    size_t len = strlen(url);
    if (len == 0 || len > RD_URL_MAX) {
        *why = "must be 1 to 2048 characters";
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f) {
            *why = "must be printable ASCII without spaces";
            return -1;
        }
    size_t scheme;
    if (strncmp(url, "https://", 8) == 0) {
        scheme = 8;
        out->tls = 1;
    } else if (strncmp(url, "http://", 7) == 0) {
        scheme = 7;
    } else {
        *why = "must start with https:// or http://";
        return -1;
    }
    const char *p = url + scheme, *end = p + strcspn(p, "/?#");
    if (url[strcspn(url, "#")] == '#') {
        *why = "must not have a fragment (#...)";
        return -1;
    }
    if (memchr(p, '@', (size_t)(end - p))) {
        *why = "must not carry a user name or password";
        return -1;
    }
    const char *hend = end, *port = NULL;
    if (*p == '[') { /* [IPv6]:port */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) {
            *why = "has an unclosed [";
            return -1;
        }
        if (rb + 1 < end && rb[1] != ':') {
            *why = "has something after ]";
            return -1;
        }
        port = rb + 1 < end ? rb + 2 : NULL;
        hend = rb;
        p++;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (colon) {
            hend = colon;
            port = colon + 1;
        }
    }
    size_t hl = (size_t)(hend - p);
    if (hl == 0 || hl > RD_URL_HOST_MAX) {
        *why = "needs a host";
        return -1;
    }
    memcpy(out->host, p, hl);
    out->host[hl] = '\0';
    for (size_t i = 0; i < hl; i++) {
        char c = out->host[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == ':';
        if (!ok) {
            *why = "has a host that is neither a name nor an address";
            return -1;
        }
    }
    unsigned char addr[16];
    out->host_is_ip =
        inet_pton(AF_INET, out->host, addr) == 1 || inet_pton(AF_INET6, out->host, addr) == 1;
    if (strchr(out->host, ':') && !out->host_is_ip) {
        *why = "has a host that is neither a name nor an address";
        return -1;
    }
    out->port = out->tls ? 443 : 80;
    if (port) {
        size_t pl = (size_t)(end - port);
        if (pl == 0 || pl > 5 || strspn(port, "0123456789") < pl) {
            *why = "has a port that is not a number from 1 to 65535";
            return -1;
        }
        out->port = atoi(port);
        if (out->port < 1 || out->port > 65535) {
            *why = "has a port that is not a number from 1 to 65535";
            return -1;
        }
    }
    out->path = *end ? end : "/";
    return 0;
}

int rd_ip_is_private(const char *ip)
{
    static const char blocked[] =
        "0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,127.0.0.0/8,169.254.0.0/16,172.16.0.0/12,"
        "192.0.0.0/24,192.0.2.0/24,192.168.0.0/16,198.18.0.0/15,198.51.100.0/24,"
        "203.0.113.0/24,224.0.0.0/3,::/128,::1/128,fc00::/7,fe80::/10,ff00::/8,"
        "64:ff9b::/96,2001:db8::/32";
    unsigned char a[16];
    if (inet_pton(AF_INET6, ip, a) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) { /* ::ffff:a.b.c.d: judged as a.b.c.d */
            char v4[16];
            snprintf(v4, sizeof(v4), "%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
            return rd_ip_in_list(blocked, v4);
        }
    } else if (inet_pton(AF_INET, ip, a) != 1) {
        return -1;
    }
    return rd_ip_in_list(blocked, ip);
}

void rd_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32])
{
    uint8_t k[64] = {0}, inner[32];
    if (klen > 64)
        rd_sha256(key, klen, k);
    else
        memcpy(k, key, klen);
    uint8_t *buf = malloc(64 + (mlen > 32 ? mlen : 32));
    if (!buf)
        abort();
    for (int i = 0; i < 64; i++)
        buf[i] = k[i] ^ 0x36;
    memcpy(buf + 64, msg, mlen);
    rd_sha256(buf, 64 + mlen, inner);
    for (int i = 0; i < 64; i++)
        buf[i] = k[i] ^ 0x5c;
    memcpy(buf + 64, inner, 32);
    rd_sha256(buf, 64 + 32, out);
    free(buf);
}

void rd_webhook_signature(const char *secret, int64_t t, const char *body, size_t len, char *out,
                          size_t sz)
{
    char ts[24];
    int tl = snprintf(ts, sizeof(ts), "%lld.", (long long)t);
    char *msg = malloc((size_t)tl + len + 1);
    if (!msg)
        abort();
    memcpy(msg, ts, (size_t)tl);
    memcpy(msg + tl, body, len);
    uint8_t mac[32];
    rd_hmac_sha256(secret, strlen(secret), msg, (size_t)tl + len, mac);
    free(msg);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    snprintf(out, sz, "t=%lld,v1=%s", (long long)t, hex);
}

int64_t rd_webhook_backoff_ms(int n, int64_t base_ms, double j)
{
    int64_t ms = base_ms > 0 ? base_ms : 1;
    for (int i = 1; i < n && ms < 3600000; i++)
        ms *= 2;
    if (ms > 3600000)
        ms = 3600000;
    return ms + (int64_t)((double)ms * 0.2 * (j < 0 ? 0 : j >= 1 ? 0.999 : j));
}
