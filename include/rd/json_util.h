/* SPDX-License-Identifier: MIT
 *
 * Strict request-body helpers on top of jansson. Every failure fills a struct rd_verr naming
 * the offending field, which becomes details.field of a 400 invalid_request. All json_t
 * arguments are borrowed; returned strings are borrowed from the document and live as long
 * as it does.
 */
#ifndef RD_JSON_UTIL_H
#define RD_JSON_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rd_verr {
    char field[96];
    char msg[192];
};

void rd_verr_set(struct rd_verr *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Parses a request body: must be one JSON object, valid UTF-8, no duplicate keys, no NUL.
 * Returns a new reference, or NULL with e filled (field "body").
 */
json_t *rd_json_parse_object(const char *buf, size_t len, struct rd_verr *e);

/** Fails on the first key of obj not in the NULL-terminated list allowed. */
int rd_json_only_keys(const json_t *obj, const char *const *allowed, const char *prefix,
                      struct rd_verr *e);

enum rd_jopt { RD_J_OPTIONAL = 0, RD_J_REQUIRED = 1, RD_J_NULLABLE = 2 };

/*
 * Typed getters. They return 1 if the key was present with a value, 0 if it was absent (or
 * null where RD_J_NULLABLE allows it; *is_null then says which), -1 on error. Integers must
 * be JSON integers (1.0 is refused) within [min, max]; strings must be within [minlen,
 * maxlen] bytes with no control characters.
 */
int rd_json_int(const json_t *obj, const char *key, int flags, int64_t min, int64_t max,
                int64_t *out, bool *is_null, struct rd_verr *e);
int rd_json_str(const json_t *obj, const char *key, int flags, size_t minlen, size_t maxlen,
                const char **out, bool *is_null, struct rd_verr *e);

/** Checks a string for control characters (bytes < 0x20 and 0x7f). */
bool rd_str_has_ctl(const char *s, size_t len);

/**
 * Validates a metadata object: at most 32 keys of 1..64 bytes, string values up to 512 bytes.
 * field names it in errors.
 */
int rd_json_check_metadata(const json_t *v, const char *field, struct rd_verr *e);

/** Appends s to a growing buffer as a JSON string literal (quoted, escaped). */
struct rd_sbuf {
    char *buf;
    size_t len, cap;
};
void rd_sbuf_init(struct rd_sbuf *b);
void rd_sbuf_free(struct rd_sbuf *b);
void rd_sbuf_add(struct rd_sbuf *b, const char *s, size_t n);
void rd_sbuf_addstr(struct rd_sbuf *b, const char *s);
void rd_sbuf_addf(struct rd_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rd_sbuf_add_jstr(struct rd_sbuf *b, const char *s, size_t n);
/** Appends v in decimal (the hot paths' integers, without printf). */
void rd_sbuf_add_i64(struct rd_sbuf *b, int64_t v);
/** Writes v in decimal into out (at least 21 bytes, not terminated); returns the length. */
size_t rd_fmt_i64(char *out, int64_t v);

#endif
