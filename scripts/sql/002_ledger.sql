-- The transaction ledger: every attempt redeemd decides (redeem, reverse, validate of an
-- unknown code, admin changes; later pay, refund, recharge), accepted or rejected, exactly
-- once. Rows arrive from the Redis outbox streams through the shipper, which COPYs a batch
-- into a temporary staging table and inserts it with ON CONFLICT DO NOTHING, so a
-- re-delivered entry can never become a second row.

CREATE TABLE IF NOT EXISTS transactions (
    txn_id          text        NOT NULL,
    ts              timestamptz NOT NULL,  -- when redeemd decided (the event's own time)
    kind            text        NOT NULL,  -- redeem, reverse, validate, coupon_create, ...
    outcome         text        NOT NULL,  -- accepted | rejected
    reason          text,                  -- the error code of a rejection
    code            text,
    campaign        text,
    user_id         text,
    order_id        text,
    ref_id          text,                  -- reverse: the redemption it reverses
    order_amount    bigint,
    discount_amount bigint,
    paid_amount     bigint,
    balance_after   bigint,
    currency        text,
    client_ip       inet,
    api_key_id      text,
    request_id      text,
    idempotency_key text,
    day_index       integer,               -- redeem: the day and ISO week the use counts in
    week_index      integer,               --   (days/weeks since the epoch, coupon's offset)
    stream_id       text        NOT NULL,  -- {bucket}:log entry, for tracing back to Redis
    details         jsonb,
    shipped_at      timestamptz NOT NULL DEFAULT now(),
    -- the inserting transaction: GET /v1/transactions pages in this order, up to the oldest
    -- transaction still running, so a row committed later can never land behind a cursor
    txid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- on a partitioned table a unique key must contain the partition key
    PRIMARY KEY (txn_id, ts)
) PARTITION BY RANGE (ts);

CREATE INDEX IF NOT EXISTS transactions_user_ts ON transactions (user_id, ts);
CREATE INDEX IF NOT EXISTS transactions_code_ts ON transactions (code, ts);
CREATE INDEX IF NOT EXISTS transactions_ip_ts ON transactions (client_ip, ts);
CREATE INDEX IF NOT EXISTS transactions_ts_brin ON transactions USING brin (ts);
-- keyset pagination of GET /v1/transactions walks (txid, txn_id)
CREATE INDEX IF NOT EXISTS transactions_page ON transactions (txid, txn_id);

-- Monthly partitions, created ahead by the shipper (and on demand for any month a batch
-- touches: the injected test clock and back-dated rows land in their own month).
CREATE OR REPLACE FUNCTION rd_ensure_partition(t timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    start date := date_trunc('month', t AT TIME ZONE 'UTC')::date;
    name  text := 'transactions_' || to_char(start, 'YYYYMM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(name));
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF transactions '
                   'FOR VALUES FROM (%L) TO (%L)', name,
                   (start::timestamp AT TIME ZONE 'UTC'),
                   ((start + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
END $$;

SELECT rd_ensure_partition(now() + make_interval(months => m)) FROM generate_series(0, 2) m;

-- The coupon definitions as last written, mirrored from the admin entries of the outbox.
CREATE TABLE IF NOT EXISTS coupons (
    code        text PRIMARY KEY,
    kind        text,
    campaign    text,
    definition  jsonb       NOT NULL,  -- the Redis hash fields as written
    created_at  timestamptz,
    updated_at  timestamptz,
    last_txn_id text        NOT NULL
);

-- Admin actions: which key did what, before and after, when.
CREATE TABLE IF NOT EXISTS audit_log (
    txn_id     text PRIMARY KEY,
    ts         timestamptz NOT NULL,
    api_key_id text,
    action     text NOT NULL,
    code       text,
    before     jsonb,
    after      jsonb,
    request_id text,
    client_ip  inet
);
CREATE INDEX IF NOT EXISTS audit_log_code_ts ON audit_log (code, ts);

-- The fraud team's questions.
CREATE OR REPLACE VIEW user_attempts_hourly AS
SELECT date_trunc('hour', ts) AS hour, user_id,
       count(*) AS attempts,
       count(*) FILTER (WHERE kind = 'redeem' AND outcome = 'accepted') AS accepted,
       count(DISTINCT code) AS distinct_codes
FROM transactions WHERE kind IN ('redeem', 'validate', 'pay')
GROUP BY 1, 2;

CREATE OR REPLACE VIEW ip_failures_hourly AS
SELECT date_trunc('hour', ts) AS hour, client_ip,
       count(*) AS failed, count(DISTINCT code) AS distinct_codes
FROM transactions WHERE outcome = 'rejected'
GROUP BY 1, 2;

CREATE OR REPLACE VIEW coupon_redemptions_hourly AS
SELECT date_trunc('hour', ts) AS hour, code,
       count(*) FILTER (WHERE kind = 'redeem' AND outcome = 'accepted') AS redeemed,
       count(*) FILTER (WHERE kind = 'reverse' AND outcome = 'accepted') AS reversed,
       coalesce(sum(discount_amount) FILTER (WHERE kind = 'redeem' AND outcome = 'accepted'), 0)
           AS discount_total
FROM transactions WHERE kind IN ('redeem', 'reverse')
GROUP BY 1, 2;

CREATE OR REPLACE VIEW rejection_reasons_hourly AS
SELECT date_trunc('hour', ts) AS hour, kind, reason, count(*) AS rejections
FROM transactions WHERE outcome = 'rejected'
GROUP BY 1, 2, 3;

-- A read-only role for the fraud team: grant it to their login roles.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'redeemd_fraud') THEN
        CREATE ROLE redeemd_fraud NOLOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO redeemd_fraud;
GRANT SELECT ON transactions, coupons, audit_log, user_attempts_hourly, ip_failures_hourly,
    coupon_redemptions_hourly, rejection_reasons_hourly TO redeemd_fraud;
-- partitions created later inherit nothing: reads go through the parent, which is granted

-- Applies the admin rows of the batch in the shipper's staging table, in stream order: the
-- audit entry, and the coupon mirror. A re-delivered entry is already in audit_log, so it
-- changes nothing (an old change can never overwrite a newer one).
CREATE OR REPLACE FUNCTION rd_apply_admin_rows() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM staging WHERE kind LIKE 'coupon\_%' ORDER BY seq LOOP
        INSERT INTO audit_log (txn_id, ts, api_key_id, action, code, before, after,
                               request_id, client_ip)
        VALUES (r.txn_id, r.ts, r.api_key_id, r.kind, r.code, r.details -> 'before',
                r.details -> 'after', r.request_id, r.client_ip)
        ON CONFLICT DO NOTHING;
        CONTINUE WHEN NOT FOUND;
        INSERT INTO coupons AS c (code, kind, campaign, definition, created_at, updated_at,
                                  last_txn_id)
        VALUES (r.code, r.details -> 'after' ->> 'kind', r.campaign,
                coalesce(r.details -> 'after', '{}'::jsonb), r.ts, r.ts, r.txn_id)
        ON CONFLICT (code) DO UPDATE
            SET definition = c.definition || EXCLUDED.definition,
                kind = coalesce(EXCLUDED.kind, c.kind),
                campaign = EXCLUDED.campaign,
                updated_at = EXCLUDED.updated_at,
                last_txn_id = EXCLUDED.last_txn_id;
    END LOOP;
END $$;
