/* SPDX-License-Identifier: MIT
 *
 * Redis key layout (DESIGN.md §2). Every key one script call touches carries the same hash
 * tag {NNNN}, the bucket of the coupon code, so a call never crosses a cluster slot; each
 * bucket has its own outbox stream {NNNN}:log.
 *
 *   {NNNN}:c:<CODE>                coupon definition and its global used count (hash)
 *   {NNNN}:u:<CODE>                per-user counts, one field per user "u:<user>" (hash)
 *   {NNNN}:i:<slice ms>:<slice>    idempotency records of one time slice, a field each
 *                                  (hash, expires whole)
 *   {NNNN}:x:<id>                  what was given back of a use (reversal, refunds): its
 *                                  mark, kept for the reversal window (hash, TTL)
 *   {NNNN}:log                     outbox stream of the bucket
 *   {NNNN}:t:<batch>               a batch's coupon template (hash)
 *   {NNNN}:s:<CODE>                a hot coupon's shard: its copy of the definition, budget,
 *                                  used and its moves (hash; rd/shards.h)
 * Written by redeemd 0.1 and still read until they expire: {NNNN}:i:<CODE>:<keyid>:<idem>
 * (an idempotency record, string) and {NNNN}:r:<id> (a record per use, hash).
 *   rd:meta                        install-wide settings (bucket count)
 *   rd:apikeys                     API keys: sha256(key) -> "id scopes name created revoked"
 *
 * Transaction ids embed their bucket ("rdm_NNNN_..."), so a reversal finds its keys without
 * a lookup table; the id of a use (a redemption or a payment) also names its outbox entry,
 * "rdm_NNNN_<stream id>_<tag>", so nothing else is kept in Redis to find it.
 */
#ifndef RD_KEYS_H
#define RD_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define RD_BUCKETS_MAX 10000
#define RD_KEY_META    "rd:meta"
#define RD_KEY_APIKEYS "rd:apikeys"
#define RD_TXN_ID_LEN  29 /* "rdm_" + 4 digits + "_" + 20 symbols */
#define RD_TXN_ID_MAX  64 /* a use's id: "rdm_NNNN_<ms>-<seq>_<6 symbols>" */
#define RD_USE_TAG_LEN 6
#define RD_KEY_MAX     512

/** FNV-1a of the normalised code, modulo nbuckets. */
uint32_t rd_bucket_of(const char *code, size_t len, uint32_t nbuckets);

/* Each builder writes a NUL-terminated key into buf and returns its length, or -1 if it does
 * not fit (callers size buf with RD_KEY_MAX, which fits every valid input). */
int rd_key_coupon(char *buf, size_t sz, uint32_t bucket, const char *code);
int rd_key_users(char *buf, size_t sz, uint32_t bucket, const char *code);
int rd_key_shard(char *buf, size_t sz, uint32_t bucket, const char *code);
/** The idempotency records of the time slice now_ms falls in (slices of slice_ms). */
int rd_key_idem(char *buf, size_t sz, uint32_t bucket, int64_t slice_ms, int64_t now_ms);
int rd_key_idem_v1(char *buf, size_t sz, uint32_t bucket, const char *code, const char *keyid,
                   const char *idem);
int rd_key_mark(char *buf, size_t sz, uint32_t bucket, const char *id);
int rd_key_redemption_v1(char *buf, size_t sz, uint32_t bucket, const char *id);
int rd_key_log(char *buf, size_t sz, uint32_t bucket);

/** Builds a transaction id for bucket from 20 random bytes (only 5 bits of each are used). */
void rd_txn_id_make(char out[RD_TXN_ID_LEN + 1], uint32_t bucket, const uint8_t rnd[20]);
/** Checks an id's shape and returns its bucket, or -1 if it is not one of ours. */
int rd_txn_id_bucket(const char *id, uint32_t nbuckets);

/* What an id names: its bucket and, for a use's id, its outbox entry's stream id and tag
 * (both "" for the ids of redeemd 0.1 and of rows other than uses). */
struct rd_txn_ref {
    uint32_t bucket;
    char sid[44]; /* "<ms>-<seq>": two unsigned 64-bit numbers at most */
    char tag[RD_USE_TAG_LEN + 1];
};
/** The 6 symbols of a use's tag from 30 bits of src. */
void rd_use_tag_make(const uint8_t src[4], char tag[RD_USE_TAG_LEN + 1]);
/** Parses id into ref; -1 if it is not one of ours (or its bucket is past nbuckets). */
int rd_txn_id_parse(const char *id, uint32_t nbuckets, struct rd_txn_ref *ref);
/**
 * The id of a use from its outbox entry: bucket, the entry's stream id and the tag it
 * carries. Returns the id's length, or -1 if the parts do not make one.
 */
int rd_use_id_format(char out[RD_TXN_ID_MAX + 1], uint32_t bucket, const char *sid, size_t sid_len,
                     const char *tag, size_t tag_len);

/*
 * A user's counts on a coupon: one field "u:<user>" of {NNNN}:u:<CODE> holding
 * "<total>:<day>:<uses that day>:<week>:<uses that week>" (day and week: period indexes in
 * the coupon's time zone), as the scripts write it (scripts/lua/lib/prelude.lua).
 */
struct rd_user_counts {
    long long total, day, day_uses, week, week_uses;
};
/** Parses a field's value; -1 if it is not one. */
int rd_user_counts_parse(const char *v, struct rd_user_counts *out);
/** Formats counts into buf; returns the length or -1 if it does not fit. */
int rd_user_counts_format(const struct rd_user_counts *u, char *buf, size_t sz);

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
