/* SPDX-License-Identifier: MIT
 *
 * SHA-256 (FIPS 180-4), for hashing API keys before they are stored or compared.
 */
#ifndef RD_SHA256_H
#define RD_SHA256_H

#include <stddef.h>
#include <stdint.h>

void rd_sha256(const void *data, size_t len, uint8_t out[32]);
/** Lower-case hex digest; out holds 65 bytes. */
void rd_sha256_hex(const void *data, size_t len, char out[65]);

#endif
