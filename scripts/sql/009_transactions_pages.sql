-- GET /v1/transactions pages in (txid, txn_id) order. A filtered page costs its page only
-- when an index hands the rows of the filter out in that order: (filter, txid, txn_id).
-- The 002 indexes were (filter, ts), so a page of a hot coupon, a busy user or an address
-- sorted every row the filter matched (millions, at depth). kind and reason get the same
-- kind of index because their rare values (a coupon_archive, a reason seen once a day)
-- would otherwise walk the whole ledger in page order to find fifty rows; outcome has two
-- values, both common, and walks the page index itself. A filter naming several values
-- ("any of") sorts what those values match.
--
-- Building these on an existing ledger reads it once per index (a minute per ten million
-- rows here); run migrations with redeemd stopped (README, upgrading).

CREATE INDEX IF NOT EXISTS transactions_code_page ON transactions (code, txid, txn_id);
CREATE INDEX IF NOT EXISTS transactions_user_page ON transactions (user_id, txid, txn_id);
-- btree on inet: client_ip <<= 'block' becomes the range [network, broadcast] of the block
CREATE INDEX IF NOT EXISTS transactions_ip_page ON transactions (client_ip, txid, txn_id);
CREATE INDEX IF NOT EXISTS transactions_kind_page ON transactions (kind, txid, txn_id);
CREATE INDEX IF NOT EXISTS transactions_reason_page ON transactions (reason, txid, txn_id)
    WHERE reason IS NOT NULL;

DROP INDEX IF EXISTS transactions_user_ts;
DROP INDEX IF EXISTS transactions_code_ts;
DROP INDEX IF EXISTS transactions_ip_ts;

-- GET /v1/coupons?status=archived walks the archived codes in code order (the listing adds
-- this index's predicate; used and exhausted pages walk coupon_usage_used, 007).
CREATE INDEX IF NOT EXISTS coupon_rows_archived ON coupon_rows (code)
    WHERE definition ? 'archived_at';
