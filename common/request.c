/* SPDX-License-Identifier: MIT
 *
 * Validate/redeem request bodies and the headers around them.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd/discount.h"
#include "rd/request.h"
#include "rd/sha256.h"

int rd_currency_normalize(const char *in, char out[4])
{
    if (strlen(in) != 3)
        return -1;
    for (int i = 0; i < 3; i++) {
        char ch = in[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (ch < 'A' || ch > 'Z')
            return -1;
        out[i] = ch;
    }
    out[3] = '\0';
    return 0;
}

/* The optional "metadata" map, kept as compact sorted JSON for the fingerprint. */
static int parse_metadata(struct rd_redeem_req *r, const json_t *body, struct rd_verr *e)
{
    json_t *m = json_object_get(body, "metadata");
    if (!m)
        return 0;
    if (rd_json_check_metadata(m, "metadata", e) < 0)
        return -1;
    r->meta_json = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    if (!r->meta_json)
        abort();
    return 0;
}

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

int rd_customer_parse(const json_t *body, struct rd_customer *c, struct rd_verr *e)
{
    static const char *const keys[] = {"ip", "session_id", "device_id", "email_hash", NULL};
    memset(c, 0, sizeof(*c));
    json_t *o = json_object_get(body, "customer");
    if (!o || json_is_null(o))
        return 0;
    if (!json_is_object(o)) {
        rd_verr_set(e, "customer", "must be an object (ip, session_id, device_id, email_hash)");
        return -1;
    }
    if (rd_json_only_keys(o, keys, "customer.", e) < 0)
        return -1;
    const char **dst[] = {&c->ip, &c->session_id, &c->device_id, &c->email_hash};
    for (int i = 0; keys[i]; i++) {
        char field[32];
        snprintf(field, sizeof(field), "customer.%s", keys[i]);
        int max = i == 0 ? RD_CUSTOMER_IP_MAX : RD_CUSTOMER_FIELD_MAX;
        int rc = rd_json_str(o, keys[i], RD_J_OPTIONAL, 1, max, dst[i], NULL, e);
        if (rc < 0) {
            snprintf(e->field, sizeof(e->field), "%s", field);
            return -1;
        }
        if (rc == 1 && !printable(*dst[i])) {
            rd_verr_set(e, field, "must be printable ASCII");
            return -1;
        }
    }
    unsigned char addr[16];
    if (c->ip && inet_pton(AF_INET, c->ip, addr) != 1 && inet_pton(AF_INET6, c->ip, addr) != 1) {
        rd_verr_set(e, "customer.ip", "must be an IPv4 or IPv6 address");
        return -1;
    }
    return 0;
}

int rd_cx_format(const char *peer, const struct rd_customer *c, char *out, size_t sz)
{
    int n = snprintf(
        out, sz, "%s%c%s%c%s%c%s", peer ? peer : "", RD_CX_SEP, c->session_id ? c->session_id : "",
        RD_CX_SEP, c->device_id ? c->device_id : "", RD_CX_SEP, c->email_hash ? c->email_hash : "");
    return n < 0 || (size_t)n >= sz ? -1 : n;
}

int rd_redeem_req_parse(struct rd_redeem_req *r, const json_t *body, struct rd_verr *e)
{
    static const char *const keys[] = {"code",     "user_id",  "order_amount", "currency",
                                       "order_id", "metadata", "customer",     NULL};
    memset(r, 0, sizeof(*r));
    if (rd_json_only_keys(body, keys, "", e) < 0)
        return -1;
    const char *code, *cur;
    if (rd_json_str(body, "code", RD_J_REQUIRED, 1, 256, &code, NULL, e) < 0)
        return -1;
    if (rd_code_normalize(code, strlen(code), r->code) < 0) {
        rd_verr_set(e, "code", "is not a valid coupon code");
        return -1;
    }
    if (rd_json_str(body, "user_id", RD_J_REQUIRED, 1, RD_USER_ID_MAX, &r->user_id, NULL, e) < 0)
        return -1;
    if (rd_json_int(body, "order_amount", RD_J_REQUIRED, 1, RD_AMOUNT_MAX, &r->order_amount, NULL,
                    e) < 0)
        return -1;
    if (rd_json_str(body, "currency", RD_J_REQUIRED, 1, 8, &cur, NULL, e) < 0)
        return -1;
    if (rd_currency_normalize(cur, r->currency) < 0) {
        rd_verr_set(e, "currency", "must be a 3-letter ISO 4217 code such as \"EUR\"");
        return -1;
    }
    if (rd_json_str(body, "order_id", RD_J_OPTIONAL, 1, RD_ORDER_ID_MAX, &r->order_id, NULL, e) < 0)
        return -1;
    if (rd_customer_parse(body, &r->customer, e) < 0)
        return -1;
    return parse_metadata(r, body, e);
}

static int amount_and_currency(struct rd_redeem_req *r, const json_t *body, int need_currency,
                               struct rd_verr *e)
{
    if (rd_json_int(body, "amount", RD_J_REQUIRED, 1, RD_AMOUNT_MAX, &r->order_amount, NULL, e) <
        0) {
        if (json_object_get(body, "amount"))
            rd_verr_set(e, "amount",
                        "must be a whole number of minor units from 1 to 10^15 (e.g. 2599 for "
                        "25.99)");
        return -1;
    }
    const char *cur;
    int rc = rd_json_str(body, "currency", need_currency ? RD_J_REQUIRED : RD_J_OPTIONAL, 1, 8,
                         &cur, NULL, e);
    if (rc < 0)
        return -1;
    if (rc == 1 && rd_currency_normalize(cur, r->currency) < 0) {
        rd_verr_set(e, "currency", "must be a 3-letter ISO 4217 code such as \"EUR\"");
        return -1;
    }
    return 0;
}

int rd_pay_req_parse(struct rd_redeem_req *r, const json_t *body, const char *code,
                     struct rd_verr *e)
{
    static const char *const keys[] = {"amount",   "currency", "user_id", "order_id",
                                       "metadata", "customer", NULL};
    memset(r, 0, sizeof(*r));
    snprintf(r->code, sizeof(r->code), "%s", code);
    if (rd_json_only_keys(body, keys, "", e) < 0 || amount_and_currency(r, body, 1, e) < 0)
        return -1;
    if (rd_json_str(body, "user_id", RD_J_REQUIRED, 1, RD_USER_ID_MAX, &r->user_id, NULL, e) < 0)
        return -1;
    if (rd_json_str(body, "order_id", RD_J_OPTIONAL, 1, RD_ORDER_ID_MAX, &r->order_id, NULL, e) < 0)
        return -1;
    if (rd_customer_parse(body, &r->customer, e) < 0)
        return -1;
    return parse_metadata(r, body, e);
}

int rd_recharge_req_parse(struct rd_redeem_req *r, const json_t *body, const char *code,
                          struct rd_verr *e)
{
    static const char *const keys[] = {"amount", "currency", NULL};
    memset(r, 0, sizeof(*r));
    snprintf(r->code, sizeof(r->code), "%s", code);
    r->user_id = "";
    if (rd_json_only_keys(body, keys, "", e) < 0 || amount_and_currency(r, body, 0, e) < 0)
        return -1;
    return 0;
}

void rd_redeem_req_free(struct rd_redeem_req *r)
{
    free(r->meta_json);
    r->meta_json = NULL;
}

static uint64_t fnv64(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    /* A separator byte, so ("ab","c") and ("a","bc") differ. */
    h ^= 0xff;
    h *= 1099511628211ull;
    return h;
}

void rd_redeem_req_fingerprint(const struct rd_redeem_req *r, uint8_t out[8])
{
    char amount[24];
    int n = snprintf(amount, sizeof(amount), "%lld", (long long)r->order_amount);
    uint64_t h = 14695981039346656037ull;
    h = fnv64(h, r->code, strlen(r->code));
    h = fnv64(h, r->user_id, strlen(r->user_id));
    h = fnv64(h, amount, (size_t)n);
    h = fnv64(h, r->currency, strlen(r->currency));
    h = fnv64(h, r->order_id ? r->order_id : "\x01", r->order_id ? strlen(r->order_id) : 1);
    h = fnv64(h, r->meta_json ? r->meta_json : "\x01", r->meta_json ? strlen(r->meta_json) : 1);
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(h & 0xff);
        h >>= 8;
    }
}

void rd_idem_digest(const char *code, const char *key_id, const char *idem,
                    uint8_t out[RD_IDEM_DIGEST_LEN])
{
    /* the three are checked before (code <= 64, key id 8, key <= 255): clamping never cuts */
    char buf[3 * (RD_IDEM_KEY_MAX + 1)];
    size_t n = 0;
    const char *parts[3] = {code, key_id, idem};
    for (int i = 0; i < 3; i++) {
        size_t l = strnlen(parts[i], RD_IDEM_KEY_MAX);
        memcpy(buf + n, parts[i], l);
        n += l;
        buf[n++] = '\0';
    }
    uint8_t d[32];
    rd_sha256(buf, n - 1, d);
    memcpy(out, d, RD_IDEM_DIGEST_LEN);
}

static int printable_token(const char *k, size_t maxlen)
{
    size_t n = strlen(k);
    if (n < 1 || n > maxlen)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
            return -1;
    return 0;
}

int rd_idem_key_check(const char *k)
{
    return printable_token(k, RD_IDEM_KEY_MAX);
}

/* addr as bytes (4 or 16) into out; its family's bit count, or -1 */
static int parse_addr(const char *s, size_t n, unsigned char out[16])
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, out) == 1)
        return 32;
    if (inet_pton(AF_INET6, buf, out) == 1)
        return 128;
    return -1;
}

int rd_ip_in_list(const char *list, const char *ip)
{
    unsigned char a[16];
    int abits = parse_addr(ip, strlen(ip), a);
    if (abits < 0)
        return -1;
    int found = 0;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        const char *slash = memchr(p, '/', n);
        size_t an = slash ? (size_t)(slash - p) : n;
        while (an > 0 && p[0] == ' ') /* "a, b" */
            p++, an--, n--;
        unsigned char net[16];
        int bits = parse_addr(p, an, net);
        if (bits < 0)
            return -1;
        int prefix = bits;
        if (slash) {
            char *end;
            long v = strtol(slash + 1, &end, 10);
            if (end != p + n || slash + 1 == end || v < 0 || v > bits)
                return -1;
            prefix = (int)v;
        }
        if (bits == abits) {
            int i = 0;
            for (; i < prefix / 8 && net[i] == a[i]; i++)
                ;
            unsigned char mask = (unsigned char)(0xff00 >> (prefix % 8));
            if (i == prefix / 8 && (prefix % 8 == 0 || (net[i] & mask) == (a[i] & mask)))
                found = 1;
        }
        if (!p[n])
            return found;
        p += n + 1;
    }
}

int rd_request_id_check(const char *k)
{
    return printable_token(k, 128);
}

int rd_xff_customer(const char *xff, const char *trusted, char *out, size_t sz)
{
    size_t end = strlen(xff);
    char ip[RD_CUSTOMER_IP_MAX + 1];
    int found = 0;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && (xff[a] == ' ' || xff[a] == '\t'))
            a++;
        while (b > a && (xff[b - 1] == ' ' || xff[b - 1] == '\t'))
            b--;
        unsigned char addr[16];
        if (b - a == 0 || b - a >= sizeof(ip))
            return -1;
        memcpy(ip, xff + a, b - a);
        ip[b - a] = '\0';
        if (inet_pton(AF_INET, ip, addr) != 1 && inet_pton(AF_INET6, ip, addr) != 1)
            return -1;
        found = 1;
        if (rd_ip_in_list(trusted, ip) != 1)
            break; /* the first one no proxy of ours added: the customer */
        end = start > 0 ? start - 1 : 0;
    }
    if (!found || strlen(ip) >= sz)
        return -1;
    memcpy(out, ip, strlen(ip) + 1);
    return 0;
}
