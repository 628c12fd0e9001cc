-- GET /v1/transactions?from=... pages in (txid, txn_id) order, and a window near the end of a
-- large ledger made that walk every row before the window in page order (262 ms for the last
-- day of 10M rows, growing with history). Each inserting transaction's oldest and newest row
-- time says whether its rows can be in a window: a row of time t was inserted by a
-- transaction with min_ts <= t <= max_ts. The listing (common/listing.c) hands the txids of
-- the transactions overlapping the window to the page index as an array, which a btree walks
-- in txid order: the page probes those transactions only. Rows shipped late (after an
-- outage: old times, new txids) are covered, since the times are the rows' own, not when they
-- were shipped; a single "smallest txid" bound was tried first, and one early transaction
-- holding a row of a later time (a clock ahead, an import) made it walk millions of rows.
-- One row per shipping transaction, kept by a statement trigger, so every way rows enter
-- the ledger records it.

CREATE TABLE IF NOT EXISTS ledger_batches (
    txid   xid8        PRIMARY KEY,
    min_ts timestamptz NOT NULL,
    max_ts timestamptz NOT NULL,
    n      bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_batches_max_ts ON ledger_batches (max_ts) INCLUDE (txid, min_ts);

CREATE OR REPLACE FUNCTION rd_ledger_batch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_batches AS b (txid, min_ts, max_ts, n)
    SELECT pg_current_xact_id(), min(ts), max(ts), count(*) FROM new_rows HAVING count(*) > 0
    ON CONFLICT (txid) DO UPDATE
        SET min_ts = least(b.min_ts, EXCLUDED.min_ts),
            max_ts = greatest(b.max_ts, EXCLUDED.max_ts), n = b.n + EXCLUDED.n;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS transactions_batches ON transactions;
CREATE TRIGGER transactions_batches AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rd_ledger_batch();

-- An existing ledger, once (run migrations with the shipper stopped).
LOCK TABLE transactions IN SHARE MODE;
INSERT INTO ledger_batches (txid, min_ts, max_ts, n)
SELECT txid, min(ts), max(ts), count(*) FROM transactions GROUP BY txid
ON CONFLICT (txid) DO NOTHING;

GRANT SELECT ON ledger_batches TO redeemd_fraud;
