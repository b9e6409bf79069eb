-- The audit log's retention: records older than the configured age may be deleted, and only by
-- the purge, which names its cutoff in the transaction-local setting keyplane.audit_purge_before.
-- Any other delete of a record is still refused, as are updates and TRUNCATE.
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW'
       AND OLD.at < current_setting('keyplane.audit_purge_before', true) COLLATE "C" THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
