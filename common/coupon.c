/* SPDX-License-Identifier: MIT
 *
 * Coupon validation, Redis representation and API view.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd/coupon.h"
#include "rd/rdtime.h"
#include "rd/request.h"

void rd_coupon_init(struct rd_coupon *c)
{
    memset(c, 0, sizeof(*c));
    c->discount.max_amount = c->discount.min_order = -1;
    c->starts_at = c->expires_at = -1;
    c->limit_total = c->limit_user = c->limit_daily = c->limit_weekly = -1;
    c->shared_at = -1;
}

void rd_coupon_free(struct rd_coupon *c)
{
    free(c->tags_json);
    free(c->meta_json);
    c->tags_json = c->meta_json = NULL;
}

static char *dump_compact(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!s)
        abort();
    return s;
}

static void set_owned(char **dst, char *val)
{
    free(*dst);
    *dst = val;
}

static int parse_time_field(const json_t *body, const char *key, int64_t *out, struct rd_verr *e)
{
    const char *s;
    bool is_null;
    int rc = rd_json_str(body, key, RD_J_NULLABLE, 1, 64, &s, &is_null, e);
    if (rc < 0)
        return -1;
    if (is_null) {
        *out = -1;
        return 1;
    }
    if (rc == 0)
        return 0;
    if (rd_time_parse(s, out) < 0) {
        rd_verr_set(e, key, "must be an RFC 3339 time such as 2026-12-31T23:59:59Z");
        return -1;
    }
    return 1;
}

static int parse_discount(struct rd_coupon *c, const json_t *d, int creating, struct rd_verr *e)
{
    static const char *const keys[] = {"type", "value", "max_amount", "min_order", NULL};
    struct rd_verr sub;
    if (!json_is_object(d)) {
        rd_verr_set(e, "discount", "must be an object");
        return -1;
    }
    if (rd_json_only_keys(d, keys, "discount.", e) < 0)
        return -1;
    const char *type;
    int rc =
        rd_json_str(d, "type", creating ? RD_J_REQUIRED : RD_J_OPTIONAL, 1, 16, &type, NULL, &sub);
    if (rc < 0)
        goto sub_fail;
    if (rc == 1) {
        enum rd_dtype t = rd_dtype_parse(type);
        if (t == RD_DISCOUNT_NONE) {
            rd_verr_set(e, "discount.type", "must be \"percent\" or \"fixed\"");
            return -1;
        }
        c->discount.type = t;
    }
    int64_t v;
    int64_t vmax = c->discount.type == RD_DISCOUNT_PERCENT ? RD_BP_MAX : RD_AMOUNT_MAX;
    rc = rd_json_int(d, "value", creating ? RD_J_REQUIRED : RD_J_OPTIONAL, 1, vmax, &v, NULL, &sub);
    if (rc < 0) {
        if (c->discount.type == RD_DISCOUNT_PERCENT && json_is_integer(json_object_get(d, "value")))
            snprintf(sub.msg, sizeof(sub.msg),
                     "a percent discount is in basis points from 1 to 10000 (100.00 %%)");
        goto sub_fail;
    }
    if (rc == 1)
        c->discount.value = v;
    else if (c->discount.type == RD_DISCOUNT_PERCENT && c->discount.value > RD_BP_MAX) {
        rd_verr_set(e, "discount.value", "a percent discount is at most 10000 basis points");
        return -1;
    }
    bool is_null;
    rc = rd_json_int(d, "max_amount", RD_J_NULLABLE, 1, RD_AMOUNT_MAX, &v, &is_null, &sub);
    if (rc < 0)
        goto sub_fail;
    if (rc == 1)
        c->discount.max_amount = v;
    else if (is_null)
        c->discount.max_amount = -1;
    rc = rd_json_int(d, "min_order", RD_J_NULLABLE, 1, RD_AMOUNT_MAX, &v, &is_null, &sub);
    if (rc < 0)
        goto sub_fail;
    if (rc == 1)
        c->discount.min_order = v;
    else if (is_null)
        c->discount.min_order = -1;
    return 0;
sub_fail:
    rd_verr_set(e, "", "%s", sub.msg);
    snprintf(e->field, sizeof(e->field), "discount.%.80s", sub.field);
    return -1;
}

static int parse_limits(struct rd_coupon *c, const json_t *l, struct rd_verr *e)
{
    static const char *const keys[] = {"total", "per_user", "per_user_daily", "per_user_weekly",
                                       NULL};
    int64_t *dst[] = {&c->limit_total, &c->limit_user, &c->limit_daily, &c->limit_weekly};
    if (!json_is_object(l)) {
        rd_verr_set(e, "limits", "must be an object");
        return -1;
    }
    if (rd_json_only_keys(l, keys, "limits.", e) < 0)
        return -1;
    for (int i = 0; i < 4; i++) {
        int64_t v;
        bool is_null;
        struct rd_verr sub;
        int rc = rd_json_int(l, keys[i], RD_J_NULLABLE, 1, RD_LIMIT_MAX, &v, &is_null, &sub);
        if (rc < 0) {
            rd_verr_set(e, "", "must be a positive integer up to 1000000000, or null for none");
            snprintf(e->field, sizeof(e->field), "limits.%s", keys[i]);
            return -1;
        }
        if (rc == 1)
            *dst[i] = v;
        else if (is_null)
            *dst[i] = -1;
    }
    return 0;
}

static int parse_tags(struct rd_coupon *c, const json_t *t, struct rd_verr *e)
{
    if (json_is_null(t)) {
        set_owned(&c->tags_json, strdup("[]"));
        return 0;
    }
    if (!json_is_array(t) || json_array_size(t) > RD_TAGS_MAX) {
        rd_verr_set(e, "tags", "must be an array of at most %d strings", RD_TAGS_MAX);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(t, i, v)
    {
        char f[32];
        snprintf(f, sizeof(f), "tags[%zu]", i);
        if (!json_is_string(v) || json_string_length(v) < 1 ||
            json_string_length(v) > RD_TAG_LEN_MAX ||
            rd_str_has_ctl(json_string_value(v), json_string_length(v))) {
            rd_verr_set(e, f, "must be a string of 1 to %d bytes", RD_TAG_LEN_MAX);
            return -1;
        }
    }
    set_owned(&c->tags_json, dump_compact(t));
    return 0;
}

/* Fields a create and a PATCH share; creating says which are required. */
static int apply_common(struct rd_coupon *c, const json_t *body, int64_t now_ms, int creating,
                        struct rd_verr *e)
{
    json_t *d = json_object_get(body, "discount");
    if (d && c->kind == RD_KIND_VOUCHER) {
        rd_verr_set(e, "discount", "a voucher carries a balance, not a discount");
        return -1;
    }
    if (d) {
        if (parse_discount(c, d, creating, e) < 0)
            return -1;
    } else if (creating && c->kind == RD_KIND_DISCOUNT) {
        rd_verr_set(e, "discount", "is required");
        return -1;
    }

    const char *s;
    bool is_null;
    int rc = rd_json_str(body, "currency", RD_J_NULLABLE, 1, 8, &s, &is_null, e);
    if (rc < 0)
        return -1;
    if (rc == 1 && rd_currency_normalize(s, c->currency) < 0) {
        rd_verr_set(e, "currency", "must be a 3-letter ISO 4217 code such as \"EUR\"");
        return -1;
    }
    if (is_null)
        c->currency[0] = '\0';

    if (parse_time_field(body, "starts_at", &c->starts_at, e) < 0)
        return -1;
    int has_exp = parse_time_field(body, "expires_at", &c->expires_at, e);
    if (has_exp < 0)
        return -1;
    int64_t days;
    rc = rd_json_int(body, "expires_in_days", RD_J_OPTIONAL, 1, RD_DAYS_MAX, &days, NULL, e);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        if (has_exp || json_object_get(body, "expires_at")) {
            rd_verr_set(e, "expires_in_days", "give expires_at or expires_in_days, not both");
            return -1;
        }
        c->expires_at = now_ms + days * RD_MS_PER_DAY;
    }

    int64_t off;
    rc = rd_json_int(body, "utc_offset_minutes", RD_J_OPTIONAL, -RD_OFFSET_MAX_MIN,
                     RD_OFFSET_MAX_MIN, &off, NULL, e);
    if (rc < 0)
        return -1;
    if (rc == 1)
        c->utc_offset_min = (int)off;

    json_t *l = json_object_get(body, "limits");
    if (l && parse_limits(c, l, e) < 0)
        return -1;

    rc = rd_json_str(body, "campaign", RD_J_NULLABLE, 1, RD_CAMPAIGN_MAX, &s, &is_null, e);
    if (rc < 0)
        return -1;
    if (rc == 1)
        snprintf(c->campaign, sizeof(c->campaign), "%s", s);
    else if (is_null)
        c->campaign[0] = '\0';

    json_t *t = json_object_get(body, "tags");
    if (t && parse_tags(c, t, e) < 0)
        return -1;

    json_t *m = json_object_get(body, "metadata");
    if (m) {
        if (json_is_null(m))
            set_owned(&c->meta_json, strdup("{}"));
        else if (rd_json_check_metadata(m, "metadata", e) < 0)
            return -1;
        else
            set_owned(&c->meta_json, dump_compact(m));
    }
    if (!c->tags_json)
        c->tags_json = strdup("[]");
    if (!c->meta_json)
        c->meta_json = strdup("{}");
    if (!c->tags_json || !c->meta_json)
        abort();
    return rd_coupon_check(c, e);
}

/* The fields of a coupon body. A PATCH may change all but the first four. */
static const char *const coupon_keys[] = {
    "code",     "kind",      "balance",    "shards",          "discount",
    "currency", "starts_at", "expires_at", "expires_in_days", "utc_offset_minutes",
    "limits",   "campaign",  "tags",       "metadata",        NULL};
static const char *const *const patchable_keys = coupon_keys + 4;

int rd_coupon_from_create(struct rd_coupon *c, const json_t *body, int64_t now_ms,
                          int64_t max_balance, struct rd_verr *e)
{
    if (rd_json_only_keys(body, coupon_keys, "", e) < 0)
        return -1;
    const char *s;
    int rc = rd_json_str(body, "kind", RD_J_OPTIONAL, 1, 16, &s, NULL, e);
    if (rc < 0)
        return -1;
    if (rc == 1 && strcmp(s, "discount") != 0 && strcmp(s, "voucher") != 0) {
        rd_verr_set(e, "kind", "must be \"discount\" or \"voucher\"");
        return -1;
    }
    c->kind = rc == 1 && strcmp(s, "voucher") == 0 ? RD_KIND_VOUCHER : RD_KIND_DISCOUNT;
    if (c->kind == RD_KIND_VOUCHER) {
        int64_t bal;
        if (max_balance > RD_AMOUNT_MAX)
            max_balance = RD_AMOUNT_MAX;
        rc = rd_json_int(body, "balance", RD_J_REQUIRED, 1, max_balance, &bal, NULL, e);
        if (rc < 0) {
            if (json_is_integer(json_object_get(body, "balance")))
                rd_verr_set(e, "balance",
                            "must be from 1 to %lld minor units (voucher_max_balance)",
                            (long long)max_balance);
            return -1;
        }
        c->balance = c->loaded = bal;
    } else if (json_object_get(body, "balance")) {
        rd_verr_set(e, "balance", "only a voucher (\"kind\": \"voucher\") has a balance");
        return -1;
    }
    rc = rd_json_str(body, "code", RD_J_OPTIONAL, 1, 256, &s, NULL, e);
    if (rc < 0)
        return -1;
    if (rc == 1 && rd_code_normalize(s, strlen(s), c->code) < 0) {
        rd_verr_set(e, "code",
                    "must be %d to %d characters of A-Z, 0-9 and '-', not starting "
                    "or ending with '-'",
                    RD_CODE_MIN, RD_CODE_MAX);
        return -1;
    }
    int64_t shards = 0;
    if (rd_json_int(body, "shards", RD_J_OPTIONAL, 1, RD_SHARDS_MAX, &shards, NULL, e) < 0)
        return -1;
    if (shards > 1 && c->kind == RD_KIND_VOUCHER) {
        rd_verr_set(e, "shards", "a voucher cannot be sharded (its balance is one number)");
        return -1;
    }
    c->nshards = shards > 1 ? (int)shards : 0; /* one shard is no sharding */
    if (apply_common(c, body, now_ms, 1, e) < 0)
        return -1;
    if (c->expires_at >= 0 && c->expires_at <= now_ms) {
        rd_verr_set(e, json_object_get(body, "expires_at") ? "expires_at" : "expires_in_days",
                    "is in the past");
        return -1;
    }
    c->created_at = c->updated_at = now_ms;
    return 0;
}

int rd_coupon_apply_patch(struct rd_coupon *c, const json_t *body, int64_t now_ms,
                          struct rd_verr *e)
{
    if (json_object_get(body, "code") || json_object_get(body, "kind")) {
        rd_verr_set(e, json_object_get(body, "code") ? "code" : "kind", "cannot be changed");
        return -1;
    }
    if (c->kind == RD_KIND_VOUCHER && json_object_get(body, "currency")) {
        rd_verr_set(e, "currency", "cannot be changed on a voucher (its balance is in it)");
        return -1;
    }
    if (json_object_get(body, "shards")) {
        rd_verr_set(e, "shards", "cannot be changed (a coupon's shards are fixed at creation)");
        return -1;
    }
    if (json_object_get(body, "balance")) {
        rd_verr_set(e, "balance",
                    c->kind == RD_KIND_VOUCHER
                        ? "cannot be set; add value with POST /v1/vouchers/{code}/recharge"
                        : "only a voucher has a balance");
        return -1;
    }
    if (rd_json_only_keys(body, patchable_keys, "", e) < 0)
        return -1;
    if (json_object_size(body) == 0) {
        rd_verr_set(e, "body", "names no field to change");
        return -1;
    }
    if (apply_common(c, body, now_ms, 0, e) < 0)
        return -1;
    c->updated_at = now_ms;
    return 0;
}

int rd_coupon_check(const struct rd_coupon *c, struct rd_verr *e)
{
    const struct rd_discount *d = &c->discount;
    if (c->kind == RD_KIND_VOUCHER) {
        if (c->currency[0] == '\0') {
            rd_verr_set(e, "currency", "is required for a voucher");
            return -1;
        }
        if ((c->nshards || c->shards[0]) && c->limit_total < 0) {
            rd_verr_set(e, "limits.total",
                        "is required for a sharded coupon (its shards split the total)");
            return -1;
        }
        if (c->starts_at >= 0 && c->expires_at >= 0 && c->starts_at >= c->expires_at) {
            rd_verr_set(e, "expires_at", "must be after starts_at");
            return -1;
        }
        return 0;
    }
    if (d->type == RD_DISCOUNT_NONE) {
        rd_verr_set(e, "discount.type", "is required");
        return -1;
    }
    if (d->type == RD_DISCOUNT_PERCENT && (d->value < 1 || d->value > RD_BP_MAX)) {
        rd_verr_set(e, "discount.value", "a percent discount is in basis points from 1 to 10000");
        return -1;
    }
    if (c->currency[0] == '\0' &&
        (d->type == RD_DISCOUNT_FIXED || d->max_amount >= 0 || d->min_order >= 0)) {
        rd_verr_set(e, "currency",
                    "is required when the coupon has amounts (fixed value, max_amount or "
                    "min_order)");
        return -1;
    }
    if ((c->nshards || c->shards[0]) && c->limit_total < 0) {
        rd_verr_set(e, "limits.total",
                    "is required for a sharded coupon (its shards split the total)");
        return -1;
    }
    if (c->starts_at >= 0 && c->expires_at >= 0 && c->starts_at >= c->expires_at) {
        rd_verr_set(e, "expires_at", "must be after starts_at");
        return -1;
    }
    return 0;
}

static const char *num(char **scratch, int64_t v)
{
    if (v < 0)
        return "";
    char *s = *scratch;
    int n = sprintf(s, "%lld", (long long)v);
    *scratch += n + 1;
    return s;
}

void rd_coupon_fields(const struct rd_coupon *c, const char *names[RD_COUPON_NFIELDS],
                      const char *values[RD_COUPON_NFIELDS], char *scratch)
{
    int i = 0;
#define F(n, v)                                                                                    \
    do {                                                                                           \
        names[i] = (n);                                                                            \
        values[i] = (v);                                                                           \
        i++;                                                                                       \
    } while (0)
    char *sp = scratch;
    F("code", c->code);
    F("kind", c->kind == RD_KIND_VOUCHER ? "voucher" : "discount");
    F("dtype", rd_dtype_name(c->discount.type));
    F("dvalue", num(&sp, c->discount.value));
    F("dmax", num(&sp, c->discount.max_amount));
    F("min_order", num(&sp, c->discount.min_order));
    F("currency", c->currency);
    F("starts_at", num(&sp, c->starts_at));
    F("expires_at", num(&sp, c->expires_at));
    char *off = sp;
    sp += sprintf(sp, "%d", c->utc_offset_min) + 1;
    F("utc_off", off);
    F("l_total", num(&sp, c->limit_total));
    F("l_user", num(&sp, c->limit_user));
    F("l_daily", num(&sp, c->limit_daily));
    F("l_weekly", num(&sp, c->limit_weekly));
    F("status", c->disabled ? "disabled" : "active");
    F("campaign", c->campaign);
    F("tags", c->tags_json ? c->tags_json : "[]");
    F("meta", c->meta_json ? c->meta_json : "{}");
    F("created_at", num(&sp, c->created_at));
    F("updated_at", num(&sp, c->updated_at));
#undef F
}

/* "" means none (-1); anything else must be a whole non-negative number. */
static int hnum(const char *v, size_t len, int64_t *out)
{
    if (len == 0) {
        *out = -1;
        return 0;
    }
    char buf[32];
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long n = strtoll(buf, &end, 10);
    if (*end || errno)
        return -1;
    *out = n;
    return 0;
}

int rd_coupon_from_hash(struct rd_coupon *c, const char *const *names, const size_t *name_lens,
                        const char *const *values, const size_t *value_lens, size_t n)
{
    int have_code = 0, have_type = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = names[i], *v = values[i];
        size_t kl = name_lens[i], vl = value_lens[i];
        int64_t x = 0;
#define IS(lit) (kl == sizeof(lit) - 1 && memcmp(k, lit, kl) == 0)
        if (IS("code")) {
            if (vl > RD_CODE_MAX)
                return -1;
            memcpy(c->code, v, vl);
            c->code[vl] = '\0';
            have_code = 1;
        } else if (IS("kind")) {
            c->kind = (vl == 7 && !memcmp(v, "voucher", 7)) ? RD_KIND_VOUCHER : RD_KIND_DISCOUNT;
        } else if (IS("dtype")) {
            char t[16];
            snprintf(t, sizeof(t), "%.*s", (int)vl, v);
            c->discount.type = rd_dtype_parse(t);
            have_type = 1;
        } else if (IS("currency")) {
            snprintf(c->currency, sizeof(c->currency), "%.*s", (int)vl, v);
        } else if (IS("status")) {
            c->disabled = vl == 8 && !memcmp(v, "disabled", 8);
        } else if (IS("campaign")) {
            snprintf(c->campaign, sizeof(c->campaign), "%.*s", (int)vl, v);
        } else if (IS("tags")) {
            set_owned(&c->tags_json, strndup(v, vl));
        } else if (IS("meta")) {
            set_owned(&c->meta_json, strndup(v, vl));
        } else if (IS("shards")) {
            if (vl >= sizeof(c->shards))
                return -1;
            memcpy(c->shards, v, vl);
            c->shards[vl] = '\0';
        } else if (IS("gen")) {
            if (vl >= sizeof(c->gen))
                return -1;
            memcpy(c->gen, v, vl);
            c->gen[vl] = '\0';
        } else if (IS("t")) {
            if (vl > RD_BATCH_ID_MAX)
                return -1;
            memcpy(c->batch, v, vl);
            c->batch[vl] = '\0';
        } else {
            int64_t *dst = IS("dvalue")       ? &c->discount.value
                           : IS("dmax")       ? &c->discount.max_amount
                           : IS("min_order")  ? &c->discount.min_order
                           : IS("starts_at")  ? &c->starts_at
                           : IS("expires_at") ? &c->expires_at
                           : IS("l_total")    ? &c->limit_total
                           : IS("l_user")     ? &c->limit_user
                           : IS("l_daily")    ? &c->limit_daily
                           : IS("l_weekly")   ? &c->limit_weekly
                           : IS("created_at") ? &c->created_at
                           : IS("updated_at") ? &c->updated_at
                           : IS("ver")        ? &c->ver
                           : IS("used")       ? &c->used
                           : IS("bal")        ? &c->balance
                           : IS("loaded")     ? &c->loaded
                           : IS("spent")      ? &c->spent
                           : IS("refunded")   ? &c->refunded
                           : IS("shares")     ? &c->shares
                           : IS("shared_at")  ? &c->shared_at
                                              : NULL;
            if (IS("utc_off")) {
                char t[16];
                snprintf(t, sizeof(t), "%.*s", (int)vl, v);
                c->utc_offset_min = atoi(t);
            } else if (dst && hnum(v, vl, &x) == 0) {
                *dst = x;
            } else if (dst) {
                return -1;
            }
        }
#undef IS
    }
    if (!c->tags_json)
        c->tags_json = strdup("[]");
    if (!c->meta_json)
        c->meta_json = strdup("{}");
    if (c->used < 0)
        c->used = 0;
    return have_code && have_type ? 0 : -1;
}

const char *rd_coupon_status(const struct rd_coupon *c, int64_t now_ms)
{
    if (c->disabled)
        return "disabled";
    if (c->expires_at >= 0 && now_ms >= c->expires_at)
        return "expired";
    if (c->starts_at >= 0 && now_ms < c->starts_at)
        return "scheduled";
    if (c->limit_total >= 0 && c->used >= c->limit_total)
        return "exhausted";
    if (c->kind == RD_KIND_VOUCHER && c->balance <= 0)
        return "exhausted";
    return "active";
}

static json_t *opt_int(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

static json_t *opt_time(int64_t v)
{
    char buf[RD_TIME_BUFSZ];
    return v < 0 ? json_null() : json_string(rd_time_format(v, buf));
}

static json_t *opt_str(const char *s)
{
    return *s ? json_string(s) : json_null();
}

json_t *rd_coupon_to_json(const struct rd_coupon *c, int64_t now_ms)
{
    json_t *tags = json_loads(c->tags_json ? c->tags_json : "[]", 0, NULL);
    json_t *meta = json_loads(c->meta_json ? c->meta_json : "{}", 0, NULL);
    int64_t remaining = c->limit_total < 0          ? -1
                        : c->used >= c->limit_total ? 0
                                                    : c->limit_total - c->used;
    char buf[RD_TIME_BUFSZ];
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:{s:s, s:I, s:o, s:o}, s:o, s:o, s:o, s:i, s:{s:o, s:o, s:o, s:o}, "
        "s:o, s:o, s:o, s:{s:I}, s:{s:o}, s:s, s:s}",
        "code", c->code, "kind", c->kind == RD_KIND_VOUCHER ? "voucher" : "discount", "status",
        rd_coupon_status(c, now_ms), "discount", "type", rd_dtype_name(c->discount.type), "value",
        (json_int_t)c->discount.value, "max_amount", opt_int(c->discount.max_amount), "min_order",
        opt_int(c->discount.min_order), "currency", opt_str(c->currency), "starts_at",
        opt_time(c->starts_at), "expires_at", opt_time(c->expires_at), "utc_offset_minutes",
        c->utc_offset_min, "limits", "total", opt_int(c->limit_total), "per_user",
        opt_int(c->limit_user), "per_user_daily", opt_int(c->limit_daily), "per_user_weekly",
        opt_int(c->limit_weekly), "campaign", opt_str(c->campaign), "tags",
        tags ? tags : json_array(), "metadata", meta ? meta : json_object(), "used", "total",
        (json_int_t)c->used, "remaining", "total", opt_int(remaining), "created_at",
        rd_time_format(c->created_at, buf), "updated_at", "");
    if (!o)
        abort();
    json_object_set_new(o, "updated_at", json_string(rd_time_format(c->updated_at, buf)));
    json_object_set_new(o, "shares", json_integer(c->shares > 0 ? c->shares : 0));
    json_object_set_new(o, "shared_at", opt_time(c->shared_at));
    json_object_set_new(o, "batch", c->batch[0] ? json_string(c->batch) : json_null());
    if (c->shards[0]) {
        int n = 1;
        for (const char *p = c->shards; *p; p++)
            n += *p == ',';
        json_object_set_new(o, "shards", json_pack("{s:i}", "count", n));
    }
    if (c->kind == RD_KIND_VOUCHER) {
        json_object_set_new(o, "discount", json_null());
        json_object_set_new(o, "balance", json_integer(c->balance));
        json_object_set_new(o, "loaded", json_integer(c->loaded));
        json_object_set_new(o, "spent", json_integer(c->spent));
        json_object_set_new(o, "refunded", json_integer(c->refunded));
        /* what the issuer still owes: the balance, unless the voucher can no longer be
         * spent (a disabled one can be re-enabled, so it still counts) */
        json_object_set_new(
            o, "outstanding",
            json_integer(strcmp(rd_coupon_status(c, now_ms), "expired") == 0 ? 0 : c->balance));
    }
    return o;
}
