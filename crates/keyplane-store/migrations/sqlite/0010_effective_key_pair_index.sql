-- DeleteKeyPairs asks whether any instance still has the key pair, desired or in effect. Without an
-- index on the effective side that question scanned the instances: on a 1,000,000-instance store a
-- DeleteKeyPairs held the one writer for milliseconds and Import/Delete ran at 180 calls/s
-- (docs/BENCHMARKS.md, run 12). PostgreSQL has had this index from the start. Its planner
-- statistics are fixed like the others' (migration 0006).
CREATE INDEX instances_effective_key_pair ON instances(account_id, effective_key_pair_id);
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('instances', 'instances_effective_key_pair', '1000000 10000 100');
