-- A time window of GET /v1/transactions probes the shipping transactions that reach into it
-- (ledger_batches, 013), and walking each of them in (txid, txn_id) order read all of its
-- rows to find the window's. A transaction spans its shipping delay: under a second when the
-- shipper keeps up, the whole outage when it ships a backlog (bench/history's synthetic
-- backlog: batches spanning two days, an hour's page 96-148 ms at 10M rows). The page index
-- gets ts between txid and txn_id, so each probed transaction is entered at the window's start
-- and costs its rows inside the window (0.3 ms on the same ledger); pages walk
-- (txid, ts, txn_id) (common/listing.c), and a cursor seeks straight to its row. A filter with
-- its own (filter, txid, txn_id) index and no window keeps walking (txid, txn_id).
--
-- Building it reads the ledger once (13 s per ten million rows here); run migrations with
-- redeemd stopped (README, upgrading).

CREATE INDEX IF NOT EXISTS transactions_page_ts ON transactions (txid, ts, txn_id);
DROP INDEX IF EXISTS transactions_page;
