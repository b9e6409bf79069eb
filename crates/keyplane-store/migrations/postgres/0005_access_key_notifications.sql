-- Every change to an AccessKey is announced on the channel keyplane_keys (delivered when the
-- transaction commits), so every server empties its AccessKey cache: a key disabled or deleted
-- through one server stops working on all of them. Per statement, not per row: the message says
-- only "something changed".
CREATE FUNCTION keyplane_access_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyplane_keys', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER access_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON access_keys
    FOR EACH STATEMENT EXECUTE FUNCTION keyplane_access_keys_changed();
