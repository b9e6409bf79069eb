-- Signature nonces as one SQLite server writes them: one row per flush (every 100 ms) holding
-- every nonce of that batch as a JSON array of [access_key_id, nonce, instant], instead of one
-- B-tree row per nonce. A row per nonce dirtied a random page of the nonces index for every signed
-- call (at 26,000 calls/s, most of the writer's time and 10 MB/s of WAL); a row per flush appends
-- a few sequential pages (docs/BENCHMARKS.md, run 12). `newest` is the latest instant in the batch:
-- a batch is purged once even that is out of the window. The nonces table stays for what was
-- written before this release (still loaded and purged) and for claims in the store.
CREATE TABLE nonce_log (
    newest  TEXT NOT NULL,
    entries INTEGER NOT NULL,
    batch   TEXT NOT NULL
);
CREATE INDEX nonce_log_newest ON nonce_log (newest);
