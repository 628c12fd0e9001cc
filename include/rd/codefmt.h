/* SPDX-License-Identifier: MIT
 *
 * Code formats for batches (POST /v1/batches): a literal prefix, then either a length of
 * random symbols or a pattern in which every '#' is a random symbol and anything else is
 * literal, drawn from an alphabet (default RD_CODE_ALPHABET, no look-alikes), and an optional
 * check symbol over the random symbols (Luhn mod N, weights 1 and 2 for an odd N), which
 * catches every single mistyped symbol and swaps of two neighbours (all of them with an odd
 * alphabet such as the default, most with an even one). Pure functions; the caller supplies
 * the random bytes (as for rd_code_generate).
 */
#ifndef RD_CODEFMT_H
#define RD_CODEFMT_H

#include <jansson.h>
#include <stdint.h>

#include "rd/code.h"
#include "rd/json_util.h"

#define RD_CODEFMT_ALPHA_MAX 36

struct rd_codefmt {
    char prefix[RD_CODE_MAX + 1];
    char pattern[RD_CODE_MAX + 1]; /* '#' = random symbol; a length becomes '#' * length */
    char alphabet[RD_CODEFMT_ALPHA_MAX + 1];
    unsigned nalpha, nrandom;
    int check;  /* one check symbol at the end */
    size_t len; /* of every code */
};

/**
 * Reads a "format" object (NULL: all defaults): prefix, length | pattern, alphabet, check.
 * Every code must be a valid code (rd_code_normalize). Returns 0, or -1 with e naming the
 * field ("format.pattern", ...).
 */
int rd_codefmt_parse(struct rd_codefmt *f, const json_t *obj, struct rd_verr *e);

/** How many distinct codes the format can make; UINT64_MAX when it is that large or more. */
uint64_t rd_codefmt_space(const struct rd_codefmt *f);

/** The format as a JSON object that rd_codefmt_parse() reads back. New reference. */
json_t *rd_codefmt_to_json(const struct rd_codefmt *f);

/** One code into out (f->len + 1 bytes). Returns 0, or -1 if rnd failed. */
int rd_codefmt_generate(const struct rd_codefmt *f, char *out,
                        int (*rnd)(void *buf, size_t n, void *arg), void *arg);

/** 1 if code has the format's shape (and a correct check symbol), else 0. */
int rd_codefmt_matches(const struct rd_codefmt *f, const char *code);

#endif
