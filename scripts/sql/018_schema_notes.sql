-- The fraud team's schema notes, in the database where they query (psql: \d+ transactions,
-- \dv+, \df+ rd_ip_failures): what each column of the ledger holds and which address the IP
-- views follow. README.md ("The ledger") says the same at more length. Comments only: no
-- row is read or written, so this is instant on any ledger.

COMMENT ON TABLE transactions IS
    'The ledger: one row per redeem, reverse, pay, refund, recharge, admin change, probe of an '
    'unknown code (validate of a code that does not exist) and sampled guessing refusal '
    '(kind rate_limited). Written by redeemd''s shipper from Redis; partitioned by month of ts. '
    'Read-only role: redeemd_fraud.';
COMMENT ON COLUMN transactions.txn_id IS
    'The decision''s id (rdm_<bucket>_..., the transaction_id of the API); unique with ts.';
COMMENT ON COLUMN transactions.ts IS 'When redeemd decided (UTC), not when the row was shipped.';
COMMENT ON COLUMN transactions.kind IS
    'redeem, validate (unknown codes only), reverse, pay, refund, recharge, rate_limited, '
    'coupon_create, coupon_update, coupon_disable, coupon_enable, coupon_archive, share, ...';
COMMENT ON COLUMN transactions.outcome IS 'accepted | rejected';
COMMENT ON COLUMN transactions.reason IS
    'The API error code of a rejection (coupon_not_found, limit_user_reached, rate_limited, ...)';
COMMENT ON COLUMN transactions.code IS 'The coupon or voucher code as normalised (upper case).';
COMMENT ON COLUMN transactions.user_id IS 'The user id the checkout sent.';
COMMENT ON COLUMN transactions.campaign IS 'The coupon''s campaign when the row was written.';
COMMENT ON COLUMN transactions.order_id IS 'The order id the checkout sent (NULL: none).';
COMMENT ON COLUMN transactions.order_amount IS
    'The order amount the checkout sent, in minor units of currency.';
COMMENT ON COLUMN transactions.discount_amount IS
    'redeem: the discount granted, in minor units of currency.';
COMMENT ON COLUMN transactions.paid_amount IS
    'pay, refund, recharge: the amount moved, in minor units of currency.';
COMMENT ON COLUMN transactions.balance_after IS 'Vouchers: the balance after this row.';
COMMENT ON COLUMN transactions.currency IS 'ISO 4217 code of the amounts.';
COMMENT ON COLUMN transactions.request_id IS
    'The request''s X-Request-Id (given by the caller or made by redeemd): ties a row to logs.';
COMMENT ON COLUMN transactions.idempotency_key IS
    'The request''s Idempotency-Key: retries of one checkout carry the same key and make no '
    'second row.';
COMMENT ON COLUMN transactions.day_index IS
    'redeem: the day the use counts in for daily limits (days since the epoch, in the '
    'coupon''s time zone offset).';
COMMENT ON COLUMN transactions.week_index IS
    'redeem: the ISO week the use counts in for weekly limits (weeks since the epoch).';
COMMENT ON COLUMN transactions.txid IS
    'The PostgreSQL transaction that inserted the row: GET /v1/transactions pages in this '
    'order, so a row shipped late never lands behind a cursor.';
COMMENT ON COLUMN transactions.ref_id IS
    'reverse and refund: the txn_id of the redemption or payment they undo.';
COMMENT ON COLUMN transactions.client_ip IS
    'The customer''s address: customer.ip of the request, else the one X-Forwarded-For names '
    'when the request came through a trusted proxy (trusted_proxies), else the peer''s (as in '
    'every row before migration 015). The client_ip filter of GET /v1/transactions, '
    'ip_failures_hourly and rd_ip_failures read this column.';
COMMENT ON COLUMN transactions.peer_ip IS
    'The address that connected to redeemd (usually the checkout server). NULL: the same as '
    'client_ip (rows before migration 015, admin rows).';
COMMENT ON COLUMN transactions.session_id IS
    'customer.session_id as the checkout sent it (NULL: not sent).';
COMMENT ON COLUMN transactions.device_id IS
    'customer.device_id as the checkout sent it (NULL: not sent).';
COMMENT ON COLUMN transactions.email_hash IS
    'customer.email_hash as the checkout sent it (NULL: not sent); redeemd never sees the '
    'address itself.';
COMMENT ON COLUMN transactions.api_key_id IS
    'The API key''s id (the 8 characters after rdk_), never the key.';
COMMENT ON COLUMN transactions.details IS
    'kind rate_limited: {"budget": ip|user|session|key, "count": refusals of that budget''s '
    'value in the minute so far, "minute"}: the 1st, 2nd, 4th, 8th ... refusal of a minute '
    'each write a row, so the largest count of a minute is at least half of its refusals.';
COMMENT ON COLUMN transactions.stream_id IS
    'The Redis outbox entry ({bucket}:log) the row came from.';
COMMENT ON COLUMN transactions.shipped_at IS 'When the row reached PostgreSQL.';

COMMENT ON VIEW user_attempts_hourly IS
    'Per user and hour: redeem, validate and pay attempts, accepted redemptions, distinct '
    'codes tried. Reads every row: for a time window call rd_user_attempts(from, to).';
COMMENT ON VIEW ip_failures_hourly IS
    'Per customer address (client_ip) and hour: rejected attempts and distinct codes. Reads '
    'every row: for a time window call rd_ip_failures(from, to).';
COMMENT ON FUNCTION rd_user_attempts(timestamptz, timestamptz) IS
    'user_attempts_hourly for [from, to), reading only the partitions in the window.';
COMMENT ON FUNCTION rd_ip_failures(timestamptz, timestamptz) IS
    'ip_failures_hourly for [from, to), reading only the partitions in the window; by the '
    'customer''s address (client_ip).';
