/* SPDX-License-Identifier: MIT
 *
 * Validation of the checkout-facing request bodies (validate and redeem) and of the headers
 * they carry. Strings in the parsed structs are borrowed from the json_t they came from.
 */
#ifndef RD_REQUEST_H
#define RD_REQUEST_H

#include <jansson.h>
#include <stdint.h>

#include "rd/code.h"
#include "rd/json_util.h"

#define RD_USER_ID_MAX  128
#define RD_ORDER_ID_MAX 128
#define RD_IDEM_KEY_MAX 255

/*
 * The customer behind a checkout, as the caller knows them ({"customer": {...}} of validate,
 * redeem, pay and reverse): NULL where not given. Context, not substance: a retry with other
 * customer details is the same request (not in the fingerprint).
 */
#define RD_CUSTOMER_FIELD_MAX 128
#define RD_CUSTOMER_IP_MAX    45
struct rd_customer {
    const char *ip; /* a valid IPv4 or IPv6 address */
    const char *session_id, *device_id, *email_hash;
};

struct rd_redeem_req {
    char code[RD_CODE_MAX + 1]; /* normalised */
    const char *user_id;
    int64_t order_amount;
    char currency[4];
    const char *order_id; /* NULL when absent */
    char *meta_json;      /* owned compact JSON, or NULL when absent */
    struct rd_customer customer;
};

/**
 * Parses the optional "customer" object of body into c (zeroed first): only ip, session_id,
 * device_id, email_hash, each a string of 1..RD_CUSTOMER_FIELD_MAX printable ASCII characters
 * (ip: an IPv4 or IPv6 address). Returns 0, or -1 with e naming the field.
 */
int rd_customer_parse(const json_t *body, struct rd_customer *c, struct rd_verr *e);

/*
 * The customer context as the scripts write it into an outbox entry (field "cx"): peer
 * address, session, device, email hash, separated by RD_CX_SEP ("" where none; the
 * validation above keeps the separator out of every part). Returns the length written into
 * out (RD_CX_MAX bytes), or -1 if it does not fit.
 */
#define RD_CX_SEP '\x1f'
#define RD_CX_MAX (48 + 3 * (RD_CUSTOMER_FIELD_MAX + 1) + 1)
int rd_cx_format(const char *peer, const struct rd_customer *c, char *out, size_t sz);

/** Parses a validate or redeem body. Returns 0, or -1 with e naming the field. */
int rd_redeem_req_parse(struct rd_redeem_req *r, const json_t *body, struct rd_verr *e);
void rd_redeem_req_free(struct rd_redeem_req *r);

/**
 * Parses a voucher pay body {"amount", "currency", "user_id", "order_id"?, "metadata"?} for
 * the voucher code (normalised, from the path) into r: the amount goes to order_amount, so
 * rd_redeem_req_fingerprint() covers it. Returns 0, or -1 with e naming the field.
 */
int rd_pay_req_parse(struct rd_redeem_req *r, const json_t *body, const char *code,
                     struct rd_verr *e);
/** Parses a recharge body {"amount", "currency"?} the same way (user_id is ""). */
int rd_recharge_req_parse(struct rd_redeem_req *r, const json_t *body, const char *code,
                          struct rd_verr *e);

/**
 * Fingerprint of what makes two redeem requests "the same": every field, normalised; 8 bytes
 * (a 64-bit hash, most significant byte first) into out. Its 16 hex digits were what
 * redeemd 0.1 stored.
 */
void rd_redeem_req_fingerprint(const struct rd_redeem_req *r, uint8_t out[8]);

#define RD_IDEM_FIELD_LEN  12
#define RD_IDEM_DIGEST_LEN 16
/**
 * The digest of an Idempotency-Key: the first 16 bytes of SHA-256 over code, API key id and
 * Idempotency-Key (NUL-separated). Its first 12 bytes name the key's record (12 bytes
 * whatever the key's length); the last 4 make the tag of the use's id (rd_use_tag_make), so
 * a replay rebuilds the same id without storing it.
 */
void rd_idem_digest(const char *code, const char *key_id, const char *idem,
                    uint8_t out[RD_IDEM_DIGEST_LEN]);

/** Checks a currency ("usd" accepted, stored "USD"): 3 ASCII letters. out holds 4 bytes. */
int rd_currency_normalize(const char *in, char out[4]);

/** Checks an Idempotency-Key: 1..255 printable ASCII characters without spaces. */
int rd_idem_key_check(const char *k);

/** Checks a client X-Request-Id worth echoing: 1..128 printable ASCII characters. */
int rd_request_id_check(const char *k);

/**
 * Whether address ip (IPv4 or IPv6 text) is in list, a comma-separated list of addresses
 * and CIDR blocks ("10.0.0.0/8,127.0.0.2,::1"): 1 if it is, 0 if not, -1 if list (or ip) is
 * malformed. Checked at start for the settings that hold such lists.
 */
int rd_ip_in_list(const char *list, const char *ip);

/**
 * The customer's address an X-Forwarded-For header names, for a request whose peer is one
 * of the trusted proxies: read from the right (each proxy appends the address it saw), the
 * first address that is not itself a trusted proxy (or the leftmost, if all are). Returns 0
 * with the address in out (RD_CUSTOMER_IP_MAX + 1 bytes), or -1 when the header holds
 * anything but addresses (it is then not used: a proxy that sent it is misconfigured).
 */
int rd_xff_customer(const char *xff, const char *trusted, char *out, size_t sz);

#endif
