-- Summaries the back office reads instead of the whole ledger: per coupon, what its history
-- adds up to; per hour, counts by coupon, kind, outcome and reason. The shipper keeps them in
-- the transaction that writes the ledger rows (rd_summarize), from exactly the rows that
-- transaction inserted, so an entry delivered twice (its second insert does nothing) is never
-- counted twice, and the summaries always equal a recount of the ledger (rd_usage_recount,
-- which the tests compare). Retention drops old ledger partitions; the summaries stay.

CREATE TABLE IF NOT EXISTS coupon_usage (
    code      text PRIMARY KEY,
    used      bigint NOT NULL DEFAULT 0,  -- live uses: redemptions and payments not given back
    uses      bigint NOT NULL DEFAULT 0,  -- accepted redemptions and payments, ever
    reversed  bigint NOT NULL DEFAULT 0,  -- uses given back: reversals, payments refunded whole
    shares    bigint NOT NULL DEFAULT 0,
    recharged bigint NOT NULL DEFAULT 0,  -- voucher money in minor units
    spent     bigint NOT NULL DEFAULT 0,
    refunded  bigint NOT NULL DEFAULT 0,
    last_use  timestamptz
);
-- status=used listings walk the used codes in code order; top coupons by uses
CREATE INDEX IF NOT EXISTS coupon_usage_used ON coupon_usage (code) WHERE used > 0;
CREATE INDEX IF NOT EXISTS coupon_usage_top ON coupon_usage (used DESC, code) WHERE used > 0;

CREATE TABLE IF NOT EXISTS usage_hourly (
    code     text        NOT NULL,  -- '' for rows without one
    hour     timestamptz NOT NULL,
    kind     text        NOT NULL,
    outcome  text        NOT NULL,
    reason   text        NOT NULL,  -- '' when accepted
    n        bigint      NOT NULL,
    amount   bigint      NOT NULL,  -- paid_amount summed (voucher money)
    discount bigint      NOT NULL,  -- discount_amount summed
    PRIMARY KEY (code, hour, kind, outcome, reason)
);

-- The same without the coupon: what the stats' hours and the rejection views read.
CREATE TABLE IF NOT EXISTS usage_hourly_all (
    hour     timestamptz NOT NULL,
    kind     text        NOT NULL,
    outcome  text        NOT NULL,
    reason   text        NOT NULL,
    n        bigint      NOT NULL,
    amount   bigint      NOT NULL,
    discount bigint      NOT NULL,
    PRIMARY KEY (hour, kind, outcome, reason)
);

-- Live figures of every coupon from the ledger itself, the long way: what coupon_usage must
-- equal. A payment's use is given back when its refunds add up to what it paid.
CREATE OR REPLACE FUNCTION rd_usage_recount()
RETURNS TABLE (code text, used bigint, uses bigint, reversed bigint, shares bigint,
               recharged bigint, spent bigint, refunded bigint, last_use timestamptz)
LANGUAGE sql STABLE AS $$
WITH back AS (  -- payments refunded in full
    SELECT p.code, count(*) AS n
    FROM transactions p
    WHERE p.kind = 'pay' AND p.outcome = 'accepted'
      AND (SELECT coalesce(sum(f.paid_amount), 0) FROM transactions f
           WHERE f.ref_id = p.txn_id AND f.kind = 'refund' AND f.outcome = 'accepted')
          >= p.paid_amount
    GROUP BY p.code
), t AS (
    SELECT t.code,
           count(*) FILTER (WHERE t.kind IN ('redeem', 'pay')) AS uses,
           count(*) FILTER (WHERE t.kind = 'reverse') AS reversals,
           count(*) FILTER (WHERE t.kind = 'share') AS shares,
           coalesce(sum(t.paid_amount) FILTER (WHERE t.kind = 'recharge'), 0)::bigint AS recharged,
           coalesce(sum(t.paid_amount) FILTER (WHERE t.kind = 'pay'), 0)::bigint AS spent,
           coalesce(sum(t.paid_amount) FILTER (WHERE t.kind = 'refund'), 0)::bigint AS refunded,
           max(t.ts) FILTER (WHERE t.kind IN ('redeem', 'pay')) AS last_use
    FROM transactions t
    WHERE t.outcome = 'accepted' AND t.code IS NOT NULL
      AND t.kind IN ('redeem', 'pay', 'reverse', 'refund', 'share', 'recharge')
    GROUP BY t.code
)
SELECT t.code, t.uses - t.reversals - coalesce(b.n, 0), t.uses, t.reversals + coalesce(b.n, 0),
       t.shares, t.recharged, t.spent, t.refunded, t.last_use
FROM t LEFT JOIN back b USING (code)
$$;

-- Adds the rows this transaction inserted into the ledger to the summaries: one upsert per
-- coupon and per hour group for the whole batch, in key order (two shippers committing
-- batches of the same hot coupon wait for each other, they cannot deadlock). A refund row
-- that completed its payment says so (details.use_back).
CREATE OR REPLACE FUNCTION rd_summarize() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    me xid8 := pg_current_xact_id();
BEGIN
    INSERT INTO coupon_usage AS s (code, used, uses, reversed, shares, recharged, spent,
                                   refunded, last_use)
    SELECT t.code,
           count(*) FILTER (WHERE t.kind IN ('redeem', 'pay'))
               - count(*) FILTER (WHERE t.kind = 'reverse'
                                  OR (t.kind = 'refund' AND t.details ? 'use_back')),
           count(*) FILTER (WHERE t.kind IN ('redeem', 'pay')),
           count(*) FILTER (WHERE t.kind = 'reverse'
                            OR (t.kind = 'refund' AND t.details ? 'use_back')),
           count(*) FILTER (WHERE t.kind = 'share'),
           coalesce(sum(t.paid_amount) FILTER (WHERE t.kind = 'recharge'), 0),
           coalesce(sum(t.paid_amount) FILTER (WHERE t.kind = 'pay'), 0),
           coalesce(sum(t.paid_amount) FILTER (WHERE t.kind = 'refund'), 0),
           max(t.ts) FILTER (WHERE t.kind IN ('redeem', 'pay'))
    FROM transactions t
    WHERE t.txid = me AND t.outcome = 'accepted' AND t.code IS NOT NULL
      AND t.kind IN ('redeem', 'pay', 'reverse', 'refund', 'share', 'recharge')
    GROUP BY t.code
    ORDER BY t.code
    ON CONFLICT (code) DO UPDATE
        SET used = s.used + EXCLUDED.used, uses = s.uses + EXCLUDED.uses,
            reversed = s.reversed + EXCLUDED.reversed, shares = s.shares + EXCLUDED.shares,
            recharged = s.recharged + EXCLUDED.recharged, spent = s.spent + EXCLUDED.spent,
            refunded = s.refunded + EXCLUDED.refunded,
            last_use = greatest(s.last_use, EXCLUDED.last_use);

    INSERT INTO usage_hourly AS s (code, hour, kind, outcome, reason, n, amount, discount)
    SELECT coalesce(t.code, ''), date_trunc('hour', t.ts, 'UTC'), t.kind, t.outcome,
           coalesce(t.reason, ''), count(*), coalesce(sum(t.paid_amount), 0),
           coalesce(sum(t.discount_amount), 0)
    FROM transactions t WHERE t.txid = me
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (code, hour, kind, outcome, reason) DO UPDATE
        SET n = s.n + EXCLUDED.n, amount = s.amount + EXCLUDED.amount,
            discount = s.discount + EXCLUDED.discount;

    INSERT INTO usage_hourly_all AS s (hour, kind, outcome, reason, n, amount, discount)
    SELECT date_trunc('hour', t.ts, 'UTC'), t.kind, t.outcome, coalesce(t.reason, ''),
           count(*), coalesce(sum(t.paid_amount), 0), coalesce(sum(t.discount_amount), 0)
    FROM transactions t WHERE t.txid = me
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (hour, kind, outcome, reason) DO UPDATE
        SET n = s.n + EXCLUDED.n, amount = s.amount + EXCLUDED.amount,
            discount = s.discount + EXCLUDED.discount;
END $$;

-- An existing ledger is summed up once, here. Upgrade with no shipper running: the ledger is
-- locked against inserts until this commits, and every later batch sums itself up.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM usage_hourly_all) OR NOT EXISTS (SELECT 1 FROM transactions) THEN
        RETURN;
    END IF;
    LOCK TABLE transactions IN SHARE MODE;
    INSERT INTO coupon_usage SELECT * FROM rd_usage_recount();
    INSERT INTO usage_hourly (code, hour, kind, outcome, reason, n, amount, discount)
    SELECT coalesce(code, ''), date_trunc('hour', ts, 'UTC'), kind, outcome,
           coalesce(reason, ''), count(*), coalesce(sum(paid_amount), 0),
           coalesce(sum(discount_amount), 0)
    FROM transactions GROUP BY 1, 2, 3, 4, 5;
    INSERT INTO usage_hourly_all (hour, kind, outcome, reason, n, amount, discount)
    SELECT hour, kind, outcome, reason, sum(n), sum(amount), sum(discount)
    FROM usage_hourly GROUP BY 1, 2, 3, 4;
END $$;

-- The fraud team's hourly views over coupons and rejections read the rollups now.
DROP VIEW IF EXISTS coupon_redemptions_hourly;
CREATE VIEW coupon_redemptions_hourly AS
SELECT hour, code,
       coalesce(sum(n) FILTER (WHERE kind = 'redeem' AND outcome = 'accepted'), 0)::bigint
           AS redeemed,
       coalesce(sum(n) FILTER (WHERE kind = 'reverse' AND outcome = 'accepted'), 0)::bigint
           AS reversed,
       coalesce(sum(discount) FILTER (WHERE kind = 'redeem' AND outcome = 'accepted'), 0)::bigint
           AS discount_total
FROM usage_hourly WHERE kind IN ('redeem', 'reverse') AND code <> ''
GROUP BY 1, 2;

DROP VIEW IF EXISTS rejection_reasons_hourly;
CREATE VIEW rejection_reasons_hourly AS
SELECT hour, kind, reason, sum(n)::bigint AS rejections
FROM usage_hourly_all WHERE outcome = 'rejected'
GROUP BY 1, 2, 3;

GRANT SELECT ON coupon_usage, usage_hourly, usage_hourly_all, coupon_redemptions_hourly,
    rejection_reasons_hourly TO redeemd_fraud;
