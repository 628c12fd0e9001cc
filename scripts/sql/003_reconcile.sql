-- reconcile looks up the reversal of each redemption by its id
CREATE INDEX IF NOT EXISTS transactions_ref ON transactions (ref_id) WHERE ref_id IS NOT NULL;
-- transactions_txn was created here; 004_ingest.sql drops it (the primary key serves it).
