-- Key pairs page by seq within an account and region without a sort of all of them (PostgreSQL has
-- had this index from the start).
CREATE INDEX key_pairs_account_region ON key_pairs(account_id, region_id, seq);

-- Fixed planner statistics. Without any, SQLite guesses that `account_id = ?` narrows a table to
-- about ten rows and picks an account index over the unique index on `id`, so a batch of 50 IDs
-- scanned every instance of the account. These figures describe the shape keyplane is built for
-- (many accounts, many instances each, IDs unique); they are not measured, so they do not drift
-- with the data. ANALYZE on a single small table is the documented way to create sqlite_stat1.
ANALYZE accounts;
DELETE FROM sqlite_stat1 WHERE tbl IN ('instances', 'key_pairs');
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('instances', 'sqlite_autoindex_instances_1', '1000000 1'),
    ('instances', 'instances_account_region', '1000000 10000 5000 1'),
    ('instances', 'instances_key_pair', '1000000 10000 100'),
    ('instances', 'instances_key_pair_name', '1000000 10000 5000 100'),
    ('key_pairs', 'sqlite_autoindex_key_pairs_1', '100000 1'),
    ('key_pairs', 'sqlite_autoindex_key_pairs_2', '100000 500 250 1'),
    ('key_pairs', 'key_pairs_md5', '100000 500 250 1'),
    ('key_pairs', 'key_pairs_sha256', '100000 500 250 1'),
    ('key_pairs', 'key_pairs_account_region', '100000 500 250 1');
