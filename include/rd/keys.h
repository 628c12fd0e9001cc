/* SPDX-License-Identifier: MIT
 *
 * Redis key layout (DESIGN.md §2). Every key one script call touches carries the same hash
 * tag {NNNN}, the bucket of the coupon code, so a call never crosses a cluster slot; each
 * bucket has its own outbox stream {NNNN}:log.
 *
 *   {NNNN}:c:<CODE>                coupon definition and its global used count (hash)
 *   {NNNN}:u:<CODE>                per-user counts: t:<user> lifetime, d:<user> / w:<user>
 *                                  "<period index>:<count>" for the current day / week (hash)
 *   {NNNN}:i:<CODE>:<keyid>:<idem> idempotency record of one redeem (string, TTL)
 *   {NNNN}:r:<id>                  one redemption (hash, TTL)
 *   {NNNN}:log                     outbox stream of the bucket
 *   rd:meta                        install-wide settings (bucket count)
 *   rd:apikeys                     API keys: sha256(key) -> "id scopes name created revoked"
 *
 * Redemption ids embed their bucket ("rdm_NNNN_..."), so a reversal finds its keys without
 * a lookup table.
 */
#ifndef RD_KEYS_H
#define RD_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define RD_BUCKETS_MAX 10000
#define RD_KEY_META    "rd:meta"
#define RD_KEY_APIKEYS "rd:apikeys"
#define RD_TXN_ID_LEN  29 /* "rdm_" + 4 digits + "_" + 20 symbols */
#define RD_KEY_MAX     512

/** FNV-1a of the normalised code, modulo nbuckets. */
uint32_t rd_bucket_of(const char *code, size_t len, uint32_t nbuckets);

/* Each builder writes a NUL-terminated key into buf and returns its length, or -1 if it does
 * not fit (callers size buf with RD_KEY_MAX, which fits every valid input). */
int rd_key_coupon(char *buf, size_t sz, uint32_t bucket, const char *code);
int rd_key_users(char *buf, size_t sz, uint32_t bucket, const char *code);
int rd_key_idem(char *buf, size_t sz, uint32_t bucket, const char *code, const char *keyid,
                const char *idem);
int rd_key_redemption(char *buf, size_t sz, uint32_t bucket, const char *id);
int rd_key_log(char *buf, size_t sz, uint32_t bucket);

/** Builds a transaction id for bucket from 20 random bytes (only 5 bits of each are used). */
void rd_txn_id_make(char out[RD_TXN_ID_LEN + 1], uint32_t bucket, const uint8_t rnd[20]);
/** Checks an id's shape and returns its bucket, or -1 if it is not one of ours. */
int rd_txn_id_bucket(const char *id, uint32_t nbuckets);

/* API keys look like "rdk_<8 id chars>_<32 secret chars>"; only their SHA-256 is stored. */
#define RD_APIKEY_LEN    45
#define RD_APIKEY_ID_LEN 8
/** Builds a key from 40 random bytes; writes the id part into id (9 bytes). */
void rd_apikey_make(char out[RD_APIKEY_LEN + 1], char id[RD_APIKEY_ID_LEN + 1],
                    const uint8_t rnd[40]);
/** Returns 0 if s has the shape of a key. */
int rd_apikey_check_shape(const char *s, size_t len);

/* Scopes a key may carry; a key holds one or more. */
enum { RD_SCOPE_ADMIN = 1, RD_SCOPE_REDEEM = 2, RD_SCOPE_FRAUD = 4 };
/** Parses "admin,redeem". Returns 0, or -1 for an empty list or an unknown scope. */
int rd_scopes_parse(const char *s, size_t len, unsigned *out);
/** Writes "admin,redeem" into buf (at least 32 bytes). */
void rd_scopes_format(unsigned scopes, char *buf, size_t sz);

/*
 * The value stored per key in rd:apikeys: "id|scopes|created_ms|revoked|name". Parsing fills
 * what is non-NULL; name is truncated to namesz. Returns 0 or -1 if malformed.
 */
struct rd_apikey_record {
    char id[RD_APIKEY_ID_LEN + 1];
    unsigned scopes;
    long long created_ms;
    int revoked;
    char name[128];
};
int rd_apikey_record_parse(const char *v, size_t len, struct rd_apikey_record *out);
/** Formats a record into buf; returns its length or -1 if it does not fit. */
int rd_apikey_record_format(const struct rd_apikey_record *rec, char *buf, size_t sz);

#endif
