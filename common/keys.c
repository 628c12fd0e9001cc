/* SPDX-License-Identifier: MIT
 *
 * Key naming, transaction ids and API key shapes.
 */
#include <stdio.h>
#include <string.h>

#include "rd/json_util.h"
#include "rd/keys.h"

/* Lower-case Crockford-style base32 without i, l, o, u: ids are read aloud and pasted. */
static const char id_alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

uint32_t rd_bucket_of(const char *code, size_t len, uint32_t nbuckets)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)code[i];
        h *= 16777619u;
    }
    return nbuckets ? h % nbuckets : 0;
}

static int fit(int n, size_t sz)
{
    return (n < 0 || (size_t)n >= sz) ? -1 : n;
}

/* "{NNNN}" (the bucket, at least 4 digits) then kind and up to three parts, each after a
 * ':' (NULL: none), without printf: the checkout makes half a dozen keys per request.
 * The length, or -1 when it does not fit in sz (buf then holds a cut, terminated key). */
static int key_make(char *buf, size_t sz, uint32_t bucket, const char *kind, const char *a,
                    const char *b, const char *c)
{
    char digits[24];
    size_t dl = rd_fmt_i64(digits, bucket), n = 0;
    const char *parts[4] = {kind, a, b, c};
    if (sz == 0)
        return -1;
#define PUT(s, len)                                                                                \
    do {                                                                                           \
        size_t l_ = (len);                                                                         \
        if (n + l_ >= sz) {                                                                        \
            memcpy(buf + n, (s), sz - 1 - n);                                                      \
            buf[sz - 1] = '\0';                                                                    \
            return -1;                                                                             \
        }                                                                                          \
        memcpy(buf + n, (s), l_);                                                                  \
        n += l_;                                                                                   \
    } while (0)
    PUT("{", 1);
    PUT("0000", dl < 4 ? 4 - dl : 0);
    PUT(digits, dl);
    PUT("}", 1);
    for (int i = 0; i < 4 && parts[i]; i++) {
        PUT(":", 1);
        PUT(parts[i], strlen(parts[i]));
    }
#undef PUT
    buf[n] = '\0';
    return (int)n;
}

int rd_key_coupon(char *buf, size_t sz, uint32_t bucket, const char *code)
{
    return key_make(buf, sz, bucket, "c", code, NULL, NULL);
}

int rd_key_users(char *buf, size_t sz, uint32_t bucket, const char *code)
{
    return key_make(buf, sz, bucket, "u", code, NULL, NULL);
}

int rd_key_shard(char *buf, size_t sz, uint32_t bucket, const char *code)
{
    return key_make(buf, sz, bucket, "s", code, NULL, NULL);
}

int rd_key_idem(char *buf, size_t sz, uint32_t bucket, int64_t slice_ms, int64_t now_ms)
{
    char a[24], b[24];
    a[rd_fmt_i64(a, slice_ms)] = '\0';
    b[rd_fmt_i64(b, now_ms / slice_ms)] = '\0';
    return key_make(buf, sz, bucket, "i", a, b, NULL);
}

int rd_key_idem_v1(char *buf, size_t sz, uint32_t bucket, const char *code, const char *keyid,
                   const char *idem)
{
    return key_make(buf, sz, bucket, "i", code, keyid, idem);
}

int rd_key_mark(char *buf, size_t sz, uint32_t bucket, const char *id)
{
    return key_make(buf, sz, bucket, "x", id, NULL, NULL);
}

int rd_key_redemption_v1(char *buf, size_t sz, uint32_t bucket, const char *id)
{
    return key_make(buf, sz, bucket, "r", id, NULL, NULL);
}

int rd_key_log(char *buf, size_t sz, uint32_t bucket)
{
    return key_make(buf, sz, bucket, "log", NULL, NULL, NULL);
}

void rd_txn_id_make(char out[RD_TXN_ID_LEN + 1], uint32_t bucket, const uint8_t rnd[20])
{
    bucket %= 10000;
    memcpy(out, "rdm_", 4);
    for (int i = 7; i >= 4; i--) {
        out[i] = (char)('0' + bucket % 10);
        bucket /= 10;
    }
    out[8] = '_';
    for (int i = 0; i < 20; i++)
        out[9 + i] = id_alphabet[rnd[i] & 31];
    out[RD_TXN_ID_LEN] = '\0';
}

static int in_alphabet(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || !strchr(id_alphabet, s[i]))
            return 0;
    return 1;
}

/* A decimal number of 1 to 20 digits without a leading zero (Redis' stream id parts). */
static size_t digits(const char *s)
{
    size_t n = strspn(s, "0123456789");
    return (n == 0 || n > 20 || (n > 1 && s[0] == '0')) ? 0 : n;
}

int rd_txn_id_parse(const char *id, uint32_t nbuckets, struct rd_txn_ref *ref)
{
    size_t len = strlen(id);
    if (len < 10 || len > RD_TXN_ID_MAX || strncmp(id, "rdm_", 4) != 0 || id[8] != '_')
        return -1;
    uint32_t b = 0;
    for (int i = 4; i < 8; i++) {
        if (id[i] < '0' || id[i] > '9')
            return -1;
        b = b * 10 + (uint32_t)(id[i] - '0');
    }
    if (b >= nbuckets)
        return -1;
    ref->bucket = b;
    ref->sid[0] = ref->tag[0] = '\0';
    const char *p = id + 9;
    if (len == RD_TXN_ID_LEN && in_alphabet(p, 20))
        return 0; /* random: redeemd 0.1's uses, and every row that is not a use */
    size_t ms = digits(p);
    if (!ms || p[ms] != '-')
        return -1;
    size_t seq = digits(p + ms + 1);
    const char *t = p + ms + 1 + seq;
    if (!seq || t[0] != '_' || strlen(t + 1) != RD_USE_TAG_LEN || !in_alphabet(t + 1, 6))
        return -1;
    memcpy(ref->sid, p, ms + 1 + seq);
    ref->sid[ms + 1 + seq] = '\0';
    memcpy(ref->tag, t + 1, RD_USE_TAG_LEN + 1);
    return 0;
}

void rd_use_tag_make(const uint8_t src[4], char tag[RD_USE_TAG_LEN + 1])
{
    uint32_t v = (uint32_t)src[0] << 24 | (uint32_t)src[1] << 16 | (uint32_t)src[2] << 8 | src[3];
    for (int i = 0; i < RD_USE_TAG_LEN; i++, v >>= 5)
        tag[i] = id_alphabet[v & 31];
    tag[RD_USE_TAG_LEN] = '\0';
}

int rd_txn_id_bucket(const char *id, uint32_t nbuckets)
{
    struct rd_txn_ref ref;
    return rd_txn_id_parse(id, nbuckets, &ref) < 0 ? -1 : (int)ref.bucket;
}

int rd_use_id_format(char out[RD_TXN_ID_MAX + 1], uint32_t bucket, const char *sid, size_t sid_len,
                     const char *tag, size_t tag_len)
{
    if (bucket >= RD_BUCKETS_MAX || sid_len == 0 || sid_len > 41 || tag_len != RD_USE_TAG_LEN)
        return -1;
    int n = snprintf(out, RD_TXN_ID_MAX + 1, "rdm_%04u_%.*s_%.*s", bucket, (int)sid_len, sid,
                     (int)tag_len, tag);
    struct rd_txn_ref ref;
    if (n < 0 || n > RD_TXN_ID_MAX || rd_txn_id_parse(out, RD_BUCKETS_MAX, &ref) < 0 || !ref.sid[0])
        return -1;
    return n;
}

int rd_user_counts_parse(const char *v, struct rd_user_counts *out)
{
    long long x[5];
    const char *p = v;
    for (int i = 0; i < 5; i++) {
        size_t n = strspn(p, "0123456789");
        if (n == 0 || n > 18 || p[n] != (i < 4 ? ':' : '\0'))
            return -1;
        x[i] = 0;
        for (size_t k = 0; k < n; k++)
            x[i] = x[i] * 10 + (p[k] - '0');
        p += n + 1;
    }
    *out = (struct rd_user_counts){x[0], x[1], x[2], x[3], x[4]};
    return 0;
}

int rd_user_counts_format(const struct rd_user_counts *u, char *buf, size_t sz)
{
    return fit(snprintf(buf, sz, "%lld:%lld:%lld:%lld:%lld", u->total, u->day, u->day_uses, u->week,
                        u->week_uses),
               sz);
}

void rd_apikey_make(char out[RD_APIKEY_LEN + 1], char id[RD_APIKEY_ID_LEN + 1],
                    const uint8_t rnd[40])
{
    memcpy(out, "rdk_", 4);
    for (int i = 0; i < RD_APIKEY_ID_LEN; i++)
        out[4 + i] = id_alphabet[rnd[i] & 31];
    out[4 + RD_APIKEY_ID_LEN] = '_';
    for (int i = 0; i < 32; i++)
        out[5 + RD_APIKEY_ID_LEN + i] = id_alphabet[rnd[RD_APIKEY_ID_LEN + i] & 31];
    out[RD_APIKEY_LEN] = '\0';
    memcpy(id, out + 4, RD_APIKEY_ID_LEN);
    id[RD_APIKEY_ID_LEN] = '\0';
}

int rd_apikey_check_shape(const char *s, size_t len)
{
    if (len != RD_APIKEY_LEN || memcmp(s, "rdk_", 4) != 0 || s[4 + RD_APIKEY_ID_LEN] != '_')
        return -1;
    for (size_t i = 4; i < len; i++) {
        if (i == 4 + RD_APIKEY_ID_LEN)
            continue;
        if (!memchr(id_alphabet, s[i], sizeof(id_alphabet) - 1))
            return -1;
    }
    return 0;
}

static const char *const scope_names[] = {"admin", "redeem", "fraud"};

int rd_scopes_parse(const char *s, size_t len, unsigned *out)
{
    unsigned v = 0;
    size_t i = 0;
    if (len == 0)
        return -1;
    while (i <= len) {
        size_t j = i;
        while (j < len && s[j] != ',')
            j++;
        int found = 0;
        for (unsigned k = 0; k < 3; k++) {
            if (j - i == strlen(scope_names[k]) && memcmp(s + i, scope_names[k], j - i) == 0) {
                v |= 1u << k;
                found = 1;
            }
        }
        if (!found)
            return -1;
        i = j + 1;
    }
    if (v == 0)
        return -1;
    *out = v;
    return 0;
}

void rd_scopes_format(unsigned scopes, char *buf, size_t sz)
{
    size_t n = 0;
    buf[0] = '\0';
    for (unsigned k = 0; k < 3; k++)
        if (scopes & (1u << k))
            n += (size_t)snprintf(buf + n, n < sz ? sz - n : 0, "%s%s", n ? "," : "",
                                  scope_names[k]);
}

int rd_apikey_record_parse(const char *v, size_t len, struct rd_apikey_record *out)
{
    const char *f[5];
    size_t fl[5];
    size_t i = 0;
    for (int k = 0; k < 5; k++) {
        f[k] = v + i;
        size_t j = i;
        /* the name is last and may itself contain '|' */
        while (j < len && (k == 4 || v[j] != '|'))
            j++;
        fl[k] = j - i;
        if (k < 4 && j >= len)
            return -1;
        i = j + 1;
    }
    if (fl[0] != RD_APIKEY_ID_LEN || rd_scopes_parse(f[1], fl[1], &out->scopes) < 0 || fl[3] != 1 ||
        (f[3][0] != '0' && f[3][0] != '1'))
        return -1;
    memcpy(out->id, f[0], RD_APIKEY_ID_LEN);
    out->id[RD_APIKEY_ID_LEN] = '\0';
    out->created_ms = 0;
    for (size_t k = 0; k < fl[2]; k++) {
        if (f[2][k] < '0' || f[2][k] > '9')
            return -1;
        out->created_ms = out->created_ms * 10 + (f[2][k] - '0');
    }
    out->revoked = f[3][0] == '1';
    snprintf(out->name, sizeof(out->name), "%.*s", (int)fl[4], f[4]);
    return 0;
}

int rd_apikey_record_format(const struct rd_apikey_record *rec, char *buf, size_t sz)
{
    char scopes[32];
    rd_scopes_format(rec->scopes, scopes, sizeof(scopes));
    return fit(snprintf(buf, sz, "%s|%s|%lld|%d|%s", rec->id, scopes, rec->created_ms,
                        rec->revoked ? 1 : 0, rec->name),
               sz);
}
