-- The audit log's retention: records older than the configured age may be deleted, and only by
-- the purge, which names its cutoff in audit_purge within its transaction. Any other delete of a
-- record is still refused, as is every update.
CREATE TABLE audit_purge (before TEXT NOT NULL);
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN NOT EXISTS (SELECT 1 FROM audit_purge WHERE OLD.at < audit_purge.before)
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
