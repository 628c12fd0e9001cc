-- Batches (POST /v1/batches). A batch's codes are rows of the coupon mirror that name the
-- batch and carry only what is their own; the definition they share is the batch's
-- template, as in Redis. The mirror table becomes coupon_rows, and "coupons" a view that
-- gives every code its whole definition, so the fraud team's queries, the listing, the
-- stats and reconcile read batch codes like any other.

CREATE TABLE IF NOT EXISTS batches (
    id           text PRIMARY KEY,
    created_at   timestamptz NOT NULL,
    api_key_id   text,
    request_id   text,
    spec         jsonb       NOT NULL,  -- the request as accepted (count, format, template)
    template     jsonb       NOT NULL,  -- the Redis hash fields all its codes share
    kind         text        NOT NULL,
    campaign     text,
    requested    bigint      NOT NULL,
    created      bigint      NOT NULL DEFAULT 0,  -- codes issued (in Redis and here)
    state        text        NOT NULL DEFAULT 'queued',  -- queued running done cancelled failed
    error        text,
    cancel       boolean     NOT NULL DEFAULT false,
    owner        text,         -- the daemon running it
    heartbeat_at timestamptz,  -- its lease: another daemon takes over a job left stale
    started_at   timestamptz,
    finished_at  timestamptz,
    idem         text,    -- the Idempotency-Key of the POST, if any
    bytes_per_code bigint  -- Redis memory per code, sampled with MEMORY USAGE when done
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_idem ON batches (api_key_id, idem) WHERE idem IS NOT NULL;
CREATE INDEX IF NOT EXISTS batches_todo ON batches (created_at) WHERE state IN ('queued', 'running');

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'coupons' AND relkind = 'r') THEN
        ALTER TABLE coupons RENAME TO coupon_rows;
    END IF;
END $$;
ALTER TABLE coupon_rows ADD COLUMN IF NOT EXISTS batch_id text;
CREATE INDEX IF NOT EXISTS coupon_rows_batch ON coupon_rows (batch_id, code)
    WHERE batch_id IS NOT NULL;

-- definition is the whole merged object; the d_ columns are the fields the listing and the
-- stats need, read field by field (a code's own value, else its batch's): building the
-- merged object costs about 2 us a row, too much for a million codes at a time.
DROP VIEW IF EXISTS coupons;
CREATE VIEW coupons AS
SELECT c.code, c.kind, c.campaign,
       CASE WHEN c.batch_id IS NULL THEN c.definition
            ELSE coalesce(b.template, '{}'::jsonb)
                 || jsonb_build_object('code', c.code, 't', c.batch_id) || c.definition
       END AS definition,
       c.created_at, c.updated_at, c.last_txn_id, c.batch_id,
       c.definition ? 'archived_at' AS archived,
       coalesce(c.definition->>'status', b.template->>'status') AS d_status,
       nullif(coalesce(c.definition->>'starts_at', b.template->>'starts_at'), '')::bigint
           AS d_starts,
       nullif(coalesce(c.definition->>'expires_at', b.template->>'expires_at'), '')::bigint
           AS d_expires,
       nullif(coalesce(c.definition->>'l_total', b.template->>'l_total'), '')::bigint
           AS d_l_total,
       coalesce(nullif(coalesce(c.definition->>'bal', b.template->>'bal'), ''), '0')::bigint
           AS d_bal,
       coalesce(nullif(coalesce(c.definition->>'tags', b.template->>'tags'), ''), '[]')::jsonb
           AS d_tags,
       nullif(coalesce(c.definition->>'currency', b.template->>'currency'), '') AS d_currency
FROM coupon_rows c LEFT JOIN batches b ON b.id = c.batch_id;

GRANT SELECT ON coupons, coupon_rows, batches TO redeemd_fraud;

-- As before (002), writing coupon_rows. A coupon_create for a code a batch has just claimed
-- means the batch lost the race for it in Redis (the batch then withdraws its row): the
-- created coupon takes the row over whole.
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
        INSERT INTO coupon_rows AS c (code, kind, campaign, definition, created_at, updated_at,
                                      last_txn_id)
        VALUES (r.code, r.details -> 'after' ->> 'kind', r.campaign,
                coalesce(r.details -> 'after', '{}'::jsonb), r.ts, r.ts, r.txn_id)
        ON CONFLICT (code) DO UPDATE
            SET definition = CASE WHEN c.batch_id IS NOT NULL AND r.kind = 'coupon_create'
                                  THEN EXCLUDED.definition
                                  ELSE c.definition || EXCLUDED.definition END,
                batch_id = CASE WHEN r.kind = 'coupon_create' THEN NULL ELSE c.batch_id END,
                kind = coalesce(EXCLUDED.kind, c.kind),
                campaign = EXCLUDED.campaign,
                updated_at = EXCLUDED.updated_at,
                last_txn_id = EXCLUDED.last_txn_id;
    END LOOP;
END $$;

-- RFC 3339 in UTC with milliseconds, as the API writes times.
CREATE OR REPLACE FUNCTION rd_ts(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- GET /v1/batches/{id}.
CREATE OR REPLACE FUNCTION rd_batch_json(b batches) RETURNS jsonb
LANGUAGE sql STABLE AS $$
SELECT jsonb_build_object(
    'id', b.id, 'state', b.state, 'kind', b.kind, 'campaign', b.campaign,
    'requested', b.requested, 'created', b.created,
    'progress', round(b.created::numeric / b.requested, 4),
    'format', b.spec -> 'format', 'space', b.spec -> 'space', 'template', b.spec -> 'template',
    'cancel_requested', b.cancel, 'error', b.error,
    'codes_per_second',
        CASE WHEN coalesce(b.finished_at, b.heartbeat_at) > b.started_at
             THEN round(b.created / extract(epoch FROM coalesce(b.finished_at, b.heartbeat_at)
                                                      - b.started_at)) END,
    'redis_bytes_per_code', b.bytes_per_code,
    'created_at', rd_ts(b.created_at), 'started_at', rd_ts(b.started_at),
    'finished_at', rd_ts(b.finished_at), 'codes_url', '/v1/batches/' || b.id || '/codes')
$$;

-- POST /v1/batches: the job row and its audit entry, or, for an Idempotency-Key already
-- used by this API key, the batch it made ("replayed"; "reused" if the request differed).
CREATE OR REPLACE FUNCTION rd_batch_create(p_id text, p_created_ms bigint, p_key text,
                                           p_req text, p_ip text, p_idem text, p_spec jsonb,
                                           p_template jsonb, p_kind text, p_campaign text,
                                           p_requested bigint,
                                           OUT outcome text, OUT view jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b batches;
BEGIN
    IF p_idem IS NOT NULL THEN
        SELECT * INTO b FROM batches x WHERE x.api_key_id = p_key AND x.idem = p_idem;
        IF FOUND THEN
            outcome := CASE WHEN b.spec = p_spec THEN 'replayed' ELSE 'reused' END;
            view := rd_batch_json(b);
            RETURN;
        END IF;
    END IF;
    INSERT INTO batches (id, created_at, api_key_id, request_id, spec, template, kind, campaign,
                         requested, idem)
    VALUES (p_id, to_timestamp(p_created_ms / 1000.0), p_key, p_req, p_spec, p_template, p_kind,
            nullif(p_campaign, ''), p_requested, p_idem)
    RETURNING * INTO b;
    INSERT INTO audit_log (txn_id, ts, api_key_id, action, code, before, after, request_id,
                           client_ip)
    VALUES (b.id, b.created_at, p_key, 'batch_create', NULL, NULL, p_spec, p_req,
            nullif(p_ip, '')::inet);
    outcome := 'created';
    view := rd_batch_json(b);
END $$;

-- POST /v1/batches/{id}/cancel: a queued job ends at once; a running one at its next chunk.
-- outcome: "cancelled" | "cancelling" | "finished" (nothing to cancel) | NULL (no such batch)
CREATE OR REPLACE FUNCTION rd_batch_cancel(p_id text, p_key text, p_req text, p_ip text,
                                           OUT outcome text, OUT view jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    b batches;
BEGIN
    UPDATE batches x SET cancel = true,
                         state = CASE WHEN x.state = 'queued' THEN 'cancelled' ELSE x.state END,
                         finished_at = CASE WHEN x.state = 'queued' THEN now() END
    WHERE x.id = p_id AND x.state IN ('queued', 'running')
    RETURNING * INTO b;
    IF FOUND THEN
        INSERT INTO audit_log (txn_id, ts, api_key_id, action, code, before, after,
                               request_id, client_ip)
        VALUES (b.id || ':cancel', now(), p_key, 'batch_cancel', NULL, NULL,
                jsonb_build_object('created', b.created), p_req, nullif(p_ip, '')::inet)
        ON CONFLICT DO NOTHING;
        outcome := CASE WHEN b.state = 'cancelled' THEN 'cancelled' ELSE 'cancelling' END;
        view := rd_batch_json(b);
        RETURN;
    END IF;
    SELECT * INTO b FROM batches x WHERE x.id = p_id;
    IF FOUND THEN
        outcome := 'finished';
        view := rd_batch_json(b);
    END IF;
END $$;

-- rd_coupon_state (005) over the fields themselves: simple enough for PostgreSQL to inline.
CREATE OR REPLACE FUNCTION rd_coupon_state(archived boolean, status text, starts bigint,
                                           expires bigint, l_total bigint, kind text,
                                           used bigint, balance bigint, now_ms bigint)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN archived THEN 'archived'
            WHEN status = 'disabled' THEN 'disabled'
            WHEN expires <= now_ms THEN 'expired'
            WHEN starts > now_ms THEN 'scheduled'
            WHEN used >= l_total THEN 'exhausted'
            WHEN kind = 'voucher' AND balance <= 0 THEN 'exhausted'
            ELSE 'active' END
$$;

-- rd_stats (005) over the view's fields: the same answer, without building every merged
-- definition (4.3M coupons: minutes before, seconds now).
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
           m.d_bal + coalesce(y.recharged, 0) AS loaded,
           coalesce(y.spent, 0) AS spent, coalesce(y.refunded, 0) AS refunded,
           m.archived, m.d_status, m.d_starts, m.d_expires, m.d_l_total
    FROM coupons m LEFT JOIN uses u USING (code) LEFT JOIN money y USING (code)
),
s AS (
    SELECT c.*, loaded - spent + refunded AS balance,
           rd_coupon_state(archived, d_status, d_starts, d_expires, d_l_total, kind, used,
                           loaded - spent + refunded, now_ms) AS status
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
