/* SPDX-License-Identifier: MIT
 *
 * Ledger statements as text: a statement built piece by piece with its parameters (struct
 * rd_stmt), and the statements of the two listings (GET /v1/transactions, GET /v1/coupons)
 * built from their query strings. No connection: the daemon sends what is built here, the
 * tests and fuzzers check it.
 *
 * Listing query strings: a filter may be repeated and means "any of" its values, up to
 * RD_FILTER_MAX_VALUES; it becomes one array parameter however many values it has, so a
 * listing never needs more parameters than it has kinds of filter. Every other parameter
 * (dates, limit, cursor, shared) may be given once. Values are 1 to 128 characters.
 */
#ifndef RD_LISTING_H
#define RD_LISTING_H

#include <stdint.h>

#include "rd/http_parse.h"
#include "rd/json_util.h"

#define RD_STMT_MAXPARAMS    16
#define RD_FILTER_MAX_VALUES 20
#define RD_PAGE_DEFAULT      100
#define RD_PAGE_MAX          1000

/** A statement and its parameters ($1..), all owned. Zero it to start. */
struct rd_stmt {
    struct rd_sbuf sql;
    char *params[RD_STMT_MAXPARAMS]; /* NULL for SQL NULL */
    int nparams;
    int overflow; /* a parameter past RD_STMT_MAXPARAMS was refused: never send this */
};

/** Appends a copy of v (NULL: SQL NULL) as the next parameter; its number, or -1. */
int rd_stmt_param(struct rd_stmt *s, const char *v);
/** The same, taking v over (freed here on failure). */
int rd_stmt_param_owned(struct rd_stmt *s, char *v);
void rd_stmt_free(struct rd_stmt *s);

enum rd_listing { RD_LIST_TRANSACTIONS, RD_LIST_COUPONS };

/**
 * Builds into st the statement of listing which for query (the raw query string, NULL when
 * none; q receives its decoded form, owned by the caller). csv lists every row; else *limit
 * is the page size (the statement asks for one row more, to tell whether there is a next
 * page). now_ms is the clock the coupon statuses are derived at. Returns 0, or -1 with e
 * naming the parameter at fault.
 *
 * Columns: 0 is the row's cursor, then for transactions txn_id, ts (epoch ms), kind,
 * outcome, reason, code, campaign, user_id, order_id, ref_id, order_amount,
 * discount_amount, paid_amount, balance_after, currency, client_ip, api_key_id, request_id,
 * peer_ip, session_id, device_id, email_hash;
 * for coupons code, kind, status, campaign, tags (JSON), used, shares, created (ms),
 * expires (ms), balance, currency, batch.
 */
int rd_listing_build(struct rd_stmt *st, struct rd_query *q, long *limit, enum rd_listing which,
                     const char *query, int csv, int64_t now_ms, struct rd_verr *e);

/** Appends s to out as one CSV field (RFC 4180: quoted when it holds , " CR or LF). */
void rd_csv_field(struct rd_sbuf *out, const char *s, size_t len);

#endif
