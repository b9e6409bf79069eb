-- Each instance's own result in a batch call's audit record (AttachKeyPair, DetachKeyPair): a JSON
-- array of {"InstanceId", "Result"} in the caller's order; '[]' for every other call and for the
-- records written before this release. Adding a column is no UPDATE: the append-only triggers
-- stay as they are.
ALTER TABLE audit ADD COLUMN instance_results TEXT NOT NULL DEFAULT '[]';
