/* SPDX-License-Identifier: MIT
 *
 * Strict JSON request helpers and a small growable string buffer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd/json_util.h"

void rd_verr_set(struct rd_verr *e, const char *field, const char *fmt, ...)
{
    va_list ap;
    snprintf(e->field, sizeof(e->field), "%s", field);
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}

/* Finds the path of the first number too large for an int64 ("a.b[2]"). */
static int find_huge(const json_t *v, char *path, size_t sz, int depth)
{
    if (depth > 32)
        return 0;
    if (json_is_real(v))
        return json_real_value(v) >= 9.2e18 || json_real_value(v) <= -9.2e18;
    size_t base = strlen(path);
    if (json_is_object(v)) {
        const char *key;
        json_t *c;
        json_object_foreach((json_t *)v, key, c)
        {
            snprintf(path + base, sz - base, "%s%.60s", base ? "." : "", key);
            if (find_huge(c, path, sz, depth + 1))
                return 1;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
        {
            snprintf(path + base, sz - base, "[%zu]", i);
            if (find_huge(c, path, sz, depth + 1))
                return 1;
        }
    }
    path[base] = '\0';
    return 0;
}

json_t *rd_json_parse_object(const char *buf, size_t len, struct rd_verr *e)
{
    json_error_t jerr;
    if (len == 0) {
        rd_verr_set(e, "body", "a JSON object is required");
        return NULL;
    }
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        /* jansson refuses integers beyond int64 for the whole document; parse again with
         * integers as reals only to name the field, so the client learns which one. */
        if (strstr(jerr.text, "too big")) {
            json_t *loose = json_loadb(buf, len, JSON_DECODE_INT_AS_REAL, NULL);
            char path[96] = "";
            if (loose && find_huge(loose, path, sizeof(path), 0)) {
                json_decref(loose);
                rd_verr_set(e, path, "is out of range");
                return NULL;
            }
            json_decref(loose);
        }
        rd_verr_set(e, "body", "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                    jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        rd_verr_set(e, "body", "must be a JSON object");
        return NULL;
    }
    return root;
}

int rd_json_only_keys(const json_t *obj, const char *const *allowed, const char *prefix,
                      struct rd_verr *e)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        const char *const *a = allowed;
        while (*a && strcmp(*a, key) != 0)
            a++;
        if (!*a) {
            char field[96];
            snprintf(field, sizeof(field), "%s%s", prefix, key);
            rd_verr_set(e, field, *key ? "unknown field" : "an empty name is not a field");
            return -1;
        }
    }
    return 0;
}

bool rd_str_has_ctl(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

static json_t *lookup(const json_t *obj, const char *key, int flags, bool *is_null,
                      struct rd_verr *e, int *rc)
{
    json_t *v = json_object_get(obj, key);
    if (is_null)
        *is_null = false;
    *rc = 0;
    if (!v) {
        if (flags & RD_J_REQUIRED) {
            rd_verr_set(e, key, "is required");
            *rc = -1;
        }
        return NULL;
    }
    if (json_is_null(v)) {
        if (flags & RD_J_NULLABLE) {
            if (is_null)
                *is_null = true;
            return NULL;
        }
        rd_verr_set(e, key, "must not be null");
        *rc = -1;
        return NULL;
    }
    return v;
}

int rd_json_int(const json_t *obj, const char *key, int flags, int64_t min, int64_t max,
                int64_t *out, bool *is_null, struct rd_verr *e)
{
    int rc;
    json_t *v = lookup(obj, key, flags, is_null, e, &rc);
    if (!v)
        return rc;
    if (!json_is_integer(v)) {
        rd_verr_set(e, key, "must be an integer from %lld to %lld", (long long)min, (long long)max);
        return -1;
    }
    json_int_t n = json_integer_value(v);
    /* jansson saturates integers beyond long long at parse time, so the bounds catch them. */
    if (n < min || n > max) {
        rd_verr_set(e, key, "must be an integer from %lld to %lld", (long long)min, (long long)max);
        return -1;
    }
    *out = n;
    return 1;
}

int rd_json_str(const json_t *obj, const char *key, int flags, size_t minlen, size_t maxlen,
                const char **out, bool *is_null, struct rd_verr *e)
{
    int rc;
    json_t *v = lookup(obj, key, flags, is_null, e, &rc);
    if (!v)
        return rc;
    if (!json_is_string(v)) {
        rd_verr_set(e, key, "must be a string");
        return -1;
    }
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len < minlen || len > maxlen) {
        rd_verr_set(e, key, "must be %zu to %zu bytes long", minlen, maxlen);
        return -1;
    }
    if (rd_str_has_ctl(s, len)) {
        rd_verr_set(e, key, "must not contain control characters");
        return -1;
    }
    *out = s;
    return 1;
}

int rd_json_check_metadata(const json_t *v, const char *field, struct rd_verr *e)
{
    if (!json_is_object(v)) {
        rd_verr_set(e, field, "must be an object of strings");
        return -1;
    }
    if (json_object_size(v) > 32) {
        rd_verr_set(e, field, "must have at most 32 keys");
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val)
    {
        char f[96];
        snprintf(f, sizeof(f), "%s.%.60s", field, key);
        size_t kl = strlen(key);
        if (kl == 0 || kl > 64 || rd_str_has_ctl(key, kl)) {
            rd_verr_set(e, field, "keys must be 1 to 64 bytes without control characters");
            return -1;
        }
        if (!json_is_string(val) || json_string_length(val) > 512) {
            rd_verr_set(e, f, "must be a string of at most 512 bytes");
            return -1;
        }
    }
    return 0;
}

void rd_sbuf_init(struct rd_sbuf *b)
{
    b->buf = NULL;
    b->len = b->cap = 0;
}

void rd_sbuf_free(struct rd_sbuf *b)
{
    free(b->buf);
    rd_sbuf_init(b);
}

static void reserve(struct rd_sbuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *nb = realloc(b->buf, cap);
    if (!nb)
        abort(); /* out of memory: nothing sensible is left to do */
    b->buf = nb;
    b->cap = cap;
}

void rd_sbuf_add(struct rd_sbuf *b, const char *s, size_t n)
{
    reserve(b, n);
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

size_t rd_fmt_i64(char *out, int64_t v)
{
    char tmp[20];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    return len;
}

void rd_sbuf_add_i64(struct rd_sbuf *b, int64_t v)
{
    char d[21];
    rd_sbuf_add(b, d, rd_fmt_i64(d, v));
}

void rd_sbuf_addstr(struct rd_sbuf *b, const char *s)
{
    rd_sbuf_add(b, s, strlen(s));
}

void rd_sbuf_addf(struct rd_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void rd_sbuf_add_jstr(struct rd_sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    reserve(b, n + 2);
    b->buf[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            rd_sbuf_add(b, esc, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            rd_sbuf_add(b, esc, 6);
        } else {
            rd_sbuf_add(b, (const char *)&ch, 1);
        }
    }
    rd_sbuf_add(b, "\"", 1);
}
