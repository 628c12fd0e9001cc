-- The customer behind the checkout (issue 15). client_ip now holds the customer's address
-- when the request names it (customer.ip, or X-Forwarded-For from a trusted proxy), else the
-- peer's as before, so every fraud filter and view that reads client_ip (the client_ip
-- filter and its page index, ip_failures_hourly, rd_ip_failures) follows the customer with no
-- index of its own. peer_ip keeps the address that connected (NULL: the same as client_ip,
-- as in every row before this migration); session_id, device_id and email_hash are what the
-- caller said about its customer.
--
-- Columns added at the end and NULL: PostgreSQL writes no row for them, so this is instant
-- on any ledger.

ALTER TABLE transactions
    ADD COLUMN IF NOT EXISTS peer_ip inet,
    ADD COLUMN IF NOT EXISTS session_id text,
    ADD COLUMN IF NOT EXISTS device_id text,
    ADD COLUMN IF NOT EXISTS email_hash text;
