-- The fields a coupon's clock-dependent status reads (expiry, start, disabled), stored with
-- each mirror row and indexed, so that GET /v1/coupons?status=expired (or scheduled, or
-- disabled) walks the coupons that can have that status instead of every coupon. The view
-- (006) takes them from a code's own definition, else its batch's template, per row; here
-- they are resolved when the row is written. A batch's template never changes after the
-- batch is queued, so a row stays right until its own definition changes, which the
-- trigger below sees.

ALTER TABLE coupon_rows
    ADD COLUMN IF NOT EXISTS eff_expires  bigint,  -- ms; NULL for never
    ADD COLUMN IF NOT EXISTS eff_starts   bigint,  -- ms; NULL for none
    ADD COLUMN IF NOT EXISTS eff_disabled boolean NOT NULL DEFAULT false;

CREATE OR REPLACE FUNCTION rd_coupon_rows_eff() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    t jsonb;
BEGIN
    IF NEW.batch_id IS NOT NULL THEN
        SELECT template INTO t FROM batches WHERE id = NEW.batch_id;
    END IF;
    NEW.eff_expires := nullif(coalesce(NEW.definition->>'expires_at', t->>'expires_at'), '')::bigint;
    NEW.eff_starts := nullif(coalesce(NEW.definition->>'starts_at', t->>'starts_at'), '')::bigint;
    NEW.eff_disabled := coalesce(NEW.definition->>'status', t->>'status', '') = 'disabled';
    RETURN NEW;
END $$;

-- The rows of an existing install, once (the groups do not change: not counted again).
ALTER TABLE coupon_rows DISABLE TRIGGER coupon_rows_groups_upd;
UPDATE coupon_rows c
SET eff_expires = nullif(c.definition->>'expires_at', '')::bigint,
    eff_starts = nullif(c.definition->>'starts_at', '')::bigint,
    eff_disabled = coalesce(c.definition->>'status', '') = 'disabled'
WHERE c.batch_id IS NULL;
UPDATE coupon_rows c
SET eff_expires = nullif(coalesce(c.definition->>'expires_at', b.template->>'expires_at'), '')::bigint,
    eff_starts = nullif(coalesce(c.definition->>'starts_at', b.template->>'starts_at'), '')::bigint,
    eff_disabled = coalesce(c.definition->>'status', b.template->>'status', '') = 'disabled'
FROM batches b WHERE b.id = c.batch_id;
ALTER TABLE coupon_rows ENABLE TRIGGER coupon_rows_groups_upd;

-- A batch code as the batch thread records it (no definition of its own) gets its template's
-- values from the INSERT itself (daemon/jobs/batcher.c): a million codes pay no per-row call.
DROP TRIGGER IF EXISTS coupon_rows_eff ON coupon_rows;
CREATE TRIGGER coupon_rows_eff BEFORE INSERT OR UPDATE ON coupon_rows
    FOR EACH ROW WHEN (NEW.batch_id IS NULL OR NEW.definition <> '{}'::jsonb)
    EXECUTE FUNCTION rd_coupon_rows_eff();

CREATE INDEX IF NOT EXISTS coupon_rows_expires ON coupon_rows (eff_expires, code)
    WHERE eff_expires IS NOT NULL;
CREATE INDEX IF NOT EXISTS coupon_rows_starts ON coupon_rows (eff_starts, code)
    WHERE eff_starts IS NOT NULL;
CREATE INDEX IF NOT EXISTS coupon_rows_disabled ON coupon_rows (code) WHERE eff_disabled;

-- The listing's view, with the stored fields (same columns, three more at the end).
CREATE OR REPLACE VIEW coupons AS
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
       nullif(coalesce(c.definition->>'currency', b.template->>'currency'), '') AS d_currency,
       c.eff_expires, c.eff_starts, c.eff_disabled
FROM coupon_rows c LEFT JOIN batches b ON b.id = c.batch_id;
