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
    SELECT code, sum(n) AS used FROM (
        SELECT code, CASE kind WHEN 'redeem' THEN 1 ELSE -1 END AS n
        FROM transactions WHERE kind IN ('redeem', 'reverse') AND outcome = 'accepted'
        UNION ALL
        SELECT code, CASE WHEN back < paid_amount THEN 1 ELSE 0 END FROM pays
    ) u GROUP BY code
),
money AS (
    SELECT code,
           sum(paid_amount) FILTER (WHERE kind = 'recharge') AS recharged,
           sum(paid_amount) FILTER (WHERE kind = 'pay') AS spent,
           sum(paid_amount) FILTER (WHERE kind = 'refund') AS refunded
    FROM transactions WHERE kind IN ('pay', 'refund', 'recharge') AND outcome = 'accepted'
    GROUP BY code
),
c AS (
    SELECT m.code, coalesce(m.kind, 'discount') AS kind, m.campaign,
           coalesce(u.used, 0) AS used,
           coalesce(nullif(m.definition->>'bal', ''), '0')::bigint
               + coalesce(y.recharged, 0) AS loaded,
           coalesce(y.spent, 0) AS spent, coalesce(y.refunded, 0) AS refunded,
           m.definition->>'status' AS st,
           nullif(m.definition->>'starts_at', '')::bigint AS starts,
           nullif(m.definition->>'expires_at', '')::bigint AS expires,
           nullif(m.definition->>'l_total', '')::bigint AS l_total
    FROM coupons m LEFT JOIN uses u USING (code) LEFT JOIN money y USING (code)
),
s AS (
    SELECT c.*, loaded - spent + refunded AS balance,
           CASE WHEN st = 'disabled' THEN 'disabled'
                WHEN expires IS NOT NULL AND now_ms >= expires THEN 'expired'
                WHEN starts IS NOT NULL AND now_ms < starts THEN 'scheduled'
                WHEN l_total IS NOT NULL AND used >= l_total THEN 'exhausted'
                WHEN kind = 'voucher' AND loaded - spent + refunded <= 0 THEN 'exhausted'
                ELSE 'active' END AS status
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
            'disabled', count(*) FILTER (WHERE status = 'disabled')),
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
