/* SPDX-License-Identifier: MIT
 *
 * Outbox entry -> ledger row. The shipper reads entries (flat field/value lists written by
 * the Redis scripts) and renders each as one line of PostgreSQL COPY text for the staging
 * table, in the column order of RD_LEDGER_COLUMNS. Values that cannot be stored as typed
 * (an unparsable client ip, a non-numeric amount) become NULL rather than failing the batch;
 * an entry without an id or time cannot be a row at all and is refused (it goes to the
 * dead-letter stream, never dropped). Pure: no I/O.
 */
#ifndef RD_LEDGER_H
#define RD_LEDGER_H

#include <stddef.h>

#include "rd/json_util.h"

#define RD_LEDGER_COLUMNS                                                                          \
    "txn_id, ts, kind, outcome, reason, code, campaign, user_id, order_id, ref_id, "               \
    "order_amount, discount_amount, paid_amount, balance_after, currency, client_ip, "             \
    "api_key_id, request_id, idempotency_key, day_index, week_index, stream_id, details, "         \
    "peer_ip, session_id, device_id, email_hash"

/*
 * A use's entry (redeem.lua, pay.lua: the checkout's hot path) is written packed: one field,
 * RD_ENTRY_PACKED, whose value holds the values of RD_ENTRY_FIELDS in that order, each
 * ended by '\0' but the last (no value can hold a NUL: JSON strings and headers are checked
 * for control characters). One field instead of 25 halves what Redis does for the XADD and
 * for every read of the stream. Every other entry keeps a field per value. The prelude's
 * rd_entry decodes the same list (a unit test holds the two equal).
 */
#define RD_ENTRY_PACKED  "u"
#define RD_ENTRY_NFIELDS 25
extern const char *const rd_entry_fields[RD_ENTRY_NFIELDS];

/**
 * Splits v (vl bytes, followed by a '\0' as hiredis leaves every string) at each '\0':
 * parts[i] (borrowed, each '\0'-terminated) and lens[i], at most max of them. Returns the
 * number of parts, or max + 1 when v holds more (the first max are set then). The packing of
 * the outbox entries and of the scripts' ok answers (redeem.lua, pay.lua).
 */
size_t rd_unpack_values(const char *v, size_t vl, const char **parts, size_t *lens, size_t max);

/**
 * Splits a packed entry's value v (vl bytes) into the fields it holds: names[i] (from
 * RD_ENTRY_FIELDS), values[i] and their lengths, at most max of them. A value with fewer
 * parts than RD_ENTRY_FIELDS yields what it holds; extra parts are ignored. Returns the
 * number of fields. Borrowed pointers into v.
 */
size_t rd_entry_unpack(const char *v, size_t vl, const char **names, size_t *name_lens,
                       const char **values, size_t *value_lens, size_t max);

/**
 * Appends one COPY text line (with trailing newline) for the entry to out: the columns of
 * RD_LEDGER_COLUMNS. stream_id identifies the entry ("{0042}:1700-0").
 * Arrays are borrowed. Returns 0, or -1 (out unchanged) if the entry is not a ledger row.
 */
int rd_ledger_row(struct rd_sbuf *out, const char *stream_id, const char *const *names,
                  const size_t *name_lens, const char *const *values, const size_t *value_lens,
                  size_t n);

/** Appends s as one COPY text field (escaped), or \N when s is NULL. */
void rd_copy_field(struct rd_sbuf *out, const char *s, size_t len);

/**
 * Appends a PostgreSQL array literal of the n strings v, every element quoted ({"a","b\"c"}),
 * for one parameter such as "= ANY($1::text[])": a filter of any number of values costs one
 * parameter. Optional suffix is appended to every element (a LIKE prefix's "%").
 */
void rd_pg_text_array(struct rd_sbuf *out, const char *const *v, int n, const char *suffix);

#endif
