-- Live figures of one coupon from its ledger rows: uses (redemptions not reversed, voucher
-- payments not refunded in full), shares, and voucher money. The listing and the fallback
-- for archived codes use it; rd_stats below works on all codes at once.
CREATE OR REPLACE FUNCTION rd_coupon_live(c text, OUT used bigint, OUT shares bigint,
                                          OUT recharged bigint, OUT spent bigint,
                                          OUT refunded bigint)
LANGUAGE sql STABLE AS $$
SELECT count(*) FILTER (WHERE t.kind = 'redeem') - count(*) FILTER (WHERE t.kind = 'reverse')
       + count(*) FILTER (WHERE t.kind = 'pay' AND coalesce((SELECT sum(f.paid_amount)
           FROM transactions f WHERE f.ref_id = t.txn_id AND f.kind = 'refund'
           AND f.outcome = 'accepted'), 0) < t.paid_amount),
       count(*) FILTER (WHERE t.kind = 'share'),
       coalesce(sum(t.paid_amount) FILTER (WHERE t.kind = 'recharge'), 0)::bigint,
       coalesce(sum(t.paid_amount) FILTER (WHERE t.kind = 'pay'), 0)::bigint,
       coalesce(sum(t.paid_amount) FILTER (WHERE t.kind = 'refund'), 0)::bigint
FROM transactions t
WHERE t.code = c AND t.outcome = 'accepted'
  AND t.kind IN ('redeem', 'reverse', 'pay', 'refund', 'recharge', 'share')
$$;

-- The status a coupon has at now_ms, as rd_coupon_status() derives it in C, plus "archived"
-- (taken out of Redis by redeemctl archive; the mirror keeps it).
CREATE OR REPLACE FUNCTION rd_coupon_state(d jsonb, kind text, used bigint, balance bigint,
                                           now_ms bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN d ? 'archived_at' THEN 'archived'
            WHEN d->>'status' = 'disabled' THEN 'disabled'
            WHEN nullif(d->>'expires_at', '')::bigint <= now_ms THEN 'expired'
            WHEN nullif(d->>'starts_at', '')::bigint > now_ms THEN 'scheduled'
            WHEN used >= nullif(d->>'l_total', '')::bigint THEN 'exhausted'
            WHEN kind = 'voucher' AND balance <= 0 THEN 'exhausted'
            ELSE 'active' END
$$;

-- GET /v1/stats, computed where the whole history is: the coupons mirror (definitions as
-- written to Redis) and the ledger. Redis is never scanned for it, so the back office cannot
-- slow redemptions down; the figures are as current as the ledger (see outbox_backlog).
-- now_ms is the caller's clock (injectable in tests).
CREATE OR REPLACE FUNCTION rd_stats(now_ms bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
WITH
pays AS (  -- each accepted voucher payment and what was refunded of it
    SELECT p.code, p.paid_amount,
           coalesce((SELECT sum(f.paid_amount) FROM transactions f WHERE f.ref_id = p.txn_id
                     AND f.kind = 'refund' AND f.outcome = 'accepted'), 0) AS back
    FROM transactions p WHERE p.kind = 'pay' AND p.outcome = 'accepted'
),
uses AS (  -- live uses per code: redemptions not reversed, payments not refunded in full
    SELECT code, sum(n)::bigint AS used FROM (
        SELECT code, CASE kind WHEN 'redeem' THEN 1 ELSE -1 END AS n
        FROM transactions WHERE kind IN ('redeem', 'reverse') AND outcome = 'accepted'
        UNION ALL
        SELECT code, CASE WHEN back < paid_amount THEN 1 ELSE 0 END FROM pays
    ) u GROUP BY code
),
money AS (
    SELECT code,
           (sum(paid_amount) FILTER (WHERE kind = 'recharge'))::bigint AS recharged,
           (sum(paid_amount) FILTER (WHERE kind = 'pay'))::bigint AS spent,
           (sum(paid_amount) FILTER (WHERE kind = 'refund'))::bigint AS refunded
    FROM transactions WHERE kind IN ('pay', 'refund', 'recharge') AND outcome = 'accepted'
    GROUP BY code
),
c AS (
    SELECT m.code, coalesce(m.kind, 'discount') AS kind, m.campaign,
           coalesce(u.used, 0) AS used,
           coalesce(nullif(m.definition->>'bal', ''), '0')::bigint
               + coalesce(y.recharged, 0) AS loaded,
           coalesce(y.spent, 0) AS spent, coalesce(y.refunded, 0) AS refunded,
           m.definition AS d
    FROM coupons m LEFT JOIN uses u USING (code) LEFT JOIN money y USING (code)
),
s AS (
    SELECT c.*, loaded - spent + refunded AS balance,
           rd_coupon_state(d, kind, used, loaded - spent + refunded, now_ms) AS status
    FROM c
),
hours AS (
    SELECT generate_series(date_trunc('hour', to_timestamp(now_ms / 1000.0)) - interval '47 hours',
                           date_trunc('hour', to_timestamp(now_ms / 1000.0)),
                           interval '1 hour') AS h
),
per_hour AS (
    SELECT date_trunc('hour', ts) AS h,
           count(*) FILTER (WHERE kind = 'redeem') AS redemptions,
           count(*) FILTER (WHERE kind = 'reverse') AS reversals,
           count(*) FILTER (WHERE kind = 'pay') AS payments,
           count(*) FILTER (WHERE kind = 'redeem' AND outcome = 'rejected') AS rejected
    FROM transactions
    WHERE ts >= date_trunc('hour', to_timestamp(now_ms / 1000.0)) - interval '47 hours'
      AND ts < date_trunc('hour', to_timestamp(now_ms / 1000.0)) + interval '1 hour'
      AND kind IN ('redeem', 'reverse', 'pay')
      AND (outcome = 'accepted' OR kind = 'redeem')
    GROUP BY 1
)
SELECT jsonb_build_object(
    'coupons', (SELECT jsonb_build_object(
        'total', count(*),
        'used', count(*) FILTER (WHERE used > 0),
        'unused', count(*) FILTER (WHERE used = 0),
        'by_status', jsonb_build_object(
            'active', count(*) FILTER (WHERE status = 'active'),
            'scheduled', count(*) FILTER (WHERE status = 'scheduled'),
            'exhausted', count(*) FILTER (WHERE status = 'exhausted'),
            'expired', count(*) FILTER (WHERE status = 'expired'),
            'disabled', count(*) FILTER (WHERE status = 'disabled'),
            'archived', count(*) FILTER (WHERE status = 'archived')),
        'by_kind', jsonb_build_object(
            'discount', count(*) FILTER (WHERE kind = 'discount'),
            'voucher', count(*) FILTER (WHERE kind = 'voucher'))) FROM s),
    'campaigns', coalesce((SELECT jsonb_agg(x ORDER BY x->>'campaign') FROM (
        SELECT jsonb_build_object('campaign', campaign, 'coupons', count(*),
                                  'uses', sum(used),
                                  'active', count(*) FILTER (WHERE status = 'active'),
                                  'exhausted', count(*) FILTER (WHERE status = 'exhausted'),
                                  'expired', count(*) FILTER (WHERE status = 'expired'),
                                  'disabled', count(*) FILTER (WHERE status = 'disabled')) AS x
        FROM s WHERE campaign IS NOT NULL AND campaign <> '' GROUP BY campaign) g), '[]'),
    'per_hour', (SELECT jsonb_agg(jsonb_build_object(
            'hour', to_char(hours.h AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:00:00"Z"'),
            'redemptions', coalesce(p.redemptions - p.rejected, 0),
            'rejected', coalesce(p.rejected, 0),
            'reversals', coalesce(p.reversals, 0),
            'payments', coalesce(p.payments, 0)) ORDER BY hours.h)
        FROM hours LEFT JOIN per_hour p ON p.h = hours.h),
    'top_coupons', coalesce((SELECT jsonb_agg(jsonb_build_object('code', code, 'kind', kind,
                                                                'uses', used) ORDER BY used DESC, code)
        FROM (SELECT code, kind, used FROM s WHERE used > 0
              ORDER BY used DESC, code LIMIT 10) t), '[]'),
    'vouchers', (SELECT jsonb_build_object(
        'count', count(*),
        'loaded', coalesce(sum(loaded), 0),
        'spent', coalesce(sum(spent), 0),
        'refunded', coalesce(sum(refunded), 0),
        'outstanding', coalesce(sum(balance) FILTER (WHERE status <> 'expired'), 0))
        FROM s WHERE kind = 'voucher'))
$$;
