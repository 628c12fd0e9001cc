/* SPDX-License-Identifier: MIT
 *
 * Webhooks, the arithmetic (no sockets): endpoint URLs and the addresses they may reach,
 * event names, the signature, and when a failed delivery is tried again. The API side is
 * daemon/api/webhooks.c, delivery daemon/jobs/webhooks.c, storage scripts/sql/016.
 *
 * Owns: nothing. Thread: any.
 */
#ifndef RD_WEBHOOK_H
#define RD_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#define RD_URL_MAX        2048
#define RD_URL_HOST_MAX   253
#define RD_WEBHOOK_EVENTS 11

/* The events a webhook may subscribe to, in the order of the API's list. */
extern const char *const rd_webhook_event_names[RD_WEBHOOK_EVENTS];
/** Whether name is one of them. */
int rd_webhook_event_known(const char *name);

/* An https:// or http:// URL taken apart. */
struct rd_url {
    char host[RD_URL_HOST_MAX + 1]; /* a name, an IPv4 address or an IPv6 one (no brackets) */
    int port;                       /* 443 or 80 unless given */
    const char *path;               /* into the parsed string: "/..." ("/" if none) */
    int host_is_ip;
    int tls; /* https */
};
/**
 * Parses url (at most RD_URL_MAX bytes): "http[s]://host[:port][/path][?query]", no user info,
 * no fragment, printable ASCII without spaces. Returns 0, or -1 with *why.
 */
int rd_url_parse(const char *url, struct rd_url *out, const char **why);

/**
 * Whether an address is one a webhook must not reach unless private targets are allowed:
 * loopback, private, link-local, carrier-grade NAT, unspecified, multicast and reserved
 * ranges, IPv6 unique-local and link-local, and IPv4 mapped into IPv6 of any of these.
 * 1 if so, 0 if public, -1 if ip is no address.
 */
int rd_ip_is_private(const char *ip);

/** HMAC-SHA256 (RFC 2104) of msg under key. */
void rd_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32]);

/**
 * The Redeemd-Signature header for a delivery at unix time t of body:
 * "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>". out holds at least 96 bytes.
 */
void rd_webhook_signature(const char *secret, int64_t t, const char *body, size_t len, char *out,
                          size_t sz);

/**
 * When attempt n (1 = the first retry) of a failed delivery goes out, in ms after the
 * failure: base_ms (webhook_backoff_ms, 10 s) doubling to an hour at most, with up to a fifth
 * more of jitter (j in [0, 1)) so that a receiver back from an outage is not hit by every
 * delivery at once.
 */
int64_t rd_webhook_backoff_ms(int n, int64_t base_ms, double j);

#endif
