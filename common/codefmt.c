/* SPDX-License-Identifier: MIT
 *
 * Batch code formats: parsing, size of the code space, generation, check symbols.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd/codefmt.h"

#define DEFAULT_LENGTH 10

static int upper(int ch)
{
    return (ch >= 'a' && ch <= 'z') ? ch - 'a' + 'A' : ch;
}

static int is_sym(int ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* The check symbol makes a weighted sum of the symbols' positions in the alphabet a multiple
 * of N, every second symbol from the right weighing 2. For an even N that is Luhn mod N (the
 * doubled value's base-N digits summed, which keeps doubling one-to-one); for an odd N,
 * doubling mod N is one-to-one already and the plain weighted sum also catches every swap of
 * two different neighbours (2a + b = 2b + a only if a = b). */
static unsigned luhn_sum(const struct rd_codefmt *f, const char *sym, size_t n, unsigned factor)
{
    unsigned sum = 0, N = f->nalpha;
    for (size_t i = n; i-- > 0;) {
        unsigned cp = (unsigned)(strchr(f->alphabet, sym[i]) - f->alphabet);
        unsigned add = factor * cp;
        factor = factor == 2 ? 1 : 2;
        sum += N % 2 == 0 ? add / N + add % N : add % N;
    }
    return sum % N;
}

static char check_symbol(const struct rd_codefmt *f, const char *sym, size_t n)
{
    unsigned rem = luhn_sum(f, sym, n, 2);
    return f->alphabet[(f->nalpha - rem) % f->nalpha];
}

static int parse(struct rd_codefmt *f, const json_t *obj, struct rd_verr *e)
{
    static const char *const keys[] = {"prefix", "length", "pattern", "alphabet", "check", NULL};
    memset(f, 0, sizeof(*f));
    snprintf(f->alphabet, sizeof(f->alphabet), "%s", RD_CODE_ALPHABET);
    int64_t length = -1;
    const char *s;
    if (obj && !json_is_object(obj)) {
        rd_verr_set(e, "format", "must be an object");
        return -1;
    }
    if (obj) {
        if (rd_json_only_keys(obj, keys, "format.", e) < 0)
            return -1;
        int rc = rd_json_str(obj, "prefix", RD_J_OPTIONAL, 0, RD_CODE_MAX, &s, NULL, e);
        if (rc < 0)
            return -1;
        for (size_t i = 0; rc == 1 && s[i]; i++) {
            int ch = upper((unsigned char)s[i]);
            if (!is_sym(ch) && ch != '-') {
                rd_verr_set(e, "format.prefix", "must be letters, digits and '-'");
                return -1;
            }
            f->prefix[i] = (char)ch;
        }
        rc = rd_json_str(obj, "alphabet", RD_J_OPTIONAL, 2, RD_CODEFMT_ALPHA_MAX, &s, NULL, e);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            memset(f->alphabet, 0, sizeof(f->alphabet));
            for (size_t i = 0; s[i]; i++) {
                int ch = upper((unsigned char)s[i]);
                if (!is_sym(ch) || strchr(f->alphabet, ch)) {
                    rd_verr_set(e, "format.alphabet",
                                "must be 2 to 36 different letters and digits (case does not "
                                "count)");
                    return -1;
                }
                f->alphabet[i] = (char)ch;
            }
        }
        if (rd_json_int(obj, "length", RD_J_OPTIONAL, 1, RD_CODE_MAX, &length, NULL, e) < 0)
            return -1;
        rc = rd_json_str(obj, "pattern", RD_J_OPTIONAL, 1, RD_CODE_MAX, &s, NULL, e);
        if (rc < 0)
            return -1;
        if (rc == 1 && length >= 0) {
            rd_verr_set(e, "format.pattern", "give either length or pattern, not both");
            return -1;
        }
        for (size_t i = 0; rc == 1 && s[i]; i++) {
            int ch = upper((unsigned char)s[i]);
            if (!is_sym(ch) && ch != '-' && ch != '#') {
                rd_verr_set(e, "format.pattern",
                            "must be '#' (a random symbol), letters, digits and '-'");
                return -1;
            }
            f->pattern[i] = (char)ch;
        }
        if (rc == 1 && !strchr(f->pattern, '#')) {
            rd_verr_set(e, "format.pattern", "needs at least one '#'");
            return -1;
        }
        json_t *c = json_object_get(obj, "check");
        if (c && !json_is_boolean(c)) {
            rd_verr_set(e, "format.check", "must be true or false");
            return -1;
        }
        f->check = c && json_is_true(c);
    }
    f->nalpha = (unsigned)strlen(f->alphabet);
    if (!f->pattern[0]) {
        if (length < 0)
            length = DEFAULT_LENGTH;
        memset(f->pattern, '#', (size_t)length);
    }
    for (const char *p = f->pattern; *p; p++)
        f->nrandom += *p == '#';
    f->len = strlen(f->prefix) + strlen(f->pattern) + (f->check ? 1 : 0);
    /* every code must be one a client can send back: the same rules as any code */
    char first = f->prefix[0] ? f->prefix[0] : f->pattern[0];
    char last = f->check ? 'A' : f->pattern[strlen(f->pattern) - 1];
    if (f->len < RD_CODE_MIN || f->len > RD_CODE_MAX || first == '-' || last == '-') {
        rd_verr_set(e, "format",
                    "codes must be %d to %d characters and must not start or end with '-' "
                    "(prefix, pattern or length and check symbol together make %zu)",
                    RD_CODE_MIN, RD_CODE_MAX, f->len);
        return -1;
    }
    return 0;
}

int rd_codefmt_parse(struct rd_codefmt *f, const json_t *obj, struct rd_verr *e)
{
    if (parse(f, obj, e) == 0)
        return 0;
    if (strncmp(e->field, "format", 6) != 0) { /* the getters name the key alone */
        char field[sizeof(e->field)];
        snprintf(field, sizeof(field), "format.%.80s", e->field);
        memcpy(e->field, field, sizeof(field));
    }
    return -1;
}

uint64_t rd_codefmt_space(const struct rd_codefmt *f)
{
    uint64_t space = 1;
    for (unsigned i = 0; i < f->nrandom; i++) {
        if (space > UINT64_MAX / f->nalpha)
            return UINT64_MAX;
        space *= f->nalpha;
    }
    return space;
}

json_t *rd_codefmt_to_json(const struct rd_codefmt *f)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "prefix", f->prefix, "pattern", f->pattern,
                          "alphabet", f->alphabet, "check", f->check);
    if (!o)
        abort();
    return o;
}

int rd_codefmt_generate(const struct rd_codefmt *f, char *out,
                        int (*rnd)(void *buf, size_t n, void *arg), void *arg)
{
    /* Rejection sampling: bytes at or above the largest multiple of n would favour the first
     * symbols, so they are drawn again. */
    const unsigned limit = 256 - 256 % f->nalpha;
    uint8_t pool[64];
    size_t have = 0, used = 0, o = 0, nsym = 0;
    char sym[RD_CODE_MAX];
    size_t plen = strlen(f->prefix);
    memcpy(out, f->prefix, plen);
    o = plen;
    for (const char *p = f->pattern; *p; p++) {
        if (*p != '#') {
            out[o++] = *p;
            continue;
        }
        for (;;) {
            if (used == have) {
                /* no more than the symbols still to draw: randomness is not thrown away */
                have = f->nrandom - nsym < sizeof(pool) ? f->nrandom - nsym : sizeof(pool);
                if (rnd(pool, have, arg) < 0)
                    return -1;
                used = 0;
            }
            uint8_t b = pool[used++];
            if (b < limit) {
                sym[nsym++] = out[o++] = f->alphabet[b % f->nalpha];
                break;
            }
        }
    }
    if (f->check)
        out[o++] = check_symbol(f, sym, nsym);
    out[o] = '\0';
    return 0;
}

int rd_codefmt_matches(const struct rd_codefmt *f, const char *code)
{
    size_t plen = strlen(f->prefix), nsym = 0;
    char sym[RD_CODE_MAX + 1];
    if (strlen(code) != f->len || memcmp(code, f->prefix, plen) != 0)
        return 0;
    const char *c = code + plen;
    for (const char *p = f->pattern; *p; p++, c++) {
        if (*p == '#') {
            if (!strchr(f->alphabet, *c) || *c == '\0')
                return 0;
            sym[nsym++] = *c;
        } else if (*c != *p) {
            return 0;
        }
    }
    if (!f->check)
        return 1;
    if (!strchr(f->alphabet, *c) || *c == '\0')
        return 0;
    sym[nsym++] = *c;
    return luhn_sum(f, sym, nsym, 1) == 0;
}
