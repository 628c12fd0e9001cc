/* SPDX-License-Identifier: MIT
 *
 * The coupon model: validation of create and PATCH bodies, the Redis hash representation
 * (the field names the scripts in scripts/lua read), and the API view. Pure logic over jansson.
 *
 * Ownership: struct rd_coupon owns tags_json and meta_json (malloc'd, compact JSON text);
 * rd_coupon_free() releases them. Everything else is inline.
 */
#ifndef RD_COUPON_H
#define RD_COUPON_H

#include <jansson.h>
#include <stdint.h>

#include "rd/code.h"
#include "rd/discount.h"
#include "rd/json_util.h"
#include "rd/shards.h"

#define RD_CAMPAIGN_MAX 128
#define RD_TAGS_MAX     32
#define RD_TAG_LEN_MAX  64
#define RD_LIMIT_MAX    1000000000LL /* repeat counts: at most 10^9 */
#define RD_DAYS_MAX     3650
#define RD_BATCH_ID_MAX 24

enum rd_kind { RD_KIND_DISCOUNT = 0, RD_KIND_VOUCHER };

struct rd_coupon {
    char code[RD_CODE_MAX + 1];
    enum rd_kind kind;
    struct rd_discount discount;
    char currency[4];   /* "" for none (percent coupons only) */
    int64_t starts_at;  /* ms, or -1 */
    int64_t expires_at; /* ms, or -1 */
    int utc_offset_min;
    int64_t limit_total, limit_user, limit_daily, limit_weekly; /* -1 for none */
    char campaign[RD_CAMPAIGN_MAX + 1];
    char *tags_json; /* owned; "[]" when empty */
    char *meta_json; /* owned; "{}" when empty */
    int disabled;
    int64_t created_at, updated_at;
    int64_t ver;  /* bumped by every write; PATCH compares it */
    int64_t used; /* live global count, read-only here */
    /* vouchers: money in minor units. The scripts own these once the voucher exists:
     * balance = loaded - spent + refunded, always. At creation balance = loaded = initial. */
    int64_t balance, loaded, spent, refunded;
    int64_t shares, shared_at;       /* POST .../share: how often, and when last (-1 never) */
    char batch[RD_BATCH_ID_MAX + 1]; /* the batch that issued it ("" for none): hash field t */
    int nshards;                     /* create: "shards" asked for (0: none) */
    char shards[RD_SHARD_LAYOUT_SZ]; /* a hot coupon's layout, hash field "shards" ("" none) */
    char gen[RD_SHARD_GEN_MAX + 1];  /* and its generation, "gen": the id of its creation */
};

void rd_coupon_init(struct rd_coupon *c);
void rd_coupon_free(struct rd_coupon *c);

/**
 * Validates a POST /v1/coupons body into c (initialised by the caller). A missing code is
 * left empty for the caller to generate. now_ms resolves expires_in_days; a voucher's initial
 * balance may be at most max_balance. Returns 0, or -1 with e naming the field.
 */
int rd_coupon_from_create(struct rd_coupon *c, const json_t *body, int64_t now_ms,
                          int64_t max_balance, struct rd_verr *e);

/** Applies a PATCH body to c (the current definition) and re-checks the whole coupon. */
int rd_coupon_apply_patch(struct rd_coupon *c, const json_t *body, int64_t now_ms,
                          struct rd_verr *e);

/** Cross-field rules: currency where amounts need one, starts_at < expires_at, caps. */
int rd_coupon_check(const struct rd_coupon *c, struct rd_verr *e);

/*
 * Redis hash representation. rd_coupon_fields() fills names/values (RD_COUPON_NFIELDS each)
 * with strings borrowed from c or written into scratch (RD_COUPON_SCRATCH bytes); the counter
 * "used" and "ver" are not part of it: scripts own them.
 */
#define RD_COUPON_NFIELDS 20
#define RD_COUPON_SCRATCH 512
void rd_coupon_fields(const struct rd_coupon *c, const char *names[RD_COUPON_NFIELDS],
                      const char *values[RD_COUPON_NFIELDS], char *scratch);

/**
 * Reads a coupon from HGETALL's field/value pairs (borrowed). Returns 0, or -1 if the hash is
 * not a coupon (missing or corrupt fields).
 */
int rd_coupon_from_hash(struct rd_coupon *c, const char *const *names, const size_t *name_lens,
                        const char *const *values, const size_t *value_lens, size_t n);

/** The API view: definition plus live counters and derived status. New reference. */
json_t *rd_coupon_to_json(const struct rd_coupon *c, int64_t now_ms);

/**
 * Derived status: "active", "scheduled", "expired", "disabled" or "exhausted" (total limit
 * used up, or a voucher's balance at zero).
 */
const char *rd_coupon_status(const struct rd_coupon *c, int64_t now_ms);

#endif
