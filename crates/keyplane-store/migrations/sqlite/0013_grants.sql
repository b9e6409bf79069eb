-- Grants (SPEC section 15): a key pair given to a named OS user on an instance, beside the vendor
-- binding; and the key pairs revoked everywhere in an account.
CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    region_id   TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    key_pair_id TEXT NOT NULL,
    os_user     TEXT NOT NULL,
    expires_at  TEXT,
    immediate   INTEGER NOT NULL,
    apply_seq   INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT,
    result      TEXT NOT NULL DEFAULT '',
    error       TEXT
);
CREATE INDEX grants_instance ON grants(instance_id);
CREATE INDEX grants_account ON grants(account_id, created_at);
CREATE TABLE revoked_key_pairs (
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    key_pair_id TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    revoked_at  TEXT NOT NULL,
    PRIMARY KEY (account_id, key_pair_id)
);
