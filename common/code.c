/* SPDX-License-Identifier: MIT
 *
 * Code normalisation and generation.
 */
#include <math.h>
#include <string.h>

#include "rd/code.h"

int rd_code_normalize(const char *in, size_t len, char *out)
{
    if (len < RD_CODE_MIN || len > RD_CODE_MAX)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return -1;
        out[i] = ch;
    }
    if (out[0] == '-' || out[len - 1] == '-')
        return -1;
    out[len] = '\0';
    return 0;
}

int rd_code_generate(char *out, size_t len, int (*rnd)(void *buf, size_t n, void *arg), void *arg)
{
    static const char alphabet[] = RD_CODE_ALPHABET;
    const unsigned n = sizeof(alphabet) - 1;
    /* Rejection sampling: bytes at or above the largest multiple of n would favour the first
     * symbols, so they are drawn again. */
    const unsigned limit = 256 - 256 % n;
    uint8_t pool[64];
    size_t have = 0, used = 0;

    for (size_t i = 0; i < len;) {
        if (used == have) {
            if (rnd(pool, sizeof(pool), arg) < 0)
                return -1;
            have = sizeof(pool);
            used = 0;
        }
        uint8_t b = pool[used++];
        if (b >= limit)
            continue;
        out[i++] = alphabet[b % n];
    }
    out[len] = '\0';
    return 0;
}

double rd_code_entropy_bits(size_t len)
{
    return (double)len * log2((double)(sizeof(RD_CODE_ALPHABET) - 1));
}
