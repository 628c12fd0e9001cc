-- 017: GET /v1/stats also answers the rejections of the last 48 hours by reason (the
-- console's chart), from the hourly summaries (usage_hourly_all: at most 48 hours x reasons
-- rows, whatever the ledger's size).
CREATE OR REPLACE FUNCTION rd_stats(now_ms bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
WITH
g AS (
    SELECT *, loaded - spent + refunded AS balance,
           CASE WHEN class <> 'live' THEN class
                WHEN expires >= 0 AND expires <= now_ms THEN 'expired'
                WHEN starts > now_ms THEN 'scheduled'
                WHEN exhausted THEN 'exhausted'
                ELSE 'active' END AS status
    FROM coupon_groups WHERE n > 0
),
hours AS (
    SELECT generate_series(date_trunc('hour', to_timestamp(now_ms / 1000.0), 'UTC')
                               - interval '47 hours',
                           date_trunc('hour', to_timestamp(now_ms / 1000.0), 'UTC'),
                           interval '1 hour') AS h
),
per_hour AS (
    SELECT hour AS h,
           coalesce(sum(n) FILTER (WHERE kind = 'redeem'), 0) AS redemptions,
           coalesce(sum(n) FILTER (WHERE kind = 'reverse' AND outcome = 'accepted'), 0)
               AS reversals,
           coalesce(sum(n) FILTER (WHERE kind = 'pay' AND outcome = 'accepted'), 0) AS payments,
           coalesce(sum(n) FILTER (WHERE kind = 'redeem' AND outcome = 'rejected'), 0)
               AS rejected
    FROM usage_hourly_all
    WHERE hour >= date_trunc('hour', to_timestamp(now_ms / 1000.0), 'UTC') - interval '47 hours'
      AND hour < date_trunc('hour', to_timestamp(now_ms / 1000.0), 'UTC') + interval '1 hour'
      AND kind IN ('redeem', 'reverse', 'pay')
    GROUP BY 1
)
SELECT jsonb_build_object(
    'coupons', (SELECT jsonb_build_object(
        'total', coalesce(sum(n), 0),
        'used', coalesce(sum(n) FILTER (WHERE used), 0),
        'unused', coalesce(sum(n) FILTER (WHERE NOT used), 0),
        'by_status', jsonb_build_object(
            'active', coalesce(sum(n) FILTER (WHERE status = 'active'), 0),
            'scheduled', coalesce(sum(n) FILTER (WHERE status = 'scheduled'), 0),
            'exhausted', coalesce(sum(n) FILTER (WHERE status = 'exhausted'), 0),
            'expired', coalesce(sum(n) FILTER (WHERE status = 'expired'), 0),
            'disabled', coalesce(sum(n) FILTER (WHERE status = 'disabled'), 0),
            'archived', coalesce(sum(n) FILTER (WHERE status = 'archived'), 0)),
        'by_kind', jsonb_build_object(
            'discount', coalesce(sum(n) FILTER (WHERE kind = 'discount'), 0),
            'voucher', coalesce(sum(n) FILTER (WHERE kind = 'voucher'), 0))) FROM g),
    'campaigns', coalesce((SELECT jsonb_agg(x ORDER BY x->>'campaign') FROM (
        SELECT jsonb_build_object('campaign', campaign, 'coupons', sum(n),
                                  'uses', sum(uses),
                                  'active', coalesce(sum(n) FILTER (WHERE status = 'active'), 0),
                                  'exhausted',
                                  coalesce(sum(n) FILTER (WHERE status = 'exhausted'), 0),
                                  'expired', coalesce(sum(n) FILTER (WHERE status = 'expired'), 0),
                                  'disabled',
                                  coalesce(sum(n) FILTER (WHERE status = 'disabled'), 0)) AS x
        FROM g WHERE campaign <> '' GROUP BY campaign) c), '[]'),
    'per_hour', (SELECT jsonb_agg(jsonb_build_object(
            'hour', to_char(hours.h AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:00:00"Z"'),
            'redemptions', coalesce(p.redemptions - p.rejected, 0),
            'rejected', coalesce(p.rejected, 0),
            'reversals', coalesce(p.reversals, 0),
            'payments', coalesce(p.payments, 0)) ORDER BY hours.h)
        FROM hours LEFT JOIN per_hour p ON p.h = hours.h),
    'rejections', coalesce((SELECT jsonb_agg(jsonb_build_object('reason', reason, 'count', n)
                                             ORDER BY n DESC, reason)
        FROM (SELECT reason, sum(n) AS n FROM usage_hourly_all
              WHERE hour >= date_trunc('hour', to_timestamp(now_ms / 1000.0), 'UTC')
                                - interval '47 hours'
                AND hour < date_trunc('hour', to_timestamp(now_ms / 1000.0), 'UTC')
                               + interval '1 hour'
                AND outcome = 'rejected' AND reason <> ''
              GROUP BY reason) r), '[]'),
    'top_coupons', coalesce((SELECT jsonb_agg(jsonb_build_object('code', code, 'kind', kind,
                                                                'uses', used) ORDER BY used DESC, code)
        FROM (SELECT u.code, coalesce(m.kind, 'discount') AS kind, u.used
              FROM coupon_usage u JOIN coupon_rows m USING (code) WHERE u.used > 0
              ORDER BY u.used DESC, u.code LIMIT 10) t), '[]'),
    'vouchers', (SELECT jsonb_build_object(
        'count', coalesce(sum(n), 0),
        'loaded', coalesce(sum(loaded), 0),
        'spent', coalesce(sum(spent), 0),
        'refunded', coalesce(sum(refunded), 0),
        'outstanding', coalesce(sum(balance) FILTER (WHERE status <> 'expired'), 0))
        FROM g WHERE kind = 'voucher'))
$$;
