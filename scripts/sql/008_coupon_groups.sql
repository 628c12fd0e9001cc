-- The stats' coupon counts without reading every coupon. A coupon's status depends on the
-- clock only through its start and expiry, so coupons are counted in groups of everything
-- else that decides it: campaign, kind, class (archived, disabled or live), exhausted (uses
-- at the total limit, or a voucher with nothing left), used at all, start and expiry. The
-- stats derive each group's status at the clock they are asked for and add the groups up:
-- their cost is the number of groups (a batch of a million codes is one), not of coupons.
-- Triggers on the mirror (coupon_rows) and on the usage summary (coupon_usage) move a
-- coupon from its old group to its new one in the statement that changes it, so the groups
-- always equal a recount (rd_groups_recount, which the tests compare).

CREATE TABLE IF NOT EXISTS coupon_groups (
    campaign  text    NOT NULL,  -- '' for none
    kind      text    NOT NULL,
    class     text    NOT NULL,  -- archived, disabled, live
    exhausted boolean NOT NULL,
    used      boolean NOT NULL,  -- used at least once (live uses)
    starts    bigint  NOT NULL,  -- ms; -1 for none
    expires   bigint  NOT NULL,  -- ms; -1 for never
    n         bigint  NOT NULL,  -- coupons
    uses      bigint  NOT NULL,  -- their live uses
    loaded    bigint  NOT NULL,  -- vouchers: initial balances and recharges
    spent     bigint  NOT NULL,
    refunded  bigint  NOT NULL,
    PRIMARY KEY (campaign, kind, class, exhausted, used, starts, expires)
);

-- The group of one coupon: its definition d (its batch's template t under it), kind,
-- campaign and usage summary (NULLs for none).
CREATE OR REPLACE FUNCTION rd_group_of(p_d jsonb, p_t jsonb, p_kind text, p_campaign text,
                                       p_used bigint, p_recharged bigint, p_spent bigint,
                                       p_refunded bigint, OUT campaign text, OUT kind text, OUT class text,
                                       OUT exhausted boolean, OUT used boolean, OUT starts bigint,
                                       OUT expires bigint, OUT uses bigint, OUT loaded bigint,
                                       OUT spent bigint, OUT refunded bigint)
LANGUAGE sql IMMUTABLE AS $$
SELECT coalesce($4, ''), k, cls,
       cls = 'live' AND (u >= coalesce(nullif(coalesce($1->>'l_total', $2->>'l_total'), '')::bigint,
                                       9223372036854775807)
                         OR (k = 'voucher' AND bal + r - s + f <= 0)),
       u > 0,
       coalesce(nullif(coalesce($1->>'starts_at', $2->>'starts_at'), '')::bigint, -1),
       coalesce(nullif(coalesce($1->>'expires_at', $2->>'expires_at'), '')::bigint, -1),
       u, bal + r, s, f
FROM (SELECT coalesce($3, 'discount') AS k,
             CASE WHEN $1 ? 'archived_at' THEN 'archived'
                  WHEN coalesce($1->>'status', $2->>'status') = 'disabled' THEN 'disabled'
                  ELSE 'live' END AS cls,
             coalesce(nullif(coalesce($1->>'bal', $2->>'bal'), ''), '0')::bigint AS bal,
             coalesce($5, 0) AS u, coalesce($6, 0) AS r, coalesce($7, 0) AS s,
             coalesce($8, 0) AS f) x
$$;

-- Every coupon's group, the long way: what coupon_groups must equal.
CREATE OR REPLACE FUNCTION rd_groups_recount()
RETURNS TABLE (campaign text, kind text, class text, exhausted boolean, used boolean,
               starts bigint, expires bigint, n bigint, uses bigint, loaded bigint,
               spent bigint, refunded bigint)
LANGUAGE sql STABLE AS $$
SELECT g.campaign, g.kind, g.class, g.exhausted, g.used, g.starts, g.expires, count(*),
       sum(g.uses)::bigint, sum(g.loaded)::bigint, sum(g.spent)::bigint, sum(g.refunded)::bigint
FROM coupon_rows c LEFT JOIN batches b ON b.id = c.batch_id
     LEFT JOIN coupon_usage u ON u.code = c.code
     CROSS JOIN LATERAL rd_group_of(c.definition, b.template, c.kind, c.campaign, u.used,
                                    u.recharged, u.spent, u.refunded) g
GROUP BY 1, 2, 3, 4, 5, 6, 7
$$;

-- Adds the changes of one statement: old rows leave their groups, new rows join theirs.
-- The triggers below pass what the statement changed: rows of the mirror, or of the usage
-- summary; the other side is read as it is now (the statement did not change it). A usage
-- row with no mirror row is not counted (its coupon joins a group when its mirror row comes).
CREATE OR REPLACE FUNCTION rd_groups_apply(sign int, mirror coupon_rows[], usage coupon_usage[])
RETURNS void
LANGUAGE sql AS $$
WITH x AS (
    SELECT c.code, c.definition, c.batch_id, c.kind, c.campaign, u.used, u.recharged,
           u.spent, u.refunded
    FROM unnest(mirror) c LEFT JOIN coupon_usage u ON u.code = c.code
    UNION ALL
    SELECT c.code, c.definition, c.batch_id, c.kind, c.campaign, u.used, u.recharged,
           u.spent, u.refunded
    FROM unnest(usage) u JOIN coupon_rows c ON c.code = u.code
), d AS (
    SELECT g.*
    FROM x LEFT JOIN batches b ON b.id = x.batch_id
         CROSS JOIN LATERAL rd_group_of(x.definition, b.template, x.kind, x.campaign, x.used,
                                        x.recharged, x.spent, x.refunded) g
)
INSERT INTO coupon_groups AS g (campaign, kind, class, exhausted, used, starts, expires, n,
                                uses, loaded, spent, refunded)
SELECT campaign, kind, class, exhausted, used, starts, expires, sign * count(*),
       sign * sum(uses), sign * sum(loaded), sign * sum(spent), sign * sum(refunded)
FROM d GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
ON CONFLICT (campaign, kind, class, exhausted, used, starts, expires) DO UPDATE
    SET n = g.n + EXCLUDED.n, uses = g.uses + EXCLUDED.uses,
        loaded = g.loaded + EXCLUDED.loaded, spent = g.spent + EXCLUDED.spent,
        refunded = g.refunded + EXCLUDED.refunded
$$;

CREATE INDEX IF NOT EXISTS coupon_groups_empty ON coupon_groups ((1)) WHERE n = 0;

CREATE OR REPLACE FUNCTION rd_groups_on_mirror() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM rd_groups_apply(-1, (SELECT array_agg(o::coupon_rows) FROM old_rows o),
                                '{}'::coupon_usage[]);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM rd_groups_apply(1, (SELECT array_agg(n::coupon_rows) FROM new_rows n),
                                '{}'::coupon_usage[]);
    END IF;
    DELETE FROM coupon_groups WHERE n = 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION rd_groups_on_usage() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        PERFORM rd_groups_apply(-1, '{}'::coupon_rows[],
                                (SELECT array_agg(o::coupon_usage) FROM old_rows o));
    ELSE  -- a first usage row: the coupon was counted with none
        PERFORM rd_groups_apply(-1, '{}'::coupon_rows[], (SELECT array_agg(ROW(n.code, 0, 0, 0, 0, 0, 0, 0,
                                                                 NULL)::coupon_usage)
                                           FROM new_rows n));
    END IF;
    PERFORM rd_groups_apply(1, '{}'::coupon_rows[],
                                (SELECT array_agg(n::coupon_usage) FROM new_rows n));
    DELETE FROM coupon_groups WHERE n = 0;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS coupon_rows_groups_ins ON coupon_rows;
DROP TRIGGER IF EXISTS coupon_rows_groups_upd ON coupon_rows;
DROP TRIGGER IF EXISTS coupon_rows_groups_del ON coupon_rows;
CREATE TRIGGER coupon_rows_groups_ins AFTER INSERT ON coupon_rows
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rd_groups_on_mirror();
CREATE TRIGGER coupon_rows_groups_upd AFTER UPDATE ON coupon_rows
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rd_groups_on_mirror();
CREATE TRIGGER coupon_rows_groups_del AFTER DELETE ON coupon_rows
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION rd_groups_on_mirror();

DROP TRIGGER IF EXISTS coupon_usage_groups_ins ON coupon_usage;
DROP TRIGGER IF EXISTS coupon_usage_groups_upd ON coupon_usage;
CREATE TRIGGER coupon_usage_groups_ins AFTER INSERT ON coupon_usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rd_groups_on_usage();
CREATE TRIGGER coupon_usage_groups_upd AFTER UPDATE ON coupon_usage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rd_groups_on_usage();

-- The groups of an existing install, counted once.
LOCK TABLE coupon_rows, coupon_usage IN SHARE MODE;
DELETE FROM coupon_groups;
INSERT INTO coupon_groups SELECT * FROM rd_groups_recount();

-- rd_stats (006) from the summaries: coupon counts from the groups, uses from coupon_usage,
-- the hours from usage_hourly_all (007).
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

GRANT SELECT ON coupon_groups TO redeemd_fraud;
