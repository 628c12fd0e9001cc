-- reconcile looks up the reversal of each redemption by its id
CREATE INDEX IF NOT EXISTS transactions_ref ON transactions (ref_id) WHERE ref_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS transactions_txn ON transactions (txn_id);
