-- redeemd schema, version 1: the coupon mirror and the admin audit trail are filled by the
-- ledger shipper; this first migration only establishes the schema the later ones extend.
CREATE TABLE IF NOT EXISTS redeemd_info (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO redeemd_info (key, value) VALUES ('schema', 'redeemd') ON CONFLICT DO NOTHING;
