/* SPDX-License-Identifier: MIT
 *
 * Coupon codes: normalisation of codes given by clients (case-insensitive, stored upper case
 * from A-Z 0-9 '-') and generation from CSPRNG bytes with an alphabet that has no look-alike
 * characters (no 0/O, 1/I/L). Pure functions; the caller supplies the random bytes.
 */
#ifndef RD_CODE_H
#define RD_CODE_H

#include <stddef.h>
#include <stdint.h>

#define RD_CODE_MIN      3
#define RD_CODE_MAX      64
#define RD_CODE_ALPHABET "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
/* Generated codes: 13 symbols of 31 give 64.4 bits; each symbol draws fresh bytes. */
#define RD_CODE_GEN_LEN 13

/**
 * Upper-cases and checks a client code: RD_CODE_MIN..RD_CODE_MAX characters of A-Z, 0-9 and
 * '-', not starting or ending with '-'. out must hold RD_CODE_MAX + 1 bytes.
 * Returns 0, or -1 if the code is not acceptable (out is then unspecified).
 */
int rd_code_normalize(const char *in, size_t len, char *out);

/**
 * Builds a code of len symbols from RD_CODE_ALPHABET. rnd supplies random bytes through
 * rnd(buf, n, arg) (getrandom in the daemon, a fixed stream in tests); bytes that would bias
 * the draw are rejected and redrawn. out must hold len + 1 bytes. Returns 0 or -1 if rnd failed.
 */
int rd_code_generate(char *out, size_t len, int (*rnd)(void *buf, size_t n, void *arg), void *arg);

/** Bits of entropy of a generated code of len symbols. */
double rd_code_entropy_bits(size_t len);

#endif
