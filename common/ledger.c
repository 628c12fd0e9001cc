/* SPDX-License-Identifier: MIT
 *
 * Rendering outbox entries as COPY rows.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd/discount.h"
#include "rd/keys.h"
#include "rd/ledger.h"
#include "rd/request.h"
#include "rd/rdtime.h"

void rd_copy_field(struct rd_sbuf *out, const char *s, size_t len)
{
    if (!s) {
        rd_sbuf_add(out, "\\N", 2);
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        const char *esc = NULL;
        switch (s[i]) {
        case '\\':
            esc = "\\\\";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        default:
            continue;
        }
        rd_sbuf_add(out, s + start, i - start);
        rd_sbuf_add(out, esc, 2);
        start = i + 1;
    }
    rd_sbuf_add(out, s + start, len - start);
}

void rd_pg_text_array(struct rd_sbuf *out, const char *const *v, int n, const char *suffix)
{
    rd_sbuf_add(out, "{", 1);
    for (int i = 0; i < n; i++) {
        rd_sbuf_add(out, i ? ",\"" : "\"", i ? 2 : 1);
        for (const char *p = v[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                rd_sbuf_add(out, "\\", 1);
            rd_sbuf_add(out, p, 1);
        }
        if (suffix)
            rd_sbuf_addstr(out, suffix);
        rd_sbuf_add(out, "\"", 1);
    }
    rd_sbuf_add(out, "}", 1);
}

const char *const rd_entry_fields[RD_ENTRY_NFIELDS] = {
    "tag",    "ts",       "kind",  "outcome", "reason", "code",      "campaign", "user", "order",
    "amount", "currency", "dtype", "dvalue",  "dmax",   "min_order", "day",      "week", "left",
    "paid",   "balance",  "ip",    "key",     "req",    "idem",      "cx"};

size_t rd_unpack_values(const char *v, size_t vl, const char **parts, size_t *lens, size_t max)
{
    size_t n = 0, i = 0;
    for (;;) {
        const char *end = memchr(v + i, '\0', vl - i);
        size_t len = end ? (size_t)(end - (v + i)) : vl - i;
        if (n == max)
            return max + 1;
        parts[n] = v + i;
        lens[n] = len;
        n++;
        if (!end)
            return n;
        i += len + 1;
    }
}

size_t rd_entry_unpack(const char *v, size_t vl, const char **names, size_t *name_lens,
                       const char **values, size_t *value_lens, size_t max)
{
    size_t cap = max < RD_ENTRY_NFIELDS ? max : RD_ENTRY_NFIELDS;
    size_t n = rd_unpack_values(v, vl, values, value_lens, cap);
    if (n > cap)
        n = cap; /* parts past the fields this version knows are ignored */
    for (size_t i = 0; i < n; i++) {
        names[i] = rd_entry_fields[i];
        name_lens[i] = strlen(rd_entry_fields[i]);
    }
    return n;
}

struct entry {
    const char *const *names, *const *values;
    const size_t *nl, *vl;
    size_t n;
};

/* The value of field name, or NULL if absent. An empty value is returned as "". */
static const char *get(const struct entry *e, const char *name, size_t *len)
{
    size_t want = strlen(name);
    for (size_t i = 0; i < e->n; i++)
        if (e->nl[i] == want && memcmp(e->names[i], name, want) == 0) {
            *len = e->vl[i];
            return e->values[i];
        }
    *len = 0;
    return NULL;
}

/* A text column: absent or empty -> NULL. */
static void text_col(struct rd_sbuf *out, const struct entry *e, const char *name)
{
    size_t len;
    const char *v = get(e, name, &len);
    rd_copy_field(out, v && len ? v : NULL, len);
    rd_sbuf_add(out, "\t", 1);
}

static int parse_i64(const char *v, size_t len, long long *out)
{
    char buf[24];
    if (!v || len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    char *end;
    long long x = strtoll(buf, &end, 10);
    if (*end)
        return -1;
    *out = x;
    return 0;
}

static void num_col(struct rd_sbuf *out, int ok, long long v)
{
    if (ok) {
        rd_sbuf_add_i64(out, v);
        rd_sbuf_add(out, "\t", 1);
    } else {
        rd_sbuf_add(out, "\\N\t", 3);
    }
}

/* A bigint column from field name: NULL when absent or not a number. */
static void int_col(struct rd_sbuf *out, const struct entry *e, const char *name)
{
    size_t len;
    long long v = 0;
    const char *s = get(e, name, &len);
    int ok = parse_i64(s, len, &v) == 0;
    num_col(out, ok, v);
}

/*
 * A use's entry carries no id: its id names the entry ("rdm_<bucket>_<stream id>_<tag>",
 * see rd/keys.h), made from stream_id ("{NNNN}:<ms>-<seq>") and the entry's tag.
 */
static int use_id_of(const struct entry *e, const char *stream_id, char out[RD_TXN_ID_MAX + 1])
{
    size_t tl;
    const char *tag = get(e, "tag", &tl);
    unsigned bucket;
    int n = 0;
    if (!tag || sscanf(stream_id, "{%4u}:%n", &bucket, &n) != 1 || n != 7)
        return -1;
    const char *sid = stream_id + n;
    return rd_use_id_format(out, bucket, sid, strlen(sid), tag, tl) < 0 ? -1 : 0;
}

/* The remaining counts an accepted use answered, "total,user,daily,weekly" ("" for no
 * limit), as the answer's JSON object: a replay after shipping answers them again. */
static void remaining_json(struct rd_sbuf *d, const char *left, size_t len)
{
    static const char *const names[] = {"total", "user", "user_daily", "user_weekly"};
    rd_sbuf_addstr(d, "{\"remaining\":{");
    size_t i = 0;
    for (int k = 0; k < 4; k++) {
        size_t j = i;
        while (j < len && left[j] != ',')
            j++;
        long long v;
        if (k)
            rd_sbuf_add(d, ",", 1);
        rd_sbuf_add(d, "\"", 1);
        rd_sbuf_addstr(d, names[k]);
        rd_sbuf_add(d, "\":", 2);
        if (parse_i64(left + i, j - i, &v) == 0 && v >= 0)
            rd_sbuf_add_i64(d, v);
        else
            rd_sbuf_addstr(d, "null");
        i = j < len ? j + 1 : j;
    }
    rd_sbuf_addstr(d, "}}");
}

/* An inet column and its tab: NULL unless s is an IPv4 or IPv6 address. */
static void inet_col(struct rd_sbuf *out, const char *s, size_t len)
{
    char ip[64];
    unsigned char addr[16];
    int ok = s && len > 0 && len < sizeof(ip);
    if (ok) {
        memcpy(ip, s, len);
        ip[len] = '\0';
        ok = inet_pton(AF_INET, ip, addr) == 1 || inet_pton(AF_INET6, ip, addr) == 1;
    }
    rd_copy_field(out, ok ? ip : NULL, ok ? len : 0);
    rd_sbuf_add(out, "\t", 1);
}

int rd_ledger_row(struct rd_sbuf *out, const char *stream_id, const char *const *names,
                  const size_t *name_lens, const char *const *values, const size_t *value_lens,
                  size_t n)
{
    struct entry e = {names, values, name_lens, value_lens, n};
    size_t idl, tsl, kl, ol, len;
    const char *id = get(&e, "id", &idl), *ts = get(&e, "ts", &tsl), *kind = get(&e, "kind", &kl),
               *outcome = get(&e, "outcome", &ol);
    char use_id[RD_TXN_ID_MAX + 1];
    if (!id && use_id_of(&e, stream_id, use_id) == 0) {
        id = use_id;
        idl = strlen(use_id);
    }
    long long ms;
    /* years 1970..9999: anything else would fail the whole COPY */
    if (!id || idl == 0 || idl > RD_TXN_ID_MAX || parse_i64(ts, tsl, &ms) < 0 || ms < 0 ||
        ms > 253402300799999LL || !kind || kl == 0 || !outcome || ol == 0)
        return -1;

    char tsbuf[RD_TIME_BUFSZ];
    rd_time_format(ms, tsbuf);
    rd_copy_field(out, id, idl);
    rd_sbuf_add(out, "\t", 1);
    rd_sbuf_addstr(out, tsbuf);
    rd_sbuf_add(out, "\t", 1);
    text_col(out, &e, "kind");
    text_col(out, &e, "outcome");
    text_col(out, &e, "reason");
    text_col(out, &e, "code");
    text_col(out, &e, "campaign");
    text_col(out, &e, "user");
    text_col(out, &e, "order");
    text_col(out, &e, "ref");

    long long amount = 0, v = 0;
    const char *s = get(&e, "amount", &len);
    int have_amount = parse_i64(s, len, &amount) == 0;
    num_col(out, have_amount, amount);

    /* The discount of an accepted redemption: the same function that answered the client. */
    int have_discount = 0;
    long long discount = 0;
    if (have_amount && kl == 6 && memcmp(kind, "redeem", 6) == 0 && ol == 8 &&
        memcmp(outcome, "accepted", 8) == 0) {
        char t[16];
        s = get(&e, "dtype", &len);
        snprintf(t, sizeof(t), "%.*s", (int)(s ? len : 0), s ? s : "");
        struct rd_discount d = {rd_dtype_parse(t), 0, -1, -1};
        s = get(&e, "dvalue", &len);
        if (parse_i64(s, len, &v) == 0)
            d.value = v;
        s = get(&e, "dmax", &len);
        if (parse_i64(s, len, &v) == 0)
            d.max_amount = v;
        s = get(&e, "min_order", &len);
        if (parse_i64(s, len, &v) == 0)
            d.min_order = v;
        int64_t out_d;
        if (rd_discount_compute(&d, amount, &out_d) == RD_OK) {
            have_discount = 1;
            discount = out_d;
        }
    }
    num_col(out, have_discount, discount);
    int_col(out, &e, "paid");
    int_col(out, &e, "balance");
    text_col(out, &e, "currency");

    /* client_ip (the customer's address, else the peer's) is inet: anything that does not
     * parse is stored as NULL */
    s = get(&e, "ip", &len);
    inet_col(out, s, len);
    text_col(out, &e, "key");
    text_col(out, &e, "req");
    text_col(out, &e, "idem");
    int_col(out, &e, "day");
    int_col(out, &e, "week");
    rd_copy_field(out, stream_id, strlen(stream_id));
    rd_sbuf_add(out, "\t", 1);

    /* details: admin changes carry before/after (JSON text written by coupon_write.lua), an
     * accepted use what it had left, a refund that completes its payment "use_back" (the
     * payment's use was given back: the usage summaries count it), a guessing budget's
     * refusals the budget and the minute's count so far */
    size_t bl, al, ll, kl2;
    const char *before = get(&e, "before", &bl), *after = get(&e, "after", &al),
               *left = get(&e, "left", &ll), *back = get(&e, "back", &kl2);
    struct rd_sbuf d;
    rd_sbuf_init(&d);
    size_t gl, nl, ml;
    const char *budget = get(&e, "budget", &gl), *count = get(&e, "count", &nl),
               *minute = get(&e, "minute", &ml);
    long long cnt = 0, min_ms = 0;
    if (left && ll) {
        remaining_json(&d, left, ll);
    } else if (budget && gl && parse_i64(count, count ? nl : 0, &cnt) == 0 &&
               parse_i64(minute, minute ? ml : 0, &min_ms) == 0) {
        /* a guessing budget's refusals (guess.lua): the minute's count so far */
        char mb[RD_TIME_BUFSZ];
        rd_sbuf_addstr(&d, "{\"budget\":");
        rd_sbuf_add_jstr(&d, budget, gl);
        rd_sbuf_addf(&d, ",\"count\":%lld,\"minute\":\"%s\"}", cnt, rd_time_format(min_ms, mb));
    } else if (back && kl2 == 1 && back[0] == '1') {
        rd_sbuf_addstr(&d, "{\"use_back\":true}");
    } else if (before || after) {
        rd_sbuf_addf(&d, "{\"before\":%.*s,\"after\":%.*s}", (int)(before && bl ? bl : 4),
                     before && bl ? before : "null", (int)(after && al ? al : 4),
                     after && al ? after : "null");
    }
    rd_copy_field(out, d.len ? d.buf : NULL, d.len);
    rd_sbuf_free(&d);
    rd_sbuf_add(out, "\t", 1);

    /* the customer context "cx" (rd_cx_format): peer, session, device, email hash; an entry
     * without it was made with no customer details, so its address is the peer's */
    size_t cl;
    const char *cx = get(&e, "cx", &cl), *part[4] = {NULL, NULL, NULL, NULL};
    size_t plen[4] = {0, 0, 0, 0};
    for (int k = 0; cx && cl && k < 4; k++) {
        const char *sep = memchr(cx, RD_CX_SEP, cl);
        size_t pl = sep ? (size_t)(sep - cx) : cl;
        part[k] = cx;
        plen[k] = pl;
        if (!sep)
            break;
        cl -= pl + 1;
        cx = sep + 1;
    }
    if (part[0])
        inet_col(out, part[0], plen[0]);
    else
        inet_col(out, s, len);
    for (int k = 1; k < 4; k++) {
        rd_copy_field(out, part[k] && plen[k] ? part[k] : NULL, plen[k]);
        rd_sbuf_add(out, k < 3 ? "\t" : "\n", 1);
    }
    return 0;
}
