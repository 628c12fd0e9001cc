-- Ingest speed: every index is paid for on each of the thousands of rows shipped per second.
-- transactions_txn (txn_id) repeats the leading column of the primary key (txn_id, ts),
-- which serves the same lookups; drop it.
DROP INDEX IF EXISTS transactions_txn;
