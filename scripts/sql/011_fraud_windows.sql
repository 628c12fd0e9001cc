-- The fraud team's per-user and per-address questions cannot be summed up ahead (one row per
-- user or address and hour would be another ledger), so they read the rows. The views of
-- 002 group the whole ledger before any filter on their hour applies; these functions take
-- the window first, so PostgreSQL reads only the months in it (partition pruning) and, within
-- them, the block ranges in it (transactions_ts_brin): an hour of a 10M-row ledger costs an
-- hour of rows. Hours are UTC.

CREATE OR REPLACE FUNCTION rd_user_attempts(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (hour timestamptz, user_id text, attempts bigint, accepted bigint,
               distinct_codes bigint)
LANGUAGE sql STABLE AS $$
SELECT date_trunc('hour', ts, 'UTC'), user_id, count(*),
       count(*) FILTER (WHERE kind = 'redeem' AND outcome = 'accepted'), count(DISTINCT code)
FROM transactions
WHERE ts >= p_from AND ts < p_to AND kind IN ('redeem', 'validate', 'pay')
GROUP BY 1, 2
$$;

CREATE OR REPLACE FUNCTION rd_ip_failures(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (hour timestamptz, client_ip inet, failed bigint, distinct_codes bigint)
LANGUAGE sql STABLE AS $$
SELECT date_trunc('hour', ts, 'UTC'), client_ip, count(*), count(DISTINCT code)
FROM transactions
WHERE ts >= p_from AND ts < p_to AND outcome = 'rejected'
GROUP BY 1, 2
$$;

GRANT EXECUTE ON FUNCTION rd_user_attempts(timestamptz, timestamptz),
    rd_ip_failures(timestamptz, timestamptz) TO redeemd_fraud;
