-- Webhooks (issue 15): endpoints, and one delivery per (endpoint, event). Events come from
-- the ledger: rd_webhook_events() runs in the shipper's transaction (after rd_summarize), so
-- an event exists exactly when the ledger row it tells of does, and a row shipped again
-- (ON CONFLICT DO NOTHING: not inserted) makes no second event. batch.completed comes from
-- the batches table, when a job's state becomes done. Deliveries are made by the webhook
-- thread of any daemon (daemon/jobs/webhooks.c), claimed with SKIP LOCKED.

CREATE TABLE IF NOT EXISTS webhooks (
    id             text PRIMARY KEY,
    url            text        NOT NULL,
    events         text[]      NOT NULL,
    description    text,
    secret         text        NOT NULL,
    enabled        boolean     NOT NULL DEFAULT true,
    disabled_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id           text PRIMARY KEY,           -- "whd_" and the event's id and the endpoint's
    webhook_id   text        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id     text        NOT NULL,
    type         text        NOT NULL,
    payload      text        NOT NULL,       -- the exact bytes that are signed and sent
    status       text        NOT NULL DEFAULT 'pending',  -- pending delivered failed
    attempts     int         NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL,       -- due; while out, the lease's end
    last_code    int,
    last_error   text,
    created_at   timestamptz NOT NULL,
    delivered_at timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (webhook_id, next_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_of ON webhook_deliveries (webhook_id, created_at);

CREATE OR REPLACE FUNCTION rd_webhook_json(w webhooks) RETURNS jsonb
LANGUAGE sql STABLE AS $$
SELECT jsonb_build_object(
    'id', w.id, 'url', w.url, 'events', to_jsonb(w.events), 'description', w.description,
    'enabled', w.enabled, 'disabled_reason', w.disabled_reason,
    'created_at', rd_ts(w.created_at), 'updated_at', rd_ts(w.updated_at))
$$;

CREATE OR REPLACE FUNCTION rd_delivery_json(d webhook_deliveries) RETURNS jsonb
LANGUAGE sql STABLE AS $$
SELECT jsonb_build_object(
    'id', d.id, 'event_id', d.event_id, 'type', d.type, 'status', d.status,
    'attempts', d.attempts, 'last_response_code', d.last_code, 'last_error', d.last_error,
    'next_attempt_at', CASE WHEN d.status = 'pending' THEN rd_ts(d.next_at) END,
    'created_at', rd_ts(d.created_at), 'delivered_at', rd_ts(d.delivered_at))
$$;

-- The event a ledger row tells of (NULL: none), and what it says.
CREATE OR REPLACE FUNCTION rd_event_type(kind text, outcome text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN outcome <> 'accepted' THEN NULL
            WHEN kind = 'redeem' THEN 'redemption.created'
            WHEN kind = 'reverse' THEN 'redemption.reversed'
            WHEN kind = 'pay' THEN 'voucher.paid'
            WHEN kind = 'refund' THEN 'voucher.refunded'
            WHEN kind = 'recharge' THEN 'voucher.recharged'
            WHEN kind = 'coupon_create' THEN 'coupon.created'
            WHEN kind = 'coupon_update' THEN 'coupon.updated'
            WHEN kind = 'coupon_disable' THEN 'coupon.disabled' END
$$;

CREATE OR REPLACE FUNCTION rd_event_data(t transactions) RETURNS jsonb
LANGUAGE sql STABLE AS $$
SELECT jsonb_strip_nulls(jsonb_build_object(
    'transaction_id', t.txn_id, 'ts', rd_ts(t.ts), 'kind', t.kind, 'outcome', t.outcome,
    'reason', t.reason, 'code', t.code, 'campaign', t.campaign, 'user_id', t.user_id,
    'order_id', t.order_id, 'ref_id', t.ref_id, 'order_amount', t.order_amount,
    'discount_amount', t.discount_amount, 'amount', t.paid_amount,
    'balance_after', t.balance_after, 'currency', t.currency, 'client_ip', host(t.client_ip),
    'session_id', t.session_id, 'details', t.details))
$$;

-- One delivery per enabled endpoint subscribed to the event. An event's id is made from the
-- ledger row's (unique), so a receiver can deduplicate across retries and restarts.
CREATE OR REPLACE FUNCTION rd_webhook_enqueue(ev_id text, ev_type text, ev_ts timestamptz,
                                              ev_data jsonb) RETURNS void
LANGUAGE sql AS $$
INSERT INTO webhook_deliveries (id, webhook_id, event_id, type, payload, next_at, created_at)
SELECT 'whd_' || substr(md5(w.id || ':' || ev_id), 1, 20), w.id, ev_id, ev_type,
       jsonb_build_object('id', ev_id, 'type', ev_type, 'created_at', rd_ts(ev_ts),
                          'data', ev_data)::text,
       now(), now()
FROM webhooks w
WHERE w.enabled AND ev_type = ANY (w.events)
ON CONFLICT (webhook_id, event_id) DO NOTHING
$$;

CREATE OR REPLACE FUNCTION rd_webhook_events() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    me xid8 := pg_current_xact_id();
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE enabled) THEN
        RETURN; -- the common case costs one index-free probe of a tiny table
    END IF;
    FOR r IN
        SELECT 'evt_' || t.txn_id AS id, rd_event_type(t.kind, t.outcome) AS type, t.ts,
               rd_event_data(t) AS data
        FROM transactions t
        WHERE t.txid = me AND rd_event_type(t.kind, t.outcome) IS NOT NULL
        UNION ALL
        -- the use that reached the total limit
        SELECT 'evt_' || t.txn_id || '_exhausted', 'coupon.exhausted', t.ts, rd_event_data(t)
        FROM transactions t
        WHERE t.txid = me AND t.kind IN ('redeem', 'pay') AND t.outcome = 'accepted'
          AND t.details -> 'remaining' ->> 'total' = '0'
        UNION ALL
        -- a guessing budget's first refusal of a minute (the later ones of the minute are
        -- in the ledger's count: one event per budget, value and minute)
        SELECT 'evt_' || t.txn_id, 'fraud.rate_limited', t.ts, rd_event_data(t)
        FROM transactions t
        WHERE t.txid = me AND t.kind = 'rate_limited' AND t.details ->> 'count' = '1'
        ORDER BY 3, 1
    LOOP
        PERFORM rd_webhook_enqueue(r.id, r.type, r.ts, r.data);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION rd_batch_done_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'done' AND OLD.state IS DISTINCT FROM 'done' THEN
        PERFORM rd_webhook_enqueue('evt_batch_' || NEW.id, 'batch.completed',
                                   coalesce(NEW.finished_at, now()), rd_batch_json(NEW));
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS batches_done_event ON batches;
CREATE TRIGGER batches_done_event AFTER UPDATE OF state ON batches
    FOR EACH ROW EXECUTE FUNCTION rd_batch_done_event();

-- The API's writes (daemon/api/webhooks.c): each one statement.
CREATE OR REPLACE FUNCTION rd_webhook_update(p_id text, p_url text, p_events text[],
                                             p_description text, p_set_description boolean,
                                             p_enabled boolean) RETURNS jsonb
LANGUAGE sql AS $$
UPDATE webhooks w SET
    url = coalesce(p_url, w.url), events = coalesce(p_events, w.events),
    description = CASE WHEN p_set_description THEN p_description ELSE w.description END,
    enabled = coalesce(p_enabled, w.enabled),
    disabled_reason = CASE WHEN coalesce(p_enabled, w.enabled) THEN NULL
                           ELSE coalesce(w.disabled_reason, 'disabled by the API') END,
    updated_at = now()
WHERE w.id = p_id
RETURNING rd_webhook_json(w)
$$;

-- POST .../retry: due now, whatever its state (at least once: a delivery under way may
-- then be sent twice, with the same event id).
CREATE OR REPLACE FUNCTION rd_delivery_retry(p_webhook text, p_id text) RETURNS jsonb
LANGUAGE sql AS $$
UPDATE webhook_deliveries d SET status = 'pending', next_at = now(), delivered_at = NULL
WHERE d.webhook_id = p_webhook AND d.id = p_id
RETURNING rd_delivery_json(d)
$$;

-- the fraud team sees endpoints and deliveries, never a signing secret
GRANT SELECT (id, url, events, description, enabled, disabled_reason, created_at, updated_at)
    ON webhooks TO redeemd_fraud;
GRANT SELECT ON webhook_deliveries TO redeemd_fraud;
